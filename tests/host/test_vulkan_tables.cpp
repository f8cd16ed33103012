// SPDX-License-Identifier: MIT
// Tables that need no device: DRM fourcc <-> VkFormat, extension requirements, format sets.
#include <dmabridge/format_set.hpp>
#include <dmabridge/fourcc.hpp>
#include <dmabridge/vulkan/device.hpp>
#include <dmabridge/vulkan/format.hpp>

#include <algorithm>
#include <cstring>
#include <string>

#include <doctest/doctest.h>

using namespace dmabridge;

namespace {
bool lists(const std::vector<const char*>& v, const char* name) {
    return std::any_of(v.begin(), v.end(), [&](const char* e) { return std::strcmp(e, name) == 0; });
}
}  // namespace

TEST_CASE("DRM fourccs map to the VkFormats with the same memory layout") {
    using vulkan::to_vk_format;
    CHECK(to_vk_format(fourcc::XRGB8888) == VK_FORMAT_B8G8R8A8_UNORM);  // memory: B, G, R, X
    CHECK(to_vk_format(fourcc::ARGB8888) == VK_FORMAT_B8G8R8A8_UNORM);
    CHECK(to_vk_format(fourcc::XBGR8888) == VK_FORMAT_R8G8B8A8_UNORM);  // memory: R, G, B, X
    CHECK(to_vk_format(fourcc::ABGR8888) == VK_FORMAT_R8G8B8A8_UNORM);
    CHECK(to_vk_format(fourcc::RGB565) == VK_FORMAT_R5G6B5_UNORM_PACK16);
    CHECK(to_vk_format(fourcc::RGB888) == VK_FORMAT_B8G8R8_UNORM);
    CHECK(to_vk_format(fourcc::GR88) == VK_FORMAT_R8G8_UNORM);
    CHECK(to_vk_format(fourcc::NV12) == VK_FORMAT_G8_B8R8_2PLANE_420_UNORM);
    CHECK(to_vk_format(fourcc::P010) == VK_FORMAT_G10X6_B10X6R10X6_2PLANE_420_UNORM_3PACK16);
    CHECK(to_vk_format(fourcc::YUYV) == VK_FORMAT_G8B8G8R8_422_UNORM);
    CHECK(to_vk_format(fourcc::XRGB2101010) == VK_FORMAT_A2R10G10B10_UNORM_PACK32);
    // Vulkan cannot express NV21's or YVU420's chroma order.
    CHECK(to_vk_format(fourcc::NV21) == VK_FORMAT_UNDEFINED);
    CHECK(to_vk_format(fourcc::YVU420) == VK_FORMAT_UNDEFINED);
    CHECK(vulkan::to_fourcc(VK_FORMAT_B8G8R8A8_UNORM) == fourcc::ARGB8888);
    CHECK(vulkan::to_fourcc(VK_FORMAT_G8_B8R8_2PLANE_420_UNORM) == fourcc::NV12);
    CHECK(vulkan::to_fourcc(VK_FORMAT_D32_SFLOAT) == 0);
}

TEST_CASE("extension requirements honour core promotions") {
    using vulkan::Capability;
    const auto share = Capability::import_memory | Capability::export_memory | Capability::modifiers;
    const auto on_11 = vulkan::required_device_extensions(share, VK_API_VERSION_1_1);
    const auto on_13 = vulkan::required_device_extensions(share, VK_API_VERSION_1_3);
    CHECK(lists(on_11, VK_EXT_EXTERNAL_MEMORY_DMA_BUF_EXTENSION_NAME));
    CHECK(lists(on_11, VK_KHR_EXTERNAL_MEMORY_FD_EXTENSION_NAME));
    CHECK(lists(on_11, VK_EXT_IMAGE_DRM_FORMAT_MODIFIER_EXTENSION_NAME));
    CHECK(lists(on_11, VK_KHR_IMAGE_FORMAT_LIST_EXTENSION_NAME));  // core only from 1.2
    CHECK_FALSE(lists(on_13, VK_KHR_IMAGE_FORMAT_LIST_EXTENSION_NAME));
    CHECK(on_11.size() == 4);  // each named once although two capabilities need it
    const auto sync = vulkan::required_device_extensions(Capability::sync_fd, VK_API_VERSION_1_3);
    CHECK(sync.size() == 1);
    CHECK(lists(sync, VK_KHR_EXTERNAL_SEMAPHORE_FD_EXTENSION_NAME));
    CHECK(vulkan::required_device_extensions(Capability::none, VK_API_VERSION_1_3).empty());
}

TEST_CASE("attaching to null handles is refused before anything is loaded") {
    auto r = vulkan::Device::attach(vulkan::DeviceHandles{});
    REQUIRE_FALSE(r);
    CHECK(r.error().is(Errc::invalid_argument));
}

TEST_CASE("format sets intersect pair by pair and keep the first set's preference") {
    FormatSet gbm, vk;
    gbm.add(fourcc::XRGB8888, 0x0100000000000002ull);
    gbm.add(fourcc::XRGB8888, modifier::linear);
    gbm.add(fourcc::NV12, modifier::linear);
    gbm.add(fourcc::NV12, modifier::linear);  // a pair already there changes nothing
    vk.add(fourcc::XRGB8888, modifier::linear);
    vk.add(fourcc::XRGB8888, 0x0100000000000002ull);
    vk.add(fourcc::ABGR8888, modifier::linear);
    CHECK(gbm.size() == 3);
    const FormatSet both = gbm.intersect(vk);
    CHECK(both.size() == 2);
    CHECK(both.modifiers(fourcc::XRGB8888) == std::vector<std::uint64_t>{0x0100000000000002ull, modifier::linear});
    CHECK_FALSE(both.contains(fourcc::NV12, modifier::linear));
    CHECK(both.fourccs() == std::vector<std::uint32_t>{fourcc::XRGB8888});
    CHECK(FormatSet{}.intersect(vk).empty());
}
