// SPDX-License-Identifier: MIT
#include "pipewire/spa_format.hpp"

#include <algorithm>
#include <array>
#include <utility>

#include <spa/buffer/buffer.h>
#include <spa/buffer/meta.h>
#include <spa/param/buffers.h>
#include <spa/param/format.h>
#include <spa/param/param.h>
#include <spa/param/video/raw.h>
#include <spa/pod/iter.h>
#include <spa/utils/type.h>

#include <dmabridge/format/fourcc.hpp>

namespace dmabridge::pipewire::detail {

namespace {

// One row a pair; adding a format is adding a row.
constexpr std::array<std::pair<std::uint32_t, std::uint32_t>, 10> format_table{{
    {fourcc::XRGB8888, SPA_VIDEO_FORMAT_BGRx},
    {fourcc::ARGB8888, SPA_VIDEO_FORMAT_BGRA},
    {fourcc::XBGR8888, SPA_VIDEO_FORMAT_RGBx},
    {fourcc::ABGR8888, SPA_VIDEO_FORMAT_RGBA},
    {fourcc::RGB888, SPA_VIDEO_FORMAT_BGR},
    {fourcc::BGR888, SPA_VIDEO_FORMAT_RGB},
    {fourcc::NV12, SPA_VIDEO_FORMAT_NV12},
    {fourcc::YUYV, SPA_VIDEO_FORMAT_YUY2},
    {fourcc::UYVY, SPA_VIDEO_FORMAT_UYVY},
    {fourcc::YUV420, SPA_VIDEO_FORMAT_I420},
}};

constexpr std::uint32_t max_extent = 16384;

// The single value of a property: a plain pod, or a choice's default (its first value).
const spa_pod* value_of(const spa_pod_prop* prop, std::uint32_t* count = nullptr, std::uint32_t* choice = nullptr) {
    std::uint32_t n = 0, c = 0;
    const spa_pod* values = spa_pod_get_values(&prop->value, &n, &c);
    if (count) *count = n;
    if (choice) *choice = c;
    return n == 0 ? nullptr : values;
}

}  // namespace

std::optional<std::uint32_t> spa_video_format(std::uint32_t fourcc) noexcept {
    for (const auto& [drm, spa] : format_table)
        if (drm == fourcc) return spa;
    return std::nullopt;
}

std::optional<std::uint32_t> drm_fourcc(std::uint32_t spa_format) noexcept {
    for (const auto& [drm, spa] : format_table)
        if (spa == spa_format) return drm;
    return std::nullopt;
}

Result<std::vector<std::uint32_t>> shm_offer(const FormatSet& formats, bool shm, std::span<const std::uint32_t> extra,
                                            const std::string& what) {
    std::vector<std::uint32_t> out;
    if (shm) {
        out = formats.fourccs();
        for (std::uint32_t f : extra)
            if (std::find(out.begin(), out.end(), f) == out.end()) out.push_back(f);
    }
    if (formats.empty() && out.empty())
        return Error::library(Errc::invalid_argument, what + ": nothing offered (no dma-buf formats, no shared memory)");
    for (const auto& list : {formats.fourccs(), out})
        for (std::uint32_t f : list)
            if (!spa_video_format(f))
                return Error::library(Errc::unsupported, what + ": PipeWire has no video format for " + fourcc_to_string(f));
    return out;
}

const spa_pod* build_enum_format(spa_pod_builder* b, std::uint32_t fourcc, std::span<const std::uint64_t> modifiers,
                                 bool fixed, const SizeOffer& size) {
    spa_pod_frame object{};
    spa_pod_builder_push_object(b, &object, SPA_TYPE_OBJECT_Format, SPA_PARAM_EnumFormat);
    spa_pod_builder_add(b, SPA_FORMAT_mediaType, SPA_POD_Id(SPA_MEDIA_TYPE_video), SPA_FORMAT_mediaSubtype,
                        SPA_POD_Id(SPA_MEDIA_SUBTYPE_raw), SPA_FORMAT_VIDEO_format,
                        SPA_POD_Id(spa_video_format(fourcc).value_or(SPA_VIDEO_FORMAT_UNKNOWN)), 0);
    if (!modifiers.empty()) {
        if (fixed) {
            spa_pod_builder_prop(b, SPA_FORMAT_VIDEO_modifier, SPA_POD_PROP_FLAG_MANDATORY);
            spa_pod_builder_long(b, static_cast<int64_t>(modifiers[0]));
        } else {
            spa_pod_builder_prop(b, SPA_FORMAT_VIDEO_modifier,
                                 SPA_POD_PROP_FLAG_MANDATORY | SPA_POD_PROP_FLAG_DONT_FIXATE);
            spa_pod_frame choice{};
            spa_pod_builder_push_choice(b, &choice, SPA_CHOICE_Enum, 0);
            // An enumeration's first value is its default, then every alternative.
            spa_pod_builder_long(b, static_cast<int64_t>(modifiers[0]));
            for (std::uint64_t m : modifiers) spa_pod_builder_long(b, static_cast<int64_t>(m));
            spa_pod_builder_pop(b, &choice);
        }
    }
    if (size.width != 0) {
        spa_rectangle r{size.width, size.height};
        spa_pod_builder_add(b, SPA_FORMAT_VIDEO_size, SPA_POD_Rectangle(&r), 0);
    } else {
        spa_rectangle def{640, 480}, min{1, 1}, max{max_extent, max_extent};
        spa_pod_builder_add(b, SPA_FORMAT_VIDEO_size, SPA_POD_CHOICE_RANGE_Rectangle(&def, &min, &max), 0);
    }
    if (size.framerate != 0) {
        spa_fraction f{size.framerate, 1};
        spa_pod_builder_add(b, SPA_FORMAT_VIDEO_framerate, SPA_POD_Fraction(&f), 0);
    } else {
        spa_fraction def{30, 1}, min{0, 1}, max{1000, 1};
        spa_pod_builder_add(b, SPA_FORMAT_VIDEO_framerate, SPA_POD_CHOICE_RANGE_Fraction(&def, &min, &max), 0);
    }
    return static_cast<const spa_pod*>(spa_pod_builder_pop(b, &object));
}

namespace {

// The fields both Buffers params share; `sync_datas` more blocks for explicit sync.
void add_buffer_fields(spa_pod_builder* b, std::uint32_t count, std::uint32_t blocks, std::uint32_t size,
                       std::uint32_t stride, std::uint32_t data_types) {
    if (count != 0)
        spa_pod_builder_add(b, SPA_PARAM_BUFFERS_buffers,
                            SPA_POD_CHOICE_RANGE_Int(static_cast<int>(count), 2, 16), 0);
    if (blocks != 0) spa_pod_builder_add(b, SPA_PARAM_BUFFERS_blocks, SPA_POD_Int(static_cast<int>(blocks)), 0);
    if (size != 0) spa_pod_builder_add(b, SPA_PARAM_BUFFERS_size, SPA_POD_Int(static_cast<int>(size)), 0);
    if (stride != 0) spa_pod_builder_add(b, SPA_PARAM_BUFFERS_stride, SPA_POD_Int(static_cast<int>(stride)), 0);
    spa_pod_builder_add(b, SPA_PARAM_BUFFERS_dataType, SPA_POD_CHOICE_FLAGS_Int(static_cast<int>(data_types)), 0);
}

}  // namespace

const spa_pod* build_buffers(spa_pod_builder* b, std::uint32_t count, std::uint32_t blocks, std::uint32_t size,
                             std::uint32_t stride, std::uint32_t data_types) {
    spa_pod_frame object{};
    spa_pod_builder_push_object(b, &object, SPA_TYPE_OBJECT_ParamBuffers, SPA_PARAM_Buffers);
    add_buffer_fields(b, count, blocks, size, stride, data_types);
    return static_cast<const spa_pod*>(spa_pod_builder_pop(b, &object));
}

const spa_pod* build_sync_buffers(spa_pod_builder* b, std::uint32_t count, std::uint32_t blocks, std::uint32_t size,
                                  std::uint32_t stride, std::uint32_t data_types) {
    spa_pod_frame object{};
    spa_pod_builder_push_object(b, &object, SPA_TYPE_OBJECT_ParamBuffers, SPA_PARAM_Buffers);
    add_buffer_fields(b, count, blocks + 2, size, stride, data_types | (1u << SPA_DATA_SyncObj));
    spa_pod_builder_prop(b, SPA_PARAM_BUFFERS_metaType, SPA_POD_PROP_FLAG_MANDATORY);
    spa_pod_builder_int(b, 1 << SPA_META_SyncTimeline);
    return static_cast<const spa_pod*>(spa_pod_builder_pop(b, &object));
}

const spa_pod* build_sync_buffers_accept(spa_pod_builder* b, std::uint32_t data_types) {
    spa_pod_frame object{};
    spa_pod_builder_push_object(b, &object, SPA_TYPE_OBJECT_ParamBuffers, SPA_PARAM_Buffers);
    spa_pod_builder_add(b, SPA_PARAM_BUFFERS_dataType,
                        SPA_POD_CHOICE_FLAGS_Int(static_cast<int>(data_types | (1u << SPA_DATA_SyncObj))),
                        SPA_PARAM_BUFFERS_metaType, SPA_POD_Int(1 << SPA_META_SyncTimeline), 0);
    return static_cast<const spa_pod*>(spa_pod_builder_pop(b, &object));
}

const spa_pod* build_sync_timeline_meta(spa_pod_builder* b) {
    spa_pod_frame object{};
    spa_pod_builder_push_object(b, &object, SPA_TYPE_OBJECT_ParamMeta, SPA_PARAM_Meta);
    spa_pod_builder_add(b, SPA_PARAM_META_type, SPA_POD_Id(SPA_META_SyncTimeline), SPA_PARAM_META_size,
                        SPA_POD_Int(static_cast<int>(sizeof(spa_meta_sync_timeline))), 0);
    return static_cast<const spa_pod*>(spa_pod_builder_pop(b, &object));
}

const spa_pod* build_header_meta(spa_pod_builder* b) {
    spa_pod_frame object{};
    spa_pod_builder_push_object(b, &object, SPA_TYPE_OBJECT_ParamMeta, SPA_PARAM_Meta);
    spa_pod_builder_add(b, SPA_PARAM_META_type, SPA_POD_Id(SPA_META_Header), SPA_PARAM_META_size,
                        SPA_POD_Int(static_cast<int>(sizeof(spa_meta_header))), 0);
    return static_cast<const spa_pod*>(spa_pod_builder_pop(b, &object));
}

Result<PeerFormat> parse_format(const spa_pod* param) {
    if (param == nullptr || !spa_pod_is_object_type(param, SPA_TYPE_OBJECT_Format))
        return Error::library(Errc::invalid_argument, "PipeWire format: not a Format object");
    const auto* object = reinterpret_cast<const spa_pod_object*>(param);
    auto id_of = [&](std::uint32_t key, const char* what) -> Result<std::uint32_t> {
        const spa_pod_prop* prop = spa_pod_object_find_prop(object, nullptr, key);
        const spa_pod* v = prop ? value_of(prop) : nullptr;
        std::uint32_t id = 0;
        if (v == nullptr || spa_pod_get_id(v, &id) < 0)
            return Error::library(Errc::invalid_argument, std::string("PipeWire format: no ") + what);
        return id;
    };
    auto media_type = id_of(SPA_FORMAT_mediaType, "media type");
    if (!media_type) return media_type.error();
    auto media_subtype = id_of(SPA_FORMAT_mediaSubtype, "media subtype");
    if (!media_subtype) return media_subtype.error();
    if (*media_type != SPA_MEDIA_TYPE_video || *media_subtype != SPA_MEDIA_SUBTYPE_raw)
        return Error::library(Errc::unsupported, "PipeWire format: not raw video (media type " +
                                                     std::to_string(*media_type) + ", subtype " +
                                                     std::to_string(*media_subtype) + ")");
    auto video_format = id_of(SPA_FORMAT_VIDEO_format, "video format");
    if (!video_format) return video_format.error();
    PeerFormat out;
    auto fourcc = drm_fourcc(*video_format);
    if (!fourcc)
        return Error::library(Errc::unsupported,
                              "PipeWire format: video format " + std::to_string(*video_format) + " has no DRM fourcc here");
    out.fourcc = *fourcc;

    const spa_pod_prop* size_prop = spa_pod_object_find_prop(object, nullptr, SPA_FORMAT_VIDEO_size);
    const spa_pod* size = size_prop ? value_of(size_prop) : nullptr;
    spa_rectangle r{};
    if (size == nullptr || spa_pod_get_rectangle(size, &r) < 0)
        return Error::library(Errc::invalid_argument, "PipeWire format: no size");
    if (r.width == 0 || r.height == 0 || r.width > max_extent || r.height > max_extent)
        return Error::library(Errc::invalid_argument, "PipeWire format: size " + std::to_string(r.width) + "x" +
                                                          std::to_string(r.height) + " outside 1..16384");
    out.width = r.width;
    out.height = r.height;

    const spa_pod_prop* mod = spa_pod_object_find_prop(object, nullptr, SPA_FORMAT_VIDEO_modifier);
    if (mod != nullptr) {
        std::uint32_t n = 0, choice = 0;
        const spa_pod* values = value_of(mod, &n, &choice);
        if (values == nullptr || !spa_pod_is_long(values))
            return Error::library(Errc::invalid_argument, "PipeWire format: a modifier property that holds no 64-bit value");
        out.has_modifier = true;
        const auto* longs = static_cast<const int64_t*>(SPA_POD_BODY_CONST(values));
        out.modifier = static_cast<std::uint64_t>(longs[0]);
        if ((mod->flags & SPA_POD_PROP_FLAG_DONT_FIXATE) != 0 && n > 1) {
            out.modifier_unfixed = true;
            // An enumeration repeats its default first; a plain value or a None choice has one.
            for (std::uint32_t i = (choice == SPA_CHOICE_Enum ? 1u : 0u); i < n; ++i)
                out.choices.push_back(static_cast<std::uint64_t>(longs[i]));
        }
    }
    return out;
}

}  // namespace dmabridge::pipewire::detail
