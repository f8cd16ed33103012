// SPDX-License-Identifier: MIT
// kms::FramebufferCache on vkms (suite kms): a new fd of a known buffer finds its framebuffer
// without a PRIME import, an AddFB2 or a new fd; eviction never removes a framebuffer that a
// plane still shows (pixels checked through writeback, GEM handles counted); GEM handles shared
// between cached and uncached framebuffers of one buffer survive either one's removal.
#include <dmabridge/kms/commit.hpp>
#include <dmabridge/kms/device.hpp>
#include <dmabridge/kms/framebuffer_cache.hpp>

#include <chrono>

#include <doctest/doctest.h>

#include "fd_count.hpp"
#include "kms_harness.hpp"

using namespace dmabridge;
using namespace std::chrono_literals;
using dmabridge::test::FdLeakCheck;
using dmabridge::test::open_fd_count;
using namespace dmabridge::test::kms_harness;

TEST_SUITE("kms") {

TEST_CASE_FIXTURE(FdLeakCheck, "a new fd of a cached buffer hits the framebuffer cache: no new handle, framebuffer or fd") {
    const auto d = open_vkms();
    const auto o = find_output(d);
    kms::FramebufferCache cache(d);
    const auto image = pattern_image(o.mode.hdisplay, o.mode.vdisplay, 11);
    auto first = cache.get(image);
    REQUIRE_MESSAGE(first, (first ? "" : first.error().message()));
    CHECK(d.gem_handles() == 1);
    CHECK(cache.stats().misses == 1);
    auto again = image.dup();  // new fds of the same buffer, as a DQBUF or a socket gives them
    REQUIRE(again);
    const std::size_t fds = open_fd_count();
    auto hit = cache.get(*again);
    REQUIRE(hit);
    CHECK(open_fd_count() == fds);  // the cache kept no dup: it holds its own reference already
    CHECK(hit->get() == first->get());
    CHECK((*hit)->id() == (*first)->id());
    CHECK(d.gem_handles() == 1);
    CHECK(cache.stats().hits == 1);
    CHECK(cache.stats().misses == 1);
    // Another layout of the same buffer is another framebuffer, sharing the GEM handle.
    auto half = image.dup();
    REQUIRE(half);
    half->height = o.mode.vdisplay / 2;
    auto other = cache.get(*half);
    REQUIRE(other);
    CHECK((*other)->id() != (*first)->id());
    CHECK(d.gem_handles() == 1);
    CHECK(cache.stats().misses == 2);
    CHECK(differing(show_and_capture(d, o, **hit), rgb_pixels(image)) == 0);
    turn_off(d, o);
    first->reset();
    hit->reset();
    other->reset();
    cache.clear();
    CHECK(cache.stats().live_entries == 0);
    CHECK(cache.stats().retired == 0);
    CHECK(d.gem_handles() == 0);
}

TEST_CASE_FIXTURE(FdLeakCheck, "eviction never removes a framebuffer a plane still shows; the commit that replaces it does") {
    const auto d = open_vkms();
    const auto o = find_output(d);
    kms::FramebufferCacheOptions options;
    options.max_entries = 1;
    kms::FramebufferCache cache(d, options);
    const auto a = pattern_image(o.mode.hdisplay, o.mode.vdisplay, 31);
    const auto b = pattern_image(o.mode.hdisplay, o.mode.vdisplay, 77);
    {
        auto shown = cache.get(a);
        REQUIRE(shown);
        CHECK(differing(show_and_capture(d, o, **shown), rgb_pixels(a)) == 0);
    }  // the application's handle is gone: only the cache and the display hold it
    auto next = cache.get(b);  // the bound evicts a
    REQUIRE(next);
    CHECK(cache.stats().evictions == 1);
    CHECK(cache.stats().live_entries == 1);
    CHECK(cache.stats().retired == 0);  // the cache let go of it...
    CHECK(d.gem_handles() == 2);        // ...but the display still holds a's framebuffer
    CHECK(differing(capture_now(d, o), rgb_pixels(a)) == 0);  // and a is still on screen
    // The commit that replaces it completes: now it goes.
    kms::Commit replace(d);
    replace.show(o.primary, o.crtc, **next);
    REQUIRE(replace.apply());
    CHECK(d.gem_handles() == 1);
    CHECK(differing(capture_now(d, o), rgb_pixels(b)) == 0);
    turn_off(d, o);  // hides the primary plane: b's framebuffer is the cache's alone now
    next->reset();
    cache.clear();
    CHECK(d.gem_handles() == 0);
}

TEST_CASE_FIXTURE(FdLeakCheck, "a cache hit after the first framebuffer of the buffer was removed still scans out") {
    const auto d = open_vkms();
    const auto o = find_output(d);
    kms::FramebufferCache cache(d);
    const auto image = pattern_image(o.mode.hdisplay, o.mode.vdisplay, 53);
    auto direct = d.add_framebuffer(image);  // the application's own framebuffer, outside the cache
    REQUIRE(direct);
    auto second = image.dup();
    REQUIRE(second);
    auto cached = cache.get(*second);  // the same buffer again: the same GEM handle, two users
    REQUIRE(cached);
    CHECK(d.gem_handles() == 1);
    direct->reset();  // the first framebuffer goes: the handle must stay for the cached one
    CHECK(d.gem_handles() == 1);
    auto third = image.dup();
    REQUIRE(third);
    auto hit = cache.get(*third);
    REQUIRE(hit);
    CHECK(cache.stats().hits == 1);
    CHECK(differing(show_and_capture(d, o, **hit), rgb_pixels(image)) == 0);
    // And a framebuffer made afterwards, outside the cache, shares the handle again.
    auto later = d.add_framebuffer(image);
    REQUIRE_MESSAGE(later, (later ? "" : later.error().message()));
    CHECK(d.gem_handles() == 1);
    turn_off(d, o);
    cached->reset();
    hit->reset();
    cache.clear();
    CHECK(d.gem_handles() == 1);  // `later` still uses it
    later->reset();
    CHECK(d.gem_handles() == 0);
}

TEST_CASE_FIXTURE(FdLeakCheck, "the framebuffer cache refuses empty descriptions and empty devices at once") {
    const auto d = open_vkms();
    kms::FramebufferCache cache(d);
    BufferDesc none;
    CHECK(cache.get(none).error().is(Errc::invalid_argument));  // as every import cache: nothing to look up
    auto image = pattern_image(64, 64, 1);
    auto moved = std::move(image.planes[0].buffer);
    CHECK(cache.get(image).error().is(Errc::empty_object));
    kms::Device gone = open_vkms();
    kms::Device taker = std::move(gone);
    kms::FramebufferCache empty(gone);
    image.planes[0].buffer = std::move(moved);
    CHECK(empty.get(image).error().is(Errc::empty_object));
    CHECK(d.gem_handles() == 0);
    CHECK(cache.stats().misses == 0);
}

}  // TEST_SUITE
