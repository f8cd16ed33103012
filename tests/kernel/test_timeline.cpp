// SPDX-License-Identifier: MIT
// DRM syncobj timelines on virtio_gpu's render node (ci/vm --virtio-gpu): points signalled from
// the CPU and from real dma-fences (vgem's, which the tests signal), waits that see submits come
// later, sync_files and dma-buf implicit fences moved into and out of points, a timeline shared
// as an fd with another DRM file and another process, the FenceWatcher waiting for many points
// through one fd (and its fallback without DRM_IOCTL_SYNCOBJ_EVENTFD), and hostile fds.
// Suite "syncobj": ci/test runs it in a VM with the virtio-gpu device, where it must pass.
#include <dmabridge/alloc/udmabuf.hpp>
#include <dmabridge/kernel/fence_watcher.hpp>
#include <dmabridge/kernel/timeline.hpp>

#include <chrono>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <libdrm/drm.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include "fd_count.hpp"
#include "ioctl_faults.hpp"
#include "vgem.hpp"

using namespace dmabridge;
using namespace std::chrono_literals;
using dmabridge::test::FdLeakCheck;
using dmabridge::test::Vgem;
using Clock = std::chrono::steady_clock;

namespace {

UniqueFd timeline_device() {
    auto fd = Timeline::open_device();
    REQUIRE_MESSAGE(fd, (fd ? "" : fd.error().message()));
    return std::move(*fd);
}

Timeline new_timeline(int device) {
    auto t = Timeline::create(device);
    REQUIRE_MESSAGE(t, (t ? "" : t.error().message()));
    return std::move(*t);
}

WaitStatus wait_status(const Timeline& t, std::uint64_t point, Timeout timeout,
                       PointState state = PointState::signalled) {
    auto w = t.wait(point, timeout, state);
    REQUIRE_MESSAGE(w, (w ? "" : w.error().message()));
    return *w;
}

// A vgem write fence the test controls, as a sync_file (vgem signals it by itself after 10 s:
// every test signals its fences well before).
struct ControlledFence {
    Vgem vgem;
    DmaBuf buf = vgem.create_buffer();
    std::uint32_t id = vgem.attach_fence(true);
    SyncFile sync_file() const {
        auto f = buf.export_sync_file(Access::write);
        REQUIRE_MESSAGE(f, (f ? "" : f.error().message()));
        return std::move(*f);
    }
    void signal() { vgem.signal(id); }
};

}  // namespace

TEST_SUITE("syncobj") {

TEST_CASE_FIXTURE(FdLeakCheck, "a timeline reaches its points in order and its waits see them") {
    const auto device = timeline_device();
    auto t = new_timeline(device.get());
    CHECK(t.valid());
    CHECK(t.last_signalled().value() == 0);
    CHECK(wait_status(t, 1, 0ms) == WaitStatus::timed_out);
    CHECK(wait_status(t, 1, 0ms, PointState::submitted) == WaitStatus::timed_out);
    REQUIRE(t.signal(1));
    CHECK(wait_status(t, 1, 0ms) == WaitStatus::ready);
    CHECK(t.last_signalled().value() == 1);
    // Points are reached in order: the same point again, or one below, is refused and named.
    auto again = t.signal(1);
    REQUIRE_FALSE(again);
    CHECK(again.error().is(Errc::invalid_argument));
    CHECK(again.error().message().find("point 1 is submitted already") != std::string::npos);
    REQUIRE(t.signal(5));
    CHECK(wait_status(t, 3, 0ms) == WaitStatus::ready);  // below the last signalled point
    CHECK(wait_status(t, 6, 0ms) == WaitStatus::timed_out);
    CHECK(t.last_signalled().value() == 5);
}

TEST_CASE_FIXTURE(FdLeakCheck, "a wait for a point nothing submitted yet waits for the submit, and times out without one") {
    const auto device = timeline_device();
    auto t = new_timeline(device.get());
    auto start = Clock::now();
    CHECK(wait_status(t, 2, 150ms) == WaitStatus::timed_out);
    CHECK(Clock::now() - start >= 140ms);
    std::thread signaller([&] {
        std::this_thread::sleep_for(200ms);
        CHECK(t.signal(2));
    });
    start = Clock::now();
    CHECK(wait_status(t, 2, 20s) == WaitStatus::ready);
    CHECK(Clock::now() - start >= 150ms);
    signaller.join();
}

TEST_CASE_FIXTURE(FdLeakCheck, "a sync_file imported into a point gates it, and the point exports back as a sync_file") {
    const auto device = timeline_device();
    auto t = new_timeline(device.get());
    ControlledFence fence;
    REQUIRE(t.import_sync_file(1, fence.sync_file()));
    // Submitted, not signalled: the vgem fence holds it.
    CHECK(wait_status(t, 1, 0ms, PointState::submitted) == WaitStatus::ready);
    CHECK(wait_status(t, 1, 100ms) == WaitStatus::timed_out);
    CHECK(t.last_signalled().value() == 0);
    auto exported = t.export_sync_file(1);
    REQUIRE_MESSAGE(exported, (exported ? "" : exported.error().message()));
    CHECK(exported->wait(0ms).value() == WaitStatus::timed_out);
    // A point at or below the submitted one is refused.
    auto below = t.import_sync_file(1, fence.sync_file());
    REQUIRE_FALSE(below);
    CHECK(below.error().is(Errc::invalid_argument));

    fence.signal();
    CHECK(wait_status(t, 1, 5s) == WaitStatus::ready);
    CHECK(exported->wait(5s).value() == WaitStatus::ready);
    CHECK(t.last_signalled().value() == 1);
    // A signalled point exports as a signalled sync_file.
    auto done = t.export_sync_file(1);
    REQUIRE(done);
    CHECK(done->wait(0ms).value() == WaitStatus::ready);
}

TEST_CASE_FIXTURE(FdLeakCheck, "exporting a point nothing submitted is refused at once, not waited for") {
    const auto device = timeline_device();
    auto t = new_timeline(device.get());
    const auto start = Clock::now();
    auto none = t.export_sync_file(4);
    REQUIRE_FALSE(none);
    CHECK_MESSAGE(none.error().is(Errc::not_found), none.error().message());
    CHECK(Clock::now() - start < 2s);
}

TEST_CASE_FIXTURE(FdLeakCheck, "a timeline shared as an fd signals across DRM files and processes") {
    const auto device = timeline_device();
    auto t = new_timeline(device.get());
    auto fd = t.export_fd();
    REQUIRE_MESSAGE(fd, (fd ? "" : fd.error().message()));
    CHECK((::fcntl(fd->get(), F_GETFD) & FD_CLOEXEC) != 0);
    // Another DRM file of the device: its handles are its own, as another process's would be.
    const auto second = timeline_device();
    auto other = Timeline::import(second.get(), fd->get());
    REQUIRE_MESSAGE(other, (other ? "" : other.error().message()));
    REQUIRE(other->signal(3));
    CHECK(wait_status(t, 3, 5s) == WaitStatus::ready);

    // Another process imports the fd on its own open of the device and signals point 7.
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        auto own = Timeline::open_device();
        if (!own) ::_exit(10);
        auto theirs = Timeline::import(own->get(), fd->get());
        if (!theirs) ::_exit(11);
        ::_exit(theirs->signal(7) ? 0 : 12);
    }
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
    CHECK(wait_status(t, 7, 5s) == WaitStatus::ready);
    CHECK(t.last_signalled().value() == 7);
}

TEST_CASE_FIXTURE(FdLeakCheck, "importing an fd that is no syncobj fails, whatever the file") {
    const auto device = timeline_device();
    auto t = new_timeline(device.get());
    ControlledFence fence;
    const SyncFile sync_file = fence.sync_file();
    UniqueFd memfd(::memfd_create("not-a-syncobj", MFD_CLOEXEC));
    int pipe_fds[2];
    REQUIRE(::pipe2(pipe_fds, O_CLOEXEC) == 0);
    UniqueFd pipe_read(pipe_fds[0]), pipe_write(pipe_fds[1]);
    UniqueFd null(::open("/dev/null", O_RDWR | O_CLOEXEC));
    for (int bad : {memfd.get(), pipe_read.get(), null.get(), sync_file.fd(), fence.buf.fd(), device.get()}) {
        CAPTURE(bad);
        auto r = Timeline::import(device.get(), bad);
        REQUIRE_FALSE(r);
        CHECK(r.error().is_errno(EINVAL));
    }
    auto none = Timeline::import(device.get(), -1);
    REQUIRE_FALSE(none);
    CHECK(none.error().is(Errc::empty_object));
    // A DRM device without syncobjs (vgem) is refused by name before any syncobj ioctl.
    UniqueFd vgem_node(::open("/dev/dri/card0", O_RDWR | O_CLOEXEC));
    REQUIRE(vgem_node);
    auto no_caps = Timeline::create(vgem_node.get());
    REQUIRE_FALSE(no_caps);
    CHECK(no_caps.error().is(Errc::unsupported));
    CHECK(no_caps.error().message().find("\"vgem\"") != std::string::npos);
    auto not_drm = Timeline::create(null.get());
    REQUIRE_FALSE(not_drm);
    CHECK(not_drm.error().is(Errc::unsupported));
    fence.signal();
}

TEST_CASE_FIXTURE(FdLeakCheck, "a point stands for a dma-buf's implicit fences, and a point becomes a dma-buf's fence") {
    const auto device = timeline_device();
    auto t = new_timeline(device.get());
    // dma-buf -> point: the point signals once the buffer's writer is done.
    ControlledFence writer;
    REQUIRE(t.import_from(writer.buf, Access::write, 1));
    CHECK(wait_status(t, 1, 100ms) == WaitStatus::timed_out);
    writer.signal();
    CHECK(wait_status(t, 1, 5s) == WaitStatus::ready);

    // point -> dma-buf: a udmabuf's readers and writers wait for point 2 (held by a vgem fence).
    ControlledFence gate;
    REQUIRE(t.import_sync_file(2, gate.sync_file()));
    auto alloc = UdmabufAllocator::open();
    REQUIRE(alloc);
    auto target = alloc->allocate_bytes(4096, "timeline-gated");
    REQUIRE(target);
    REQUIRE(target->wait(Access::write, 0ms).value() == WaitStatus::ready);
    REQUIRE(t.attach_to(*target, 2, Access::write));
    CHECK(target->wait(Access::read, 100ms).value() == WaitStatus::timed_out);
    gate.signal();
    CHECK(target->wait(Access::write, 5s).value() == WaitStatus::ready);
}

TEST_CASE_FIXTURE(FdLeakCheck, "the fence watcher reports many points of many timelines, in any order, through one fd") {
    const auto device = timeline_device();
    auto a = new_timeline(device.get());
    auto b = new_timeline(device.get());
    auto watcher = FenceWatcher::create();
    REQUIRE(watcher);
    std::vector<std::pair<std::string, WaitStatus>> seen;
    const auto note = [&](std::string name) {
        return [&seen, name](WatchId, WaitStatus s) { seen.emplace_back(name, s); };
    };
    ControlledFence fence;
    REQUIRE(watcher->watch(a, 3, note("a3"), 20s));
    REQUIRE(watcher->watch(a, 1, note("a1"), 20s));
    REQUIRE(watcher->watch(b, 2, note("b2 submitted"), 20s, PointState::submitted));
    REQUIRE(watcher->watch(b, 2, note("b2"), 20s));
    CHECK(watcher->pending() == 4);
    CHECK(watcher->dispatch(0ms).value() == 0);

    const auto pump_until = [&](std::size_t n) {
        const auto end = Clock::now() + 10s;
        while (seen.size() < n && Clock::now() < end) {
            pollfd p{watcher->fd(), POLLIN, 0};
            (void)::poll(&p, 1, 50);
            REQUIRE(watcher->dispatch(0ms));
        }
        REQUIRE(seen.size() == n);
    };
    REQUIRE(a.signal(1));
    pump_until(1);
    CHECK(seen.back() == std::pair<std::string, WaitStatus>{"a1", WaitStatus::ready});
    // b2 submitted (a pending vgem fence): the submitted watch fires, the signalled one waits.
    REQUIRE(b.import_sync_file(2, fence.sync_file()));
    pump_until(2);
    CHECK(seen.back() == std::pair<std::string, WaitStatus>{"b2 submitted", WaitStatus::ready});
    REQUIRE(watcher->watch(b, 9, note("b9"), 150ms));  // never submitted: times out
    pump_until(3);
    CHECK(seen.back() == std::pair<std::string, WaitStatus>{"b9", WaitStatus::timed_out});
    REQUIRE(a.signal(4));  // beyond a3
    pump_until(4);
    CHECK(seen.back() == std::pair<std::string, WaitStatus>{"a3", WaitStatus::ready});
    fence.signal();
    pump_until(5);
    CHECK(seen.back() == std::pair<std::string, WaitStatus>{"b2", WaitStatus::ready});
    CHECK(watcher->pending() == 0);
}

TEST_CASE_FIXTURE(FdLeakCheck, "a watched point still calls back after its Timeline was destroyed") {
    const auto device = timeline_device();
    auto watcher = FenceWatcher::create();
    REQUIRE(watcher);
    ControlledFence fence;
    std::vector<WaitStatus> seen;
    {
        auto t = new_timeline(device.get());
        REQUIRE(t.import_sync_file(1, fence.sync_file()));
        REQUIRE(watcher->watch(t, 1, [&](WatchId, WaitStatus s) { seen.push_back(s); }, 20s));
    }  // the only handle of the syncobj is gone: the watch must keep it alive
    fence.signal();
    CHECK(watcher->dispatch(5s).value() == 1);
    CHECK(seen == std::vector<WaitStatus>{WaitStatus::ready});
    CHECK(watcher->pending() == 0);
}

TEST_CASE_FIXTURE(FdLeakCheck, "without DRM_IOCTL_SYNCOBJ_EVENTFD the watcher watches submitted points and refuses the rest") {
    const auto device = timeline_device();
    auto t = new_timeline(device.get());
    auto watcher = FenceWatcher::create();
    REQUIRE(watcher);
    ControlledFence fence;
    REQUIRE(t.import_sync_file(1, fence.sync_file()));
    std::vector<WaitStatus> signalled, submitted;
    std::string unsubmitted_error;
    const auto failure = test::run_with_ioctl_faults({{DRM_IOCTL_SYNCOBJ_EVENTFD, EINVAL}}, [&] {
        auto none = watcher->watch(t, 2, [](WatchId, WaitStatus) {}, 20s);
        if (!none && none.error().is(Errc::unsupported)) unsubmitted_error = none.error().message();
        CHECK(watcher->watch(t, 1, [&](WatchId, WaitStatus s) { signalled.push_back(s); }, 20s));
        CHECK(watcher->watch(t, 1, [&](WatchId, WaitStatus s) { submitted.push_back(s); }, 20s, PointState::submitted));
    });
    REQUIRE_MESSAGE(failure.empty(), failure);
    CHECK(unsubmitted_error.find("no DRM_IOCTL_SYNCOBJ_EVENTFD") != std::string::npos);
    CHECK(watcher->dispatch(100ms).value() == 1);  // the submitted one, at once
    CHECK(submitted == std::vector<WaitStatus>{WaitStatus::ready});
    CHECK(signalled.empty());
    fence.signal();
    CHECK(watcher->dispatch(5s).value() == 1);
    CHECK(signalled == std::vector<WaitStatus>{WaitStatus::ready});
}

TEST_CASE_FIXTURE(FdLeakCheck, "a moved-from timeline fails every call at once with Errc::empty_object") {
    const auto device = timeline_device();
    auto t = new_timeline(device.get());
    Timeline taker = std::move(t);
    CHECK_FALSE(t.valid());
    CHECK(t.device_fd() == -1);
    CHECK(t.handle() == 0);
    ControlledFence fence;
    auto alloc = UdmabufAllocator::open();
    REQUIRE(alloc);
    auto buf = alloc->allocate_bytes(4096);
    REQUIRE(buf);
    auto watcher = FenceWatcher::create();
    REQUIRE(watcher);
    const auto start = Clock::now();
    CHECK(t.export_fd().error().is(Errc::empty_object));
    CHECK(t.signal(1).error().is(Errc::empty_object));
    CHECK(t.last_signalled().error().is(Errc::empty_object));
    CHECK(t.wait(1, 10s).error().is(Errc::empty_object));
    CHECK(t.import_sync_file(1, fence.sync_file()).error().is(Errc::empty_object));
    CHECK(t.export_sync_file(1).error().is(Errc::empty_object));
    CHECK(t.attach_to(*buf, 1, Access::write).error().is(Errc::empty_object));
    CHECK(t.import_from(*buf, Access::write, 1).error().is(Errc::empty_object));
    CHECK(watcher->watch(t, 1, [](WatchId, WaitStatus) {}, 10s).error().is(Errc::empty_object));
    CHECK(Clock::now() - start < 2s);
    SyncFile empty = fence.sync_file();
    const SyncFile sink = std::move(empty);
    CHECK(taker.import_sync_file(1, empty).error().is(Errc::empty_object));
    REQUIRE(taker.signal(1));  // the taker works
    fence.signal();
}

}  // TEST_SUITE
