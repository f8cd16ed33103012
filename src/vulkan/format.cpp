// SPDX-License-Identifier: MIT
#include <dmabridge/fourcc.hpp>
#include <dmabridge/vulkan/format.hpp>

#include <algorithm>
#include <iterator>

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

}  // namespace

VkFormat to_vk_format(std::uint32_t code) noexcept {
    auto it = std::find_if(std::begin(pairs), std::end(pairs), [&](const Pair& p) { return p.fourcc == code; });
    return it == std::end(pairs) ? VK_FORMAT_UNDEFINED : it->format;
}

std::uint32_t to_fourcc(VkFormat format) noexcept {
    auto it = std::find_if(std::begin(pairs), std::end(pairs), [&](const Pair& p) { return p.format == format; });
    return it == std::end(pairs) ? 0 : it->fourcc;
}

}  // namespace dmabridge::vulkan
