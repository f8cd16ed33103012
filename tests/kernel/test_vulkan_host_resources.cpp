// SPDX-License-Identifier: MIT
// vulkan::HostBuffer and vulkan::StorageImage: what they refuse, and what a moved-from one does.
// Their pixels are checked where they are used: every test of the Vulkan camera pipeline
// (test_camera.cpp) reads its frames back through StorageImage::record_copy_to into a HostBuffer and compares them with the CPU's
// conversion.
#include <dmabridge/vulkan/host_buffer.hpp>
#include <dmabridge/vulkan/storage_image.hpp>

#include <string>
#include <utility>

#include <doctest/doctest.h>

#include "vk_fixture.hpp"

using namespace dmabridge;
using namespace dmabridge::test;

TEST_CASE_FIXTURE(VkTest, "host buffers are mapped, sized as asked, and refuse size 0 and an empty device") {
    const auto& device = device_b().context().device();
    auto buffer = vulkan::HostBuffer::create(device, 1000, VK_BUFFER_USAGE_TRANSFER_DST_BIT);
    REQUIRE_MESSAGE(buffer, (buffer ? "" : buffer.error().message()));
    CHECK(buffer->valid());
    CHECK(buffer->size() == 1000);
    REQUIRE(buffer->bytes().size() == 1000);
    buffer->bytes()[999] = std::byte{42};  // mapped for its whole life: writable at once
    CHECK(buffer->bytes()[999] == std::byte{42});

    auto no_usage = vulkan::HostBuffer::create(device, 64, 0);
    REQUIRE_FALSE(no_usage);
    CHECK(no_usage.error().is(Errc::invalid_argument));
    auto zero = vulkan::HostBuffer::create(device, 0, VK_BUFFER_USAGE_TRANSFER_DST_BIT);
    REQUIRE_FALSE(zero);
    CHECK(zero.error().is(Errc::invalid_argument));
    auto none = vulkan::HostBuffer::create(vulkan::Device{}, 64, VK_BUFFER_USAGE_TRANSFER_DST_BIT);
    REQUIRE_FALSE(none);
    CHECK(none.error().is(Errc::empty_object));

    vulkan::HostBuffer moved = std::move(*buffer);
    CHECK_FALSE(buffer->valid());
    CHECK(buffer->bytes().empty());
    CHECK(moved.bytes().size() == 1000);
    CHECK(moved.bytes()[999] == std::byte{42});
}

TEST_CASE_FIXTURE(VkTest, "storage images refuse an empty extent, and a copy into a buffer too small names both sizes") {
    const auto& context = device_b().context();
    constexpr VkImageUsageFlags usage = VK_IMAGE_USAGE_STORAGE_BIT | VK_IMAGE_USAGE_TRANSFER_SRC_BIT;
    auto empty = vulkan::StorageImage::create(context.device(), VK_FORMAT_R8G8B8A8_UNORM, 0, 16, usage);
    REQUIRE_FALSE(empty);
    CHECK(empty.error().is(Errc::invalid_argument));
    auto none = vulkan::StorageImage::create(vulkan::Device{}, VK_FORMAT_R8G8B8A8_UNORM, 16, 16, usage);
    REQUIRE_FALSE(none);
    CHECK(none.error().is(Errc::empty_object));

    auto image = vulkan::StorageImage::create(context.device(), VK_FORMAT_R8G8B8A8_UNORM, 64, 32, usage);
    REQUIRE_MESSAGE(image, (image ? "" : image.error().message()));
    CHECK(image->handle() != VK_NULL_HANDLE);
    CHECK(image->view() != VK_NULL_HANDLE);
    CHECK(image->extent().width == 64);
    auto small = vulkan::HostBuffer::create(context.device(), 64 * 32 * 4 - 1, VK_BUFFER_USAGE_TRANSFER_DST_BIT);
    REQUIRE(small);
    Status refused;
    auto recorded = context.submit([&](VkCommandBuffer cmd) { refused = image->record_copy_to(cmd, *small); });
    REQUIRE_MESSAGE(recorded, (recorded ? "" : recorded.error().message()));
    REQUIRE_FALSE(refused);
    CHECK(refused.error().is(Errc::invalid_argument));
    const std::string message = refused.error().message();
    CHECK_MESSAGE(message.find("8191") != std::string::npos, message);
    CHECK_MESSAGE(message.find("8192") != std::string::npos, message);

    // The copy needs TRANSFER_SRC on the image and TRANSFER_DST on the buffer.
    auto wrong_usage = vulkan::HostBuffer::create(context.device(), 64 * 32 * 4, VK_BUFFER_USAGE_STORAGE_BUFFER_BIT);
    REQUIRE(wrong_usage);
    Status no_dst;
    recorded = context.submit([&](VkCommandBuffer cmd) { no_dst = image->record_copy_to(cmd, *wrong_usage); });
    REQUIRE(recorded);
    REQUIRE_FALSE(no_dst);
    CHECK(no_dst.error().is(Errc::invalid_argument));
    // A format the device cannot store to, and an extent beyond its limit, fail before Vulkan sees them.
    auto huge = vulkan::StorageImage::create(context.device(), VK_FORMAT_R8G8B8A8_UNORM, 1u << 20, 16, usage);
    REQUIRE_FALSE(huge);
    CHECK(huge.error().is(Errc::limit_exceeded));
    auto compressed = vulkan::StorageImage::create(context.device(), VK_FORMAT_BC1_RGB_UNORM_BLOCK, 64, 64, usage);
    REQUIRE_FALSE(compressed);
    CHECK(compressed.error().is(Errc::unsupported));

    vulkan::StorageImage moved = std::move(*image);
    CHECK_FALSE(image->valid());
    Status from_moved;
    recorded = context.submit([&](VkCommandBuffer cmd) { from_moved = image->record_copy_to(cmd, *small); });
    REQUIRE(recorded);
    REQUIRE_FALSE(from_moved);
    CHECK(from_moved.error().is(Errc::empty_object));
    CHECK(moved.valid());
}
