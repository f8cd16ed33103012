// SPDX-License-Identifier: MIT
#include <dmabridge/format/fourcc.hpp>
#include <dmabridge/vulkan/format.hpp>

#include <dmabridge/format/format.hpp>

#include <algorithm>
#include <iterator>
#include <string>

namespace dmabridge::vulkan {
namespace {

struct Pair {
    std::uint32_t fourcc;
    VkFormat format;
};

// The first row for a VkFormat is the fourcc to_fourcc() answers.
constexpr Pair pairs[] = {
    {fourcc::ARGB8888, VK_FORMAT_B8G8R8A8_UNORM},
    {fourcc::XRGB8888, VK_FORMAT_B8G8R8A8_UNORM},
    {fourcc::ABGR8888, VK_FORMAT_R8G8B8A8_UNORM},
    {fourcc::XBGR8888, VK_FORMAT_R8G8B8A8_UNORM},
    {fourcc::ARGB2101010, VK_FORMAT_A2R10G10B10_UNORM_PACK32},
    {fourcc::XRGB2101010, VK_FORMAT_A2R10G10B10_UNORM_PACK32},
    {fourcc::ABGR2101010, VK_FORMAT_A2B10G10R10_UNORM_PACK32},
    {fourcc::XBGR2101010, VK_FORMAT_A2B10G10R10_UNORM_PACK32},
    {fourcc::RGB888, VK_FORMAT_B8G8R8_UNORM},
    {fourcc::BGR888, VK_FORMAT_R8G8B8_UNORM},
    {fourcc::RGB565, VK_FORMAT_R5G6B5_UNORM_PACK16},
    {fourcc::R8, VK_FORMAT_R8_UNORM},
    {fourcc::R16, VK_FORMAT_R16_UNORM},
    {fourcc::GR88, VK_FORMAT_R8G8_UNORM},
    {fourcc::NV12, VK_FORMAT_G8_B8R8_2PLANE_420_UNORM},
    {fourcc::NV16, VK_FORMAT_G8_B8R8_2PLANE_422_UNORM},
    {fourcc::P010, VK_FORMAT_G10X6_B10X6R10X6_2PLANE_420_UNORM_3PACK16},
    {fourcc::YUV420, VK_FORMAT_G8_B8_R8_3PLANE_420_UNORM},
    {fourcc::YUYV, VK_FORMAT_G8B8G8R8_422_UNORM},
    {fourcc::UYVY, VK_FORMAT_B8G8R8G8_422_UNORM},
};

constexpr PlaneFormat texel(std::uint32_t bytes) { return {bytes, 1, 1, 1}; }
constexpr PlaneFormat chroma(std::uint32_t bytes, std::uint32_t hsub, std::uint32_t vsub) { return {bytes, 1, hsub, vsub}; }

// Single-plane formats whose texel block is one texel of whole bytes.
#define DMABRIDGE_PACKED_FORMATS(X) \
    X(R4G4_UNORM_PACK8, 1) \
    X(R4G4B4A4_UNORM_PACK16, 2) \
    X(B4G4R4A4_UNORM_PACK16, 2) \
    X(R5G6B5_UNORM_PACK16, 2) \
    X(B5G6R5_UNORM_PACK16, 2) \
    X(R5G5B5A1_UNORM_PACK16, 2) \
    X(B5G5R5A1_UNORM_PACK16, 2) \
    X(A1R5G5B5_UNORM_PACK16, 2) \
    X(R8_UNORM, 1) \
    X(R8_SNORM, 1) \
    X(R8_USCALED, 1) \
    X(R8_SSCALED, 1) \
    X(R8_UINT, 1) \
    X(R8_SINT, 1) \
    X(R8_SRGB, 1) \
    X(R8G8_UNORM, 2) \
    X(R8G8_SNORM, 2) \
    X(R8G8_USCALED, 2) \
    X(R8G8_SSCALED, 2) \
    X(R8G8_UINT, 2) \
    X(R8G8_SINT, 2) \
    X(R8G8_SRGB, 2) \
    X(R8G8B8_UNORM, 3) \
    X(R8G8B8_SNORM, 3) \
    X(R8G8B8_USCALED, 3) \
    X(R8G8B8_SSCALED, 3) \
    X(R8G8B8_UINT, 3) \
    X(R8G8B8_SINT, 3) \
    X(R8G8B8_SRGB, 3) \
    X(B8G8R8_UNORM, 3) \
    X(B8G8R8_SNORM, 3) \
    X(B8G8R8_USCALED, 3) \
    X(B8G8R8_SSCALED, 3) \
    X(B8G8R8_UINT, 3) \
    X(B8G8R8_SINT, 3) \
    X(B8G8R8_SRGB, 3) \
    X(R8G8B8A8_UNORM, 4) \
    X(R8G8B8A8_SNORM, 4) \
    X(R8G8B8A8_USCALED, 4) \
    X(R8G8B8A8_SSCALED, 4) \
    X(R8G8B8A8_UINT, 4) \
    X(R8G8B8A8_SINT, 4) \
    X(R8G8B8A8_SRGB, 4) \
    X(B8G8R8A8_UNORM, 4) \
    X(B8G8R8A8_SNORM, 4) \
    X(B8G8R8A8_USCALED, 4) \
    X(B8G8R8A8_SSCALED, 4) \
    X(B8G8R8A8_UINT, 4) \
    X(B8G8R8A8_SINT, 4) \
    X(B8G8R8A8_SRGB, 4) \
    X(A8B8G8R8_UNORM_PACK32, 4) \
    X(A8B8G8R8_SNORM_PACK32, 4) \
    X(A8B8G8R8_USCALED_PACK32, 4) \
    X(A8B8G8R8_SSCALED_PACK32, 4) \
    X(A8B8G8R8_UINT_PACK32, 4) \
    X(A8B8G8R8_SINT_PACK32, 4) \
    X(A8B8G8R8_SRGB_PACK32, 4) \
    X(A2R10G10B10_UNORM_PACK32, 4) \
    X(A2R10G10B10_SNORM_PACK32, 4) \
    X(A2R10G10B10_USCALED_PACK32, 4) \
    X(A2R10G10B10_SSCALED_PACK32, 4) \
    X(A2R10G10B10_UINT_PACK32, 4) \
    X(A2R10G10B10_SINT_PACK32, 4) \
    X(A2B10G10R10_UNORM_PACK32, 4) \
    X(A2B10G10R10_SNORM_PACK32, 4) \
    X(A2B10G10R10_USCALED_PACK32, 4) \
    X(A2B10G10R10_SSCALED_PACK32, 4) \
    X(A2B10G10R10_UINT_PACK32, 4) \
    X(A2B10G10R10_SINT_PACK32, 4) \
    X(R16_UNORM, 2) \
    X(R16_SNORM, 2) \
    X(R16_USCALED, 2) \
    X(R16_SSCALED, 2) \
    X(R16_UINT, 2) \
    X(R16_SINT, 2) \
    X(R16_SFLOAT, 2) \
    X(R16G16_UNORM, 4) \
    X(R16G16_SNORM, 4) \
    X(R16G16_USCALED, 4) \
    X(R16G16_SSCALED, 4) \
    X(R16G16_UINT, 4) \
    X(R16G16_SINT, 4) \
    X(R16G16_SFLOAT, 4) \
    X(R16G16B16_UNORM, 6) \
    X(R16G16B16_SNORM, 6) \
    X(R16G16B16_USCALED, 6) \
    X(R16G16B16_SSCALED, 6) \
    X(R16G16B16_UINT, 6) \
    X(R16G16B16_SINT, 6) \
    X(R16G16B16_SFLOAT, 6) \
    X(R16G16B16A16_UNORM, 8) \
    X(R16G16B16A16_SNORM, 8) \
    X(R16G16B16A16_USCALED, 8) \
    X(R16G16B16A16_SSCALED, 8) \
    X(R16G16B16A16_UINT, 8) \
    X(R16G16B16A16_SINT, 8) \
    X(R16G16B16A16_SFLOAT, 8) \
    X(R32_UINT, 4) \
    X(R32_SINT, 4) \
    X(R32_SFLOAT, 4) \
    X(R32G32_UINT, 8) \
    X(R32G32_SINT, 8) \
    X(R32G32_SFLOAT, 8) \
    X(R32G32B32_UINT, 12) \
    X(R32G32B32_SINT, 12) \
    X(R32G32B32_SFLOAT, 12) \
    X(R32G32B32A32_UINT, 16) \
    X(R32G32B32A32_SINT, 16) \
    X(R32G32B32A32_SFLOAT, 16) \
    X(R64_UINT, 8) \
    X(R64_SINT, 8) \
    X(R64_SFLOAT, 8) \
    X(R64G64_UINT, 16) \
    X(R64G64_SINT, 16) \
    X(R64G64_SFLOAT, 16) \
    X(R64G64B64_UINT, 24) \
    X(R64G64B64_SINT, 24) \
    X(R64G64B64_SFLOAT, 24) \
    X(R64G64B64A64_UINT, 32) \
    X(R64G64B64A64_SINT, 32) \
    X(R64G64B64A64_SFLOAT, 32) \
    X(B10G11R11_UFLOAT_PACK32, 4) \
    X(E5B9G9R9_UFLOAT_PACK32, 4) \
    X(R10X6_UNORM_PACK16, 2) \
    X(R10X6G10X6_UNORM_2PACK16, 4) \
    X(R10X6G10X6B10X6A10X6_UNORM_4PACK16, 8) \
    X(R12X4_UNORM_PACK16, 2) \
    X(R12X4G12X4_UNORM_2PACK16, 4) \
    X(R12X4G12X4B12X4A12X4_UNORM_4PACK16, 8) \
    X(A4R4G4B4_UNORM_PACK16, 2) \
    X(A4B4G4R4_UNORM_PACK16, 2)


#define DMABRIDGE_PACKED(name, bytes) {VK_FORMAT_##name, "VK_FORMAT_" #name, 1, {texel(bytes)}, false, false},
constexpr VkFormatLayout layouts[] = {
    DMABRIDGE_PACKED_FORMATS(DMABRIDGE_PACKED)
    // Packed 4:2:2: one 4-byte block holds two texels.
    {VK_FORMAT_G8B8G8R8_422_UNORM, "VK_FORMAT_G8B8G8R8_422_UNORM", 1, {PlaneFormat{4, 2, 1, 1}}, true, false},
    {VK_FORMAT_B8G8R8G8_422_UNORM, "VK_FORMAT_B8G8R8G8_422_UNORM", 1, {PlaneFormat{4, 2, 1, 1}}, true, false},
    {VK_FORMAT_G8_B8R8_2PLANE_420_UNORM, "VK_FORMAT_G8_B8R8_2PLANE_420_UNORM", 2, {texel(1), chroma(2, 2, 2)}, true, true},
    {VK_FORMAT_G8_B8R8_2PLANE_422_UNORM, "VK_FORMAT_G8_B8R8_2PLANE_422_UNORM", 2, {texel(1), chroma(2, 2, 1)}, true, false},
    {VK_FORMAT_G8_B8R8_2PLANE_444_UNORM, "VK_FORMAT_G8_B8R8_2PLANE_444_UNORM", 2, {texel(1), texel(2)}, false, false},
    {VK_FORMAT_G8_B8_R8_3PLANE_420_UNORM, "VK_FORMAT_G8_B8_R8_3PLANE_420_UNORM", 3,
     {texel(1), chroma(1, 2, 2), chroma(1, 2, 2)}, true, true},
    {VK_FORMAT_G8_B8_R8_3PLANE_422_UNORM, "VK_FORMAT_G8_B8_R8_3PLANE_422_UNORM", 3,
     {texel(1), chroma(1, 2, 1), chroma(1, 2, 1)}, true, false},
    {VK_FORMAT_G8_B8_R8_3PLANE_444_UNORM, "VK_FORMAT_G8_B8_R8_3PLANE_444_UNORM", 3, {texel(1), texel(1), texel(1)}, false,
     false},
    {VK_FORMAT_G10X6_B10X6R10X6_2PLANE_420_UNORM_3PACK16, "VK_FORMAT_G10X6_B10X6R10X6_2PLANE_420_UNORM_3PACK16", 2,
     {texel(2), chroma(4, 2, 2)}, true, true},
    {VK_FORMAT_G10X6_B10X6R10X6_2PLANE_422_UNORM_3PACK16, "VK_FORMAT_G10X6_B10X6R10X6_2PLANE_422_UNORM_3PACK16", 2,
     {texel(2), chroma(4, 2, 1)}, true, false},
    {VK_FORMAT_G16_B16R16_2PLANE_420_UNORM, "VK_FORMAT_G16_B16R16_2PLANE_420_UNORM", 2, {texel(2), chroma(4, 2, 2)}, true,
     true},
    {VK_FORMAT_G16_B16R16_2PLANE_422_UNORM, "VK_FORMAT_G16_B16R16_2PLANE_422_UNORM", 2, {texel(2), chroma(4, 2, 1)}, true,
     false},
};
#undef DMABRIDGE_PACKED
#undef DMABRIDGE_PACKED_FORMATS

std::string block_text(const PlaneFormat& p) {
    std::string s = std::to_string(p.bytes_per_block) + "-byte blocks";
    if (p.block_width != 1) s += " of " + std::to_string(p.block_width) + " texels";
    if (p.hsub != 1 || p.vsub != 1) s += ", subsampled " + std::to_string(p.hsub) + "x" + std::to_string(p.vsub);
    return s;
}

}  // namespace

std::optional<VkFormatLayout> format_layout(VkFormat format) noexcept {
    auto it = std::find_if(std::begin(layouts), std::end(layouts), [&](const VkFormatLayout& l) { return l.format == format; });
    if (it == std::end(layouts)) return std::nullopt;
    return *it;
}

std::string format_name(VkFormat format) {
    if (auto layout = format_layout(format)) return layout->name;
    return "VkFormat " + std::to_string(static_cast<long long>(format));
}

Status check_format_matches(VkFormat format, std::uint32_t fourcc) {
    const FormatInfo* info = find_format(fourcc);
    if (!info) return Error::library(Errc::unknown_format, "unknown DRM fourcc " + fourcc_to_string(fourcc));
    const auto layout = format_layout(format);
    if (!layout)
        return Error::library(Errc::unknown_format, "format " + format_name(format) + " for " + std::string(info->name) +
                                                        ": dmabridge does not know its texel layout, so it cannot check "
                                                        "that it covers the buffer's rows");
    const std::string both = "format " + format_name(format) + " does not have the memory layout of " + std::string(info->name);
    if (layout->plane_count != info->plane_count)
        return Error::library(Errc::invalid_argument, both + ": " + std::to_string(layout->plane_count) + " planes, " +
                                                          std::string(info->name) + " has " +
                                                          std::to_string(info->plane_count));
    for (std::uint32_t p = 0; p < info->plane_count; ++p) {
        const PlaneFormat& a = layout->planes[p];
        const PlaneFormat& b = info->planes[p];
        if (a.bytes_per_block != b.bytes_per_block || a.block_width != b.block_width || a.hsub != b.hsub ||
            a.vsub != b.vsub)
            return Error::library(Errc::invalid_argument, both + ": plane " + std::to_string(p) + " has " + block_text(a) +
                                                              ", " + std::string(info->name) + " has " + block_text(b));
    }
    return {};
}

Status check_extent_fits(VkFormat format, std::uint32_t width, std::uint32_t height) {
    const auto layout = format_layout(format);
    if (!layout) return {};
    const std::string what = std::to_string(width) + "x" + std::to_string(height) + " " + layout->name;
    if (layout->even_width && width % 2 != 0)
        return Error::library(Errc::invalid_argument,
                              what + ": Vulkan needs an even width for a format with horizontally subsampled chroma "
                                     "(VUID-VkImageCreateInfo-format-04712); DRM allows odd widths, Vulkan does not");
    if (layout->even_height && height % 2 != 0)
        return Error::library(Errc::invalid_argument,
                              what + ": Vulkan needs an even height for a 4:2:0 format "
                                     "(VUID-VkImageCreateInfo-format-04713); DRM allows odd heights, Vulkan does not");
    return {};
}

VkFormat to_vk_format(std::uint32_t code) noexcept {
    auto it = std::find_if(std::begin(pairs), std::end(pairs), [&](const Pair& p) { return p.fourcc == code; });
    return it == std::end(pairs) ? VK_FORMAT_UNDEFINED : it->format;
}

std::uint32_t to_fourcc(VkFormat format) noexcept {
    auto it = std::find_if(std::begin(pairs), std::end(pairs), [&](const Pair& p) { return p.format == format; });
    return it == std::end(pairs) ? 0 : it->fourcc;
}

}  // namespace dmabridge::vulkan
