// SPDX-License-Identifier: MIT
// Tables that need no device: DRM fourcc <-> VkFormat, extension requirements, format sets.
#include <dmabridge/format/format_set.hpp>
#include <dmabridge/format/fourcc.hpp>
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

TEST_CASE("VkFormat layouts: texel blocks, planes and the subsampling vkCreateImage demands") {
    using namespace vulkan;
    const auto nv12 = format_layout(VK_FORMAT_G8_B8R8_2PLANE_420_UNORM);
    REQUIRE(nv12);
    CHECK(nv12->plane_count == 2);
    CHECK(nv12->planes[1].bytes_per_block == 2);
    CHECK(nv12->even_width);
    CHECK(nv12->even_height);
    const auto yuyv = format_layout(VK_FORMAT_G8B8G8R8_422_UNORM);
    REQUIRE(yuyv);
    CHECK(yuyv->planes[0].block_width == 2);
    CHECK(yuyv->even_width);
    CHECK_FALSE(yuyv->even_height);
    CHECK(format_layout(VK_FORMAT_R32G32B32A32_SFLOAT)->planes[0].bytes_per_block == 16);
    CHECK(format_layout(VK_FORMAT_R10X6G10X6B10X6A10X6_UNORM_4PACK16)->planes[0].bytes_per_block == 8);
    CHECK_FALSE(format_layout(VK_FORMAT_BC1_RGB_UNORM_BLOCK));
    CHECK(format_name(VK_FORMAT_R8_UNORM) == "VK_FORMAT_R8_UNORM");
    CHECK(format_name(VK_FORMAT_D32_SFLOAT) == "VkFormat 126");

    // Every fourcc's own VkFormat has its layout (the table and the mapping agree).
    for (std::uint32_t code : {fourcc::XRGB8888, fourcc::ABGR8888, fourcc::XRGB2101010, fourcc::RGB888, fourcc::RGB565,
                               fourcc::R8, fourcc::R16, fourcc::GR88, fourcc::NV12, fourcc::NV16, fourcc::P010,
                               fourcc::YUV420, fourcc::YUYV, fourcc::UYVY}) {
        CAPTURE(fourcc_to_string(code));
        CHECK(check_format_matches(to_vk_format(code), code));
    }
}

TEST_CASE("a format override needs the fourcc's texel blocks; odd extents of subsampled formats are refused") {
    using namespace vulkan;
    CHECK(check_format_matches(VK_FORMAT_B8G8R8A8_SRGB, fourcc::XRGB8888));
    CHECK(check_format_matches(VK_FORMAT_R32_UINT, fourcc::XRGB8888));  // 4 bytes either way
    CHECK(check_format_matches(VK_FORMAT_R8_UINT, fourcc::R8));
    auto wide = check_format_matches(VK_FORMAT_R32G32B32A32_SFLOAT, fourcc::R8);
    REQUIRE_FALSE(wide);
    CHECK(wide.error().is(Errc::invalid_argument));
    CHECK(wide.error().message() == "format VK_FORMAT_R32G32B32A32_SFLOAT does not have the memory layout of R8: "
                                    "plane 0 has 16-byte blocks, R8 has 1-byte blocks");
    CHECK_FALSE(check_format_matches(VK_FORMAT_R8G8B8A8_UNORM, fourcc::YUYV));  // 1 texel per block, not 2
    CHECK_FALSE(check_format_matches(VK_FORMAT_G8_B8R8_2PLANE_422_UNORM, fourcc::NV12));  // chroma rows
    CHECK(check_format_matches(VK_FORMAT_D32_SFLOAT, fourcc::XRGB8888).error().is(Errc::unknown_format));

    CHECK(check_extent_fits(VK_FORMAT_G8_B8R8_2PLANE_420_UNORM, 640, 480));
    auto odd_width = check_extent_fits(VK_FORMAT_G8_B8R8_2PLANE_420_UNORM, 641, 480);
    REQUIRE_FALSE(odd_width);
    CHECK(odd_width.error().message().find("VUID-VkImageCreateInfo-format-04712") != std::string::npos);
    auto odd_height = check_extent_fits(VK_FORMAT_G8_B8R8_2PLANE_420_UNORM, 640, 481);
    REQUIRE_FALSE(odd_height);
    CHECK(odd_height.error().message().find("VUID-VkImageCreateInfo-format-04713") != std::string::npos);
    CHECK_FALSE(check_extent_fits(VK_FORMAT_G8B8G8R8_422_UNORM, 641, 480));
    CHECK(check_extent_fits(VK_FORMAT_G8B8G8R8_422_UNORM, 640, 481));  // 4:2:2: any height
    CHECK(check_extent_fits(VK_FORMAT_B8G8R8A8_UNORM, 641, 481));
}
