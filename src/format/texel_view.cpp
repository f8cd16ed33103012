// SPDX-License-Identifier: MIT
#include <dmabridge/format/texel_view.hpp>

#include <string>

#include <dmabridge/format/format.hpp>
#include <dmabridge/format/fourcc.hpp>

namespace dmabridge {
namespace {

// How each plane of a format is read: texels per pixel horizontally and vertically, as a
// divisor (2: one texel covers two pixels).
struct ViewRule {
    std::uint32_t fourcc = 0;
    std::uint32_t x_div = 1, y_div = 1, bytes = 0;
};
struct FormatRule {
    std::uint32_t fourcc;
    ViewRule planes[2];
    std::uint32_t plane_count;
};

constexpr FormatRule rules[] = {
    {fourcc::YUYV, {{fourcc::ABGR8888, 2, 1, 4}, {}}, 1},
    {fourcc::UYVY, {{fourcc::ABGR8888, 2, 1, 4}, {}}, 1},
    {fourcc::NV12, {{fourcc::R8, 1, 1, 1}, {fourcc::GR88, 2, 2, 2}}, 2},
    {fourcc::NV21, {{fourcc::R8, 1, 1, 1}, {fourcc::GR88, 2, 2, 2}}, 2},
    {fourcc::NV16, {{fourcc::R8, 1, 1, 1}, {fourcc::GR88, 2, 1, 2}}, 2},
    {fourcc::XRGB8888, {{fourcc::ABGR8888, 1, 1, 4}, {}}, 1},
    {fourcc::ARGB8888, {{fourcc::ABGR8888, 1, 1, 4}, {}}, 1},
    {fourcc::XBGR8888, {{fourcc::ABGR8888, 1, 1, 4}, {}}, 1},
    {fourcc::ABGR8888, {{fourcc::ABGR8888, 1, 1, 4}, {}}, 1},
};

}  // namespace

Result<std::vector<TexelPlane>> texel_planes(const ImageLayout& layout) {
    const std::string what = "texel views of " + fourcc_to_string(layout.fourcc);
    const FormatRule* rule = nullptr;
    for (const auto& r : rules)
        if (r.fourcc == layout.fourcc) rule = &r;
    if (!rule) return Error::library(Errc::unsupported, what + ": no texel view for this format");
    if (layout.modifier != modifier::linear)
        return Error::library(Errc::unsupported, what + ": modifier " + modifier_to_string(layout.modifier) +
                                                     " is not LINEAR, its bytes are not rows");
    if (auto ok = validate_layout(layout); !ok) return ok.error().with_context(what);
    std::vector<TexelPlane> out;
    for (std::uint32_t p = 0; p < rule->plane_count; ++p) {
        const ViewRule& v = rule->planes[p];
        if (layout.width % v.x_div != 0 || layout.height % v.y_div != 0)
            return Error::library(Errc::invalid_argument,
                                  what + ": " + std::to_string(layout.width) + "x" + std::to_string(layout.height) +
                                      " does not divide into plane " + std::to_string(p) + "'s texels of " +
                                      std::to_string(v.x_div) + "x" + std::to_string(v.y_div) + " pixels");
        out.push_back({p, v.fourcc, layout.width / v.x_div, layout.height / v.y_div, v.bytes, layout.planes[p].offset,
                       layout.planes[p].stride});
    }
    return out;
}

Result<std::vector<BufferDesc>> texel_views(const BufferDesc& desc) {
    if (auto ok = desc.validate(); !ok) return ok.error().with_context("texel views");
    auto planes = texel_planes(desc.layout());
    if (!planes) return planes.error();
    std::vector<BufferDesc> out;
    for (const TexelPlane& t : *planes) {
        auto buffer = desc.planes[t.plane].buffer.dup();
        if (!buffer) return buffer.error().with_context("texel view of plane " + std::to_string(t.plane));
        BufferDesc d;
        d.width = t.width;
        d.height = t.height;
        d.fourcc = t.fourcc;
        d.modifier = modifier::linear;
        d.planes.push_back({std::move(*buffer), t.offset, t.stride});
        out.push_back(std::move(d));
    }
    return out;
}

}  // namespace dmabridge
