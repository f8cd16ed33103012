// SPDX-License-Identifier: MIT
// The import cache on a real device: hits across new fds, misses on new layouts, the bound,
// eviction that waits for the GPU, and concurrent use.
#include <dmabridge/udmabuf.hpp>
#include <dmabridge/vulkan/import_cache.hpp>

#include <atomic>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include "vgem.hpp"
#include "vk_fixture.hpp"

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
    const auto& ctx = device_b().context();
    auto create_semaphore = reinterpret_cast<PFN_vkCreateSemaphore>(ctx.device_proc("vkCreateSemaphore"));
    auto destroy_semaphore = reinterpret_cast<PFN_vkDestroySemaphore>(ctx.device_proc("vkDestroySemaphore"));
    auto import_semaphore = reinterpret_cast<PFN_vkImportSemaphoreFdKHR>(ctx.device_proc("vkImportSemaphoreFdKHR"));
    auto barrier = reinterpret_cast<PFN_vkCmdPipelineBarrier>(ctx.device_proc("vkCmdPipelineBarrier"));
    REQUIRE(bool(import_semaphore));

    vulkan::ImportCache cache(device_b().device());
    BufferDesc desc = exported_image();
    auto image = cache.import(desc);
    REQUIRE(image);

    // GPU work that cannot complete before a vgem fence signals: it waits on a semaphore
    // imported from that fence's sync_file.
    Vgem vgem;
    DmaBuf gate = vgem.create_buffer();
    const auto fence_id = vgem.attach_fence(true);
    auto sync = gate.export_sync_file(Access::read);
    REQUIRE(sync);
    VkSemaphoreCreateInfo sem_info{};
    sem_info.sType = VK_STRUCTURE_TYPE_SEMAPHORE_CREATE_INFO;
    VkSemaphore semaphore = VK_NULL_HANDLE;
    REQUIRE(create_semaphore(ctx.handles().device, &sem_info, nullptr, &semaphore) == VK_SUCCESS);
    VkImportSemaphoreFdInfoKHR import{};
    import.sType = VK_STRUCTURE_TYPE_IMPORT_SEMAPHORE_FD_INFO_KHR;
    import.semaphore = semaphore;
    import.flags = VK_SEMAPHORE_IMPORT_TEMPORARY_BIT;
    import.handleType = VK_EXTERNAL_SEMAPHORE_HANDLE_TYPE_SYNC_FD_BIT;
    import.fd = sync->release().release();  // Vulkan owns the fd once the import succeeds
    REQUIRE(import_semaphore(ctx.handles().device, &import) == VK_SUCCESS);

    const VkImage handle = (*image)->handle();
    auto pending = ctx.submit_async(
        [&](VkCommandBuffer cmd) {
            VkImageMemoryBarrier b{};
            b.sType = VK_STRUCTURE_TYPE_IMAGE_MEMORY_BARRIER;
            b.oldLayout = VK_IMAGE_LAYOUT_UNDEFINED;
            b.newLayout = VK_IMAGE_LAYOUT_GENERAL;
            b.srcQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED;
            b.dstQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED;
            b.image = handle;
            b.subresourceRange = {VK_IMAGE_ASPECT_COLOR_BIT, 0, 1, 0, 1};
            barrier(cmd, VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, 0, 0, nullptr, 0,
                    nullptr, 1, &b);
        },
        semaphore);
    REQUIRE(pending);
    cache.set_last_use(**image, pending->fence());
    image->reset();  // the cache's reference is the only one left

    CHECK(cache.evict(desc));
    std::this_thread::sleep_for(50ms);
    CHECK_FALSE(pending->done());  // the GPU is still blocked on the vgem fence
    CHECK(cache.collect() == 0);
    CHECK(cache.stats().retired == 1);  // so the image still exists

    vgem.signal(fence_id);
    REQUIRE(*pending->wait(5000ms) == WaitStatus::ready);
    CHECK(cache.collect() == 1);
    CHECK(cache.stats().retired == 0);
    pending = vulkan::Submission{};
    destroy_semaphore(ctx.handles().device, semaphore, nullptr);
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
