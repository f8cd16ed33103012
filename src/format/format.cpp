// SPDX-License-Identifier: MIT
#include <dmabridge/format/format.hpp>
#include <dmabridge/format/fourcc.hpp>

#include <algorithm>

#include "base/checked_math.hpp"

namespace dmabridge {
namespace {

constexpr PlaneFormat px(std::uint32_t bytes) { return {bytes, 1, 1, 1}; }
constexpr PlaneFormat chroma(std::uint32_t bytes, std::uint32_t hsub, std::uint32_t vsub) {
    return {bytes, 1, hsub, vsub};
}

// One row per format: adding a format is adding a row. Packed 4:2:2 formats (YUYV, UYVY) store
// two pixels in a 4-byte block.
constexpr FormatInfo formats[] = {
    {fourcc::XRGB8888, "XRGB8888", 1, {px(4)}, false, false},
    {fourcc::ARGB8888, "ARGB8888", 1, {px(4)}, true, false},
    {fourcc::XBGR8888, "XBGR8888", 1, {px(4)}, false, false},
    {fourcc::ABGR8888, "ABGR8888", 1, {px(4)}, true, false},
    {fourcc::XRGB2101010, "XRGB2101010", 1, {px(4)}, false, false},
    {fourcc::ARGB2101010, "ARGB2101010", 1, {px(4)}, true, false},
    {fourcc::XBGR2101010, "XBGR2101010", 1, {px(4)}, false, false},
    {fourcc::ABGR2101010, "ABGR2101010", 1, {px(4)}, true, false},
    {fourcc::RGB888, "RGB888", 1, {px(3)}, false, false},
    {fourcc::BGR888, "BGR888", 1, {px(3)}, false, false},
    {fourcc::RGB565, "RGB565", 1, {px(2)}, false, false},
    {fourcc::R8, "R8", 1, {px(1)}, false, false},
    {fourcc::R16, "R16", 1, {px(2)}, false, false},
    {fourcc::GR88, "GR88", 1, {px(2)}, false, false},
    {fourcc::NV12, "NV12", 2, {px(1), chroma(2, 2, 2)}, false, true},
    {fourcc::NV21, "NV21", 2, {px(1), chroma(2, 2, 2)}, false, true},
    {fourcc::NV16, "NV16", 2, {px(1), chroma(2, 2, 1)}, false, true},
    {fourcc::P010, "P010", 2, {px(2), chroma(4, 2, 2)}, false, true},
    {fourcc::YUYV, "YUYV", 1, {PlaneFormat{4, 2, 1, 1}}, false, true},
    {fourcc::UYVY, "UYVY", 1, {PlaneFormat{4, 2, 1, 1}}, false, true},
    {fourcc::YUV420, "YUV420", 3, {px(1), chroma(1, 2, 2), chroma(1, 2, 2)}, false, true},
    {fourcc::YVU420, "YVU420", 3, {px(1), chroma(1, 2, 2), chroma(1, 2, 2)}, false, true},
};

}  // namespace

std::optional<std::uint64_t> FormatInfo::row_bytes(std::uint32_t plane, std::uint32_t width) const noexcept {
    if (plane >= plane_count) return std::nullopt;
    const PlaneFormat& p = planes[plane];
    const std::uint64_t samples = detail::ceil_div(width, p.hsub);
    return detail::mul(detail::ceil_div(samples, p.block_width), p.bytes_per_block);
}

std::uint32_t FormatInfo::plane_rows(std::uint32_t plane, std::uint32_t height) const noexcept {
    if (plane >= plane_count) return 0;
    return static_cast<std::uint32_t>(detail::ceil_div(height, planes[plane].vsub));
}

const FormatInfo* find_format(std::uint32_t code) noexcept {
    auto it = std::find_if(std::begin(formats), std::end(formats), [&](const FormatInfo& f) { return f.fourcc == code; });
    return it == std::end(formats) ? nullptr : &*it;
}

Result<const FormatInfo*> format_info(std::uint32_t code) {
    if (const FormatInfo* f = find_format(code)) return f;
    return Error::library(Errc::unknown_format, "unknown DRM fourcc " + fourcc_to_string(code));
}

Result<LinearLayout> linear_layout(std::uint32_t code, std::uint32_t width, std::uint32_t height,
                                   const LinearLayoutOptions& options) {
    auto info = format_info(code);
    if (!info) return info.error().with_context("linear layout");
    const std::string what = "linear layout of " + std::to_string(width) + "x" + std::to_string(height) + " " +
                             fourcc_to_string(code);
    if (width == 0 || height == 0) return Error::library(Errc::invalid_argument, what + ": the extent is empty");
    if (!detail::is_power_of_two(options.stride_alignment) || !detail::is_power_of_two(options.plane_alignment))
        return Error::library(Errc::invalid_argument, what + ": alignments must be powers of two");
    LinearLayout layout;
    layout.plane_count = (*info)->plane_count;
    std::uint64_t end = 0;
    for (std::uint32_t p = 0; p < layout.plane_count; ++p) {
        auto offset = detail::align_up(end, options.plane_alignment);
        auto row = (*info)->row_bytes(p, width);
        auto stride = row ? detail::align_up(*row, options.stride_alignment) : std::nullopt;
        auto bytes = stride ? detail::mul(*stride, (*info)->plane_rows(p, height)) : std::nullopt;
        auto plane_end = offset && bytes ? detail::add(*offset, *bytes) : std::nullopt;
        if (!plane_end || *stride > 0xffffffffu || *offset > 0xffffffffu)
            return Error::library(Errc::invalid_argument, what + ": plane " + std::to_string(p) + " is too large");
        layout.offsets[p] = *offset;
        layout.strides[p] = *stride;
        end = *plane_end;
    }
    layout.size = end;
    return layout;
}

}  // namespace dmabridge
