// SPDX-License-Identifier: MIT
#pragma once
/// @file vulkan/format.hpp
/// DRM fourcc <-> VkFormat. DRM names the bytes of a little-endian word from its most significant
/// end, Vulkan's packed formats likewise and its byte formats in memory order, so
/// XRGB8888 (memory: B, G, R, X) is VK_FORMAT_B8G8R8A8_UNORM and XBGR8888 is R8G8B8A8_UNORM.
/// Formats with an unused channel (X) map to the format with alpha: the X byte is don't-care.

#include <cstdint>

#include <vulkan/vulkan_core.h>

namespace dmabridge::vulkan {

/// The VkFormat that has the memory layout of `fourcc`, or VK_FORMAT_UNDEFINED when Vulkan has
/// none (NV21 and YVU420, whose chroma order Vulkan cannot express, among them).
VkFormat to_vk_format(std::uint32_t fourcc) noexcept;

/// The DRM fourcc with the memory layout of `format` (the alpha variant where DRM has X and A
/// forms, e.g. ARGB8888 for B8G8R8A8_UNORM), or 0 when there is none.
std::uint32_t to_fourcc(VkFormat format) noexcept;

}  // namespace dmabridge::vulkan
