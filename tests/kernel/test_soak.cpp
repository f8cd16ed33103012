// SPDX-License-Identifier: MIT
// The soak: everything at once for a while (DMABRIDGE_SOAK_SECONDS, 20 by default), checking that
// nothing accumulates. Rotating buffers beyond the cache's bound arrive as new fds; vgem fences
// are attached and signalled in random order, and recorded as the cache's last uses; a fence
// watcher waits for them; camera frames come from vivid through a V4L2 ring and are imported as
// buffers; hostile descriptions are refused; buffers are freed and new ones allocated. After a
// warm-up the open fds, the live Vulkan objects (counted through the dispatch table) and the
// resident memory are sampled: they must stay flat. `ci/soak [minutes]` runs it in the VM.
#include <dmabridge/alloc/udmabuf.hpp>
#include <dmabridge/kernel/fence_watcher.hpp>
#include <dmabridge/v4l2/buffer_ring.hpp>
#include <dmabridge/vulkan/import_cache.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <deque>
#include <random>
#include <thread>
#include <unistd.h>
#include <vector>

#include <doctest/doctest.h>

#include "fd_count.hpp"
#include "vgem.hpp"
#include "vivid_nodes.hpp"
#include "memory_usage.hpp"
#include "vk_fixture.hpp"
#include "vk_object_count.hpp"

using namespace dmabridge;
using namespace dmabridge::test;
using namespace std::chrono_literals;

namespace {

struct Sample {
    double at_s;
    std::size_t fds;
    std::int64_t vulkan_objects;
    std::uint64_t rss;
};

}  // namespace

TEST_SUITE_BEGIN("soak");

TEST_CASE_FIXTURE(VkTest, "soak: rotating buffers, fences in random order, camera frames and hostile input leave nothing behind") {
    const char* env = std::getenv("DMABRIDGE_SOAK_SECONDS");
    const double seconds = env ? std::max(5.0, std::atof(env)) : 20.0;
    auto counted = vulkan::Device::attach(counted_handles(device_b().context()),
                                          vulkan::Capability::import_memory | vulkan::Capability::modifiers);
    REQUIRE(counted);
    auto udmabuf = UdmabufAllocator::open();
    REQUIRE(udmabuf);
    Vgem vgem;
    auto watcher = FenceWatcher::create();
    REQUIRE(watcher);
    REQUIRE(watcher->start());
    auto camera = find_vivid_node([](const v4l2::Device& d) {
        const auto& c = d.capabilities();
        return c.capture && !c.multiplanar;
    });
    REQUIRE(camera);
    REQUIRE(camera->set_format(v4l2::Direction::capture, 320, 180, fourcc::YUYV));
    auto ring = v4l2::BufferRing::create_exported(*camera, v4l2::Direction::capture, 3);
    REQUIRE(ring);
    for (std::uint32_t i = 0; i < ring->size(); ++i) REQUIRE(ring->queue(i));
    REQUIRE(ring->stream_on());

    std::mt19937 rng(20261202);
    const auto pick = [&](std::size_t n) { return static_cast<std::size_t>(rng() % n); };
    std::vector<BufferDesc> pool;
    const auto fresh_buffer = [&] {
        ImageRequest r;
        r.width = 64 + 16 * static_cast<std::uint32_t>(pick(4));
        r.height = 16;
        r.fourcc = fourcc::XRGB8888;
        auto d = udmabuf->allocate(r);
        REQUIRE(d);
        return std::move(*d);
    };
    for (int i = 0; i < 12; ++i) pool.push_back(fresh_buffer());
    struct HeldFence {
        std::uint32_t id;
    };
    std::deque<HeldFence> held;
    std::atomic<std::uint64_t> watch_callbacks{0};
    std::uint64_t iterations = 0, imports = 0, refused = 0, frames = 0, fences = 0, replaced = 0;

    {
        vulkan::ImportCache cache(*counted, {.max_entries = 8});  // fewer than the pool: evictions
        std::vector<Sample> samples;
        const auto start = std::chrono::steady_clock::now();
        const auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
        double next_sample = seconds * 0.3;  // the first sample after a warm-up
        while (elapsed() < seconds) {
            ++iterations;
            BufferDesc& chosen = pool[pick(pool.size())];
            auto arriving = chosen.dup();  // the same buffer as a new fd, as from another process
            REQUIRE(arriving);
            auto image = cache.import(*arriving);
            REQUIRE_MESSAGE(image, (image ? "" : image.error().message()));
            ++imports;
            switch (pick(6)) {
                case 0: {  // a pending fence on the buffer, the cache's last use and a watch
                    // vgem refuses a write fence beside an unsignalled one: only on idle buffers.
                    auto idle = chosen.planes[0].buffer.wait(Access::write, 0ms);
                    REQUIRE(idle);
                    if (*idle != WaitStatus::ready) break;
                    const auto fence = vgem.attach_fence(true, vgem.import_buffer(chosen.planes[0].buffer));
                    held.push_back({fence});
                    ++fences;
                    auto use = chosen.planes[0].buffer.export_sync_file(Access::write);
                    REQUIRE(use);
                    REQUIRE(watcher->watch(*use, [&](WatchId, WaitStatus) { ++watch_callbacks; }));
                    REQUIRE(cache.set_last_use(**image, std::move(*use)));
                    break;
                }
                case 1:  // fences end in random order
                    if (!held.empty()) {
                        const std::size_t k = pick(held.size());
                        vgem.signal(held[k].id);
                        held.erase(held.begin() + static_cast<std::ptrdiff_t>(k));
                    }
                    break;
                case 2: {  // hostile: a stride and an offset that do not fit, an unknown fourcc
                    auto hostile = chosen.dup();
                    REQUIRE(hostile);
                    hostile->planes[0].stride = hostile->planes[0].stride * 3 + 1;
                    hostile->planes[0].offset = chosen.planes[0].buffer.size() - 4;
                    if (pick(2)) hostile->fourcc = 0x20202020;
                    auto refused_import = cache.import(*hostile);
                    REQUIRE_FALSE(refused_import);
                    ++refused;
                    break;
                }
                case 3: {  // a camera frame through the cache as a storage buffer, then back to the driver
                    auto frame = ring->dequeue(0ms);
                    REQUIRE(frame);
                    if (*frame) {
                        auto buffer = cache.import_buffer(ring->buffer((*frame)->index).planes[0].buffer,
                                                          VK_BUFFER_USAGE_STORAGE_BUFFER_BIT);
                        REQUIRE(buffer);
                        REQUIRE(ring->queue((*frame)->index));
                        ++frames;
                    }
                    break;
                }
                case 4:  // a buffer freed, a new one allocated: its old entries must go
                    if (held.empty()) {
                        const std::size_t k = pick(pool.size());
                        cache.evict_buffer(pool[k].planes[0].buffer.id());
                        pool[k] = fresh_buffer();
                        ++replaced;
                    }
                    break;
                default:
                    cache.collect();
                    break;
            }
            image->reset();
            if (held.size() > 6) {  // vgem signals by itself after 10 s: keep fences short-lived
                vgem.signal(held.front().id);
                held.pop_front();
            }
            if (elapsed() >= next_sample) {
                samples.push_back({elapsed(), open_fd_count(), live_vulkan_objects(), memory_usage().resident()});
                next_sample += std::max(1.0, seconds / 20);
            }
        }
        while (!held.empty()) {
            vgem.signal(held.front().id);
            held.pop_front();
        }
        REQUIRE(samples.size() >= 3);
        const auto [min_fd, max_fd] = std::minmax_element(samples.begin(), samples.end(),
                                                          [](const Sample& a, const Sample& b) { return a.fds < b.fds; });
        const auto [min_vk, max_vk] = std::minmax_element(
            samples.begin(), samples.end(), [](const Sample& a, const Sample& b) { return a.vulkan_objects < b.vulkan_objects; });
        const auto& first = samples.front();
        const auto& last = samples.back();
        MESSAGE("soak " << seconds << " s: " << iterations << " iterations, " << imports << " imports (" << cache.stats().hits
                        << " hits, " << cache.stats().misses << " misses, " << cache.stats().evictions << " evictions), "
                        << refused << " hostile descriptions refused, " << frames << " camera frames, " << fences
                        << " fences, " << replaced << " buffers replaced, " << watch_callbacks.load() << " watch callbacks");
        MESSAGE("samples " << samples.size() << ": fds " << min_fd->fds << ".." << max_fd->fds << ", live Vulkan objects "
                           << min_vk->vulkan_objects << ".." << max_vk->vulkan_objects << ", RSS "
                           << (first.rss >> 10) << " KiB -> " << (last.rss >> 10) << " KiB");
        // Flat: the bound (8 live entries) and the fences in flight (at most 7) bound what can be
        // held at a sample; the spread between samples must stay within that, and not creep.
        CHECK(max_fd->fds - min_fd->fds <= 40);
        CHECK(max_vk->vulkan_objects - min_vk->vulkan_objects <= 40);
        CHECK(last.rss <= first.rss + (16u << 20));
        CHECK(frames > 0);
        CHECK(refused > 0);
        CHECK(cache.wait_idle(5000ms).value() == WaitStatus::ready);
        cache.clear();
        cache.collect();
        CHECK(cache.stats().live_entries == 0);
        CHECK(cache.stats().retired == 0);
    }
    REQUIRE(ring->stream_off());
    for (int wait = 0; wait < 300 && watcher->pending() > 0; ++wait) std::this_thread::sleep_for(10ms);
    CHECK(watcher->pending() == 0);
    watcher->stop();
    CHECK(live_vulkan_objects() == 0);  // every image and buffer the soak imported is gone
}

TEST_SUITE_END();
