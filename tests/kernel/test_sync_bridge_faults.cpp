// SPDX-License-Identifier: MIT
// The sync bridge where things are missing or hostile: a device without SYNC_FD semaphores
// (played by VkInterposer), a kernel whose sync_file ioctls answer ENOTTY (a seccomp filter on
// one thread: the real ioctl, refused by the real kernel), a log handler that calls back into
// the bridge, and waits given Timeout::max() or a huge value, which must wait.
#include <dmabridge/base/log.hpp>
#include <dmabridge/vulkan/import_cache.hpp>
#include <dmabridge/vulkan/sync_bridge.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>

#include <linux/dma-buf.h>

#include <doctest/doctest.h>

#include "ioctl_faults.hpp"
#include "vgem.hpp"
#include "vk_fixture.hpp"
#include "vk_interpose.hpp"

using namespace dmabridge;
using namespace dmabridge::test;
using namespace std::chrono_literals;

namespace {

using Clock = std::chrono::steady_clock;

const vulkan::ImageUse transfer_src{VK_IMAGE_LAYOUT_TRANSFER_SRC_OPTIMAL, VK_PIPELINE_STAGE_TRANSFER_BIT,
                                    VK_ACCESS_TRANSFER_READ_BIT};

vulkan::ExportedImage export_on_a() {
    auto e = device_a().device().export_image(ImageRequest{64, 32, fourcc::XRGB8888, {}, "faults"});
    REQUIRE_MESSAGE(e, (e ? "" : e.error().message()));
    return std::move(*e);
}

// An image exported by device A and imported on device B, its dma-buf carrying an unsignalled
// vgem write fence until signal().
struct Fenced {
    Fenced() : source(export_on_a()), cache(device_b().device()) {
        auto imported = cache.import(source.desc);
        REQUIRE(imported);
        image = std::move(*imported);
        fence = vgem.attach_fence(true, vgem.import_buffer(source.desc.planes[0].buffer));
    }
    ~Fenced() { signal(); }
    void signal() {
        if (!signalled.exchange(true)) vgem.signal(fence);
    }
    vulkan::ExportedImage source;
    vulkan::ImportCache cache;
    vulkan::CachedImage image;
    Vgem vgem;
    std::uint32_t fence = 0;
    std::atomic<bool> signalled{false};
};

const std::vector<IoctlFault> no_sync_file_ioctls = {{DMA_BUF_IOCTL_EXPORT_SYNC_FILE, ENOTTY},
                                                     {DMA_BUF_IOCTL_IMPORT_SYNC_FILE, ENOTTY}};

void record_barrier(VkCommandBuffer cmd, const VkImageMemoryBarrier& b) {
    auto fn = reinterpret_cast<PFN_vkCmdPipelineBarrier>(device_b().context().device_proc("vkCmdPipelineBarrier"));
    VkImageMemoryBarrier back = b;  // return the image to the foreign family in the same submit
    std::swap(back.srcQueueFamilyIndex, back.dstQueueFamilyIndex);
    back.oldLayout = back.newLayout;
    back.newLayout = VK_IMAGE_LAYOUT_GENERAL;
    back.srcAccessMask = back.dstAccessMask;
    back.dstAccessMask = 0;
    const VkImageMemoryBarrier both[] = {b, back};
    fn(cmd, VK_PIPELINE_STAGE_ALL_COMMANDS_BIT, VK_PIPELINE_STAGE_ALL_COMMANDS_BIT, 0, 0, nullptr, 0, nullptr, 2, both);
}

}  // namespace

TEST_CASE_FIXTURE(VkTest, "the SYNC_FD semaphore query, import and export apart, decides the bridge's mode") {
    VkInterposer spy;
    auto device = attach_interposed(spy, device_b().context().handles(), vulkan::Capability::sync_fd);
    const vulkan::SyncBridgeOptions exporting{.release = vulkan::ReleaseMode::export_fence};

    // As lavapipe answers: import and export.
    auto full = vulkan::SyncBridge::create(device, exporting);
    REQUIRE(full);
    CHECK(spy.semaphore_queries == 1);
    CHECK(full->mode() == vulkan::SyncMode::sync_file);
    CHECK(full->release_mode() == vulkan::ReleaseMode::export_fence);

    // Export only missing: acquires still import, releases wait for their submit.
    spy.sync_fd_features = VK_EXTERNAL_SEMAPHORE_FEATURE_IMPORTABLE_BIT;
    auto import_only = vulkan::SyncBridge::create(device, exporting);
    REQUIRE(import_only);
    CHECK(import_only->mode() == vulkan::SyncMode::sync_file);
    CHECK(import_only->release_mode() == vulkan::ReleaseMode::wait_for_submit);

    // Nothing: the CPU-wait fallback, with the reason, and no semaphore is ever made.
    spy.sync_fd_features = 0;
    auto none = vulkan::SyncBridge::create(device, exporting);
    REQUIRE(none);
    CHECK(none->mode() == vulkan::SyncMode::cpu_wait);
    CHECK(none->release_mode() == vulkan::ReleaseMode::wait_for_submit);
    const auto reason = none->mode_reason();
    CHECK_MESSAGE(reason.find("cannot import SYNC_FD semaphores nor export them") != std::string::npos, reason);
    CHECK_MESSAGE(reason.find("vkGetPhysicalDeviceExternalSemaphoreProperties") != std::string::npos, reason);

    Fenced fenced;
    std::thread signaller([&] {
        std::this_thread::sleep_for(200ms);
        fenced.signal();
    });
    const auto start = Clock::now();
    auto acquire = none->acquire_image(fenced.source.desc, *fenced.image, Access::read, transfer_src);
    signaller.join();
    REQUIRE_MESSAGE(acquire, (acquire ? "" : acquire.error().message()));
    CHECK(acquire->waited_on_cpu);
    CHECK(acquire->semaphore.handle() == VK_NULL_HANDLE);
    CHECK(Clock::now() - start >= 150ms);
    auto release = none->prepare_release_image(*fenced.image, transfer_src);
    REQUIRE(release);
    CHECK(release->semaphore.handle() == VK_NULL_HANDLE);
}

TEST_CASE_FIXTURE(VkTest, "a kernel whose sync_file ioctls answer ENOTTY is found by probing, and fences still order the work") {
    SUBCASE("an idle buffer: the first acquire probes") {
        auto idle = export_on_a();
        vulkan::ImportCache cache(device_b().device());
        auto image = cache.import(idle.desc);
        REQUIRE(image);
        auto bridge = vulkan::SyncBridge::create(device_b().device());
        REQUIRE(bridge);
        REQUIRE(bridge->mode() == vulkan::SyncMode::sync_file);
        bool acquired = false;
        const auto failure = run_with_ioctl_faults(no_sync_file_ioctls, [&] {
            acquired = bridge->acquire_image(idle.desc, **image, Access::read, transfer_src).ok();
        });
        REQUIRE_MESSAGE(failure.empty(), failure);
        CHECK(acquired);
        CHECK(bridge->mode() == vulkan::SyncMode::cpu_wait);
        CHECK_MESSAGE(bridge->mode_reason().find("DMA_BUF_IOCTL_EXPORT_SYNC_FILE") != std::string::npos,
                      bridge->mode_reason());
    }
    SUBCASE("only the import answers ENOTTY: probe_kernel names it") {
        auto idle = export_on_a();
        auto bridge = vulkan::SyncBridge::create(device_b().device());
        REQUIRE(bridge);
        bool probed = false;
        const auto failure = run_with_ioctl_faults({{DMA_BUF_IOCTL_IMPORT_SYNC_FILE, ENOTTY}}, [&] {
            probed = bridge->probe_kernel(idle.desc.planes[0].buffer).ok();
        });
        REQUIRE_MESSAGE(failure.empty(), failure);
        CHECK(probed);
        CHECK(bridge->mode() == vulkan::SyncMode::cpu_wait);
        CHECK_MESSAGE(bridge->mode_reason().find("DMA_BUF_IOCTL_IMPORT_SYNC_FILE") != std::string::npos,
                      bridge->mode_reason());
    }
    SUBCASE("a fenced buffer: the acquire waits on the CPU until the fence signals") {
        Fenced fenced;
        auto bridge = vulkan::SyncBridge::create(device_b().device());
        REQUIRE(bridge);
        std::thread signaller([&] {
            std::this_thread::sleep_for(250ms);
            fenced.signal();
        });
        bool waited_on_cpu = false;
        Clock::duration took{};
        const auto failure = run_with_ioctl_faults(no_sync_file_ioctls, [&] {
            const auto start = Clock::now();
            auto acquire = bridge->acquire_image(fenced.source.desc, *fenced.image, Access::read, transfer_src);
            took = Clock::now() - start;
            waited_on_cpu = acquire && acquire->waited_on_cpu && !acquire->semaphore.handle();
        });
        signaller.join();
        REQUIRE_MESSAGE(failure.empty(), failure);
        CHECK(waited_on_cpu);
        CHECK(took >= 200ms);
        CHECK(bridge->mode() == vulkan::SyncMode::cpu_wait);
    }
}

TEST_CASE_FIXTURE(VkTest, "a log handler may call back into the sync bridge") {
    auto idle = export_on_a();
    vulkan::ImportCache cache(device_b().device());
    auto image = cache.import(idle.desc);
    REQUIRE(image);
    auto made = vulkan::SyncBridge::create(device_b().device());
    REQUIRE(made);
    // Shared with the worker, which may be left blocked if the bridge deadlocks.
    auto bridge = std::make_shared<vulkan::SyncBridge>(std::move(*made));
    auto calls = std::make_shared<std::atomic<int>>(0);
    auto finished = std::make_shared<std::atomic<bool>>(false);
    set_log_handler([bridge, calls](LogLevel, std::string_view) {
        (void)bridge->mode();
        (void)bridge->mode_reason();
        ++*calls;
    });
    auto desc = std::make_shared<BufferDesc>(std::move(idle.desc));
    std::thread worker([bridge, finished, desc, img = &**image] {
        (void)run_with_ioctl_faults(no_sync_file_ioctls, [&] {
            (void)bridge->acquire_image(*desc, *img, Access::read, transfer_src);
        });
        *finished = true;
    });
    const auto deadline = Clock::now() + 10s;
    while (!*finished && Clock::now() < deadline) std::this_thread::sleep_for(10ms);
    const bool done = *finished;
    set_log_handler({});
    if (done) {
        worker.join();
    } else {
        worker.detach();  // deadlocked: keep what it uses alive, fail
    }
    REQUIRE_MESSAGE(done, "the bridge deadlocked: its log handler ran under the bridge's lock");
    CHECK(*calls >= 1);
    CHECK(bridge->mode() == vulkan::SyncMode::cpu_wait);
}

// 18446744073710 ms * 1000000 is just above 2^64 ns: a wrapping conversion makes it 0.45 ms.
constexpr Timeout huge_timeouts[] = {Timeout::max(), Timeout{18446744073710}};

TEST_CASE_FIXTURE(VkTest, "a Submission waited for with Timeout::max() or a huge value waits until its fence signals") {
    for (const Timeout huge : huge_timeouts) {
        CAPTURE(huge.count());
        Fenced fenced;
        auto bridge = vulkan::SyncBridge::create(device_b().device());
        REQUIRE(bridge);
        auto acquire = bridge->acquire_image(fenced.source.desc, *fenced.image, Access::read, transfer_src);
        REQUIRE(acquire);
        REQUIRE(acquire->semaphore.handle() != VK_NULL_HANDLE);
        auto submit = device_b().context().submit_async(
            [&](VkCommandBuffer cmd) { record_barrier(cmd, acquire->image_barrier); },
            {{acquire->semaphore.handle()}, {acquire->wait_stage}, {}});
        REQUIRE(submit);
        std::atomic<bool> returned{false};
        bool ready = false;
        std::thread waiter([&] {
            auto r = submit->wait(huge);
            ready = r && *r == WaitStatus::ready;
            returned = true;
        });
        std::this_thread::sleep_for(200ms);
        CHECK_FALSE(returned.load());  // still waiting
        fenced.signal();
        waiter.join();
        CHECK(ready);
    }
}

TEST_CASE_FIXTURE(VkTest, "the sync bridge's CPU wait with Timeout::max() or a huge value waits until the fence signals") {
    for (const Timeout huge : huge_timeouts) {
        CAPTURE(huge.count());
        Fenced fenced;
        vulkan::SyncBridgeOptions options;
        options.force_cpu_wait = true;
        options.cpu_wait_timeout = huge;
        auto bridge = vulkan::SyncBridge::create(device_b().device(), options);
        REQUIRE(bridge);
        std::atomic<bool> returned{false};
        bool waited = false;
        std::thread waiter([&] {
            auto a = bridge->acquire_image(fenced.source.desc, *fenced.image, Access::read, transfer_src);
            waited = a && a->waited_on_cpu;
            returned = true;
        });
        std::this_thread::sleep_for(200ms);
        CHECK_FALSE(returned.load());  // still waiting
        fenced.signal();
        waiter.join();
        CHECK(waited);
    }
}
