// SPDX-License-Identifier: MIT
#include "display_mode.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <memory>
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
#include <dmabridge/format/frame_layout.hpp>
#include <dmabridge/vulkan/context.hpp>
#include <dmabridge/vulkan/frame_converter.hpp>
#include <dmabridge/vulkan/import_cache.hpp>
#include <dmabridge/vulkan/sync_bridge.hpp>

#include "mode_report.hpp"
#include "vulkan_compute.hpp"

namespace camera {

namespace {

using namespace dmabridge;
using dmabridge::v4l2::CaptureOptions;
using dmabridge::v4l2::CaptureSource;
using namespace std::chrono_literals;


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

// The converter path: camera frames in a format no plane takes, converted on the GPU into three
// exported XRGB8888 images (one on screen, one whose flip is queued, one being written). Each
// conversion waits for the camera buffers' fences and publishes its own as the image's write
// fence, which the flip takes as IN_FENCE_FD: the CPU does not wait for the GPU where the driver
// exports kernel fences (lavapipe does not: there SyncBridge::publish waits for the submit).
class GpuPath {
public:
    static Result<std::unique_ptr<GpuPath>> create(std::uint32_t width, std::uint32_t height, bool validate) {
        std::unique_ptr<GpuPath> made(new GpuPath);
        GpuPath& g = *made;
        vulkan::ContextOptions options;
        options.validation = validate;
        auto context = vulkan::Context::create(options);
        if (!context) return context.error().with_context("vulkan");
        g.context_ = std::make_unique<vulkan::Context>(std::move(*context));
        auto vk = support::DeviceFunctions::load(*g.context_);
        if (!vk) return vk.error();
        g.vk_ = *vk;
        auto bridge = vulkan::SyncBridge::create(g.context_->device());
        if (!bridge) return bridge.error().with_context("sync bridge");
        g.bridge_.emplace(std::move(*bridge));
        g.cache_.emplace(g.context_->device());
        // Three sets, one per target: a set is rebound only when its target's last conversion
        // completed, which its flip having been replaced guarantees.
        auto converter = vulkan::FrameConverter::create(g.context_->device(),
                                                        {.frames_in_flight = targets, .bgra_bytes = true});
        if (!converter) return converter.error();
        g.converter_ = std::move(*converter);
        for (std::uint32_t i = 0; i < targets; ++i) {
            ImageRequest request{width, height, fourcc::XRGB8888, {modifier::linear}, "camera-display"};
            vulkan::ImageOptions image_options;
            image_options.usage = vulkan::FrameConverter::target_usage;
            image_options.format = VK_FORMAT_R8G8B8A8_UNORM;  // B, G, R, A bytes with bgra_bytes
            auto exported = g.context_->device().export_image(request, image_options);
            if (!exported) return exported.error().with_context("scan-out image " + std::to_string(i));
            Target t;
            t.exported = std::move(*exported);
            auto view = support::make_storage_view(g.vk_, t.exported.image.handle(), VK_FORMAT_R8G8B8A8_UNORM);
            if (!view) return view.error();
            t.view = std::move(*view);
            g.targets_.push_back(std::move(t));
        }
        return made;
    }

    const BufferDesc& desc(std::uint32_t slot) const { return targets_.at(slot).exported.desc; }

    // Converts `frame` into target `slot`; its write fence is on the image's dma-buf when this
    // returns. The display must no longer show the slot's image.
    Status convert(const queue::AcquiredFrame& frame, std::uint32_t slot) {
        Target& t = targets_.at(slot);
        t.work.reset();  // the slot's previous conversion: complete (its flip was replaced since)
        auto layout = frame_layout(*frame.desc);
        if (!layout) return layout.error();
        const auto buffers = frame.desc->distinct_buffers();
        const auto of_plane = frame.desc->plane_buffer_indices();
        Work w;
        for (const DmaBuf* buffer : buffers) {
            auto imported = cache_->import_buffer(*buffer, vulkan::FrameConverter::source_usage);
            if (!imported) return imported.error().with_context("import camera buffer");
            w.imports.push_back(std::move(*imported));
        }
        const vulkan::BufferUse read{VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_ACCESS_SHADER_READ_BIT};
        const vulkan::ImageUse write{VK_IMAGE_LAYOUT_GENERAL, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                                     VK_ACCESS_SHADER_WRITE_BIT};
        for (std::size_t b = 0; b < buffers.size(); ++b) {
            auto acquire = bridge_->acquire_buffer(*buffers[b], *w.imports[b], Access::read, read);
            if (!acquire) return acquire.error().with_context("acquire camera buffer");
            w.acquires.push_back(std::move(*acquire));
        }
        auto image_acquire = bridge_->acquire_image(t.exported.desc, t.exported.image, Access::write, write,
                                                    VK_IMAGE_LAYOUT_UNDEFINED);  // every pixel is rewritten
        if (!image_acquire) return image_acquire.error().with_context("acquire scan-out image");
        w.acquires.push_back(std::move(*image_acquire));
        for (std::size_t b = 0; b < buffers.size(); ++b) {
            auto release = bridge_->prepare_release_buffer(*w.imports[b], read, {&w.acquires[b]});
            if (!release) return release.error().with_context("release camera buffer");
            w.releases.push_back(std::move(*release));
        }
        auto image_release = bridge_->prepare_release_image(t.exported.image, write, {&w.acquires.back()});
        if (!image_release) return image_release.error().with_context("release scan-out image");
        w.releases.push_back(std::move(*image_release));

        const auto plane1 = of_plane.size() > 1 ? of_plane[1] : of_plane.at(0);
        auto bound = converter_.bind(slot, vulkan::FrameSource::of(w.imports.at(of_plane.at(0))),
                                     vulkan::FrameSource::of(w.imports.at(plane1)),
                                     {t.exported.image.handle(), t.view.get(), t.exported.image.extent()});
        if (!bound) return bound.error();
        vulkan::Context::SubmitSemaphores semaphores;
        for (const auto& a : w.acquires) {
            semaphores.wait.push_back(a.semaphore.handle());
            semaphores.wait_stages.push_back(a.wait_stage);
        }
        for (const auto& r : w.releases) semaphores.signal.push_back(r.semaphore.handle());
        Status recorded;
        auto submitted = context_->submit_async(
            [&](VkCommandBuffer cmd) {
                std::vector<VkBufferMemoryBarrier> buffer_acquires, buffer_releases;
                for (std::size_t b = 0; b < buffers.size(); ++b) {
                    buffer_acquires.push_back(w.acquires[b].buffer_barrier);
                    buffer_releases.push_back(w.releases[b].buffer_barrier);
                }
                vk_.CmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, 0,
                                       0, nullptr, static_cast<std::uint32_t>(buffer_acquires.size()),
                                       buffer_acquires.data(), 1, &w.acquires.back().image_barrier);
                recorded = converter_.record(cmd, slot, *layout);
                vk_.CmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT,
                                       0, 0, nullptr, static_cast<std::uint32_t>(buffer_releases.size()),
                                       buffer_releases.data(), 1, &w.releases.back().image_barrier);
            },
            semaphores);
        if (!recorded) return recorded;
        if (!submitted) return submitted.error().with_context("submit");
        w.submission = std::move(*submitted);
        if (auto used = converter_.set_last_use(slot, w.submission); !used) return used;
        for (const auto& i : w.imports)
            if (auto used = cache_->set_last_use(*i, w.submission); !used) return used;
        // The GPU's read fence on the camera buffers, its write fence on the image.
        for (std::size_t b = 0; b < buffers.size(); ++b)
            if (auto ok = bridge_->publish(w.releases[b], *buffers[b], Access::read, w.submission.fence()); !ok)
                return ok.error().with_context("publish");
        if (auto ok = bridge_->publish(w.releases.back(), t.exported.desc, Access::write, w.submission.fence()); !ok)
            return ok.error().with_context("publish");
        t.work = std::move(w);
        return {};
    }

    std::vector<std::string> validation_messages() const { return context_->validation_messages(); }

private:
    static constexpr std::uint32_t targets = 3;
    struct Work {
        std::vector<vulkan::CachedBuffer> imports;
        std::vector<vulkan::Acquire> acquires;  // the camera buffers', then the image's
        std::vector<vulkan::Release> releases;  // in the same order
        vulkan::Submission submission;          // its destructor waits for the work
    };
    struct Target {
        vulkan::ExportedImage exported;  // before the view: the view goes first
        support::ImageView view;
        std::optional<Work> work;
    };
    GpuPath() = default;
    // Destroyed last to first: the targets (waiting for their work), the converter, the cache,
    // the bridge, then the context.
    std::unique_ptr<vulkan::Context> context_;
    support::DeviceFunctions vk_;
    std::optional<vulkan::SyncBridge> bridge_;
    std::optional<vulkan::ImportCache> cache_;
    vulkan::FrameConverter converter_;
    std::vector<Target> targets_;
};

// The GPU path's check: the scan-out image holds the CPU reference conversion of `frame`
// (dmabridge::convert_to_rgba, red and blue swapped into XRGB8888 bytes), pixel for pixel.
Result<std::uint64_t> count_misconverted(const BufferDesc& camera, const BufferDesc& shown) {
    auto layout = frame_layout(camera);
    if (!layout) return layout.error();
    const auto buffers = camera.distinct_buffers();
    const auto of_plane = camera.plane_buffer_indices();
    std::vector<Mapping> maps;
    std::vector<CpuAccess> brackets;
    for (const DmaBuf* b : buffers) {
        auto map = Mapping::map(*b, Access::read);
        if (!map) return map.error();
        auto cpu = CpuAccess::begin(*b, Access::read);
        if (!cpu) return cpu.error();
        maps.push_back(std::move(*map));
        brackets.push_back(std::move(*cpu));
    }
    const auto& m1 = maps.at(of_plane.size() > 1 ? of_plane[1] : of_plane.at(0));
    auto want = convert_to_rgba(*layout, maps.at(of_plane.at(0)).bytes(), m1.bytes());
    if (!want) return want.error();
    const auto& p = shown.planes[0];
    auto map = Mapping::map(p.buffer, Access::read);
    if (!map) return map.error();
    auto cpu = CpuAccess::begin(p.buffer, Access::read);
    if (!cpu) return cpu.error();
    std::uint64_t differ = 0;
    for (std::uint32_t y = 0; y < shown.height; ++y) {
        const auto* row = reinterpret_cast<const std::uint8_t*>(map->data()) + p.offset + std::uint64_t{y} * p.stride;
        for (std::uint32_t x = 0; x < shown.width; ++x) {
            const std::uint8_t* rgba = &(*want)[(std::size_t{y} * shown.width + x) * 4];
            differ += row[x * 4] != rgba[2] || row[x * 4 + 1] != rgba[1] || row[x * 4 + 2] != rgba[0];
        }
    }
    return differ;
}

}  // namespace

int display(const DisplayOptions& options) {
    auto screen = kms::Device::open(options.card);
    if (!screen) return fail("--display", "display", screen.error());
    CaptureOptions capture_options;
    capture_options.device = options.camera;
    capture_options.pixel_format = options.v4l2_format ? options.v4l2_format : fourcc::XRGB8888;  // V4L2 'XR24'
    capture_options.width = options.width;
    capture_options.height = options.height;
    capture_options.fps = options.fps;
    capture_options.ring_size = options.ring;
    auto source = CaptureSource::open(capture_options, "camera");
    if (!source) return fail("--display", "camera", source.error());
    const BufferDesc& first = source->buffer(0);
    const std::uint32_t shown_fourcc = options.copy ? fourcc::XRGB8888 : first.fourcc;
    const std::uint64_t shown_modifier =
        options.copy || first.modifier == modifier::invalid ? modifier::linear : first.modifier;
    if (options.copy && first.fourcc != fourcc::XRGB8888)
        return fail("--display", "--copy",
                    Error::library(Errc::unsupported, "the CPU copy baseline copies XR24 frames as they are"));

    // Where: a plane that scans the camera's buffers out as they are (nothing converts them), or
    // else one that takes XRGB8888, what the GPU path converts into.
    auto found = kms::find_output(*screen, shown_fourcc, shown_modifier);
    const bool gpu = !found && !options.copy;
    if (gpu) {
        auto rgb = kms::find_output(*screen, fourcc::XRGB8888, modifier::linear);
        if (!rgb)
            return fail("--display", "display (" + screen->driver() + ")",
                        rgb.error().with_context(found.error().message() + "; and for the GPU path's output"));
        found = std::move(rgb);
    }
    if (!found) return fail("--display", "display (" + screen->driver() + ")", found.error());
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
        return fail("--display", "display",
                    Error::library(Errc::unsupported, "connector " + std::to_string(output.connector) + " has no " +
                                                          std::to_string(options.width) + "x" +
                                                          std::to_string(options.height) +
                                                          " mode with a primary plane taking the format"));
    std::printf("camera_zero_copy --display: %s, %s %ux%u, mode %s at %.2f Hz, CRTC %u, plane %u, %s\n",
                screen->driver().c_str(), fourcc_to_string(first.fourcc).c_str(), options.width, options.height,
                output.mode.name.c_str(), output.mode.refresh_mhz() / 1000.0, output.crtc, output.primary,
                options.copy ? "CPU copy into scan-out buffers"
                : gpu        ? "Vulkan conversion into XRGB8888 scan-out images"
                             : "direct scan-out of the camera's buffers");
    // Creating a Vulkan device under emulation takes seconds.
    std::unique_ptr<GpuPath> gpu_path;
    if (gpu) {
        auto made = GpuPath::create(options.width, options.height, options.validate);
        if (!made) return fail("--display", "GPU path", made.error());
        gpu_path = std::move(*made);
    }

    // --copy: three scan-out buffers the CPU copies each frame into (one on screen, one whose
    // replacement is in flight, one being written).
    auto memory = UdmabufAllocator::open();
    if (!memory) return fail("--display", "udmabuf", memory.error());
    std::vector<BufferDesc> copies;
    for (int i = 0; options.copy && i < 3; ++i) {
        ImageRequest r{options.width, options.height, fourcc::XRGB8888, {}, "camera-copy"};
        auto target = memory->allocate(r);
        if (!target) return fail("--display", "scan-out buffer", target.error());
        copies.push_back(std::move(*target));
    }

    auto consumer = source->start_local();
    if (!consumer) return fail("--display", "camera start", consumer.error());
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
        if (!frame) return fail("--display", "frame " + std::to_string(n), frame.error());
        const BufferDesc* shown = frame->desc;
        if (options.copy) {
            const BufferDesc& target = copies[n % copies.size()];
            if (auto done = cpu_copy(*frame->desc, target, options.width * 4); !done)
                return fail("--display", "frame " + std::to_string(n) + ": copy", done.error());
            copied_bytes += std::uint64_t{options.width} * 4 * options.height;
            if (auto back = consumer->release(frame->buffer); !back) return fail("--display", "release", back.error());
            shown = &target;
        }
        std::optional<SyncFile> converted;  // the GPU path: the conversion's fence holds the flip
        if (gpu) {
            const auto slot = static_cast<std::uint32_t>(n % 3);
            if (auto done = gpu_path->convert(*frame, slot); !done)
                return fail("--display", "frame " + std::to_string(n) + ": convert", done.error());
            shown = &gpu_path->desc(slot);
            auto fence = shown->planes[0].buffer.export_sync_file(Access::read);
            if (!fence) return fail("--display", "frame " + std::to_string(n) + ": conversion fence", fence.error());
            converted = std::move(*fence);
        }
        auto fb = framebuffers.get(*shown);
        if (!fb) return fail("--display", "frame " + std::to_string(n) + ": framebuffer", fb.error());
        kms::Commit commit(*screen);
        commit.show(output.primary, output.crtc, **fb, {}, {}, converted ? &*converted : nullptr);
        if (n == 0) {
            commit.set_mode(output.crtc, output.connector, output.mode);
            if (auto done = commit.apply(true); !done) return fail("--display", "mode set", done.error());
        } else {
            auto flip = commit.flip();
            if (!flip) return fail("--display", "frame " + std::to_string(n) + ": flip", flip.error());
            if (auto done = wait_for_flip(*screen, flip->id); !done)
                return fail("--display", "frame " + std::to_string(n), done.error());
            ++flips;
        }
        last_shown = shown;
        if (!options.copy) {
            // The buffer this flip replaced is off screen now: back to the camera.
            if (on_screen)
                if (auto back = consumer->release(on_screen->buffer); !back)
                    return fail("--display", "release", back.error());
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
        if (!gbm) return fail("--display", "--check: GBM on " + screen->path(), gbm.error());
        auto picture = kms::capture(*screen, output, *gbm, fourcc::XRGB8888, 10s);
        if (!picture) return fail("--display", "writeback capture", picture.error());
        auto differ = count_differing(picture->picture, *last_shown);
        if (!differ) return fail("--display", "check", differ.error());
        const std::uint64_t total = std::uint64_t{options.width} * options.height;
        std::printf("check: %" PRIu64 "/%" PRIu64 " pixels of the screen match the last camera frame (writeback)\n",
                    total - *differ, total);
        if (*differ != 0) status = 1;
        if (gpu && on_screen) {
            auto wrong = count_misconverted(*on_screen->desc, *last_shown);
            if (!wrong) return fail("--display", "check", wrong.error());
            std::printf("check: %" PRIu64 "/%" PRIu64 " pixels of the scan-out image match the CPU conversion of the "
                        "last camera frame\n",
                        total - *wrong, total);
            if (*wrong != 0) status = 1;
        }
    }
    if (gpu_path && options.validate) {
        const auto messages = gpu_path->validation_messages();
        for (const auto& m : messages) std::fprintf(stderr, "validation: %s\n", m.c_str());
        std::printf("validation: %zu messages\n", messages.size());
        if (!messages.empty()) status = 1;
    }
    kms::Commit off(*screen);
    off.hide(output.primary).detach(output.connector).disable_crtc(output.crtc);
    if (auto done = off.apply(true); !done) return fail("--display", "turn off", done.error());
    if (on_screen)
        if (auto back = consumer->release(on_screen->buffer); !back) return fail("--display", "release", back.error());
    if (auto stopped = source->stop(); !stopped) return fail("--display", "camera stop", stopped.error());
    return status;
}

}  // namespace camera
