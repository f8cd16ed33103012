// SPDX-License-Identifier: MIT
// Display benchmark on vkms (ci/vm --vkms): what the framebuffer cache saves and how close
// non-blocking flips come to the mode's refresh rate. Ratios from one run, and counts.
//
//   metric kms_fb_hit_syscalls N         system calls of a framebuffer cache hit for a new fd of a
//                                        known buffer, beyond the identity check (the fstat when the
//                                        new fd is adopted), counted (goal 0)
//   metric kms_fb_fresh_over_cached R    fresh PRIME import + AddFB2 (+ removal) / cache hit (report)
//   metric kms_flip_fps_over_refresh R   non-blocking flips of 3 buffers with events, 300 frames:
//                                        flips per second / the mode's refresh rate (goal >= 0.95)
//
// System calls are trapped one by one on a thread of their own (seccomp user notification,
// tests/support/syscall_tap), as bench_import counts its cache hits.
#include <dmabridge/alloc/udmabuf.hpp>
#include <dmabridge/kms/commit.hpp>
#include <dmabridge/kms/device.hpp>
#include <dmabridge/kms/framebuffer_cache.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include <poll.h>

#include "syscall_tap.hpp"
#include "bench_util.hpp"

using namespace dmabridge;
using clock_type = std::chrono::steady_clock;

namespace {

int fail(const std::string& what, const Error& e) { return bench::fail("bench_kms", what, e); }
using bench::median;

}  // namespace

int main() {
    // vkms among the primary nodes (vgem is card0).
    std::optional<kms::Device> found;
    for (int i = 0; i < 8 && !found; ++i) {
        auto d = kms::Device::open("/dev/dri/card" + std::to_string(i));
        if (d && d->driver() == "vkms") found = std::move(*d);
    }
    if (!found) {
        std::fprintf(stderr, "bench_kms: no vkms device (run in ci/vm --vkms)\n");
        return 1;
    }
    kms::Device& d = *found;
    std::uint32_t crtc = d.crtcs().at(0).id, connector = 0, primary = 0;
    kms::Mode mode;
    for (const auto& c : d.connectors())
        if (!c.writeback && c.connected && !c.modes.empty() && !connector) {
            connector = c.id;
            mode = c.modes[0];
            for (const auto& m : c.modes)
                if (m.preferred) mode = m;
        }
    for (const auto& p : d.planes())
        if (p.type == kms::PlaneType::primary && (p.possible_crtcs & 1) && !primary) primary = p.id;
    if (!connector || !primary) {
        std::fprintf(stderr, "bench_kms: vkms has no connected output or primary plane\n");
        return 1;
    }
    auto alloc = UdmabufAllocator::open();
    if (!alloc) return fail("udmabuf", alloc.error());
    std::vector<BufferDesc> ring;
    for (int i = 0; i < 3; ++i) {
        ImageRequest r;
        r.width = mode.hdisplay;
        r.height = mode.vdisplay;
        r.fourcc = fourcc::XRGB8888;
        r.name = "bench-kms";
        auto desc = alloc->allocate(r);
        if (!desc) return fail("allocate", desc.error());
        ring.push_back(std::move(*desc));
    }

    // --- The hit for a new fd: counted. The new fds are adopted (fstat: the identity check)
    // before counting; what is counted is the cache's own work. ---
    constexpr int counted_hits = 300;
    std::vector<BufferDesc> new_fds;
    for (int i = 0; i < counted_hits; ++i) {
        auto again = ring[static_cast<std::size_t>(i) % ring.size()].dup();
        if (!again) return fail("dup", again.error());
        new_fds.push_back(std::move(*again));
    }
    std::uint64_t miss_syscalls = 0, hit_syscalls = 0;
    bool counted_ok = true;
    test::SyscallTap tap;
    const bool tapped = tap.run([&](test::SyscallTap& t) {
        kms::FramebufferCache counted(d);
        std::uint64_t before = t.count();
        counted_ok = counted_ok && counted.get(ring[0]).ok();  // a miss, for scale
        miss_syscalls = t.count() - before;
        counted_ok = counted_ok && counted.get(ring[1]).ok() && counted.get(ring[2]).ok();
        before = t.count();
        for (const BufferDesc& desc : new_fds) counted_ok = counted_ok && counted.get(desc).ok();
        hit_syscalls = t.count() - before;
    });
    if (!tapped) {
        std::fprintf(stderr, "bench_kms: %s\n", tap.error().c_str());
        return 1;
    }
    if (!counted_ok || miss_syscalls == 0) {
        std::fprintf(stderr, "bench_kms: the counted run failed (or a miss counted no system call)\n");
        return 1;
    }

    // --- Fresh (import + AddFB2 + removal: a framebuffer made per frame) over a hit. ---
    kms::FramebufferCache cache(d);
    for (const auto& desc : ring)
        if (auto fb = cache.get(desc); !fb) return fail("cache", fb.error());
    std::vector<double> fresh, hit;
    bool ok = true;
    for (int round = 0; round < 7; ++round) {
        constexpr int n_fresh = 50, n_hit = 2000;
        auto start = clock_type::now();
        for (int i = 0; i < n_fresh; ++i) ok = ok && d.add_framebuffer(ring[static_cast<std::size_t>(i) % 3]).ok();
        fresh.push_back(std::chrono::duration<double, std::nano>(clock_type::now() - start).count() / n_fresh);
        start = clock_type::now();
        for (int i = 0; i < n_hit; ++i) ok = ok && cache.get(new_fds[static_cast<std::size_t>(i) % new_fds.size()]).ok();
        hit.push_back(std::chrono::duration<double, std::nano>(clock_type::now() - start).count() / n_hit);
    }
    if (!ok) {
        std::fprintf(stderr, "bench_kms: a framebuffer could not be made while timing\n");
        return 1;
    }

    // --- Non-blocking flips of the 3 buffers with events, paced by the events alone. ---
    {
        auto first = cache.get(ring[0]);
        if (!first) return fail("cache", first.error());
        kms::Commit light(d);
        light.set_mode(crtc, connector, mode).show(primary, crtc, **first);
        if (auto done = light.apply(true); !done) return fail("mode set", done.error());
    }
    constexpr int frames = 300;
    int flipped = 0;
    std::uint32_t first_sequence = 0, last_sequence = 0;
    const auto start = clock_type::now();
    for (int frame = 1; frame <= frames; ++frame) {
        auto fb = cache.get(new_fds[static_cast<std::size_t>(frame) % new_fds.size()]);
        if (!fb) return fail("cache", fb.error());
        kms::Commit commit(d);
        commit.show(primary, crtc, **fb);
        auto flip = commit.flip();
        if (!flip) return fail("flip " + std::to_string(frame), flip.error());
        // The application's event loop: poll the one fd, then dispatch.
        bool completed = false;
        while (!completed) {
            pollfd p{d.fd(), POLLIN, 0};
            const int ready = ::poll(&p, 1, 1000);
            if (ready <= 0) {
                std::fprintf(stderr, "bench_kms: no page-flip event within 1 s at frame %d\n", frame);
                return 1;
            }
            auto events = d.dispatch_events();
            if (!events) return fail("dispatch", events.error());
            for (const auto& e : *events)
                if (e.flip == flip->id) {
                    completed = true;
                    if (frame == 1) first_sequence = e.sequence;
                    last_sequence = e.sequence;
                }
        }
        ++flipped;
    }
    const double seconds = std::chrono::duration<double>(clock_type::now() - start).count();
    {
        kms::Commit off(d);
        off.hide(primary).detach(connector).disable_crtc(crtc);
        (void)off.apply(true);
    }
    const double refresh = mode.refresh_mhz() / 1000.0;
    const double fps = flipped / seconds;

    std::printf("# a miss made %llu system calls; %d hits for new fds made %llu\n",
                static_cast<unsigned long long>(miss_syscalls), counted_hits, static_cast<unsigned long long>(hit_syscalls));
    std::printf("# fresh framebuffer %.0f ns, hit %.0f ns (medians of 7 rounds)\n", median(fresh), median(hit));
    std::printf("# %d flips in %.2f s: %.2f flips/s; mode %s at %.3f Hz; vblank sequence %u -> %u\n", flipped, seconds,
                fps, mode.name.c_str(), refresh, first_sequence, last_sequence);
    std::printf("metric kms_fb_hit_syscalls %.3g\n", static_cast<double>(hit_syscalls) / counted_hits);
    std::printf("metric kms_fb_fresh_over_cached %.3g\n", median(fresh) / median(hit));
    std::printf("metric kms_flip_fps_over_refresh %.3g\n", fps / refresh);
    return 0;
}
