// SPDX-License-Identifier: MIT
// The Wayland Surface's wp_linux_drm_syncobj_v1 path against the scripted compositor
// (tests/support/fake_compositor), which imports the client's timelines as real syncobjs on the
// virtio_gpu render node and posts the protocol's errors when a rule is broken. No compositor
// that runs here offers the protocol (weston 14 does not): this is how the client side is
// tested. Suite wayland_syncobj: in the VM with the virtio-gpu device (ci/vm --virtio-gpu),
// where the device must exist; vgem fences stand for the producer's GPU work.
#include <dmabridge/wayland/display.hpp>
#include <dmabridge/wayland/surface.hpp>

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sys/syscall.h>
#include <wayland-server.h>

#include <doctest/doctest.h>

#include <dmabridge/format/fourcc.hpp>
#include <dmabridge/kernel/timeline.hpp>

#include "fake_compositor.hpp"
#include "fake_wayland_client.hpp"
#include "fd_count.hpp"
#include "syscall_tap.hpp"
#include "wayland_application.hpp"
#include "vgem.hpp"

using namespace dmabridge;
using namespace dmabridge::test;
using namespace std::chrono_literals;

namespace {

FakeCompositorOptions offering(bool syncobj, bool explicit_sync) {
    FakeCompositorOptions o;
    o.syncobj = syncobj;
    o.explicit_sync = explicit_sync;
    o.formats = {{fourcc::XBGR8888, modifier::linear}};
    return o;
}

// A point the compositor received, on its own import of the client's timeline.
struct ReceivedPoint {
    std::shared_ptr<Timeline> timeline;
    std::uint64_t point = 0;
};

// What the compositor saw, shared with its thread.
struct Received {
    std::mutex mutex;
    std::vector<ReceivedPoint> acquire, release;

    void record(const FakeCommit& commit) {
        std::lock_guard lock(mutex);
        acquire.push_back({commit.acquire_timeline, commit.acquire_point});
        release.push_back({commit.release_timeline, commit.release_point});
    }
    ReceivedPoint acquire_at(std::size_t i) {
        std::lock_guard lock(mutex);
        REQUIRE(i < acquire.size());
        return acquire[i];
    }
};

wayland::DisplayOptions no_syncobj() {
    wayland::DisplayOptions o;
    o.syncobj = false;
    return o;
}

// A compositor offering the syncobj protocol that records each commit's points, and a Display
// connected to it.
struct RecordingCompositor {
    explicit RecordingCompositor(bool explicit_sync)
        : compositor([&] {
              auto script = offering(true, explicit_sync);
              script.on_commit = [this](FakeCommit& commit) { received.record(commit); };
              return script;
          }()),
          display(connect_to(compositor)) {}
    Received received;
    FakeCompositor compositor;
    wayland::Display display;
};

// Two buffers added to `surface`.
std::pair<wayland::SurfaceBufferId, wayland::SurfaceBufferId> add_two_buffers(wayland::Surface& surface, Vgem& vgem) {
    auto a = surface.add_buffer(rgb_buffer(vgem));
    auto b = surface.add_buffer(rgb_buffer(vgem));
    REQUIRE_MESSAGE(a, (a ? "" : a.error().message()));
    REQUIRE_MESSAGE(b, (b ? "" : b.error().message()));
    return {*a, *b};
}

// A syncobj Surface on the scripted compositor with two buffers, the first presented: the
// second's present() is a steady-state frame.
struct SecondFrame {
    explicit SecondFrame(Vgem& vgem)
        : compositor(offering(true, false)), display(connect_to(compositor)), surface(surface_on(display)) {
        const auto ids = add_two_buffers(surface, vgem);
        REQUIRE(surface.present(ids.first));
        REQUIRE(display.roundtrip());
        second = ids.second;
    }
    FakeCompositor compositor;
    wayland::Display display;
    wayland::Surface surface;
    wayland::SurfaceBufferId second = 0;
};

WaitStatus wait_point(const ReceivedPoint& p, Timeout timeout) {
    REQUIRE(p.timeline);
    auto waited = p.timeline->wait(p.point, timeout);
    REQUIRE_MESSAGE(waited, (waited ? "" : waited.error().message()));
    return *waited;
}

}  // namespace

TEST_SUITE("wayland_syncobj") {

TEST_CASE("where the compositor offers wp_linux_drm_syncobj_manager_v1 the Surface presents with timeline points and says so") {
    FdLeakCheck leaks;
    Vgem vgem;
    RecordingCompositor fake(true);
    auto& [received, compositor, display] = fake;
    REQUIRE_MESSAGE(display.syncobj(), display.syncobj_unavailable());
    CHECK(display.release_fd() >= 0);
    auto surface = surface_on(display);
    CHECK(surface.sync() == wayland::PresentSync::syncobj);
    CHECK_MESSAGE(surface.sync_reason().find("wp_linux_drm_syncobj_manager_v1") != std::string::npos,
                  surface.sync_reason());
    auto a = surface.add_buffer(rgb_buffer(vgem));
    REQUIRE_MESSAGE(a, (a ? "" : a.error().message()));
    auto presented = surface.present(*a);
    REQUIRE_MESSAGE(presented, (presented ? "" : presented.error().message()));
    REQUIRE(display.roundtrip());
    CHECK(compositor.commits == 1);
    CHECK(compositor.protocol_errors == 0);
    const auto acquire = received.acquire_at(0);
    CHECK(acquire.point >= 1);
    CHECK(wait_point(acquire, 0ms) == WaitStatus::ready);  // an idle buffer: nothing to wait for
}

TEST_CASE("the acquire point signals only after the producer's work: the buffer's fences, a fence, a point") {
    FdLeakCheck leaks;
    Vgem vgem;
    RecordingCompositor fake(false);
    auto& [received, compositor, display] = fake;
    auto surface = surface_on(display, wayland::PresentSync::syncobj);
    std::vector<wayland::SurfaceBufferId> ids;
    std::vector<std::uint32_t> render;  // a vgem write fence on each buffer: its "rendering"
    for (int i = 0; i < 3; ++i) {
        auto id = surface.add_buffer(rgb_buffer(vgem));
        REQUIRE(id);
        ids.push_back(*id);
        render.push_back(vgem.attach_fence(true));
    }

    // 1. No fence given: the acquire point stands for the buffer's implicit fences.
    REQUIRE(surface.present(ids[0]));
    REQUIRE(display.roundtrip());
    CHECK(wait_point(received.acquire_at(0), 100ms) == WaitStatus::timed_out);
    vgem.signal(render[0]);
    CHECK(wait_point(received.acquire_at(0), 5s) == WaitStatus::ready);

    // 2. The caller's sync_file: a fence of another buffer that the test holds back.
    auto [fence, gate_fence] = held_fence(vgem);
    vgem.signal(render[1]);  // the buffer's own fences are not what this commit waits for
    REQUIRE(surface.present(ids[1], std::move(fence)));
    REQUIRE(display.roundtrip());
    CHECK(wait_point(received.acquire_at(1), 100ms) == WaitStatus::timed_out);
    vgem.signal(gate_fence);
    CHECK(wait_point(received.acquire_at(1), 5s) == WaitStatus::ready);

    // 3. A point of the caller's own timeline (a Vulkan timeline semaphore's, say).
    auto device = Timeline::open_device();
    REQUIRE(device);
    auto own = Timeline::create(device->get());
    REQUIRE(own);
    auto [fence2, gate2_fence] = held_fence(vgem);
    REQUIRE(own->import_sync_file(7, fence2));
    vgem.signal(render[2]);
    auto by_point = surface.present(ids[2], *own, 7);
    REQUIRE_MESSAGE(by_point, (by_point ? "" : by_point.error().message()));
    REQUIRE(display.roundtrip());
    CHECK(wait_point(received.acquire_at(2), 100ms) == WaitStatus::timed_out);
    vgem.signal(gate2_fence);
    CHECK(wait_point(received.acquire_at(2), 5s) == WaitStatus::ready);
    // A point nothing submitted is refused before anything is sent.
    auto unsubmitted = surface.present(ids[0], *own, 9);
    REQUIRE_FALSE(unsubmitted);
    CHECK(unsubmitted.error().is(Errc::not_found));

    // Each commit's acquire point rose (the compositor checks it: no protocol error); the refused
    // present sent nothing (the round trip makes sure anything sent would have arrived).
    REQUIRE(display.roundtrip());
    CHECK(compositor.commits == 3);
    CHECK(compositor.protocol_errors == 0);
}

TEST_CASE("a buffer comes back only once the compositor signals its release point, not on wl_buffer.release") {
    FdLeakCheck leaks;
    Vgem vgem;
    std::mutex held_mutex;
    std::vector<ReceivedPoint> held;  // release points the compositor has not signalled
    auto script = offering(true, true);
    script.release = [&](FakeCommit& previous, FakeCommit&) {
        // wl_buffer.release comes at once (some compositors send it), the release point later.
        wl_buffer_send_release(previous.buffer);
        std::lock_guard lock(held_mutex);
        held.push_back({previous.release_timeline, previous.release_point});
    };
    FakeCompositor compositor(script);
    auto display = connect_to(compositor);
    auto surface = surface_on(display);
    REQUIRE(surface.sync() == wayland::PresentSync::syncobj);
    const auto [a, b] = add_two_buffers(surface, vgem);
    for (int frame = 0; frame < 4; ++frame) {
        const auto next = frame % 2 == 0 ? a : b;
        if (frame > 0) {
            // The other buffer was replaced by the last commit: wl_buffer.release came, its
            // release point did not: not free.
            REQUIRE(display.roundtrip());
            auto early = surface.acquire_free(0ms);
            if (frame > 1) {
                REQUIRE_FALSE(early);
                CHECK(early.error().is_errno(ETIMEDOUT));
                CHECK(surface.busy(next));
                ReceivedPoint point;
                {
                    std::lock_guard lock(held_mutex);
                    REQUIRE(!held.empty());
                    point = held.back();
                }
                compositor.run([&] { REQUIRE(point.timeline->signal(point.point)); });
                auto freed = surface.acquire_free(5s);
                REQUIRE_MESSAGE(freed, (freed ? "" : freed.error().message()));
                CHECK(*freed == next);
            }
        }
        auto presented = surface.present(next);
        REQUIRE_MESSAGE(presented, (presented ? "" : presented.error().message()));
        CHECK(surface.busy(next));
    }
    REQUIRE(display.roundtrip());
    CHECK(surface.stats().release_points == 2);
    CHECK(compositor.commits == 4);
    CHECK(compositor.protocol_errors == 0);  // points rose on every timeline
}

TEST_CASE("release points stay above whatever the compositor signalled on the buffer's timeline") {
    FdLeakCheck leaks;
    Vgem vgem;
    auto script = offering(true, false);
    script.release = [](FakeCommit& previous, FakeCommit&) {
        // A compositor that signals far past the point it was given (allowed: it has the
        // timeline); the client's next release point on it must go above, or the compositor
        // would see it signalled already.
        REQUIRE(previous.release_timeline->signal(previous.release_point + 1000));
    };
    FakeCompositor compositor(script);
    auto display = connect_to(compositor);
    auto surface = surface_on(display);
    add_two_buffers(surface, vgem);
    for (int frame = 0; frame < 6; ++frame) {
        auto id = surface.acquire_free(5s);
        REQUIRE_MESSAGE(id, (id ? "" : id.error().message()));
        auto presented = surface.present(*id);
        REQUIRE_MESSAGE(presented, (presented ? "" : presented.error().message()));
    }
    REQUIRE(display.roundtrip());
    CHECK(compositor.commits == 6);
    CHECK(compositor.protocol_errors == 0);
    CHECK(surface.stats().release_points >= 4);
}

TEST_CASE("a compositor that never signals release, or drops its timelines, leaves the buffer busy with a bounded, clear error") {
    FdLeakCheck leaks;
    Vgem vgem;
    {
        auto script = offering(true, false);
        script.release = [](FakeCommit&, FakeCommit&) {};  // never signals, never releases
        FakeCompositor compositor(script);
        auto display = connect_to(compositor);
        auto surface = surface_on(display);
        const auto [a, b] = add_two_buffers(surface, vgem);
        REQUIRE(surface.present(a));
        REQUIRE(surface.present(b));
        const auto start = std::chrono::steady_clock::now();
        auto freed = surface.acquire_free(300ms);
        REQUIRE_FALSE(freed);
        CHECK(freed.error().is_errno(ETIMEDOUT));
        CHECK_MESSAGE(freed.error().message().find("buffer 0 waits for release point 1") != std::string::npos,
                      freed.error().message());
        CHECK(surface.busy(a));
        compositor.drop_timelines();  // its imports are gone: nothing can signal them from there
        auto again = surface.acquire_free(300ms);
        REQUIRE_FALSE(again);
        CHECK(again.error().is_errno(ETIMEDOUT));
        CHECK(std::chrono::steady_clock::now() - start < 10s);
        CHECK(surface.busy(a));
        CHECK(display.dispatch(0ms));  // the connection itself is fine
        CHECK(compositor.protocol_errors == 0);
    }  // the Surface, its pending watches and timelines, the Display: all closed (FdLeakCheck)
}

TEST_CASE("without the syncobj global the Surface falls back to explicit fences, then implicit, and says why") {
    FdLeakCheck leaks;
    {
        FakeCompositor compositor(offering(false, true));
        auto display = connect_to(compositor);
        CHECK_FALSE(display.syncobj());
        CHECK(display.release_fd() == -1);
        CHECK(display.syncobj_unavailable() == "the compositor offers no wp_linux_drm_syncobj_manager_v1");
        auto surface = surface_on(display);
        CHECK(surface.sync() == wayland::PresentSync::explicit_fences);
        CHECK_MESSAGE(surface.sync_reason().find("no wp_linux_drm_syncobj_manager_v1") != std::string::npos,
                      surface.sync_reason());
        CHECK_MESSAGE(surface.sync_reason().find("offers zwp_linux_explicit_synchronization_v1") != std::string::npos,
                      surface.sync_reason());
        wayland::SurfaceOptions o;
        o.sync = wayland::PresentSync::syncobj;
        auto refused = display.create_surface(o);
        REQUIRE_FALSE(refused);
        CHECK(refused.error().is(Errc::unsupported));
        CHECK_MESSAGE(refused.error().message().find("wp_linux_drm_syncobj_manager_v1") != std::string::npos,
                      refused.error().message());
    }
    {
        FakeCompositor compositor(offering(false, false));
        auto display = connect_to(compositor);
        auto surface = surface_on(display);
        CHECK(surface.sync() == wayland::PresentSync::implicit);
        CHECK_MESSAGE(surface.sync_reason().find("offers no zwp_linux_explicit_synchronization_v1") != std::string::npos,
                      surface.sync_reason());
    }
    {
        // Offered, but the application said no.
        FakeCompositor compositor(offering(true, true));
        auto display = connect_to(compositor, no_syncobj());
        auto surface = surface_on(display);
        CHECK(surface.sync() == wayland::PresentSync::explicit_fences);
        CHECK_MESSAGE(surface.sync_reason().find("DisplayOptions::syncobj is false") != std::string::npos,
                      surface.sync_reason());
    }
}

TEST_CASE("a timeline device without syncobj timelines (vgem) is refused: the Surface falls back and says why") {
    FdLeakCheck leaks;
    Vgem vgem;  // opens vgem's primary node: no DRM_CAP_SYNCOBJ_TIMELINE
    UniqueFd card(::open("/dev/dri/card0", O_RDWR | O_CLOEXEC));
    REQUIRE(card);
    FakeCompositor compositor(offering(true, true));
    wayland::DisplayOptions o;
    o.name = compositor.socket();
    o.timeline_device = card.get();
    auto display = wayland::Display::connect(o);
    REQUIRE_MESSAGE(display, (display ? "" : display.error().message()));
    CHECK_FALSE(display->syncobj());
    CHECK_MESSAGE(display->syncobj_unavailable().find("no syncobj timelines") != std::string::npos,
                  display->syncobj_unavailable());
    auto surface = surface_on(*display);
    CHECK(surface.sync() == wayland::PresentSync::explicit_fences);
}

TEST_CASE("a compositor that refuses the client's timeline (invalid_timeline) ends the connection with a named protocol error") {
    FdLeakCheck leaks;
    auto script = offering(true, true);
    script.refuse_timelines = true;
    FakeCompositor compositor(script);
    auto display = connect_to(compositor);
    REQUIRE(display.syncobj());  // the client's side is fine: the compositor refuses
    wayland::SurfaceOptions o;
    o.configure_timeout = 10s;
    auto surface = display.create_surface(o);  // the acquire timeline's import is refused
    REQUIRE_FALSE(surface);
    CHECK(surface.error().is_errno(EPROTO));
    CHECK_MESSAGE(surface.error().message().find("protocol error 1 on wp_linux_drm_syncobj_manager_v1") != std::string::npos,
                  surface.error().message());
    auto later = display.dispatch(0ms);
    REQUIRE_FALSE(later);
    CHECK(later.error().is_errno(EPROTO));
    CHECK(compositor.protocol_errors == 1);
}

TEST_CASE("moved-from objects and empty timelines given to a syncobj Surface fail with Errc::empty_object") {
    FdLeakCheck leaks;
    Vgem vgem;
    FakeCompositor compositor(offering(true, false));
    auto display = connect_to(compositor);
    auto surface = surface_on(display);
    const auto [a, b] = add_two_buffers(surface, vgem);
    (void)b;
    auto device = Timeline::open_device();
    REQUIRE(device);
    auto timeline = Timeline::create(device->get());
    REQUIRE(timeline);
    auto taken = std::move(*timeline);
    auto empty = surface.present(a, *timeline, 1);
    REQUIRE_FALSE(empty);
    CHECK(empty.error().is(Errc::empty_object));
    CHECK_FALSE(surface.busy(a));
    auto moved = std::move(surface);
    auto from_moved = surface.present(a, taken, 1);
    REQUIRE_FALSE(from_moved);
    CHECK(from_moved.error().is(Errc::empty_object));
    CHECK(surface.sync_reason().empty());
    auto moved_display = std::move(display);
    CHECK(display.release_fd() == -1);
    CHECK_FALSE(display.syncobj());
    CHECK(compositor.commits == 0);
    CHECK(moved_display.roundtrip());
    CHECK(compositor.protocol_errors == 0);
}

TEST_CASE("an application's wl_surface adopted with syncobj: frames go with points, a second Surface on it is refused before the compositor would be") {
    FdLeakCheck leaks;
    Vgem vgem;
    Received received;
    auto script = offering(true, true);
    script.on_commit = [&](FakeCommit& commit) { received.record(commit); };
    FakeCompositor compositor(script);
    Application app(compositor.socket());
    {
        wayland::DisplayOptions o;
        o.timeout = 10s;
        auto display = wayland::Display::adopt(app.display, o);
        REQUIRE_MESSAGE(display, (display ? "" : display.error().message()));
        auto surface = wayland::Surface::adopt(*display, app.surface, wayland::PresentSync::syncobj);
        REQUIRE_MESSAGE(surface, (surface ? "" : surface.error().message()));
        CHECK(surface->sync() == wayland::PresentSync::syncobj);
        // A second get_surface for the same wl_surface would end the connection (surface_exists).
        auto second = wayland::Surface::adopt(*display, app.surface, wayland::PresentSync::implicit);
        REQUIRE_FALSE(second);
        CHECK(second.error().is(Errc::invalid_argument));
        const auto [a, b] = add_two_buffers(*surface, vgem);
        REQUIRE(surface->present(a));
        REQUIRE(surface->present(b));
        auto freed = surface->acquire_free(5s);  // the default script signals A's release point
        REQUIRE_MESSAGE(freed, (freed ? "" : freed.error().message()));
        CHECK(*freed == a);
        REQUIRE(display->roundtrip());
        CHECK(received.acquire_at(1).point > received.acquire_at(0).point);
    }
    // Once the first Surface is gone, the wl_surface can be adopted again (a new sync object).
    {
        auto display = wayland::Display::adopt(app.display);
        REQUIRE(display);
        auto again = wayland::Surface::adopt(*display, app.surface);
        REQUIRE_MESSAGE(again, (again ? "" : again.error().message()));
        // Automatic never takes syncobj for an adopted surface: the application's own attach
        // would then need points (no_acquire_point).
        CHECK(again->sync() != wayland::PresentSync::syncobj);
        CHECK_MESSAGE(again->sync_reason().find("adopted surface") != std::string::npos, again->sync_reason());
        REQUIRE(display->roundtrip());
    }
    CHECK(wl_display_roundtrip(app.display) >= 0);
    CHECK(wl_display_get_error(app.display) == 0);
    CHECK(compositor.protocol_errors == 0);
}

TEST_CASE("a syncobj present() makes a bounded number of system calls, and a failure of any one of them is an error, not a hang or a leak") {
    Vgem vgem;
    // The calls worth failing and how (close is left alone: a failed close still closes, which
    // a refused call cannot show; the C library's memory and thread calls are its business).
    auto errno_for = [](long nr) -> int {
        switch (nr) {
            case SYS_ioctl: return ENOMEM;
            case SYS_fcntl: return EBADF;
            case SYS_epoll_ctl: return ENOMEM;
            case SYS_eventfd2: return EMFILE;
            case SYS_sendmsg: return EPIPE;
            default: return 0;
        }
    };
    // One steady-state frame (the second: the first one's buffer is still shown), counted.
    std::vector<long> calls;
    {
        FdLeakCheck leaks;
        SecondFrame scene(vgem);
        auto& [compositor, display, surface, b] = scene;
        SyscallTap tap;
        Status presented;
        REQUIRE_MESSAGE(tap.run([&](SyscallTap&) { presented = surface.present(b); }), tap.error());
        REQUIRE_MESSAGE(presented, (presented ? "" : presented.error().message()));
        std::string names;
        for (long nr : tap.calls()) {
            if (errno_for(nr) == 0 && nr != SYS_close && nr != SYS_readlink) continue;  // the tap thread's own
            calls.push_back(nr);
            names += syscall_name(nr) + " ";
        }
        MESSAGE("a syncobj present(): " << calls.size() << " system calls: " << names);
        CHECK(calls.size() <= 30);
        REQUIRE(display.roundtrip());
        CHECK(compositor.protocol_errors == 0);
    }
    // Each of those calls failing in turn: present() returns an error (or copes) within a bounded
    // time, and what it opened is closed with the Surface.
    std::size_t injected_runs = 0, errors = 0;
    for (std::size_t k = 0; k < calls.size(); ++k) {
        if (errno_for(calls[k]) == 0) continue;
        CAPTURE(k);
        CAPTURE(syscall_name(calls[k]));
        FdLeakCheck leaks;
        SecondFrame scene(vgem);
        auto& [compositor, display, surface, b] = scene;
        SyscallTap tap;
        Status presented;
        std::size_t seen = 0;
        bool injected = false;
        const auto start = std::chrono::steady_clock::now();
        REQUIRE(tap.run([&](SyscallTap&) { presented = surface.present(b); }, [&](const SyscallTap::Call& c) {
            if (errno_for(c.nr) == 0 && c.nr != SYS_close && c.nr != SYS_readlink) return 0;
            if (seen++ != k || c.nr != calls[k]) return 0;
            injected = true;
            return errno_for(c.nr);
        }));
        CHECK(std::chrono::steady_clock::now() - start < 10s);
        if (!injected) continue;
        ++injected_runs;
        if (!presented) {
            ++errors;
            CHECK_FALSE(presented.error().message().empty());
            // Nothing half-done: b is still the caller's, and presenting it again works (a failed
            // sendmsg ends the connection instead: the Display is broken then, by design).
            if (calls[k] != SYS_sendmsg) {
                CHECK_FALSE(surface.busy(b));
                auto again = surface.present(b);
                CHECK_MESSAGE(again, (again ? "" : again.error().message()));
                REQUIRE(display.roundtrip());
                CHECK(compositor.protocol_errors == 0);
                CHECK(compositor.commits == 2);
                auto freed = surface.acquire_free(5s);  // a, replaced by b
                CHECK_MESSAGE(freed, (freed ? "" : freed.error().message()));
            }
            continue;
        }
        auto freed = surface.acquire_free(200ms);  // a, once b replaced it; else a bounded error
        if (!freed) CHECK_FALSE(freed.error().message().empty());
    }
    MESSAGE(injected_runs << " runs with a failing call, " << errors << " of them errors");
    CHECK(injected_runs > 10);
}

}  // TEST_SUITE

TEST_SUITE("wayland_without_sync_file_ioctls") {

TEST_CASE("a compositor offering wp_linux_drm_syncobj_v1 where no DRM device has timelines: the Surface falls back and says why") {
    // On 5.10 (ci/test runs this suite there) and in any VM without virtio-gpu: vgem alone.
    FdLeakCheck leaks;
    FakeCompositor compositor(offering(true, true));
    auto display = connect_to(compositor);
    CHECK_FALSE(display.syncobj());
    CHECK_MESSAGE(display.syncobj_unavailable().find("find a DRM device with syncobj timelines") != std::string::npos,
                  display.syncobj_unavailable());
    auto surface = surface_on(display);
    CHECK(surface.sync() == wayland::PresentSync::explicit_fences);
    CHECK_MESSAGE(surface.sync_reason().find("no syncobj: wp_linux_drm_syncobj_manager_v1 is offered but") != std::string::npos,
                  surface.sync_reason());
    CHECK(compositor.protocol_errors == 0);
}

}  // TEST_SUITE
