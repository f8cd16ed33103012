// SPDX-License-Identifier: MIT
// dmabridge::kms on vkms (ci/vm --vkms, writeback enabled): the device's resources and plane
// formats, images shown on planes and captured back through writeback pixel for pixel, in-fences
// that hold a flip and out-fences that signal after it, TEST_ONLY refusals that name the plane,
// hostile descriptions refused before any ioctl, and GEM handles shared by framebuffers of one
// buffer (through different fds, removed in either order) never closed early nor leaked.
// Suite "kms": ci/test runs it in a VM with vkms, where it must pass.
#include <dmabridge/alloc/gbm_allocator.hpp>
#include <dmabridge/alloc/udmabuf.hpp>
#include <dmabridge/kernel/cpu_access.hpp>
#include <dmabridge/kernel/timeline.hpp>
#include <dmabridge/kms/commit.hpp>
#include <dmabridge/kms/device.hpp>
#include <dmabridge/kms/output.hpp>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <libdrm/drm.h>
#include <libdrm/drm_mode.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

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

TEST_SUITE("kms") {

TEST_CASE_FIXTURE(FdLeakCheck, "vkms reports its connectors, CRTCs and planes, with each plane's formats") {
    const auto d = open_vkms();
    CHECK(d.fd() >= 0);
    const auto o = find_output(d);
    // The harness drives 640x480 (kms_harness.cpp says why); vkms prefers 1024x768.
    CHECK(o.mode.hdisplay == 640);
    CHECK(o.mode.vdisplay == 480);
    CHECK(o.mode.refresh_mhz() > 50000);
    bool preferred = false;
    for (const auto& c : d.connectors())
        for (const auto& m : c.modes) preferred |= m.preferred && m.hdisplay == 1024 && m.vdisplay == 768;
    CHECK(preferred);
    bool named = false;
    // "Virtual-N": connector type ids count across devices (virtio_gpu's may be Virtual-1).
    for (const auto& c : d.connectors()) named |= c.name.rfind("Virtual-", 0) == 0 && c.connected;
    CHECK(named);
    for (const auto& p : d.planes()) {
        CAPTURE(kms::to_string(p.type));
        CHECK(p.formats.contains(fourcc::XRGB8888, modifier::linear));
        CHECK_FALSE(p.formats.contains(fourcc::NV12, modifier::linear));  // vkms scans out RGB only
    }
    CHECK(o.overlay != 0);
    CHECK(o.cursor != 0);
    CHECK(d.gem_handles() == 0);
}

TEST_CASE_FIXTURE(FdLeakCheck, "a udmabuf image on the primary plane is what writeback captures, pixel for pixel") {
    const auto d = open_vkms();
    const auto o = find_output(d);
    const auto image = pattern_image(o.mode.hdisplay, o.mode.vdisplay, 7);
    auto fb = d.add_framebuffer(image);
    REQUIRE_MESSAGE(fb, (fb ? "" : fb.error().message()));
    CHECK(d.gem_handles() == 1);
    const auto captured = show_and_capture(d, o, *fb);
    CHECK(differing(captured, rgb_pixels(image)) == 0);
    turn_off(d, o);
    fb->reset();
    CHECK(d.gem_handles() == 0);
}

TEST_CASE_FIXTURE(FdLeakCheck, "find_output picks the output and planes of a pair, and capture returns the screen as a dma-buf") {
    const auto d = open_vkms();
    const auto o = find_output(d);  // the harness's own walk, for comparison
    auto found = kms::find_output(d, fourcc::XRGB8888, modifier::linear);
    REQUIRE_MESSAGE(found, (found ? "" : found.error().message()));
    CHECK(found->connector == o.connector);
    CHECK(found->crtc == o.crtc);
    CHECK(found->primary == o.primary);
    CHECK(found->writeback == o.writeback);
    CHECK(std::find(found->overlays.begin(), found->overlays.end(), o.overlay) != found->overlays.end());
    // The library picks the connector's preferred mode; the harness's smaller one is shown and
    // captured below.
    CHECK(found->mode.hdisplay == 1024);
    CHECK(found->mode.vdisplay == 768);
    found->mode = o.mode;
    // vkms scans out RGB only: the error says which pair and what the planes take.
    auto refused = kms::find_output(d, fourcc::NV12, modifier::linear);
    REQUIRE_FALSE(refused);
    CHECK(refused.error().is(Errc::unsupported));
    CHECK_MESSAGE(refused.error().message().find("NV12") != std::string::npos, refused.error().message());
    CHECK_MESSAGE(refused.error().message().find("plane " + std::to_string(o.primary)) != std::string::npos,
                  refused.error().message());

    const auto image = pattern_image(o.mode.hdisplay, o.mode.vdisplay, 11);
    {
        auto fb = d.add_framebuffer(image);
        REQUIRE(fb);
        kms::Commit show(d);
        show.set_mode(o.crtc, o.connector, o.mode).show(o.primary, o.crtc, *fb);
        auto shown = show.apply(true);
        REQUIRE_MESSAGE(shown, (shown ? "" : shown.error().message()));
        auto gbm = GbmAllocator::open(d.path());
        REQUIRE(gbm);
        auto picture = kms::capture(d, *found, *gbm, fourcc::XRGB8888, std::chrono::seconds(10));
        REQUIRE_MESSAGE(picture, (picture ? "" : picture.error().message()));
        CHECK(picture->picture.width == o.mode.hdisplay);
        CHECK(differing(rgb_pixels(picture->picture), rgb_pixels(image)) == 0);
        // Timeout::max() (no limit) waits for the capture; it never wraps into a short wait.
        auto unbounded = kms::capture(d, *found, *gbm, fourcc::XRGB8888, Timeout::max());
        REQUIRE_MESSAGE(unbounded, (unbounded ? "" : unbounded.error().message()));
        CHECK(differing(rgb_pixels(unbounded->picture), rgb_pixels(image)) == 0);
        // Without a writeback connector there is nothing to capture with.
        kms::Output blind = *found;
        blind.writeback = 0;
        auto none = kms::capture(d, blind, *gbm, fourcc::XRGB8888, std::chrono::seconds(1));
        REQUIRE_FALSE(none);
        CHECK(none.error().is(Errc::unsupported));
        turn_off(d, o);
    }
    CHECK(d.gem_handles() == 0);
}

TEST_CASE_FIXTURE(FdLeakCheck, "framebuffers of one buffer through different fds share its GEM handle, removed in either order") {
    const auto d = open_vkms();
    const auto o = find_output(d);
    const auto image = pattern_image(o.mode.hdisplay, o.mode.vdisplay, 23);
    for (bool first_goes_first : {true, false}) {
        CAPTURE(first_goes_first);
        auto second_desc = image.dup();  // new fds of the same buffer, as another process would send
        REQUIRE(second_desc);
        REQUIRE(second_desc->planes[0].buffer.fd() != image.planes[0].buffer.fd());
        auto a = d.add_framebuffer(image);
        auto b = d.add_framebuffer(*second_desc);
        REQUIRE(a);
        REQUIRE(b);
        CHECK(a->id() != b->id());
        CHECK(d.gem_handles() == 1);  // one buffer, one handle, two users
        (first_goes_first ? *a : *b).reset();
        CHECK(d.gem_handles() == 1);  // the other framebuffer still uses it
        // The survivor still scans out the buffer, and a third framebuffer of it can be made.
        const kms::Framebuffer& survivor = first_goes_first ? *b : *a;
        CHECK(differing(show_and_capture(d, o, survivor), rgb_pixels(image)) == 0);
        auto c = d.add_framebuffer(image);
        REQUIRE_MESSAGE(c, (c ? "" : c.error().message()));
        CHECK(d.gem_handles() == 1);
        turn_off(d, o);
        a->reset();
        b->reset();
        c->reset();
        CHECK(d.gem_handles() == 0);  // closed once the last user went, none leaked
    }
}

TEST_CASE_FIXTURE(FdLeakCheck, "one buffer on two planes at once is captured on both") {
    const auto d = open_vkms();
    const auto o = find_output(d);
    REQUIRE(o.overlay != 0);
    const auto image = pattern_image(o.mode.hdisplay, o.mode.vdisplay, 41);
    auto fb = d.add_framebuffer(image);
    REQUIRE(fb);
    const auto target_desc = dumb_target(d, o.mode.hdisplay, o.mode.vdisplay);
    auto target = d.add_framebuffer(target_desc);
    REQUIRE(target);
    // The overlay shows the image's top-left quarter-height square at (w/2, h/4) over the
    // full-screen primary (inside the screen whatever the mode).
    const std::uint32_t side = o.mode.vdisplay / 4, left = o.mode.hdisplay / 2, top = o.mode.vdisplay / 4;
    REQUIRE(left + side <= o.mode.hdisplay);
    kms::Commit commit(d);
    commit.set_mode(o.crtc, o.connector, o.mode)
        .show(o.primary, o.crtc, *fb)
        .show(o.overlay, o.crtc, *fb, {0, 0, side, side}, {static_cast<std::int32_t>(left), static_cast<std::int32_t>(top), side, side})
        .capture(o.writeback, o.crtc, *target);
    auto fences = commit.apply(true);
    REQUIRE_MESSAGE(fences, (fences ? "" : fences.error().message()));
    REQUIRE(fences->writeback_fence->wait(10s).value() == WaitStatus::ready);
    const auto src = rgb_pixels(image);
    auto expected = src;
    for (std::uint32_t y = 0; y < side; ++y)
        for (std::uint32_t x = 0; x < side; ++x)
            expected.at(std::size_t{y + top} * o.mode.hdisplay + x + left) = src.at(std::size_t{y} * o.mode.hdisplay + x);
    CHECK(differing(rgb_pixels(target_desc), expected) == 0);
    CHECK(d.gem_handles() == 2);  // the image and the target
    turn_off(d, o);
}

TEST_CASE_FIXTURE(FdLeakCheck, "an in-fence holds the flip until it signals, and the out-fence signals after") {
    const auto d = open_vkms();
    const auto o = find_output(d);
    const auto image = pattern_image(o.mode.hdisplay, o.mode.vdisplay, 99);
    auto fb = d.add_framebuffer(image);
    REQUIRE(fb);
    Vgem vgem;
    const DmaBuf gate_buf = vgem.create_buffer();
    const std::uint32_t gate = vgem.attach_fence(true);
    auto gate_fence = gate_buf.export_sync_file(Access::write);
    REQUIRE(gate_fence);
    std::thread signaller([&] {
        std::this_thread::sleep_for(400ms);
        vgem.signal(gate);
    });
    const auto start = Clock::now();
    const auto captured = show_and_capture(d, o, *fb, &*gate_fence);
    const auto held = Clock::now() - start;
    signaller.join();
    CHECK(held >= 350ms);  // the commit waited for the fence
    CHECK(differing(captured, rgb_pixels(image)) == 0);
    turn_off(d, o);
}

TEST_CASE_FIXTURE(FdLeakCheck, "a commit while another process holds DRM master fails at once, saying so") {
    // The child opens vkms first and so becomes master; it holds the node open until told to go.
    int to_child[2], from_child[2];
    REQUIRE(::pipe2(to_child, O_CLOEXEC) == 0);
    REQUIRE(::pipe2(from_child, O_CLOEXEC) == 0);
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        ::close(to_child[1]);
        ::close(from_child[0]);
        int master = -1;
        for (int i = 0; i < 8 && master < 0; ++i) {
            auto d = kms::Device::open("/dev/dri/card" + std::to_string(i));
            if (d && d->driver() == "vkms") master = ::dup(d->fd());
        }
        char ok = master >= 0 && ::ioctl(master, DRM_IOCTL_SET_MASTER, 0) == 0 ? 'm' : 'x';
        if (::write(from_child[1], &ok, 1) != 1) ::_exit(2);
        char go = 0;
        (void)!::read(to_child[0], &go, 1);
        ::_exit(0);
    }
    ::close(to_child[0]);
    ::close(from_child[1]);
    char state = 0;
    REQUIRE(::read(from_child[0], &state, 1) == 1);
    CHECK(state == 'm');
    {
        const auto d = open_vkms();  // not master now
        const auto o = find_output(d);
        const auto image = pattern_image(o.mode.hdisplay, o.mode.vdisplay, 5);
        auto fb = d.add_framebuffer(image);  // framebuffers need no master
        REQUIRE_MESSAGE(fb, (fb ? "" : fb.error().message()));
        kms::Commit commit(d);
        commit.set_mode(o.crtc, o.connector, o.mode).show(o.primary, o.crtc, *fb);
        const auto start = Clock::now();
        auto refused = commit.apply(true);
        REQUIRE_FALSE(refused);
        CHECK(refused.error().is_errno(EACCES));
        CHECK(refused.error().message().find("not DRM master") != std::string::npos);
        CHECK(Clock::now() - start < 2s);
    }
    const char go = 1;
    CHECK(::write(to_child[1], &go, 1) == 1);
    int status = 0;
    CHECK(::waitpid(child, &status, 0) == child);
    ::close(to_child[1]);
    ::close(from_child[0]);
}

// Explicit sync end to end (suite kms_syncobj: needs vkms and virtio_gpu's timelines): a flip
// waits for a timeline point as its in-fence, and its out-fence becomes the next point.
TEST_CASE_FIXTURE(FdLeakCheck, "a flip waits for a timeline point, and its out-fence becomes the next point" *
                                   doctest::test_suite("kms_syncobj")) {
    const auto d = open_vkms();
    const auto o = find_output(d);
    auto device = Timeline::open_device();
    REQUIRE_MESSAGE(device, (device ? "" : device.error().message()));
    auto t = Timeline::create(device->get());
    REQUIRE(t);
    Vgem vgem;
    const DmaBuf gate_buf = vgem.create_buffer();
    const std::uint32_t gate = vgem.attach_fence(true);
    auto gate_fence = gate_buf.export_sync_file(Access::write);
    REQUIRE(gate_fence);
    REQUIRE(t->import_sync_file(1, *gate_fence));
    auto in_fence = t->export_sync_file(1);
    REQUIRE(in_fence);
    const auto image = pattern_image(o.mode.hdisplay, o.mode.vdisplay, 61);
    auto fb = d.add_framebuffer(image);
    REQUIRE(fb);
    std::thread signaller([&] {
        std::this_thread::sleep_for(400ms);
        vgem.signal(gate);
    });
    kms::Commit commit(d);
    commit.set_mode(o.crtc, o.connector, o.mode).show(o.primary, o.crtc, *fb, {}, {}, &*in_fence).want_out_fence(o.crtc);
    const auto start = Clock::now();
    auto fences = commit.apply(true);
    signaller.join();
    REQUIRE_MESSAGE(fences, (fences ? "" : fences.error().message()));
    CHECK(Clock::now() - start >= 350ms);
    REQUIRE(fences->out_fence);
    REQUIRE(t->import_sync_file(2, *fences->out_fence));
    auto shown = t->wait(2, 10s);
    REQUIRE(shown);
    CHECK(*shown == WaitStatus::ready);
    turn_off(d, o);
}

TEST_CASE_FIXTURE(FdLeakCheck, "TEST_ONLY refusals and hostile descriptions name what was wrong, before any ioctl takes them") {
    const auto d = open_vkms();
    const auto o = find_output(d);
    const auto image = pattern_image(256, 256, 3);
    auto fb = d.add_framebuffer(image);
    REQUIRE(fb);
    // A source rectangle past the framebuffer: refused by the check, nothing shown.
    kms::Commit bad(d);
    bad.set_mode(o.crtc, o.connector, o.mode).show(o.primary, o.crtc, *fb, {128, 128, 256, 256});
    auto refused = bad.test(true);
    REQUIRE_FALSE(refused);
    CHECK(refused.error().message().find("plane " + std::to_string(o.primary)) != std::string::npos);
    CHECK(refused.error().message().find("XR24") != std::string::npos);
    // Sizes past the device's limits are refused before the PRIME import.
    auto alloc = UdmabufAllocator::open();
    REQUIRE(alloc);
    auto wide = alloc->allocate_bytes(8192 * 4 * 2);
    REQUIRE(wide);
    BufferDesc huge;
    huge.width = 8192;
    huge.height = 2;
    huge.fourcc = fourcc::XRGB8888;
    huge.modifier = modifier::linear;
    huge.planes.push_back({std::move(*wide), 0, 8192 * 4});
    REQUIRE(huge.validate());
    const std::size_t handles = d.gem_handles();
    auto too_big = d.add_framebuffer(huge);
    REQUIRE_FALSE(too_big);
    CHECK(too_big.error().is(Errc::limit_exceeded));
    CHECK(too_big.error().message().find("8192x2") != std::string::npos);
    CHECK(d.gem_handles() == handles);
    // A plane past its buffer's end fails the description's validation.
    auto past = image.dup();
    REQUIRE(past);
    past->planes[0].offset = 4096;
    auto refused_desc = d.add_framebuffer(*past);
    REQUIRE_FALSE(refused_desc);
    CHECK(refused_desc.error().is(Errc::invalid_argument));
    CHECK(d.gem_handles() == handles);
    // An empty framebuffer cannot be shown.
    kms::Framebuffer none;
    kms::Commit empty(d);
    empty.show(o.primary, o.crtc, none);
    CHECK(empty.test(true).error().is(Errc::invalid_argument));
    kms::Device moved = open_vkms();
    kms::Device taker = std::move(moved);
    CHECK(moved.add_framebuffer(image).error().is(Errc::empty_object));
    CHECK(kms::Commit(moved).test().error().is(Errc::empty_object));
}

}  // TEST_SUITE
