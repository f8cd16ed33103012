// SPDX-License-Identifier: MIT
// Non-blocking page flips on vkms (suite kms): one event per CRTC per flip with rising vblank
// sequence numbers, EBUSY while a flip is in flight, the replaced framebuffer let go only once
// the flip that replaced it completed, pixels through writeback, and bounded waits: a flip held
// by an in-fence that does not signal times out in wait_flip(), and a blocking apply() with
// such a fence fails after its fence timeout having committed nothing.
#include <dmabridge/kms/commit.hpp>
#include <dmabridge/kms/device.hpp>
#include <dmabridge/kms/framebuffer_cache.hpp>

#include <chrono>
#include <thread>
#include <vector>

#include <poll.h>

#include <doctest/doctest.h>

#include "fd_count.hpp"
#include "kms_harness.hpp"
#include "vgem.hpp"

using namespace dmabridge;
using namespace std::chrono_literals;
using dmabridge::test::FdLeakCheck;
using dmabridge::test::Vgem;
using Clock = std::chrono::steady_clock;
using namespace dmabridge::test::kms_harness;

namespace {

// Lights the output with `fb` on the primary plane (a blocking mode set).
void light(const kms::Device& d, const Output& o, const kms::Framebuffer& fb) {
    kms::Commit commit(d);
    commit.set_mode(o.crtc, o.connector, o.mode).show(o.primary, o.crtc, fb);
    auto done = commit.apply(true);
    REQUIRE_MESSAGE(done, (done ? "" : done.error().message()));
}

}  // namespace

TEST_SUITE("kms") {

TEST_CASE_FIXTURE(FdLeakCheck, "non-blocking flips complete with one event each, and let go of what they replaced only then") {
    auto d = open_vkms();
    const auto o = find_output(d);
    const auto a_desc = pattern_image(o.mode.hdisplay, o.mode.vdisplay, 13);
    const auto b_desc = pattern_image(o.mode.hdisplay, o.mode.vdisplay, 131);
    auto a = d.add_framebuffer(a_desc);
    auto b = d.add_framebuffer(b_desc);
    REQUIRE(a);
    REQUIRE(b);
    light(d, o, *a);
    kms::Commit to_b(d);
    to_b.show(o.primary, o.crtc, *b);
    auto flip = to_b.flip();
    REQUIRE_MESSAGE(flip, (flip ? "" : flip.error().message()));
    CHECK(flip->id != 0);
    CHECK(flip->crtcs == std::vector<std::uint32_t>{o.crtc});
    CHECK(d.flip_pending(o.crtc));
    // A second flip on the CRTC while the first is in flight: EBUSY, naming the first.
    {
        kms::Commit too_soon(d);  // holds a until it goes: a Commit keeps what it shows
        too_soon.show(o.primary, o.crtc, *a);
        auto busy = too_soon.flip();
        REQUIRE_FALSE(busy);
        CHECK(busy.error().is_errno(EBUSY));
        CHECK(busy.error().message().find("flip " + std::to_string(flip->id)) != std::string::npos);
    }
    // a is still on screen until the flip's event is read: dropping the application's handle
    // must not remove it.
    a->reset();
    CHECK(d.gem_handles() == 2);
    // The event arrives on the one fd the application polls.
    pollfd p{d.fd(), POLLIN, 0};
    REQUIRE(::poll(&p, 1, 5000) == 1);
    std::vector<kms::FlipEvent> events;
    for (auto start = Clock::now(); events.empty() && Clock::now() - start < 5s;) {
        auto got = d.dispatch_events();
        REQUIRE_MESSAGE(got, (got ? "" : got.error().message()));
        events.insert(events.end(), got->begin(), got->end());
    }
    REQUIRE(events.size() == 1);
    CHECK(events[0].flip == flip->id);
    CHECK(events[0].crtc == o.crtc);
    CHECK(events[0].timestamp.count() > 0);
    CHECK_FALSE(d.flip_pending(o.crtc));
    CHECK(d.gem_handles() == 1);  // a went with the flip that replaced it
    CHECK(differing(capture_now(d, o), rgb_pixels(b_desc)) == 0);
    turn_off(d, o);
}

TEST_CASE_FIXTURE(FdLeakCheck, "three buffers flipped in turn: one event per flip, sequences rising, the last one on screen") {
    auto d = open_vkms();
    const auto o = find_output(d);
    kms::FramebufferCache cache(d);
    std::vector<BufferDesc> ring;
    for (std::uint8_t i = 0; i < 3; ++i) ring.push_back(pattern_image(o.mode.hdisplay, o.mode.vdisplay, static_cast<std::uint8_t>(40 * i + 3)));
    {
        auto first = cache.get(ring[0]);
        REQUIRE(first);
        light(d, o, **first);
    }
    std::vector<std::uint32_t> sequences;
    std::size_t last = 0;
    for (std::size_t frame = 1; frame <= 12; ++frame) {
        last = frame % ring.size();
        auto again = ring[last].dup();  // each frame the buffer comes back as a new fd
        REQUIRE(again);
        auto fb = cache.get(*again);
        REQUIRE(fb);
        kms::Commit commit(d);
        commit.show(o.primary, o.crtc, **fb);
        auto flip = commit.flip();
        REQUIRE_MESSAGE(flip, (flip ? "" : flip.error().message()));
        auto waited = d.wait_flip(flip->id, 5s);
        REQUIRE(waited);
        REQUIRE(*waited == WaitStatus::ready);
        auto events = d.dispatch_events();  // what wait_flip read is delivered here
        REQUIRE(events);
        REQUIRE(events->size() == 1);
        CHECK((*events)[0].flip == flip->id);
        sequences.push_back((*events)[0].sequence);
    }
    for (std::size_t i = 1; i < sequences.size(); ++i) CHECK(sequences[i] > sequences[i - 1]);
    CHECK(cache.stats().misses == 3);
    CHECK(cache.stats().hits == 10);  // frames 1 and 2 made the other two framebuffers
    CHECK(d.gem_handles() == 3);
    CHECK(differing(capture_now(d, o), rgb_pixels(ring[last])) == 0);
    turn_off(d, o);
}

TEST_CASE_FIXTURE(FdLeakCheck, "waits for a flip held by an unsignalled in-fence are bounded, and apply() commits nothing after its fence timeout") {
    auto d = open_vkms();
    const auto o = find_output(d);
    const auto a_desc = pattern_image(o.mode.hdisplay, o.mode.vdisplay, 17);
    const auto b_desc = pattern_image(o.mode.hdisplay, o.mode.vdisplay, 171);
    auto a = d.add_framebuffer(a_desc);
    auto b = d.add_framebuffer(b_desc);
    REQUIRE(a);
    REQUIRE(b);
    light(d, o, *a);
    Vgem vgem;
    const DmaBuf gate_buf = vgem.create_buffer();
    const std::uint32_t gate = vgem.attach_fence(true);
    auto gate_fence = gate_buf.export_sync_file(Access::write);
    REQUIRE(gate_fence);
    // Blocking: the fence timeout passes, nothing is committed, a stays on screen.
    {
        kms::Commit held(d);
        held.show(o.primary, o.crtc, *b, {}, {}, &*gate_fence);
        const auto start = Clock::now();
        auto refused = held.apply(false, 200ms);
        REQUIRE_FALSE(refused);
        CHECK(refused.error().is_errno(ETIME));
        CHECK(refused.error().message().find("nothing was committed") != std::string::npos);
        CHECK(Clock::now() - start < 3s);
    }
    // Non-blocking: the flip is queued; waiting for it times out while the fence holds it.
    kms::Commit held(d);
    held.show(o.primary, o.crtc, *b, {}, {}, &*gate_fence);
    auto flip = held.flip();
    REQUIRE_MESSAGE(flip, (flip ? "" : flip.error().message()));
    const auto start = Clock::now();
    auto early = d.wait_flip(flip->id, 300ms);
    REQUIRE(early);
    CHECK(*early == WaitStatus::timed_out);
    CHECK(Clock::now() - start >= 250ms);
    CHECK(Clock::now() - start < 3s);
    CHECK(d.flip_pending(o.crtc));
    // Timeout::max() waits until the flip completes: it neither overflows into a short wait nor
    // returns before the fence lets the flip through.
    std::thread signaller([&] {
        std::this_thread::sleep_for(200ms);
        vgem.signal(gate);
    });
    auto done = d.wait_flip(flip->id, Timeout::max());
    signaller.join();
    REQUIRE(done);
    CHECK(*done == WaitStatus::ready);
    CHECK(Clock::now() - start >= 450ms);
    CHECK_FALSE(d.flip_pending(o.crtc));
    CHECK(differing(capture_now(d, o), rgb_pixels(b_desc)) == 0);
    turn_off(d, o);
}

TEST_CASE_FIXTURE(FdLeakCheck, "a device destroyed with a flip in flight leaks nothing") {
    std::uint64_t id = 0;
    {
        auto d = open_vkms();
        const auto o = find_output(d);
        const auto image = pattern_image(o.mode.hdisplay, o.mode.vdisplay, 91);
        auto fb = d.add_framebuffer(image);
        REQUIRE(fb);
        light(d, o, *fb);
        kms::Commit again(d);
        again.show(o.primary, o.crtc, *fb, {0, 0, 512, 384});
        auto flip = again.flip();
        REQUIRE_MESSAGE(flip, (flip ? "" : flip.error().message()));
        id = flip->id;
    }  // the event is never read; the fixture checks every fd was closed
    CHECK(id != 0);
    {
        // Assigning over a device that shows a framebuffer lets go of its display record too
        // (the record holds the framebuffer, which holds the device's state: a cycle otherwise,
        // and two DRM files leaked; the fixture counts them).
        auto shower = open_vkms();
        const auto so = find_output(shower);
        const auto image = pattern_image(so.mode.hdisplay, so.mode.vdisplay, 92);
        {
            auto fb = shower.add_framebuffer(image);
            REQUIRE(fb);
            light(shower, so, *fb);
        }
        shower = open_vkms();
    }
    auto d = open_vkms();
    const auto o = find_output(d);
    turn_off(d, o);
    CHECK(d.wait_flip(12345, 0ms).value() == WaitStatus::ready);  // a flip it never made
    kms::Device moved = std::move(d);
    CHECK(d.dispatch_events().error().is(Errc::empty_object));
    CHECK(d.wait_flip(1, 0ms).error().is(Errc::empty_object));
    CHECK_FALSE(d.flip_pending(o.crtc));
}

}  // TEST_SUITE
