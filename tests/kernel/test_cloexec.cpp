// SPDX-License-Identifier: MIT
// Every fd the library opens is close-on-exec, for its whole life: a fork+exec on another
// thread must never inherit one. Each operation runs on a thread whose fd-creating system calls
// without their CLOEXEC flag are stopped and recorded by a seccomp filter (that catches fds
// that live only inside a call, such as a read of /proc or sysfs), and afterwards no fd of the
// process may lack FD_CLOEXEC that did not before (that catches fds made by ioctls).
#include <dmabridge/alloc/dma_heap.hpp>
#include <dmabridge/alloc/gbm_allocator.hpp>
#include <dmabridge/alloc/udmabuf.hpp>
#include <dmabridge/format/buffer_desc.hpp>
#include <dmabridge/kernel/cpu_access.hpp>
#include <dmabridge/kernel/devices.hpp>
#include <dmabridge/kernel/fence_watcher.hpp>

#include <algorithm>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include "fd_count.hpp"
#include "syscall_filter.hpp"
#include "vgem.hpp"

using namespace dmabridge;
using namespace std::chrono_literals;
using dmabridge::test::FdLeakCheck;
using dmabridge::test::Vgem;

namespace {

bool is_ours(const std::string& owner) {
    return owner.rfind("libdmabridge", 0) == 0 || owner == "kernel_tests";
}

// Runs `operation` under the close-on-exec checks; `name` says which, in failures. Calls made
// by other libraries on the way (libdrm's device enumeration, Mesa's driconf) are not
// dmabridge's fds: they are printed, not failed.
void check_cloexec(const std::string& name, const std::function<void()>& operation) {
    CAPTURE(name);
    auto before = test::fds_without_cloexec();
    auto calls = test::calls_creating_fds_without_cloexec(operation);
    std::set<std::string> others;
    for (const auto& c : calls) {
        if (is_ours(c.owner)) FAIL_CHECK(name << ": " << c.call << " (by " << c.owner << ")");
        else others.insert(c.owner);
    }
    for (const auto& owner : others) MESSAGE(name << ": " << owner << " opened files without close-on-exec (not dmabridge's code)");
    auto after = test::fds_without_cloexec();
    for (int fd : after)
        CHECK_MESSAGE(std::find(before.begin(), before.end(), fd) != before.end(),
                      name << ": fd " << fd << " lacks FD_CLOEXEC");
}

ImageRequest request(std::uint32_t w, std::uint32_t h, std::uint32_t code) {
    ImageRequest r;
    r.width = w;
    r.height = h;
    r.fourcc = code;
    return r;
}

}  // namespace

TEST_CASE("the close-on-exec check sees a fd opened without O_CLOEXEC") {
    // The check itself must be able to fail.
    auto calls = test::calls_creating_fds_without_cloexec([] {
        const int fd = ::open("/proc/self/status", O_RDONLY);
        if (fd >= 0) ::close(fd);
    });
    // (A sanitizer runtime may add calls of its own; they are attributed to it.)
    std::erase_if(calls, [](const test::FdCall& c) { return !is_ours(c.owner); });
    REQUIRE(calls.size() == 1);
    CHECK(calls[0].call.find("/proc/self/status") != std::string::npos);
    CHECK(calls[0].owner == "kernel_tests");
    auto clean = test::calls_creating_fds_without_cloexec([] {
        const int fd = ::open("/proc/self/status", O_RDONLY | O_CLOEXEC);
        if (fd >= 0) ::close(fd);
    });
    std::erase_if(clean, [](const test::FdCall& c) { return !is_ours(c.owner); });
    CHECK(clean.empty());
}

TEST_CASE_FIXTURE(FdLeakCheck, "dma-buf and sync_file operations create only close-on-exec fds") {
    Vgem vgem;
    std::optional<DmaBuf> buf(vgem.create_buffer());
    std::vector<DmaBuf> keep;
    std::vector<SyncFile> fences;
    check_cloexec("DmaBuf::adopt / import_fd", [&] {
        auto b = DmaBuf::import_fd(buf->fd());
        if (b) keep.push_back(std::move(*b));
    });
    check_cloexec("DmaBuf::exporter_name", [&] { CHECK(buf->exporter_name()); });
    check_cloexec("DmaBuf::name / set_name", [&] {
        CHECK(buf->set_name("cloexec"));
        CHECK(*buf->name() == "cloexec");
    });
    check_cloexec("DmaBuf::dup", [&] {
        auto b = buf->dup();
        if (b) keep.push_back(std::move(*b));
    });
    check_cloexec("DmaBuf::export_sync_file", [&] {
        auto f = buf->export_sync_file(Access::read);
        CHECK(f);
        if (f) fences.push_back(std::move(*f));
    });
    REQUIRE(fences.size() == 1);
    check_cloexec("SyncFile::merge / dup / fences / status / wait", [&] {
        auto d = fences[0].dup();
        auto m = d ? SyncFile::merge(fences[0], *d) : Result<SyncFile>(d.error());
        CHECK(m);
        CHECK(fences[0].fences());
        CHECK(fences[0].status());
        CHECK(fences[0].wait(0ms));
        if (m) fences.push_back(std::move(*m));
    });
    check_cloexec("DmaBuf::import_sync_file / wait", [&] {
        CHECK(buf->import_sync_file(fences[0], Access::write));
        CHECK(buf->wait(Access::write, 0ms));
    });
    check_cloexec("Mapping::map / CpuAccess", [&] {
        auto m = Mapping::map(*buf, Access::read_write);
        CHECK(m);
        auto c = CpuAccess::begin(*buf, Access::write);
        CHECK(c);
    });
}

TEST_CASE_FIXTURE(FdLeakCheck, "the fence watcher creates only close-on-exec fds") {
    Vgem vgem;
    DmaBuf buf = vgem.create_buffer();
    std::optional<FenceWatcher> watcher;
    check_cloexec("FenceWatcher::create / watch / dispatch / start / stop", [&] {
        auto w = FenceWatcher::create();
        REQUIRE(w);
        CHECK(w->watch(buf, Access::read, [](WatchId, WaitStatus) {}));
        CHECK(w->dispatch(0ms));
        CHECK(w->start());
        w->stop();
        watcher.emplace(std::move(*w));
    });
}

TEST_CASE_FIXTURE(FdLeakCheck, "allocators and discovery create only close-on-exec fds") {
    std::vector<BufferDesc> keep;
    std::vector<DmaBuf> bytes;
    check_cloexec("udmabuf open / allocate", [&] {
        auto u = UdmabufAllocator::open();
        REQUIRE(u);
        CHECK(u->size_limit() != 0);
        auto d = u->allocate(request(64, 64, fourcc::NV12));
        CHECK(d);
        if (d) keep.push_back(std::move(*d));
        auto b = u->allocate_bytes(8192);
        if (b) bytes.push_back(std::move(*b));
    });
    check_cloexec("dma-heap open / allocate", [&] {
        auto h = DmaHeapAllocator::open();
        REQUIRE(h);
        auto d = h->allocate(request(64, 64, fourcc::XRGB8888));
        CHECK(d);
        if (d) keep.push_back(std::move(*d));
    });
    check_cloexec("GBM open on a node / allocate", [&] {
        auto g = GbmAllocator::open("/dev/dri/card0");
        REQUIRE(g);
        auto d = g->allocate(request(64, 64, fourcc::XRGB8888));
        CHECK(d);
        if (d) keep.push_back(std::move(*d));
    });
    check_cloexec("device discovery", [&] {
        CHECK(udmabuf_available());
        CHECK_FALSE(list_dma_heaps().empty());
        CHECK(list_drm_devices());
    });
    check_cloexec("GBM open with discovery", [&] { CHECK(GbmAllocator::open()); });
    check_cloexec("BufferDesc::dup", [&] {
        auto d = keep[0].dup();
        CHECK(d);
    });
}
