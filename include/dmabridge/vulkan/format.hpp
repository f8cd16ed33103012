// SPDX-License-Identifier: MIT
#pragma once
/// @file vulkan/format.hpp
/// DRM fourcc <-> VkFormat. DRM names the bytes of a little-endian word from its most significant
/// end, Vulkan's packed formats likewise and its byte formats in memory order, so
/// XRGB8888 (memory: B, G, R, X) is VK_FORMAT_B8G8R8A8_UNORM and XBGR8888 is R8G8B8A8_UNORM.
/// Formats with an unused channel (X) map to the format with alpha: the X byte is don't-care.

#include <array>
#include <cstdint>
#include <optional>
#include <string>

#include <vulkan/vulkan_core.h>

#include <dmabridge/format/format.hpp>

namespace dmabridge::vulkan {

/// The VkFormat that has the memory layout of `fourcc`, or VK_FORMAT_UNDEFINED when Vulkan has
/// none (NV21 and YVU420, whose chroma order Vulkan cannot express, among them).
VkFormat to_vk_format(std::uint32_t fourcc) noexcept;

/// The DRM fourcc with the memory layout of `format` (the alpha variant where DRM has X and A
/// forms, e.g. ARGB8888 for B8G8R8A8_UNORM), or 0 when there is none.
std::uint32_t to_fourcc(VkFormat format) noexcept;

/// The memory layout of a VkFormat, as dmabridge checks imports and exports against it.
struct VkFormatLayout {
    VkFormat format = VK_FORMAT_UNDEFINED;  ///< the format described
    const char* name = "";          ///< e.g. "VK_FORMAT_G8_B8R8_2PLANE_420_UNORM"
    std::uint32_t plane_count = 0;  ///< format planes (1 for packed formats)
    /// Per plane: bytes and texels of one texel block, and the plane's subsampling against the
    /// image (as in FormatInfo: G8B8G8R8_422 is one 4-byte block of 2 texels).
    std::array<PlaneFormat, max_planes> planes{};
    /// What vkCreateImage demands of the extent (VUID-VkImageCreateInfo-format-04712/04713):
    /// _422 and _420 formats need an even width, _420 formats an even height.
    bool even_width = false;   ///< the width must be even (_422 and _420 formats)
    bool even_height = false;  ///< the height must be even (_420 formats)

};

/// The layout of `format`: every uncompressed colour format with 8-bit multiples per texel
/// block and the YCbCr formats dmabridge maps fourccs to. Nothing for others (depth, compressed).
std::optional<VkFormatLayout> format_layout(VkFormat format) noexcept;

/// The name of `format` ("VK_FORMAT_R8_UNORM"), or "VkFormat <number>" for formats not in
/// format_layout()'s table.
std::string format_name(VkFormat format);

/// Whether `format` has the memory layout of `fourcc`'s planes: the same plane count and, per
/// plane, the same bytes and texels per block and the same subsampling. A format override in
/// ImageOptions must pass this, or the explicit row pitches would not cover a row.
/// Errors name both formats and the first plane that differs (Errc::invalid_argument), or the
/// format dmabridge does not know (Errc::unknown_format).
Status check_format_matches(VkFormat format, std::uint32_t fourcc);

/// Errc::invalid_argument when vkCreateImage would refuse a `width` x `height` image of
/// `format` for its chroma subsampling (odd width of a _422/_420 format, odd height of a _420
/// format), naming the rule; success otherwise. No Vulkan call.
Status check_extent_fits(VkFormat format, std::uint32_t width, std::uint32_t height);

}  // namespace dmabridge::vulkan
