// SPDX-License-Identifier: MIT
// Fault injection: every system call a scenario makes fails in turn, for real, at the kernel's
// entry (a seccomp user-notification filter on the scenario's thread, tests/support/syscall_tap),
// with the errnos that call can return. Each failure must give a clear error or be retried:
// never a crash, a hang, a leaked fd or Vulkan object, or an import cache left inconsistent.
// Also proves the sync bridge's fallback on a kernel whose sync_file ioctls answer ENOTTY.
#include <dmabridge/alloc/dma_heap.hpp>
#include <dmabridge/alloc/udmabuf.hpp>
#include <dmabridge/kernel/cpu_access.hpp>
#include <dmabridge/kernel/fence_watcher.hpp>
#include <dmabridge/v4l2/buffer_ring.hpp>
#include <dmabridge/vulkan/import_cache.hpp>
#include <dmabridge/vulkan/sync_bridge.hpp>

#include <linux/dma-buf.h>
#include <sys/syscall.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include "fd_count.hpp"
#include "syscall_tap.hpp"
#include "vgem.hpp"
#include "vivid_nodes.hpp"
#include "vk_fixture.hpp"
#include "vk_harness.hpp"
#include "vk_object_count.hpp"

using namespace dmabridge;
using namespace dmabridge::test;
using namespace std::chrono_literals;

namespace {

// The errnos worth injecting into each kind of call; calls of the C library's own machinery
// (memory, threads, signals) are left alone: their failures are the C library's business.
std::vector<int> errnos_for(long nr) {
    switch (nr) {
        case SYS_ioctl: return {EINTR, EAGAIN, ENOMEM, EBADF, ENOTTY};
        case SYS_poll:
        case SYS_ppoll:
        case SYS_epoll_wait:
        case SYS_epoll_pwait: return {EINTR, ENOMEM};
        case SYS_openat: return {EINTR, ENOMEM, EACCES, EMFILE};
        case SYS_read:
        case SYS_pread64: return {EINTR, EAGAIN, EIO};
        case SYS_write: return {EINTR, EAGAIN, EIO};
        case SYS_fstat:
        case SYS_newfstatat:
        case SYS_fstatfs:
        case SYS_lseek:
        case SYS_fcntl: return {EBADF, EINTR};
        case SYS_dup:
        case SYS_dup3:
        case SYS_epoll_create1:
        case SYS_eventfd2:
        case SYS_memfd_create: return {ENOMEM, EMFILE};
        case SYS_epoll_ctl: return {ENOMEM, EBADF};
        default: return {};
    }
}

struct Outcome {
    int runs = 0;          // faulted runs
    int errors = 0;        // runs that reported an error
    int recovered = 0;     // runs that succeeded all the same (a retry)
    std::vector<std::string> problems;
};

// Runs `scenario` once untouched to list its calls, then once per (call, errno) with that call
// failing. The scenario returns its Status; an error's message must say something. After every
// run, no fd and no counted Vulkan object may be left over.
Outcome inject_each(const std::function<Status()>& scenario) {
    Outcome out;
    SyscallTap clean;
    Status first = Error::library(Errc::invalid_argument, "not run");
    const auto t0 = std::chrono::steady_clock::now();
    REQUIRE_MESSAGE(clean.run([&](SyscallTap&) { first = scenario(); }), clean.error());
    if (std::getenv("DMABRIDGE_FAULT_DEBUG"))
        std::fprintf(stderr, "clean run: %zu calls in %.1f ms\n", clean.calls().size(),
                     std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    REQUIRE_MESSAGE(first, (first ? "" : first.error().message()));
    // Only the calls worth failing are numbered: others (futex, mmap) vary from run to run with
    // the scheduling of the driver's threads.
    std::vector<long> calls;
    for (long nr : clean.calls())
        if (!errnos_for(nr).empty()) calls.push_back(nr);
    for (std::size_t i = 0; i < calls.size(); ++i) {
        for (int err : errnos_for(calls[i])) {
            const auto fds = open_fd_count();
            const auto objects = live_vulkan_objects();
            SyscallTap tap;
            Status result = Error::library(Errc::invalid_argument, "not run");
            bool injected = false;
            std::size_t seen = 0;
            REQUIRE(tap.run([&](SyscallTap&) { result = scenario(); },
                            [&](const SyscallTap::Call& c) {
                                if (errnos_for(c.nr).empty()) return 0;
                                if (seen++ != i || c.nr != calls[i]) return 0;
                                injected = true;
                                return err;
                            }));
            if (!injected) continue;
            // The validation layer reports a driver's failed call by its VkResult alone: expected
            // here, where the failure was injected. Every other message still fails the test.
            std::erase_if(validation_log(), [](const std::string& m) {
                return m.rfind("VK_ERROR_", 0) == 0 && m.find(' ') == std::string::npos;
            });
            ++out.runs;
            const std::string where = syscall_name(calls[i]) + " #" + std::to_string(i) + " failing with " + std::strerror(err);
            if (result) {
                ++out.recovered;
            } else {
                ++out.errors;
                if (result.error().message().empty()) out.problems.push_back(where + ": an error without a message");
            }
            for (int wait = 0; wait < 50 && open_fd_count() != fds; ++wait) std::this_thread::sleep_for(10ms);
            if (open_fd_count() != fds)
                out.problems.push_back(where + ": " + std::to_string(open_fd_count()) + " fds open after, " +
                                       std::to_string(fds) + " before");
            if (live_vulkan_objects() != objects)
                out.problems.push_back(where + ": " + std::to_string(live_vulkan_objects() - objects) +
                                       " Vulkan objects left over");
        }
    }
    return out;
}

void report(const char* name, const Outcome& o) {
    MESSAGE(std::string(name) << ": " << o.runs << " faulted runs, " << o.errors << " errors, " << o.recovered << " recovered");
    for (const auto& p : o.problems) FAIL_CHECK(std::string(name) << ": " << p);
    CHECK(o.runs > 0);
}

ImageRequest small_request(std::uint32_t fourcc_code = fourcc::XRGB8888) {
    ImageRequest r;
    r.width = 64;
    r.height = 16;
    r.fourcc = fourcc_code;
    r.name = "faulty";
    return r;
}

}  // namespace

// A suite of its own: ci/test runs it once, in the plain build on 6.12 (under ASan the sanitizer's
// own system calls on the faulted thread would be numbered and failed with the library's).
TEST_SUITE_BEGIN("fault_injection");

TEST_CASE_FIXTURE(FdLeakCheck, "every failing call of an allocation gives an error or a retry, and leaks nothing") {
    report("udmabuf", inject_each([]() -> Status {
        auto alloc = UdmabufAllocator::open();
        if (!alloc) return alloc.error();
        auto desc = alloc->allocate(small_request(fourcc::NV12));
        if (!desc) return desc.error();
        return {};
    }));
    report("dma-heap", inject_each([]() -> Status {
        auto alloc = DmaHeapAllocator::open();
        if (!alloc) return alloc.error();
        auto desc = alloc->allocate(small_request());
        if (!desc) return desc.error();
        return {};
    }));
}

TEST_CASE_FIXTURE(FdLeakCheck, "every failing call of CPU access, fences and the watcher gives an error or a retry") {
    auto heap = DmaHeapAllocator::open();
    REQUIRE(heap);
    auto desc = heap->allocate(small_request());
    REQUIRE(desc);
    const DmaBuf& buf = desc->planes[0].buffer;
    report("cpu access", inject_each([&]() -> Status {
        auto map = Mapping::map(buf, Access::write);
        if (!map) return map.error();
        auto cpu = CpuAccess::begin(buf, Access::write);
        if (!cpu) return cpu.error();
        std::memset(map->data(), 0x5a, 64);
        return cpu->end();
    }));
    report("sync_file", inject_each([&]() -> Status {
        auto fence = buf.export_sync_file(Access::write);
        if (!fence) return fence.error();
        auto second = fence->dup();
        if (!second) return second.error();
        auto merged = SyncFile::merge(*fence, *second);
        if (!merged) return merged.error();
        auto status = merged->status();
        if (!status) return status.error();
        if (auto imported = buf.import_sync_file(*merged, Access::read); !imported) return imported;
        auto waited = buf.wait(Access::write, 1000ms);
        if (!waited) return waited.error();
        return {};
    }));
    report("fence watcher", inject_each([&]() -> Status {
        auto watcher = FenceWatcher::create();
        if (!watcher) return watcher.error();
        int called = 0;
        auto id = watcher->watch(buf, Access::read, [&](WatchId, WaitStatus) { ++called; });
        if (!id) return id.error();
        for (int i = 0; i < 3 && called == 0; ++i) {
            auto ran = watcher->dispatch(100ms);
            if (!ran) return ran.error();
        }
        if (called != 1) return Error::library(Errc::invalid_argument, "watch of an idle buffer never called back");
        return {};
    }));
}

TEST_CASE_FIXTURE(VkTest, "every failing call of an import through the cache leaves the cache consistent") {
    auto counted = vulkan::Device::attach(counted_handles(device_b().context()),
                                          vulkan::Capability::import_memory | vulkan::Capability::modifiers);
    REQUIRE(counted);
    auto udmabuf = UdmabufAllocator::open();
    REQUIRE(udmabuf);
    auto desc = udmabuf->allocate(small_request());
    REQUIRE(desc);
    vulkan::ImportCache cache(*counted);
    report("import cache", inject_each([&]() -> Status {
        const auto before = cache.stats();
        auto image = cache.import(*desc);
        const auto after = cache.stats();
        if (!image) {
            // A failed miss leaves no entry behind and counts no miss.
            if (after.live_entries != before.live_entries || after.misses != before.misses)
                return Error::library(Errc::invalid_argument, "a failed import changed the cache: " +
                                                                  image.error().message());
            return image.error();
        }
        auto hit = cache.import(*desc);  // the same buffer again: a hit, whatever happened before
        if (!hit || hit->get() != image->get())
            return Error::library(Errc::invalid_argument, "the second import was not a hit");
        hit->reset();
        image->reset();
        cache.clear();
        if (cache.collect(); cache.stats().live_entries != 0 || cache.stats().retired != 0)
            return Error::library(Errc::invalid_argument, "entries left after clear()");
        return {};
    }));
}

TEST_CASE_FIXTURE(FdLeakCheck, "every failing call of a V4L2 capture ring gives an error or a retry") {
    auto probe = find_vivid_node([](const v4l2::Device& d) { const auto& c = d.capabilities(); return c.capture && !c.multiplanar; });
    REQUIRE(probe);
    const std::string path = probe->path();
    probe.reset();
    report("v4l2 ring", inject_each([&]() -> Status {
        auto dev = v4l2::Device::open(path);
        if (!dev) return dev.error();
        auto fmt = dev->set_format(v4l2::Direction::capture, 320, 180, fourcc::YUYV);
        if (!fmt) return fmt.error();
        auto ring = v4l2::BufferRing::create_exported(*dev, v4l2::Direction::capture, 2);
        if (!ring) return ring.error();
        for (std::uint32_t i = 0; i < ring->size(); ++i)
            if (auto q = ring->queue(i); !q) return q;
        if (auto on = ring->stream_on(); !on) return on;
        auto frame = ring->dequeue(2000ms);
        if (!frame) return frame.error();
        if (!*frame) return Error::library(Errc::invalid_argument, "no frame within 2 s");
        return ring->stream_off();
    }));
}

TEST_CASE_FIXTURE(VkTest, "sync_file ioctls answering ENOTTY make the bridge fall back to CPU waits that still order the GPU") {
    // A kernel before 6.0 answers DMA_BUF_IOCTL_EXPORT_SYNC_FILE and IMPORT_SYNC_FILE with ENOTTY:
    // made real here at the syscall entry, on a 6.12 kernel.
    auto source = device_a().device().export_image(small_request());
    REQUIRE(source);
    vulkan::ImportCache cache(device_b().device());
    Vgem vgem;
    const auto fence = vgem.attach_fence(true, vgem.import_buffer(source->desc.planes[0].buffer));
    std::atomic<bool> signalled{false};
    Status outcome = Error::library(Errc::invalid_argument, "not run");
    vulkan::SyncMode mode_seen = vulkan::SyncMode::sync_file;
    std::string reason;
    bool waited_on_cpu = false, acquired_after_signal = false;
    std::thread signaller([&] {
        std::this_thread::sleep_for(300ms);
        signalled = true;
        vgem.signal(fence);
    });
    SyscallTap tap;
    int refused = 0;
    REQUIRE(tap.run(
        [&](SyscallTap&) {
            outcome = [&]() -> Status {
                auto bridge = vulkan::SyncBridge::create(device_b().device());
                if (!bridge) return bridge.error();
                auto image = cache.import(source->desc);
                if (!image) return image.error();
                const vulkan::ImageUse use{VK_IMAGE_LAYOUT_TRANSFER_SRC_OPTIMAL, VK_PIPELINE_STAGE_TRANSFER_BIT,
                                           VK_ACCESS_TRANSFER_READ_BIT};
                auto acquire = bridge->acquire_image(source->desc, **image, Access::read, use);
                if (!acquire) return acquire.error();
                acquired_after_signal = signalled.load();
                waited_on_cpu = acquire->waited_on_cpu;
                mode_seen = bridge->mode();
                reason = bridge->mode_reason();
                return {};
            }();
        },
        [&](const SyscallTap::Call& c) {
            if (c.nr == SYS_ioctl && (c.args[1] == DMA_BUF_IOCTL_EXPORT_SYNC_FILE || c.args[1] == DMA_BUF_IOCTL_IMPORT_SYNC_FILE)) {
                ++refused;
                return ENOTTY;
            }
            return 0;
        }));
    signaller.join();
    REQUIRE_MESSAGE(outcome, (outcome ? "" : outcome.error().message()));
    CHECK(refused > 0);  // the bridge asked the kernel, and the kernel said no
    CHECK(mode_seen == vulkan::SyncMode::cpu_wait);
    MESSAGE("fallback reason: " << reason);
    CHECK_FALSE(reason.empty());
    CHECK(waited_on_cpu);
    CHECK(acquired_after_signal);  // the vgem fence still ordered the acquire
}

TEST_SUITE_END();
