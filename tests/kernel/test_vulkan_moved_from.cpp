// SPDX-License-Identifier: MIT
// Objects of the Vulkan adapter that were moved from, and descriptions whose dma-bufs were:
// every call on them fails at once with a clear error; none blocks, crashes or succeeds.
#include <dmabridge/vulkan/context.hpp>
#include <dmabridge/vulkan/sync_bridge.hpp>

#include <chrono>
#include <string>

#include <doctest/doctest.h>

#include "vgem.hpp"
#include "vk_fixture.hpp"

using namespace dmabridge;
using namespace dmabridge::test;
using namespace std::chrono_literals;

namespace {

using Clock = std::chrono::steady_clock;

template <typename R>
bool refused(const R& r) {
    if (r) return false;
    CHECK_MESSAGE(r.error().is(Errc::empty_object), r.error().message());
    return true;
}

}  // namespace

TEST_CASE_FIXTURE(VkTest, "a moved-from Device, SyncBridge, Image, Buffer or description fails every call at once") {
    const auto start = Clock::now();
    vulkan::Device device = device_b().device();  // a copy, then moved from
    vulkan::Device taker = std::move(device);
    CHECK(taker.valid());
    CHECK_FALSE(device.valid());
    CHECK(device.handle() == VK_NULL_HANDLE);
    CHECK(device.capabilities() == vulkan::Capability::none);
    CHECK_FALSE(device.name().empty());
    CHECK_FALSE(device.drm_nodes());
    CHECK(device.importable_formats().size() == 0);

    auto exported = taker.export_image(ImageRequest{64, 32, fourcc::XRGB8888, {}, "moved"});
    REQUIRE(exported);
    auto buffer = taker.export_buffer(4096, VK_BUFFER_USAGE_TRANSFER_SRC_BIT, "moved");
    REQUIRE(buffer);
    CHECK(refused(device.modifier_support(fourcc::XRGB8888)));
    CHECK(refused(device.import_image(exported->desc)));
    CHECK(refused(device.import_buffer(buffer->dmabuf, VK_BUFFER_USAGE_TRANSFER_SRC_BIT)));
    CHECK(refused(device.export_image(ImageRequest{64, 32, fourcc::XRGB8888, {}, "x"})));
    CHECK(refused(device.export_buffer(4096, VK_BUFFER_USAGE_TRANSFER_SRC_BIT)));
    CHECK(refused(vulkan::SyncBridge::create(device)));

    // A bridge moved from.
    auto made = vulkan::SyncBridge::create(taker);
    REQUIRE(made);
    vulkan::SyncBridge bridge = std::move(*made);
    CHECK(made->mode() == vulkan::SyncMode::cpu_wait);
    CHECK(made->mode_reason().find("moved from") != std::string::npos);
    CHECK(refused(made->acquire_image(exported->desc, exported->image, Access::read, {})));
    CHECK(refused(made->acquire_buffer(buffer->dmabuf, buffer->buffer, Access::read, {})));
    CHECK(refused(made->prepare_release_image(exported->image, {})));
    CHECK(refused(made->prepare_release_buffer(buffer->buffer, {})));
    CHECK(refused(made->probe_kernel(buffer->dmabuf)));
    vulkan::Release nothing;
    CHECK(refused(made->publish(nothing, exported->desc, Access::write, VK_NULL_HANDLE)));

    // An image, a buffer and a description moved from, given to a live bridge.
    vulkan::ExportedImage moved_image = std::move(*exported);
    vulkan::ExportedBuffer moved_buffer = std::move(*buffer);
    CHECK_FALSE(exported->image.valid());
    CHECK(refused(taker.import_image(exported->desc)));
    CHECK(refused(taker.import_buffer(buffer->dmabuf, VK_BUFFER_USAGE_TRANSFER_SRC_BIT)));
    CHECK(refused(bridge.acquire_image(moved_image.desc, exported->image, Access::read, {})));
    CHECK(refused(bridge.acquire_image(exported->desc, moved_image.image, Access::read, {})));
    CHECK(refused(bridge.acquire_buffer(moved_buffer.dmabuf, buffer->buffer, Access::read, {})));
    CHECK(refused(bridge.acquire_buffer(buffer->dmabuf, moved_buffer.buffer, Access::read, {})));
    CHECK(refused(bridge.prepare_release_image(exported->image, {})));
    CHECK(refused(bridge.prepare_release_buffer(buffer->buffer, {})));
    CHECK(refused(bridge.publish(nothing, exported->desc, Access::write, VK_NULL_HANDLE)));
    CHECK(refused(bridge.publish(nothing, buffer->dmabuf, Access::write, VK_NULL_HANDLE)));
    CHECK(refused(bridge.probe_kernel(buffer->dmabuf)));
    CHECK(Clock::now() - start < 10s);  // nothing waited
}

TEST_CASE_FIXTURE(FdLeakCheck, "a moved-from Context or Submission fails every call at once") {
    std::vector<std::string> messages;
    {
        vulkan::ContextOptions options;
        options.validation = true;
        options.device_name = "llvmpipe";
        options.on_validation_message = [&](const std::string& m) { messages.push_back(m); };
        auto made = vulkan::Context::create(options);
        REQUIRE(made);
        vulkan::Context context = std::move(*made);
        const vulkan::Context& moved = *made;
        CHECK_FALSE(moved.device().valid());
        CHECK(moved.handles().device == VK_NULL_HANDLE);
        CHECK(moved.queue() == VK_NULL_HANDLE);
        const bool no_entry_point = moved.device_proc("vkCmdPipelineBarrier") == nullptr;
        CHECK(no_entry_point);
        CHECK(moved.validation_messages().empty());
        const auto nothing = [](VkCommandBuffer) {};
        CHECK(refused(moved.submit(nothing)));
        CHECK(refused(moved.submit_async(nothing)));
        CHECK(refused(moved.record(nothing)));

        auto submitted = context.submit_async(nothing);
        REQUIRE(submitted);
        vulkan::Submission taker = std::move(*submitted);
        const auto start = Clock::now();
        CHECK(refused(submitted->wait(Timeout::max())));
        CHECK(submitted->done());  // nothing pending
        CHECK(Clock::now() - start < 1s);
        REQUIRE(taker.wait(5000ms));
        vulkan::Submission never_made;
        CHECK(refused(never_made.wait()));
    }
    for (const auto& m : messages) FAIL_CHECK("validation: " << m);
}
