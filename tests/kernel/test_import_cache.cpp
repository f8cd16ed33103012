// SPDX-License-Identifier: MIT
// The import cache on a real device: hits across new fds, misses on new layouts, the bound,
// eviction that waits for the GPU, and concurrent use.
#include <dmabridge/alloc/udmabuf.hpp>
#include <dmabridge/vulkan/import_cache.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include "vgem.hpp"
#include "vk_fixture.hpp"
#include "vk_interpose.hpp"

using namespace dmabridge;
using namespace dmabridge::test;
using namespace std::chrono_literals;

namespace {

BufferDesc exported_image(std::uint32_t w = 64, std::uint32_t h = 32) {
    ImageRequest r;
    r.width = w;
    r.height = h;
    r.fourcc = fourcc::XRGB8888;
    r.name = "cached";
    auto e = device_a().device().export_image(r);
    REQUIRE_MESSAGE(e, (e ? "" : e.error().message()));
    // Device A's image is not needed: the dma-buf keeps the memory alive.
    return std::move(e->desc);
}

BufferDesc udmabuf_image(std::uint32_t w, std::uint32_t h) {
    auto alloc = UdmabufAllocator::open();
    REQUIRE(alloc);
    ImageRequest r;
    r.width = w;
    r.height = h;
    r.fourcc = fourcc::XRGB8888;
    auto desc = alloc->allocate(r);
    REQUIRE(desc);
    return std::move(*desc);
}

// GPU work on device B that touches `image` and cannot complete before a vgem fence signals:
// it waits on a semaphore imported from that fence's sync_file. open() lets it run; the
// destructor opens the gate if the test did not, and waits for the work.
struct GatedWork {
    explicit GatedWork(const vulkan::Image& image) : GatedWork(std::vector<const vulkan::Image*>{&image}) {}
    explicit GatedWork(const std::vector<const vulkan::Image*>& images) {
        const auto& ctx = device_b().context();
        auto create_semaphore = reinterpret_cast<PFN_vkCreateSemaphore>(ctx.device_proc("vkCreateSemaphore"));
        auto import_semaphore = reinterpret_cast<PFN_vkImportSemaphoreFdKHR>(ctx.device_proc("vkImportSemaphoreFdKHR"));
        auto barrier = reinterpret_cast<PFN_vkCmdPipelineBarrier>(ctx.device_proc("vkCmdPipelineBarrier"));
        REQUIRE(bool(import_semaphore));
        gate.emplace(vgem.create_buffer());
        fence_id = vgem.attach_fence(true);
        auto sync = gate->export_sync_file(Access::read);
        REQUIRE(sync);
        VkSemaphoreCreateInfo sem_info{};
        sem_info.sType = VK_STRUCTURE_TYPE_SEMAPHORE_CREATE_INFO;
        REQUIRE(create_semaphore(ctx.handles().device, &sem_info, nullptr, &semaphore) == VK_SUCCESS);
        VkImportSemaphoreFdInfoKHR import{};
        import.sType = VK_STRUCTURE_TYPE_IMPORT_SEMAPHORE_FD_INFO_KHR;
        import.semaphore = semaphore;
        import.flags = VK_SEMAPHORE_IMPORT_TEMPORARY_BIT;
        import.handleType = VK_EXTERNAL_SEMAPHORE_HANDLE_TYPE_SYNC_FD_BIT;
        import.fd = sync->release().release();  // Vulkan owns the fd once the import succeeds
        REQUIRE(import_semaphore(ctx.handles().device, &import) == VK_SUCCESS);
        std::vector<VkImage> handles;
        for (const auto* image : images) handles.push_back(image->handle());
        submission = ctx.submit_async(
            [&](VkCommandBuffer cmd) {
                std::vector<VkImageMemoryBarrier> barriers;
                for (VkImage h : handles) {
                    VkImageMemoryBarrier b{};
                    b.sType = VK_STRUCTURE_TYPE_IMAGE_MEMORY_BARRIER;
                    b.oldLayout = VK_IMAGE_LAYOUT_UNDEFINED;
                    b.newLayout = VK_IMAGE_LAYOUT_GENERAL;
                    b.srcQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED;
                    b.dstQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED;
                    b.image = h;
                    b.subresourceRange = {VK_IMAGE_ASPECT_COLOR_BIT, 0, 1, 0, 1};
                    barriers.push_back(b);
                }
                barrier(cmd, VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, 0, 0, nullptr, 0,
                        nullptr, static_cast<std::uint32_t>(barriers.size()), barriers.data());
            },
            semaphore);
        REQUIRE(submission);
    }
    void open() {
        if (!opened) vgem.signal(fence_id);
        opened = true;
    }
    ~GatedWork() {
        open();
        if (submission) (void)submission->wait(forever);
        submission = vulkan::Submission{};
        const auto& ctx = device_b().context();
        auto destroy_semaphore = reinterpret_cast<PFN_vkDestroySemaphore>(ctx.device_proc("vkDestroySemaphore"));
        destroy_semaphore(ctx.handles().device, semaphore, nullptr);
    }
    GatedWork(const GatedWork&) = delete;
    GatedWork& operator=(const GatedWork&) = delete;

    Vgem vgem;
    std::optional<DmaBuf> gate;
    std::uint32_t fence_id = 0;
    bool opened = false;
    VkSemaphore semaphore = VK_NULL_HANDLE;
    Result<vulkan::Submission> submission = vulkan::Submission{};
};

}  // namespace

TEST_CASE_FIXTURE(VkTest, "a second fd of the same buffer hits the import cache") {
    vulkan::ImportCache cache(device_b().device());
    BufferDesc desc = exported_image();
    auto first = cache.import(desc);
    REQUIRE_MESSAGE(first, (first ? "" : first.error().message()));
    auto again = desc.dup();  // new fds, same buffer
    REQUIRE(again);
    CHECK(again->planes[0].buffer.fd() != desc.planes[0].buffer.fd());
    auto second = cache.import(*again);
    REQUIRE(second);
    CHECK(second->get() == first->get());
    CHECK((*second)->memory() == (*first)->memory());  // no new VkDeviceMemory
    auto via_import_fd = DmaBuf::import_fd(desc.planes[0].buffer.fd());
    REQUIRE(via_import_fd);
    BufferDesc third{desc.width, desc.height, desc.fourcc, desc.modifier, {}};
    third.planes.push_back({std::move(*via_import_fd), desc.planes[0].offset, desc.planes[0].stride});
    auto hit = cache.import(third);
    REQUIRE(hit);
    CHECK(hit->get() == first->get());
    const auto stats = cache.stats();
    CHECK(stats.misses == 1);
    CHECK(stats.hits == 2);
    CHECK(stats.live_entries == 1);
    CHECK(stats.bytes == (*first)->size());
}

TEST_CASE_FIXTURE(VkTest, "the same buffer with another layout or usage is a miss") {
    vulkan::ImportCache cache(device_b().device());
    BufferDesc desc = exported_image(64, 32);
    auto first = cache.import(desc);
    REQUIRE(first);
    auto narrower = desc.dup();
    REQUIRE(narrower);
    narrower->width = 32;  // same buffer and stride, another extent
    auto second = cache.import(*narrower);
    REQUIRE(second);
    CHECK(second->get() != first->get());
    CHECK((*second)->extent().width == 32);
    vulkan::ImageOptions sampled_only;
    sampled_only.usage = VK_IMAGE_USAGE_SAMPLED_BIT;
    auto third = cache.import(desc, sampled_only);
    REQUIRE(third);
    CHECK(third->get() != first->get());
    CHECK(cache.stats().misses == 3);
    CHECK(cache.stats().hits == 0);
}

TEST_CASE_FIXTURE(VkTest, "the cache holds its bound by evicting the least recently used") {
    vulkan::ImportCache cache(device_b().device(), {.max_entries = 2});
    std::vector<BufferDesc> descs;
    for (int i = 0; i < 3; ++i) descs.push_back(udmabuf_image(64, 16));
    REQUIRE(cache.import(descs[0]));
    REQUIRE(cache.import(descs[1]));
    REQUIRE(cache.import(descs[0]));  // 0 is now the most recent
    REQUIRE(cache.import(descs[2]));  // evicts 1
    auto stats = cache.stats();
    CHECK(stats.live_entries == 2);
    CHECK(stats.evictions == 1);
    CHECK(stats.hits == 1);
    REQUIRE(cache.import(descs[0]));
    CHECK(cache.stats().hits == 2);
    REQUIRE(cache.import(descs[1]));  // was evicted: a miss again
    CHECK(cache.stats().misses == 4);
    CHECK(cache.evict(descs[1]));
    CHECK_FALSE(cache.evict(descs[1]));
    CHECK(cache.evict_buffer(descs[0].planes[0].buffer.id()) == 1);
    cache.clear();
    CHECK(cache.stats().live_entries == 0);
    CHECK(cache.stats().bytes == 0);
}

TEST_CASE_FIXTURE(VkTest, "an evicted image is destroyed only after the GPU's last use completes") {
    vulkan::ImportCache cache(device_b().device());
    BufferDesc desc = exported_image();
    auto image = cache.import(desc);
    REQUIRE(image);

    GatedWork gated(**image);
    auto& pending = gated.submission;
    REQUIRE(cache.set_last_use(**image, *pending));
    image->reset();  // the cache's reference is the only one left

    CHECK(cache.evict(desc));
    std::this_thread::sleep_for(50ms);
    CHECK_FALSE(pending->done());  // the GPU is still blocked on the vgem fence
    CHECK(cache.collect() == 0);
    CHECK(cache.stats().retired == 1);  // so the image still exists

    gated.open();
    REQUIRE(*pending->wait(5000ms) == WaitStatus::ready);
    CHECK(cache.collect() == 1);
    CHECK(cache.stats().retired == 0);
}

TEST_CASE_FIXTURE(VkTest, "four threads importing the same and different buffers keep consistent counters") {
    vulkan::ImportCache cache(device_b().device());
    std::vector<BufferDesc> descs;
    for (int i = 0; i < 3; ++i) descs.push_back(udmabuf_image(32, 8));
    constexpr int per_thread = 25;
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([&, t] {
            for (int i = 0; i < per_thread; ++i) {
                auto copy = descs[static_cast<std::size_t>((i + t) % 3)].dup();  // a new fd each time
                if (!copy || !cache.import(*copy)) ++failures;
            }
        });
    for (auto& th : threads) th.join();
    CHECK(failures == 0);
    const auto stats = cache.stats();
    CHECK(stats.misses == 3);
    CHECK(stats.hits == 4 * per_thread - 3);
    CHECK(stats.live_entries == 3);
    CHECK(stats.evictions == 0);
}

TEST_CASE_FIXTURE(VkTest, "the default format and the format it stands for are one cache entry") {
    vulkan::ImportCache cache(device_b().device());
    BufferDesc desc = udmabuf_image(32, 8);
    REQUIRE(cache.import(desc));
    vulkan::ImageOptions explicit_format;
    explicit_format.format = VK_FORMAT_B8G8R8A8_UNORM;  // what XRGB8888 maps to
    REQUIRE(cache.import(desc, explicit_format));
    CHECK(cache.stats().hits == 1);
    CHECK(cache.stats().misses == 1);
}

TEST_CASE_FIXTURE(VkTest, "buffers are cached by dma-buf identity and usage, beside images") {
    vulkan::ImportCache cache(device_b().device(), {.max_entries = 2});
    BufferDesc desc = udmabuf_image(64, 16);
    const DmaBuf& buf = desc.planes[0].buffer;
    const VkBufferUsageFlags storage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT;
    auto first = cache.import_buffer(buf, storage);
    REQUIRE_MESSAGE(first, (first ? "" : first.error().message()));
    CHECK((*first)->size() == buf.size());
    auto other_fd = buf.dup();
    REQUIRE(other_fd);
    auto second = cache.import_buffer(*other_fd, storage);
    REQUIRE(second);
    CHECK(second->get() == first->get());
    auto transfer = cache.import_buffer(buf, VK_BUFFER_USAGE_TRANSFER_SRC_BIT);  // another usage
    REQUIRE(transfer);
    CHECK(transfer->get() != first->get());
    auto stats = cache.stats();
    CHECK(stats.hits == 1);
    CHECK(stats.misses == 2);
    CHECK(stats.bytes == 2 * buf.size());

    // An image of the same dma-buf is a third entry: the bound (2) evicts the oldest buffer.
    auto image = cache.import(desc);
    REQUIRE(image);
    stats = cache.stats();
    CHECK(stats.live_entries == 2);
    CHECK(stats.evictions == 1);
    // The evicted buffer's holder keeps it valid; importing it again is a miss.
    CHECK((*first)->valid());
    auto again = cache.import_buffer(buf, storage);
    REQUIRE(again);
    CHECK(cache.stats().misses == 4);
    CHECK(cache.evict_buffer(buf.id()) == 2);  // the image and the storage buffer
    CHECK(cache.stats().live_entries == 0);
}

TEST_CASE_FIXTURE(VkTest, "an image evicted between import and set_last_use is destroyed only after that use") {
    // The README's draw() pattern with more buffers in one frame than the cache's bound: each
    // import can evict an image imported earlier in the same frame, before its use is recorded.
    vulkan::ImportCache cache(device_b().device(), {.max_entries = 1});
    BufferDesc a = udmabuf_image(32, 8), b = udmabuf_image(32, 8);
    auto image_a = cache.import(a);
    REQUIRE(image_a);
    auto image_b = cache.import(b);  // evicts a, whose use is not recorded yet
    REQUIRE(image_b);
    CHECK(cache.stats().evictions == 1);
    CHECK(cache.stats().retired == 1);  // held by image_a: kept

    GatedWork frame({image_a->get(), image_b->get()});
    REQUIRE(cache.set_last_use(**image_a, *frame.submission));  // evicted, but still known
    REQUIRE(cache.set_last_use(**image_b, *frame.submission));
    const vulkan::Image* evicted = image_a->get();
    image_a->reset();
    image_b->reset();
    CHECK(cache.collect() == 0);  // the GPU is blocked on the vgem fence: nothing is destroyed
    CHECK(cache.stats().retired == 1);
    // Its use can still be recorded through a reference the caller kept (another queue, say).
    auto extra = cache.set_last_use(*evicted, *frame.submission);
    CHECK(extra);

    frame.open();
    REQUIRE(*frame.submission->wait(5000ms) == WaitStatus::ready);
    CHECK(cache.collect() == 1);
    CHECK(cache.stats().retired == 0);
    // Once destroyed, the object is unknown: recording a use is an error, not silence.
    auto late = cache.set_last_use(*evicted, *frame.submission);
    REQUIRE_FALSE(late);
    CHECK(late.error().is(Errc::not_found));
}

TEST_CASE_FIXTURE(VkTest, "every recorded use is waited for, not only the latest") {
    vulkan::ImportCache cache(device_b().device());
    BufferDesc desc = udmabuf_image(32, 8);
    auto image = cache.import(desc);
    REQUIRE(image);
    // Two uses that end in the opposite order of their recording, like two queues' work.
    Vgem vgem;
    DmaBuf first_gate = vgem.create_buffer();
    const auto first = vgem.attach_fence(true);
    auto first_sync = first_gate.export_sync_file(Access::read);
    DmaBuf second_gate = vgem.create_buffer();
    const auto second = vgem.attach_fence(true);
    auto second_sync = second_gate.export_sync_file(Access::read);
    REQUIRE(first_sync);
    REQUIRE(second_sync);
    REQUIRE(cache.set_last_use(**image, std::move(*first_sync)));
    REQUIRE(cache.set_last_use(**image, std::move(*second_sync)));
    image->reset();
    REQUIRE(cache.evict(desc));
    vgem.signal(second);
    CHECK(cache.collect() == 0);  // the first use is still running
    CHECK(cache.wait_idle(0ms).value() == WaitStatus::timed_out);
    vgem.signal(first);
    CHECK(cache.wait_idle(5000ms).value() == WaitStatus::ready);
    CHECK(cache.collect() == 1);
}

TEST_CASE_FIXTURE(VkTest, "a Submission destroyed after set_last_use leaves the cache a fence that completes") {
    // Its fence used to go back to the Context's pool, reset, while the cache still waited on
    // it: the cache's destructor then waited forever on a fence nobody would signal.
    vulkan::ImportCache cache(device_b().device());
    BufferDesc desc = udmabuf_image(32, 8);
    auto image = cache.import(desc);
    REQUIRE(image);
    {
        GatedWork work(**image);
        REQUIRE(cache.set_last_use(**image, *work.submission));
    }  // opened, waited for, and the Submission destroyed
    // More submits: a pooled fence would be reset and handed out again here.
    const auto& ctx = device_b().context();
    for (int i = 0; i < 3; ++i) {
        auto other = ctx.submit_async([](VkCommandBuffer) {});
        REQUIRE(other);
        REQUIRE(*other->wait(5000ms) == WaitStatus::ready);
    }
    auto parked = ctx.submit_async([](VkCommandBuffer) {});  // keeps a pooled fence out, unwaited
    REQUIRE(parked);
    CHECK(cache.wait_idle(2000ms).value() == WaitStatus::ready);
    CHECK(cache.evict(desc));
    image->reset();
    CHECK(cache.collect() == 1);
}

TEST_CASE_FIXTURE(VkTest, "an image description shaped like a cached buffer's key is imported, not a hit") {
    vulkan::ImportCache cache(device_b().device());
    BufferDesc desc = udmabuf_image(64, 16);
    const DmaBuf& buf = desc.planes[0].buffer;
    auto buffer = cache.import_buffer(buf, VK_BUFFER_USAGE_STORAGE_BUFFER_BIT);
    REQUIRE(buffer);
    // fourcc 0, 0x0, stride = the dma-buf's size and the buffer's usage bits: a buffer entry's key
    // before images and buffers had keys of their own kinds.
    BufferDesc forged{0, 0, 0, 0, {}};
    auto ref = buf.dup();
    REQUIRE(ref);
    forged.planes.push_back({std::move(*ref), 0, static_cast<std::uint32_t>(buf.size())});
    vulkan::ImageOptions options;
    options.usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT;
    auto image = cache.import(forged, options);
    REQUIRE_FALSE(image);  // refused by validation, never a null "hit"
    CHECK(cache.stats().hits == 0);
}

TEST_CASE_FIXTURE(VkTest, "a released or moved-from dma-buf never reaches the cache's hit path") {
    vulkan::ImportCache cache(device_b().device());
    BufferDesc desc = udmabuf_image(32, 8);
    REQUIRE(cache.import(desc));
    auto released = desc.dup();
    REQUIRE(released);
    UniqueFd taken = released->planes[0].buffer.release();  // fd -1, identity of a cached buffer
    auto result = cache.import(*released);
    REQUIRE_FALSE(result);
    CHECK(result.error().is(Errc::empty_object));
    auto moved = desc.dup();
    REQUIRE(moved);
    DmaBuf thief = std::move(moved->planes[0].buffer);
    result = cache.import(*moved);
    REQUIRE_FALSE(result);
    CHECK(result.error().is(Errc::empty_object));
    auto buffer = cache.import_buffer(released->planes[0].buffer, VK_BUFFER_USAGE_STORAGE_BUFFER_BIT);
    REQUIRE_FALSE(buffer);
    CHECK(buffer.error().is(Errc::empty_object));
    CHECK(cache.stats().hits == 0);
    CHECK(cache.stats().misses == 1);
    // Empty and moved-from Submissions and sync_files are refused, not recorded.
    auto image = cache.import(desc);
    REQUIRE(image);
    CHECK_FALSE(cache.set_last_use(**image, vulkan::Submission{}));
    auto fence = desc.planes[0].buffer.export_sync_file(Access::read);
    REQUIRE(fence);
    SyncFile kept = std::move(*fence);
    CHECK_FALSE(cache.set_last_use(**image, std::move(*fence)));
}

TEST_CASE_FIXTURE(VkTest, "hits go on while another thread builds an import") {
    // The miss is held inside the driver (vkCreateImage, through the interposer's gate) until the
    // hits on another thread are all done, or 30 s passed: a cache that held its lock across an
    // import would keep every hit waiting. No timing is measured, so a busy machine cannot fail
    // it (the earlier version counted hits that happened to fall inside a miss, and a loaded
    // 2-core host sometimes scheduled none there).
    VkInterposer spy;
    auto device = attach_interposed(spy, device_b().context().handles());
    vulkan::ImportCache cache(device, {.max_entries = 64});
    BufferDesc hot = udmabuf_image(32, 8);
    BufferDesc cold = udmabuf_image(640, 480);
    REQUIRE(cache.import(hot));

    std::mutex gate;
    std::condition_variable changed;
    bool in_driver = false, open = false;
    spy.before_create_image = [&] {
        std::unique_lock lock(gate);
        in_driver = true;
        changed.notify_all();
        changed.wait(lock, [&] { return open; });
    };
    std::atomic<bool> miss_ok{false};
    std::thread misser([&] { miss_ok = static_cast<bool>(cache.import(cold)); });
    bool held = false;
    {
        std::unique_lock lock(gate);
        held = changed.wait_for(lock, 30s, [&] { return in_driver; });
    }
    constexpr int hit_count = 200;
    std::atomic<int> hits{0};
    std::atomic<bool> hits_done{false};
    std::thread hitter([&] {
        for (int i = 0; i < hit_count; ++i)
            if (cache.import(hot)) ++hits;
        hits_done = true;
    });
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    while (!hits_done && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(5ms);
    const bool hits_finished_during_miss = hits_done;
    {
        std::lock_guard lock(gate);
        open = true;
    }
    changed.notify_all();
    hitter.join();
    misser.join();
    spy.before_create_image = nullptr;
    CHECK(held);  // the miss really was inside the driver
    CHECK(hits_finished_during_miss);
    CHECK(hits == hit_count);
    CHECK(miss_ok);
    CHECK(cache.stats().misses == 2);
}

TEST_CASE_FIXTURE(VkTest, "eight threads mix hits, misses, evictions, last uses and clear") {
    // The cache's thread safety under everything at once; also what the ThreadSanitizer build runs.
    vulkan::ImportCache cache(device_b().device(), {.max_entries = 4});
    std::vector<BufferDesc> descs;
    for (int i = 0; i < 6; ++i) descs.push_back(udmabuf_image(32, 8));
    constexpr int rounds = 30;
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t)
        threads.emplace_back([&, t] {
            for (int i = 0; i < rounds; ++i) {
                const auto& desc = descs[static_cast<std::size_t>((i * 7 + t) % 6)];
                auto copy = desc.dup();
                if (!copy) { ++failures; continue; }
                auto image = cache.import(*copy);
                if (!image) { ++failures; continue; }
                switch ((i + t) % 5) {
                    case 0: {
                        auto fence = copy->planes[0].buffer.export_sync_file(Access::read);
                        if (!fence || !cache.set_last_use(**image, std::move(*fence))) ++failures;
                        break;
                    }
                    case 1: cache.evict(*copy); break;
                    case 2: cache.evict_buffer(copy->planes[0].buffer.id()); break;
                    case 3: if (t == 0) cache.clear(); break;
                    default: cache.collect(); break;
                }
                (void)cache.stats();
            }
        });
    for (auto& th : threads) th.join();
    CHECK(failures == 0);
    cache.clear();
    CHECK(cache.stats().live_entries == 0);
    CHECK(cache.stats().retired == 0);  // every use was an already-signalled sync_file
}
