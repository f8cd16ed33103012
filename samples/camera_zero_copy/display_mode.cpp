// SPDX-License-Identifier: MIT
#include "display_mode.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <optional>
#include <vector>

#include <poll.h>
#include <sys/resource.h>

#include <dmabridge/alloc/gbm_allocator.hpp>
#include <dmabridge/alloc/udmabuf.hpp>
#include <dmabridge/bridge/capture_source.hpp>
#include <dmabridge/format/fourcc.hpp>
#include <dmabridge/kernel/cpu_access.hpp>
#include <dmabridge/kms/commit.hpp>
#include <dmabridge/kms/framebuffer_cache.hpp>
#include <dmabridge/kms/output.hpp>

namespace camera {

namespace {

using namespace dmabridge;
using dmabridge::v4l2::CaptureOptions;
using dmabridge::v4l2::CaptureSource;
using namespace std::chrono_literals;

int fail(const std::string& what, const Error& e) {
    std::fprintf(stderr, "camera_zero_copy --display: %s: %s\n", what.c_str(), e.message().c_str());
    return 1;
}

// User + system CPU time of the process.
double cpu_seconds() {
    rusage u{};
    ::getrusage(RUSAGE_SELF, &u);
    return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
           static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

// The next frame: pump the camera (its driver and the consumers' releases) until one arrives.
// A pump that saw nothing for 200 ms is tried again, up to 10 s in all: a loaded machine (or a
// VM on one) can miss a 30 fps camera's frame interval many times over.
Result<queue::AcquiredFrame> next_frame(CaptureSource& source, queue::Consumer& consumer) {
    for (int tries = 0; tries < 50; ++tries) {
        auto frame = consumer.acquire(0ms);
        if (frame) return frame;
        if (!frame.error().is_errno(ETIMEDOUT)) return frame.error();
        if (auto pumped = source.pump(200ms); !pumped && !pumped.error().is_errno(ETIMEDOUT)) return pumped.error();
    }
    return Error(ErrorDomain::system, ETIMEDOUT, "no camera frame within 10 s");
}

// Waits (bounded) for the page-flip event of `flip`, the way an event loop would: poll the
// device's fd, then dispatch its events.
Status wait_for_flip(kms::Device& display, std::uint64_t flip) {
    for (int tries = 0; tries < 20; ++tries) {
        pollfd p{display.fd(), POLLIN, 0};
        if (::poll(&p, 1, 100) < 0 && errno != EINTR) return Error::from_errno(errno, "poll on the DRM fd");
        auto events = display.dispatch_events();
        if (!events) return events.error();
        for (const auto& e : *events)
            if (e.flip == flip) return {};
    }
    return Error(ErrorDomain::system, ETIMEDOUT, "no page-flip event within 2 s");
}

// Copies plane 0 of `from` into `to` (same size and format, strides may differ) with the CPU,
// inside CPU-access brackets.
Status cpu_copy(const BufferDesc& from, const BufferDesc& to, std::uint32_t row_bytes) {
    const auto& src = from.planes[0];
    const auto& dst = to.planes[0];
    auto in = Mapping::map(src.buffer, Access::read);
    if (!in) return in.error();
    auto out = Mapping::map(dst.buffer, Access::write);
    if (!out) return out.error();
    auto reading = CpuAccess::begin(src.buffer, Access::read);
    if (!reading) return reading.error();
    auto writing = CpuAccess::begin(dst.buffer, Access::write);
    if (!writing) return writing.error();
    for (std::uint32_t y = 0; y < from.height; ++y)
        std::memcpy(out->data() + dst.offset + std::uint64_t{y} * dst.stride,
                    in->data() + src.offset + std::uint64_t{y} * src.stride, row_bytes);
    if (auto done = writing->end(); !done) return done;
    return reading->end();
}

// Pixels of `screen` (the writeback capture, the mode's size) that differ from `shown` (the
// frame on the primary plane, same size) in their colour bytes.
Result<std::uint64_t> count_differing(const BufferDesc& screen, const BufferDesc& shown) {
    const auto& a = screen.planes[0];
    const auto& b = shown.planes[0];
    auto ma = Mapping::map(a.buffer, Access::read);
    if (!ma) return ma.error();
    auto mb = Mapping::map(b.buffer, Access::read);
    if (!mb) return mb.error();
    auto ca = CpuAccess::begin(a.buffer, Access::read);
    if (!ca) return ca.error();
    auto cb = CpuAccess::begin(b.buffer, Access::read);
    if (!cb) return cb.error();
    std::uint64_t differ = 0;
    for (std::uint32_t y = 0; y < shown.height; ++y) {
        const auto* ra = reinterpret_cast<const std::uint8_t*>(ma->data()) + a.offset + std::uint64_t{y} * a.stride;
        const auto* rb = reinterpret_cast<const std::uint8_t*>(mb->data()) + b.offset + std::uint64_t{y} * b.stride;
        for (std::uint32_t x = 0; x < shown.width; ++x)
            differ += std::memcmp(ra + x * 4, rb + x * 4, 3) != 0;  // the 4th byte is X: undefined
    }
    return differ;
}

}  // namespace

int display(const DisplayOptions& options) {
    auto screen = kms::Device::open(options.card);
    if (!screen) return fail("display", screen.error());
    CaptureOptions capture_options;
    capture_options.device = options.camera;
    capture_options.pixel_format = options.v4l2_format ? options.v4l2_format : fourcc::XRGB8888;  // V4L2 'XR24'
    capture_options.width = options.width;
    capture_options.height = options.height;
    capture_options.fps = options.fps;
    capture_options.ring_size = options.ring;
    auto source = CaptureSource::open(capture_options, "camera");
    if (!source) return fail("camera", source.error());
    const BufferDesc& first = source->buffer(0);
    const std::uint32_t shown_fourcc = options.copy ? fourcc::XRGB8888 : first.fourcc;
    const std::uint64_t shown_modifier =
        options.copy || first.modifier == modifier::invalid ? modifier::linear : first.modifier;
    if (options.copy && first.fourcc != fourcc::XRGB8888)
        return fail("--copy", Error::library(Errc::unsupported, "the CPU copy baseline copies XR24 frames as they are"));

    // Where: a plane that scans the camera's buffers out as they are (nothing converts them).
    auto found = kms::find_output(*screen, shown_fourcc, shown_modifier);
    if (!found)
        return fail("display (" + screen->driver() + ")",
                    found.error().with_context("the Vulkan converter path for formats no plane takes is not built; "
                                               "use --format XR24"));
    kms::Output output = *found;
    // A mode of the camera's size, so that the primary plane covers the CRTC without scaling.
    bool sized = false;
    for (const auto& c : screen->connectors()) {
        if (c.id != output.connector) continue;
        for (const auto& m : c.modes)
            if (m.hdisplay == options.width && m.vdisplay == options.height && (!sized || m.vrefresh == 60)) {
                output.mode = m;
                sized = true;
            }
    }
    if (!sized || output.primary == 0)
        return fail("display", Error::library(Errc::unsupported, "connector " + std::to_string(output.connector) +
                                                                     " has no " + std::to_string(options.width) + "x" +
                                                                     std::to_string(options.height) +
                                                                     " mode with a primary plane taking the format"));
    std::printf("camera_zero_copy --display: %s, %s %ux%u, mode %s at %.2f Hz, CRTC %u, plane %u, %s\n",
                screen->driver().c_str(), fourcc_to_string(first.fourcc).c_str(), options.width, options.height,
                output.mode.name.c_str(), output.mode.refresh_mhz() / 1000.0, output.crtc, output.primary,
                options.copy ? "CPU copy into scan-out buffers" : "direct scan-out of the camera's buffers");

    // --copy: three scan-out buffers the CPU copies each frame into (one on screen, one whose
    // replacement is in flight, one being written).
    auto memory = UdmabufAllocator::open();
    if (!memory) return fail("udmabuf", memory.error());
    std::vector<BufferDesc> copies;
    for (int i = 0; options.copy && i < 3; ++i) {
        ImageRequest r{options.width, options.height, fourcc::XRGB8888, {}, "camera-copy"};
        auto target = memory->allocate(r);
        if (!target) return fail("scan-out buffer", target.error());
        copies.push_back(std::move(*target));
    }

    auto consumer = source->start_local();
    if (!consumer) return fail("camera start", consumer.error());
    kms::FramebufferCache framebuffers(*screen);
    std::optional<queue::AcquiredFrame> on_screen;  // direct: the camera buffer the plane shows
    std::uint64_t copied_bytes = 0, flips = 0;
    double cpu_start = 0;
    auto wall_start = std::chrono::steady_clock::now();
    const BufferDesc* last_shown = nullptr;
    for (std::uint64_t n = 0; n < options.frames; ++n) {
        if (n == 1) {  // after the mode set: the steady state is what is measured
            cpu_start = cpu_seconds();
            wall_start = std::chrono::steady_clock::now();
        }
        auto frame = next_frame(*source, *consumer);
        if (!frame) return fail("frame " + std::to_string(n), frame.error());
        const BufferDesc* shown = frame->desc;
        if (options.copy) {
            const BufferDesc& target = copies[n % copies.size()];
            if (auto done = cpu_copy(*frame->desc, target, options.width * 4); !done)
                return fail("frame " + std::to_string(n) + ": copy", done.error());
            copied_bytes += std::uint64_t{options.width} * 4 * options.height;
            if (auto back = consumer->release(frame->buffer); !back) return fail("release", back.error());
            shown = &target;
        }
        auto fb = framebuffers.get(*shown);
        if (!fb) return fail("frame " + std::to_string(n) + ": framebuffer", fb.error());
        kms::Commit commit(*screen);
        commit.show(output.primary, output.crtc, **fb);
        if (n == 0) {
            commit.set_mode(output.crtc, output.connector, output.mode);
            if (auto done = commit.apply(true); !done) return fail("mode set", done.error());
        } else {
            auto flip = commit.flip();
            if (!flip) return fail("frame " + std::to_string(n) + ": flip", flip.error());
            if (auto done = wait_for_flip(*screen, flip->id); !done) return fail("frame " + std::to_string(n), done.error());
            ++flips;
        }
        last_shown = shown;
        if (!options.copy) {
            // The buffer this flip replaced is off screen now: back to the camera.
            if (on_screen)
                if (auto back = consumer->release(on_screen->buffer); !back) return fail("release", back.error());
            on_screen = std::move(*frame);
        }
    }
    const double cpu = cpu_seconds() - cpu_start;
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
    const auto stats = framebuffers.stats();
    const std::uint64_t measured = options.frames > 1 ? options.frames - 1 : 1;
    std::printf("frames:                 %" PRIu64 " shown, %" PRIu64 " page flips with events, %.1f frames/s\n",
                options.frames, flips, static_cast<double>(measured) / wall);
    std::printf("framebuffer cache:      %" PRIu64 " misses, %" PRIu64 " hits\n", stats.misses, stats.hits);
    std::printf("bytes copied by the CPU: %" PRIu64 "\n", copied_bytes);
    std::printf("cpu per frame:          %.1f us (user + system, the whole process)\n", cpu * 1e6 / static_cast<double>(measured));

    int status = 0;
    if (options.check) {
        // Into a buffer of the display device itself (GBM on its node), as the kernel tests do.
        auto gbm = GbmAllocator::open(screen->path());
        if (!gbm) return fail("--check: GBM on " + screen->path(), gbm.error());
        auto picture = kms::capture(*screen, output, *gbm, fourcc::XRGB8888, 10s);
        if (!picture) return fail("writeback capture", picture.error());
        auto differ = count_differing(picture->picture, *last_shown);
        if (!differ) return fail("check", differ.error());
        const std::uint64_t total = std::uint64_t{options.width} * options.height;
        std::printf("check: %" PRIu64 "/%" PRIu64 " pixels of the screen match the last camera frame (writeback)\n",
                    total - *differ, total);
        if (*differ != 0) status = 1;
    }
    kms::Commit off(*screen);
    off.hide(output.primary).detach(output.connector).disable_crtc(output.crtc);
    if (auto done = off.apply(true); !done) return fail("turn off", done.error());
    if (on_screen)
        if (auto back = consumer->release(on_screen->buffer); !back) return fail("release", back.error());
    if (auto stopped = source->stop(); !stopped) return fail("camera stop", stopped.error());
    return status;
}

}  // namespace camera
