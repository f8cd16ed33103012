// SPDX-License-Identifier: MIT
// The sync bridge with real fences: vgem fences gate lavapipe submits through acquired
// semaphores, and GPU completion reaches dma-bufs through published sync_files. Each ordering
// test runs in both modes (sync_file and the forced CPU-wait fallback).
#include <dmabridge/vulkan/import_cache.hpp>
#include <dmabridge/vulkan/sync_bridge.hpp>

#include <atomic>
#include <chrono>
#include <thread>

#include <doctest/doctest.h>

#include "vgem.hpp"
#include "vk_fixture.hpp"

using namespace dmabridge;
using namespace dmabridge::test;
using namespace std::chrono_literals;

namespace {

constexpr Timeout now{0};

vulkan::ExportedImage export_on(VkHarness& h, std::uint32_t w = 64, std::uint32_t height = 32) {
    ImageRequest r;
    r.width = w;
    r.height = height;
    r.fourcc = fourcc::XRGB8888;
    r.name = "sync";
    auto e = h.device().export_image(r);
    REQUIRE_MESSAGE(e, (e ? "" : e.error().message()));
    return std::move(*e);
}

// cpu_wait, or sync_file with releases exported as sync_files (the path these tests are about;
// lavapipe's automatic choice is wait_for_submit, tested on its own below).
vulkan::SyncBridge bridge(bool cpu_wait) {
    vulkan::SyncBridgeOptions options;
    options.force_cpu_wait = cpu_wait;
    options.release = vulkan::ReleaseMode::export_fence;
    auto b = vulkan::SyncBridge::create(device_b().device(), options);
    REQUIRE(b);
    CHECK(b->mode() == (cpu_wait ? vulkan::SyncMode::cpu_wait : vulkan::SyncMode::sync_file));
    return std::move(*b);
}

bool ready(const Result<WaitStatus>& r) {
    REQUIRE(r);
    return *r == WaitStatus::ready;
}

void record_barriers(VkCommandBuffer cmd, std::initializer_list<VkImageMemoryBarrier> barriers) {
    auto fn = reinterpret_cast<PFN_vkCmdPipelineBarrier>(device_b().context().device_proc("vkCmdPipelineBarrier"));
    std::vector<VkImageMemoryBarrier> list(barriers);
    fn(cmd, VK_PIPELINE_STAGE_ALL_COMMANDS_BIT, VK_PIPELINE_STAGE_ALL_COMMANDS_BIT, 0, 0, nullptr, 0, nullptr,
       static_cast<std::uint32_t>(list.size()), list.data());
}

const vulkan::ImageUse transfer_src{VK_IMAGE_LAYOUT_TRANSFER_SRC_OPTIMAL, VK_PIPELINE_STAGE_TRANSFER_BIT,
                                    VK_ACCESS_TRANSFER_READ_BIT};
const vulkan::ImageUse transfer_dst{VK_IMAGE_LAYOUT_TRANSFER_DST_OPTIMAL, VK_PIPELINE_STAGE_TRANSFER_BIT,
                                    VK_ACCESS_TRANSFER_WRITE_BIT};

// An image exported by device A and imported on device B through a cache, its dma-buf carrying
// an unsignalled vgem fence (a write fence, or a read fence).
struct FencedImport {
    explicit FencedImport(bool write_fence)
        : source(export_on(device_a())), cache(device_b().device()) {
        auto imported = cache.import(source.desc);
        REQUIRE(imported);
        image = std::move(*imported);
        fence = vgem.attach_fence(write_fence, vgem.import_buffer(source.desc.planes[0].buffer));
    }
    vulkan::ExportedImage source;
    vulkan::ImportCache cache;
    vulkan::CachedImage image;
    Vgem vgem;
    std::uint32_t fence = 0;
};

}  // namespace

TEST_CASE_FIXTURE(VkTest, "a submit that acquires a buffer with a pending vgem write fence waits for its signal") {
    FencedImport fenced(true);
    CHECK_FALSE(ready(fenced.source.desc.planes[0].buffer.wait(Access::read, now)));
    auto sync = bridge(false);
    auto acquire = sync.acquire_image(fenced.source.desc, *fenced.image, Access::read, transfer_src);
    CHECK_FALSE(ready(fenced.source.desc.planes[0].buffer.wait(Access::read, now)));
    REQUIRE_MESSAGE(acquire, (acquire ? "" : acquire.error().message()));
    REQUIRE(acquire->semaphore.handle() != VK_NULL_HANDLE);
    auto release = sync.prepare_release_image(*fenced.image, transfer_src);
    REQUIRE(release);
    auto submit = device_b().context().submit_async(
        [&](VkCommandBuffer cmd) { record_barriers(cmd, {acquire->image_barrier, release->image_barrier}); },
        {{acquire->semaphore.handle()}, {acquire->wait_stage}, {}});
    REQUIRE(submit);
    std::this_thread::sleep_for(100ms);
    CHECK_FALSE(submit->done());
    fenced.vgem.signal(fenced.fence);
    CHECK(ready(submit->wait(5000ms)));
}

TEST_CASE("the GPU's reads and writes are ordered by the fences of the buffers, in both modes") {
    for (bool cpu_wait : {false, true}) {
        CAPTURE(cpu_wait);
        VkDevicesReady devices;
        FdLeakCheck leaks;
        // A: written by device A, then fenced by vgem. B: exported by device B itself.
        auto a = export_on(device_a());
        const auto pattern = make_pattern(fourcc::XRGB8888, 64, 32, 3);
        device_a().upload(a.image, fourcc::XRGB8888, pattern);
        auto b = export_on(device_b());
        vulkan::ImportCache cache(device_b().device());
        auto a_on_b = cache.import(a.desc);
        REQUIRE(a_on_b);
        Vgem vgem;
        const auto fence = vgem.attach_fence(true, vgem.import_buffer(a.desc.planes[0].buffer));
        auto sync = bridge(cpu_wait);

        // Device B copies A into B, after vgem's write to A, and releases B to everyone.
        std::thread signaller;
        if (cpu_wait) {
            // The CPU-wait acquire blocks until the fence signals.
            signaller = std::thread([&] {
                std::this_thread::sleep_for(150ms);
                vgem.signal(fence);
            });
        }
        const auto start = std::chrono::steady_clock::now();
        auto acquire_a = sync.acquire_image(a.desc, **a_on_b, Access::read, transfer_src);
        REQUIRE(acquire_a);
        CHECK(acquire_a->waited_on_cpu == cpu_wait);
        if (cpu_wait) CHECK(std::chrono::steady_clock::now() - start >= 100ms);
        auto acquire_b = sync.acquire_image(b.desc, b.image, Access::write, transfer_dst, VK_IMAGE_LAYOUT_UNDEFINED);
        REQUIRE(acquire_b);
        CHECK(acquire_b->semaphore.handle() == VK_NULL_HANDLE);  // B is idle
        auto release_a = sync.prepare_release_image(**a_on_b, transfer_src, {&*acquire_a});
        auto release_b = sync.prepare_release_image(b.image, transfer_dst, {&*acquire_a, &*acquire_b});
        REQUIRE(release_a);
        REQUIRE(release_b);
        auto copy = reinterpret_cast<PFN_vkCmdCopyImage>(device_b().context().device_proc("vkCmdCopyImage"));
        auto submit = device_b().context().submit_async(
            [&](VkCommandBuffer cmd) {
                record_barriers(cmd, {acquire_a->image_barrier, acquire_b->image_barrier});
                VkImageCopy region{};
                region.srcSubresource = {VK_IMAGE_ASPECT_COLOR_BIT, 0, 0, 1};
                region.dstSubresource = {VK_IMAGE_ASPECT_COLOR_BIT, 0, 0, 1};
                region.extent = {64, 32, 1};
                copy(cmd, (*a_on_b)->handle(), VK_IMAGE_LAYOUT_TRANSFER_SRC_OPTIMAL, b.image.handle(),
                     VK_IMAGE_LAYOUT_TRANSFER_DST_OPTIMAL, 1, &region);
                record_barriers(cmd, {release_a->image_barrier, release_b->image_barrier});
            },
            {{acquire_a->semaphore.handle()}, {acquire_a->wait_stage},
             {release_a->semaphore.handle(), release_b->semaphore.handle()}});
        REQUIRE(submit);
        bool published = false;
        auto publish = [&] {
            published = sync.publish(*release_b, b.desc, Access::write, submit->fence()).ok() &&
                        sync.publish(*release_a, a.desc, Access::read, submit->fence()).ok();
        };
        if (!cpu_wait) {
            // lavapipe exports the release semaphore only once vgem's fence signalled, so publish
            // runs on a thread of its own; it first puts the acquired fences onto B.
            std::thread publisher(publish);
            std::this_thread::sleep_for(300ms);
            CHECK_FALSE(ready(b.desc.planes[0].buffer.wait(Access::read, now)));
            CHECK_FALSE(submit->done());
            vgem.signal(fence);
            publisher.join();
            CHECK(published);
        } else {
            publish();
            CHECK(published);
            // publish waited for the GPU: B is idle as soon as it is handed off.
            CHECK(submit->done());
            signaller.join();
        }
        CHECK(ready(b.desc.planes[0].buffer.wait(Access::read, 5000ms)));
        CHECK(ready(a.desc.planes[0].buffer.wait(Access::write, 5000ms)));
        CHECK(device_b().download(b.image, fourcc::XRGB8888) == pattern);
        REQUIRE(submit->wait());
        check_no_validation_messages();
    }
}

TEST_CASE_FIXTURE(VkTest, "a read fence does not hold back another reader's acquire, but holds back a writer's") {
    FencedImport fenced(false);
    auto sync = bridge(false);
    auto reader = sync.acquire_image(fenced.source.desc, *fenced.image, Access::read, transfer_src);
    REQUIRE(reader);
    CHECK(reader->semaphore.handle() == VK_NULL_HANDLE);  // nothing for a reader to wait for
    auto writer = sync.acquire_image(fenced.source.desc, *fenced.image, Access::write, transfer_dst);
    REQUIRE(writer);
    REQUIRE(writer->semaphore.handle() != VK_NULL_HANDLE);
    auto submit = device_b().context().submit_async(
        [&](VkCommandBuffer cmd) {
            VkImageMemoryBarrier back = writer->image_barrier;  // return ownership in the same submit
            std::swap(back.srcQueueFamilyIndex, back.dstQueueFamilyIndex);
            back.oldLayout = back.newLayout;
            back.newLayout = VK_IMAGE_LAYOUT_GENERAL;
            back.srcAccessMask = back.dstAccessMask;
            back.dstAccessMask = 0;
            record_barriers(cmd, {writer->image_barrier, back});
        },
        {{writer->semaphore.handle()}, {writer->wait_stage}, {}});
    REQUIRE(submit);
    std::this_thread::sleep_for(100ms);
    CHECK_FALSE(submit->done());
    fenced.vgem.signal(fenced.fence);
    CHECK(ready(submit->wait(5000ms)));
}

TEST_CASE_FIXTURE(VkTest, "the CPU-wait fallback times out clearly and reports why it is in use") {
    FencedImport fenced(true);
    vulkan::SyncBridgeOptions options;
    options.force_cpu_wait = true;
    options.cpu_wait_timeout = 100ms;
    auto sync = vulkan::SyncBridge::create(device_b().device(), options);
    REQUIRE(sync);
    CHECK(sync->mode_reason().find("forced") != std::string::npos);
    auto acquire = sync->acquire_image(fenced.source.desc, *fenced.image, Access::read, transfer_src);
    REQUIRE_FALSE(acquire);
    CHECK(acquire.error().message().find("did not signal within the timeout") != std::string::npos);
    auto release = sync->prepare_release_image(*fenced.image, transfer_src);
    REQUIRE(release);
    CHECK(release->semaphore.handle() == VK_NULL_HANDLE);
    auto no_fence = sync->publish(*release, fenced.source.desc, Access::read, VK_NULL_HANDLE);
    REQUIRE_FALSE(no_fence);
    CHECK(no_fence.error().is(Errc::invalid_argument));
    fenced.vgem.signal(fenced.fence);
}

TEST_CASE_FIXTURE(VkTest, "on lavapipe a release waits for its submit instead of exporting a sync_file") {
    // lavapipe has no kernel fences: exporting a release semaphore would wait for its queue to
    // go idle. The automatic release mode waits for the submit's own fence instead.
    FencedImport fenced(true);
    auto exporting = vulkan::SyncBridge::create(device_b().device(), {.release = vulkan::ReleaseMode::export_fence});
    REQUIRE(exporting);
    CHECK(exporting->release_mode() == vulkan::ReleaseMode::export_fence);
    auto sync = vulkan::SyncBridge::create(device_b().device());
    REQUIRE(sync);
    CHECK(sync->mode() == vulkan::SyncMode::sync_file);
    REQUIRE_MESSAGE(device_b().device().name().find("llvmpipe") != std::string::npos, "the suite runs on lavapipe");
    CHECK(sync->release_mode() == vulkan::ReleaseMode::wait_for_submit);

    auto acquire = sync->acquire_image(fenced.source.desc, *fenced.image, Access::write, transfer_dst);
    REQUIRE(acquire);
    REQUIRE(acquire->semaphore.handle() != VK_NULL_HANDLE);  // the GPU still waits for vgem
    auto release = sync->prepare_release_image(*fenced.image, transfer_dst, {&*acquire});
    REQUIRE(release);
    CHECK(release->semaphore.handle() == VK_NULL_HANDLE);
    auto submit = device_b().context().submit_async(
        [&](VkCommandBuffer cmd) { record_barriers(cmd, {acquire->image_barrier, release->image_barrier}); },
        {{acquire->semaphore.handle()}, {acquire->wait_stage}, {}});
    REQUIRE(submit);
    auto no_fence = sync->publish(*release, fenced.source.desc, Access::write, VK_NULL_HANDLE);
    REQUIRE_FALSE(no_fence);
    CHECK(no_fence.error().is(Errc::invalid_argument));

    std::atomic<bool> published{false};
    std::thread publisher([&] {
        published = sync->publish(*release, fenced.source.desc, Access::write, submit->fence()).ok();
    });
    std::this_thread::sleep_for(200ms);
    CHECK_FALSE(published.load());  // the submit waits for vgem, and publish for the submit
    CHECK_FALSE(submit->done());
    fenced.vgem.signal(fenced.fence);
    publisher.join();
    CHECK(published.load());
    CHECK(submit->done());  // handed off only once the GPU is done
    CHECK(ready(fenced.source.desc.planes[0].buffer.wait(Access::write, now)));
    check_no_validation_messages();
}

TEST_CASE_FIXTURE(VkTest, "publish's CPU wait for a submit gated on a fence nobody signals ends at cpu_wait_timeout") {
    // The submit waits for a vgem write fence the test holds; a release without a semaphore
    // (lavapipe: wait_for_submit) must not block publish() forever: it gives up after the
    // bridge's cpu_wait_timeout, says the buffer was not handed off, and the buffer stays busy.
    FencedImport fenced(true);
    auto sync = vulkan::SyncBridge::create(device_b().device(), {.cpu_wait_timeout = 150ms});
    REQUIRE(sync);
    auto acquire = sync->acquire_image(fenced.source.desc, *fenced.image, Access::write, transfer_dst);
    REQUIRE(acquire);
    auto release = sync->prepare_release_image(*fenced.image, transfer_dst, {&*acquire});
    REQUIRE(release);
    REQUIRE(release->semaphore.handle() == VK_NULL_HANDLE);
    auto submit = device_b().context().submit_async(
        [&](VkCommandBuffer cmd) { record_barriers(cmd, {acquire->image_barrier, release->image_barrier}); },
        {{acquire->semaphore.handle()}, {acquire->wait_stage}, {}});
    REQUIRE(submit);
    const auto start = std::chrono::steady_clock::now();
    auto published = sync->publish(*release, fenced.source.desc, Access::write, submit->fence());
    const auto waited = std::chrono::steady_clock::now() - start;
    REQUIRE_FALSE(published);
    CHECK(published.error().is(Errc::limit_exceeded));
    CHECK(published.error().message().find("not handed off") != std::string::npos);
    CHECK(waited >= 140ms);
    CHECK(waited < 5000ms);
    CHECK_FALSE(submit->done());
    fenced.vgem.signal(fenced.fence);
    CHECK(ready(submit->wait(5000ms)));
    check_no_validation_messages();
}

TEST_CASE_FIXTURE(VkTest, "a release published after its submit's fence wait leaves nothing for the next release to trip on") {
    // Each release gets a new semaphore. The 1.3.239 validation layer drops the wait that a
    // SYNC_FD export stands for when it has already retired the signal (a fence wait on the
    // queue, by this thread or any other, came first): a semaphore reused after such an export
    // looks still signalled, and the next submit that signals it is reported
    // (UNASSIGNED-CoreValidation-DrawState-QueueForwardProgress). That is how pooled release
    // semaphores made 'one sync bridge driven from two threads' flaky; here the order is forced.
    auto source = export_on(device_a(), 32, 8);
    vulkan::ImportCache cache(device_b().device());
    auto image = cache.import(source.desc);
    REQUIRE(image);
    auto sync = bridge(false);
    for (int frame = 0; frame < 3; ++frame) {
        CAPTURE(frame);
        auto acquire = sync.acquire_image(source.desc, **image, Access::read, transfer_src);
        REQUIRE(acquire);
        auto release = sync.prepare_release_image(**image, transfer_src, {&*acquire});
        REQUIRE(release);
        REQUIRE(release->semaphore.handle() != VK_NULL_HANDLE);
        auto submit = device_b().context().submit_async(
            [&](VkCommandBuffer cmd) { record_barriers(cmd, {acquire->image_barrier, release->image_barrier}); },
            {{acquire->semaphore.handle()}, {acquire->wait_stage}, {release->semaphore.handle()}});
        REQUIRE(submit);
        REQUIRE(ready(submit->wait(5000ms)));  // the layer retires the signal here
        auto published = sync.publish(*release, source.desc, Access::read, submit->fence());
        REQUIRE_MESSAGE(published, (published ? "" : published.error().message()));
        CHECK(ready(source.desc.planes[0].buffer.wait(Access::write, now)));
        check_no_validation_messages();
    }
}
