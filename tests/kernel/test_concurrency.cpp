// SPDX-License-Identifier: MIT
// Where threads meet: the fence watcher with watches added and cancelled from several threads and
// from its own callbacks, and one sync bridge driven from two threads. Run plain, under ASan, and
// in the ThreadSanitizer build (ci/test), with the import cache's eight-thread test.
#include <dmabridge/kernel/fence_watcher.hpp>
#include <dmabridge/vulkan/import_cache.hpp>
#include <dmabridge/vulkan/sync_bridge.hpp>

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include "fd_count.hpp"
#include "vgem.hpp"
#include "vk_fixture.hpp"

using namespace dmabridge;
using namespace dmabridge::test;
using namespace std::chrono_literals;

TEST_CASE_FIXTURE(FdLeakCheck, "watches added and cancelled from four threads and from callbacks call back exactly once") {
    Vgem vgem;
    constexpr int per_thread = 24;
    constexpr int threads_n = 4;
    constexpr int total = per_thread * threads_n;
    std::vector<DmaBuf> buffers;
    std::vector<std::uint32_t> fences;
    for (int i = 0; i < total; ++i) {
        buffers.push_back(vgem.create_buffer());
        fences.push_back(vgem.attach_fence(true));
    }
    auto watcher = FenceWatcher::create();
    REQUIRE(watcher);
    REQUIRE(watcher->start());
    std::vector<std::atomic<int>> calls(total);
    std::vector<std::atomic<bool>> cancelled(total);
    std::vector<std::atomic<WatchId>> ids(total);
    std::atomic<int> chained{0}, chained_calls{0}, failures{0};
    std::mutex chained_mutex;
    std::vector<DmaBuf> chained_buffers;  // idle buffers watched from inside callbacks
    for (int i = 0; i < 8; ++i) chained_buffers.push_back(vgem.create_buffer());

    std::vector<std::thread> threads;
    for (int t = 0; t < threads_n; ++t)
        threads.emplace_back([&, t] {
            for (int k = 0; k < per_thread; ++k) {
                const auto i = static_cast<std::size_t>(t * per_thread + k);
                auto id = watcher->watch(buffers[i], Access::read, [&, i](WatchId, WaitStatus) {
                    ++calls[i];
                    // From inside a callback: cancel a neighbour's watch and add a new one.
                    const std::size_t other = (i + 1) % total;
                    if (WatchId o = ids[other].load(); o && watcher->cancel(o)) cancelled[other] = true;
                    if (i % 12 == 0) {
                        std::lock_guard lock(chained_mutex);
                        auto more = watcher->watch(chained_buffers[i % chained_buffers.size()], Access::read,
                                                   [&](WatchId, WaitStatus) { ++chained_calls; });
                        if (more) ++chained; else ++failures;
                    }
                });
                if (!id) { ++failures; continue; }
                ids[i] = *id;
                // Every third watch is cancelled by the thread that made it.
                if (k % 3 == 0 && watcher->cancel(*id)) cancelled[i] = true;
            }
        });
    for (auto& th : threads) th.join();
    for (int i = 0; i < total; ++i) vgem.signal(fences[static_cast<std::size_t>(i)]);
    for (int wait = 0; wait < 1000 && watcher->pending() > 0; ++wait) std::this_thread::sleep_for(10ms);
    CHECK(watcher->pending() == 0);
    CHECK(failures == 0);
    int called = 0;
    for (int i = 0; i < total; ++i) {
        const auto n = calls[static_cast<std::size_t>(i)].load();
        CAPTURE(i);
        CHECK(n <= 1);
        if (cancelled[static_cast<std::size_t>(i)]) CHECK(n == 0);  // a successful cancel means no callback
        else CHECK(n == 1);
        called += n;
    }
    CHECK(called > 0);
    CHECK(chained_calls == chained);
    watcher->stop();
}

TEST_CASE_FIXTURE(VkTest, "one sync bridge driven from two threads orders each thread's buffers") {
    vulkan::SyncBridgeOptions options;
    options.release = vulkan::ReleaseMode::export_fence;
    auto bridge = vulkan::SyncBridge::create(device_b().device(), options);
    REQUIRE(bridge);
    const vulkan::ImageUse use{VK_IMAGE_LAYOUT_TRANSFER_SRC_OPTIMAL, VK_PIPELINE_STAGE_TRANSFER_BIT,
                               VK_ACCESS_TRANSFER_READ_BIT};
    auto barrier = reinterpret_cast<PFN_vkCmdPipelineBarrier>(device_b().context().device_proc("vkCmdPipelineBarrier"));
    std::atomic<int> failures{0}, frames{0};
    std::mutex report_mutex;
    std::string first_error;
    const auto report = [&](const std::string& what) {
        std::lock_guard lock(report_mutex);
        if (first_error.empty()) first_error = what;
        ++failures;
    };
    vulkan::ImportCache cache(device_b().device());
    std::vector<std::thread> threads;
    for (int t = 0; t < 2; ++t)
        threads.emplace_back([&] {
            ImageRequest r;
            r.width = 32;
            r.height = 8;
            r.fourcc = fourcc::XRGB8888;
            auto source = device_a().device().export_image(r);
            if (!source) return report(source.error().message());
            for (int frame = 0; frame < 6; ++frame) {
                auto image = cache.import(source->desc);
                if (!image) return report(image.error().message());
                auto acquire = bridge->acquire_image(source->desc, **image, Access::read, use);
                if (!acquire) return report(acquire.error().message());
                auto release = bridge->prepare_release_image(**image, use, {&*acquire});
                if (!release) return report(release.error().message());
                auto submit = device_b().context().submit_async(
                    [&](VkCommandBuffer cmd) {
                        VkImageMemoryBarrier b[] = {acquire->image_barrier, release->image_barrier};
                        barrier(cmd, VK_PIPELINE_STAGE_ALL_COMMANDS_BIT, VK_PIPELINE_STAGE_ALL_COMMANDS_BIT, 0, 0,
                                nullptr, 0, nullptr, 2, b);
                    },
                    {{acquire->semaphore.handle()}, {acquire->wait_stage}, {release->semaphore.handle()}});
                if (!submit) return report(submit.error().message());
                if (auto p = bridge->publish(*release, source->desc, Access::read, submit->fence()); !p)
                    return report(p.error().message());
                if (auto used = cache.set_last_use(**image, *submit); !used) return report(used.error().message());
                // The published read fence is on the dma-buf: a writer would wait for it.
                auto idle = source->desc.planes[0].buffer.wait(Access::write, 5000ms);
                if (!idle || *idle != WaitStatus::ready) return report("published fence never signalled");
                ++frames;
            }
        });
    for (auto& th : threads) th.join();
    CHECK_MESSAGE(failures == 0, first_error);
    CHECK(frames == 12);
    CHECK(cache.wait_idle(5000ms).value() == WaitStatus::ready);
}
