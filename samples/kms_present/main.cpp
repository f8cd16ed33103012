// SPDX-License-Identifier: MIT
// kms_present: a Vulkan animation on a display plane, zero copy, with fences and page-flip events.
//
// A Vulkan device (lavapipe in the VM) exports three 256x256 images as dma-bufs and renders each
// frame's pattern into the next of them with a compute shader. The display takes the images
// through a kms::FramebufferCache (one framebuffer per image, made once, found again from new
// fds every frame) and shows each frame on an overlay plane that moves across a background,
// with a non-blocking page flip whose IN_FENCE_FD is the render's release fence (the dma-buf's
// write fence, exported as a sync_file): the display waits for the GPU, the CPU does not. The
// loop paces itself by the flips' completion events, read from the one fd a real event loop
// would poll. An image is rendered into again only after the flip that replaced it on screen
// completed (three images: it left the screen two flips ago).
//
//   kms_present [--card PATH] [--frames N] [--vulkan-device NAME] [--validate] [--check]
//
// --check captures the last frame through the device's writeback connector (vkms has one) into
// a buffer made on the display device itself and compares every pixel with the expected
// picture. Exits 0 when every flip completed in order (and, with --check, every pixel matched).

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <poll.h>

#include <vulkan/vulkan_core.h>

#include <dmabridge/alloc/gbm_allocator.hpp>
#include <dmabridge/alloc/udmabuf.hpp>
#include <dmabridge/base/result.hpp>
#include <dmabridge/format/buffer_desc.hpp>
#include <dmabridge/format/fourcc.hpp>
#include <dmabridge/kernel/cpu_access.hpp>
#include <dmabridge/kms/commit.hpp>
#include <dmabridge/kms/device.hpp>
#include <dmabridge/kms/framebuffer_cache.hpp>
#include <dmabridge/kms/output.hpp>
#include <dmabridge/vulkan/context.hpp>
#include <dmabridge/vulkan/device.hpp>
#include <dmabridge/vulkan/sync_bridge.hpp>

#include <dmabridge_shaders/fill_pattern.hpp>

#include "vulkan_compute.hpp"

namespace {

namespace kms = dmabridge::kms;
namespace vulkan = dmabridge::vulkan;
using dmabridge::BufferDesc;
using dmabridge::Error;
using dmabridge::Result;
using support::ComputePipeline;
using support::DeviceFunctions;
using support::ImageView;

constexpr std::uint32_t image_size = 256;
constexpr std::size_t ring_size = 3;
constexpr std::uint32_t background_rgb = 0x203040;
// The display reads the images as XRGB8888 (bytes B, G, R, X), the format every KMS plane
// takes; the shader writes rgba8 (bytes R, G, B, A): the same 32-bit texel, so the image is
// created with that format over the XRGB8888 layout. Red and blue trade places on screen.
constexpr std::uint32_t image_fourcc = dmabridge::fourcc::XRGB8888;
constexpr VkFormat shader_format = VK_FORMAT_R8G8B8A8_UNORM;

struct CommandLine {
    std::string card;           // empty: the first device with atomic modesetting
    std::uint32_t frames = 60;
    std::string vulkan_device;  // empty: the first that can share dma-bufs
    bool validate = false;
    bool check = false;
};

void print_usage(std::FILE* to) {
    std::fprintf(to,
                 "usage: kms_present [--card PATH] [--frames N] [--vulkan-device NAME] [--validate] [--check]\n"
                 "  --card PATH           the display's primary node (default: the first with atomic modesetting)\n"
                 "  --frames N            frames to show (default 60)\n"
                 "  --vulkan-device NAME  a Vulkan device whose name contains NAME (e.g. llvmpipe)\n"
                 "  --validate            enable VK_LAYER_KHRONOS_validation; any message fails the run\n"
                 "  --check               capture the last frame through writeback and compare every pixel\n");
}

std::optional<CommandLine> parse_command_line(int argc, char** argv) {
    CommandLine cl;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        const bool has_value = i + 1 < argc;
        if (arg == "--validate") {
            cl.validate = true;
        } else if (arg == "--check") {
            cl.check = true;
        } else if (arg == "--card" && has_value) {
            cl.card = argv[++i];
        } else if (arg == "--vulkan-device" && has_value) {
            cl.vulkan_device = argv[++i];
        } else if (arg == "--frames" && has_value) {
            char* end = nullptr;
            const unsigned long n = std::strtoul(argv[++i], &end, 10);
            if (*end != '\0' || n < 1 || n > 100000) {
                std::fprintf(stderr, "kms_present: --frames takes 1 to 100000\n");
                return std::nullopt;
            }
            cl.frames = static_cast<std::uint32_t>(n);
        } else {
            std::fprintf(stderr, "kms_present: unexpected argument '%s'\n", arg.c_str());
            return std::nullopt;
        }
    }
    return cl;
}

int fail(const std::string& where, const Error& error) {
    std::fprintf(stderr, "kms_present: %s: %s\n", where.c_str(), error.message().c_str());
    return 1;
}

// Validation messages, counted; the layer calls back from whichever thread made the call.
class ValidationLog {
public:
    void on_message(const std::string& message) {
        std::lock_guard lock(mutex_);
        // The one known layer false positive (see samples/vk_share): features 0x0 reported for
        // DRM-modifier tiling because lavapipe leaves the v2 modifier list empty.
        if (message.find("VkFormatFeatureFlags (0x0) does not support required feature") != std::string::npos &&
            message.find("VK_IMAGE_TILING_DRM_FORMAT_MODIFIER_EXT") != std::string::npos)
            return;
        ++messages_;
        std::fprintf(stderr, "kms_present: validation: %s\n", message.c_str());
    }
    int messages() const {
        std::lock_guard lock(mutex_);
        return messages_;
    }

private:
    mutable std::mutex mutex_;
    int messages_ = 0;
};

// The display: a connected output (kms::find_output) whose CRTC has a primary and an overlay
// plane taking XRGB8888 LINEAR; the animation drifts over the overlay.
Result<kms::Output> find_display(const kms::Device& d) {
    auto o = kms::find_output(d, image_fourcc, dmabridge::modifier::linear);
    if (!o) return o.error();
    if (!o->primary || o->overlays.empty())
        return Error::library(dmabridge::Errc::not_found, "CRTC " + std::to_string(o->crtc) +
                                                              " has no primary and overlay plane taking XR24 LINEAR");
    if (o->mode.hdisplay < image_size || o->mode.vdisplay < image_size)
        return Error::library(dmabridge::Errc::unsupported, "mode " + o->mode.name + " is smaller than the 256x256 animation");
    return o;
}

// Where frame `frame`'s image goes on screen: it drifts right and down, wrapping.
kms::Rect placement(const kms::Output& o, std::uint32_t frame) {
    const std::uint32_t span_x = o.mode.hdisplay - image_size, span_y = o.mode.vdisplay - image_size;
    return {static_cast<std::int32_t>(span_x ? (frame * 8) % span_x : 0),
            static_cast<std::int32_t>(span_y ? (frame * 4) % span_y : 0), image_size, image_size};
}

// The RGB the display shows for pixel (x, y) of frame `frame` (shaders/pattern.glsl, read back
// as XRGB8888: the shader's red lands in the blue byte and its blue in the red byte).
std::uint32_t expected_rgb(std::uint32_t x, std::uint32_t y, std::uint32_t frame) {
    const std::uint32_t r = (x + 61u * frame) & 255u, g = (y + 97u * frame) & 255u, b = (x ^ y ^ (29u * frame)) & 255u;
    return b << 16 | g << 8 | r;
}

// Device side: three exported images and a fill pipeline per image.
class Renderer {
public:
    static Result<Renderer> create(const vulkan::Context& context) {
        Renderer r;
        r.context_ = &context;
        auto vk = DeviceFunctions::load(context);
        if (!vk) return vk.error();
        r.vk_ = *vk;
        for (std::size_t i = 0; i < ring_size; ++i) {
            dmabridge::ImageRequest request;
            request.width = image_size;
            request.height = image_size;
            request.fourcc = image_fourcc;
            request.modifiers = {dmabridge::modifier::linear};  // what every plane takes
            request.name = "kms_present";
            vulkan::ImageOptions options;
            options.usage = VK_IMAGE_USAGE_STORAGE_BIT;
            options.format = shader_format;
            auto exported = context.device().export_image(request, options);
            if (!exported) return exported.error().with_context("export image " + std::to_string(i));
            Slot slot;
            slot.exported = std::move(*exported);
            auto view = support::make_storage_view(r.vk_, slot.exported.image.handle(), shader_format);
            if (!view) return view.error();
            slot.view = std::move(*view);
            const VkDescriptorType bindings[] = {VK_DESCRIPTOR_TYPE_STORAGE_IMAGE};
            auto pipeline = ComputePipeline::create(r.vk_, "fill_pattern", dmabridge::shaders::fill_pattern, bindings,
                                                    sizeof(std::uint32_t));
            if (!pipeline) return pipeline.error();
            slot.pipeline = std::move(*pipeline);
            slot.pipeline.set_storage_image(0, slot.view.get());
            r.slots_.push_back(std::move(slot));
        }
        return r;
    }

    const BufferDesc& desc(std::size_t slot) const { return slots_.at(slot).exported.desc; }

    /// Queues frame `frame` into image `slot`: the submit waits (on the GPU) for the image's
    /// fences and its completion becomes the dma-buf's write fence (SyncBridge::publish). The
    /// caller makes sure the display no longer shows the image.
    dmabridge::Status render(std::size_t index, std::uint32_t frame, vulkan::SyncBridge& bridge) {
        Slot& slot = slots_.at(index);
        // The previous render into this image completed long ago (its flip completed since).
        slot.work.reset();
        const vulkan::ImageUse write{VK_IMAGE_LAYOUT_GENERAL, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                                     VK_ACCESS_SHADER_WRITE_BIT};
        Work work;
        auto acquire = bridge.acquire_image(slot.exported.desc, slot.exported.image, dmabridge::Access::write, write,
                                            VK_IMAGE_LAYOUT_UNDEFINED);  // every pixel is rewritten
        if (!acquire) return acquire.error().with_context("acquire");
        work.acquire = std::move(*acquire);
        auto release = bridge.prepare_release_image(slot.exported.image, write, {&work.acquire});
        if (!release) return release.error().with_context("release");
        work.release = std::move(*release);
        const auto push = std::as_bytes(std::span(&frame, 1));
        auto submitted = context_->submit_async(
            [&](VkCommandBuffer cmd) {
                vk_.CmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, 0,
                                       0, nullptr, 0, nullptr, 1, &work.acquire.image_barrier);
                slot.pipeline.record_dispatch(cmd, push, image_size, image_size);
                // To the foreign queue family in GENERAL: the display reads the memory next.
                vk_.CmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT,
                                       0, 0, nullptr, 0, nullptr, 1, &work.release.image_barrier);
            },
            {{work.acquire.semaphore.handle()}, {work.acquire.wait_stage}, {work.release.semaphore.handle()}});
        if (!submitted) return submitted.error().with_context("submit");
        work.submission = std::move(*submitted);
        if (auto published = bridge.publish(work.release, slot.exported.desc, dmabridge::Access::write,
                                            work.submission.fence());
            !published)
            return published.error().with_context("publish");
        slot.work = std::move(work);
        return {};
    }

private:
    struct Work {
        vulkan::Acquire acquire;
        vulkan::Release release;
        vulkan::Submission submission;  // its destructor waits for the work
    };
    struct Slot {
        vulkan::ExportedImage exported;  // before view: the view goes first
        ImageView view;
        ComputePipeline pipeline;
        std::optional<Work> work;
    };
    Renderer() = default;
    const vulkan::Context* context_ = nullptr;
    DeviceFunctions vk_;
    std::vector<Slot> slots_;
};

// A background for the primary plane, filled once by the CPU.
Result<BufferDesc> make_background(const kms::Output& o) {
    auto alloc = dmabridge::UdmabufAllocator::open();
    if (!alloc) return alloc.error();
    dmabridge::ImageRequest r;
    r.width = o.mode.hdisplay;
    r.height = o.mode.vdisplay;
    r.fourcc = image_fourcc;
    r.name = "kms_present-bg";
    auto desc = alloc->allocate(r);
    if (!desc) return desc.error();
    const auto& plane = desc->planes[0];
    auto map = dmabridge::Mapping::map(plane.buffer, dmabridge::Access::write);
    if (!map) return map.error();
    auto cpu = dmabridge::CpuAccess::begin(plane.buffer, dmabridge::Access::write);
    if (!cpu) return cpu.error();
    for (std::uint32_t y = 0; y < r.height; ++y) {
        auto* row = reinterpret_cast<std::uint32_t*>(map->data() + plane.offset + y * plane.stride);
        for (std::uint32_t x = 0; x < r.width; ++x) row[x] = 0xff000000u | background_rgb;
    }
    if (auto done = cpu->end(); !done) return done.error();
    return std::move(*desc);
}

// Captures what the CRTC shows through writeback (kms::capture) into a buffer made on the
// display device itself (GBM on its node) and counts the pixels that differ from the expected
// last frame.
Result<std::uint64_t> check_last_frame(const kms::Device& d, const kms::Output& o, std::uint32_t frame) {
    auto gbm = dmabridge::GbmAllocator::open(d.path());
    if (!gbm) return gbm.error().with_context("--check: GBM on " + d.path());
    auto captured = kms::capture(d, o, *gbm, image_fourcc, std::chrono::seconds(10));
    if (!captured) return captured.error().with_context("--check");
    const auto& plane = captured->picture.planes[0];
    auto map = dmabridge::Mapping::map(plane.buffer, dmabridge::Access::read);
    if (!map) return map.error();
    auto cpu = dmabridge::CpuAccess::begin(plane.buffer, dmabridge::Access::read);
    if (!cpu) return cpu.error();
    const kms::Rect at = placement(o, frame);
    std::uint64_t differ = 0;
    for (std::uint32_t y = 0; y < o.mode.vdisplay; ++y) {
        const auto* row = reinterpret_cast<const std::uint32_t*>(map->data() + plane.offset + y * plane.stride);
        for (std::uint32_t x = 0; x < o.mode.hdisplay; ++x) {
            const bool inside = x >= std::uint32_t(at.x) && x < at.x + image_size && y >= std::uint32_t(at.y) &&
                                y < at.y + image_size;
            const std::uint32_t want = inside ? expected_rgb(x - at.x, y - at.y, frame) : background_rgb;
            differ += (row[x] & 0xffffffu) != want;
        }
    }
    if (auto done = cpu->end(); !done) return done.error();
    return differ;
}

int run(const CommandLine& cl, ValidationLog& log) {
    auto display = kms::Device::open(cl.card);
    if (!display) return fail("display", display.error());
    auto output = find_display(*display);
    if (!output) return fail("display (" + display->driver() + ")", output.error());
    const kms::Output& o = *output;
    const std::uint32_t overlay = o.overlays.front();
    std::printf("kms_present: %s, mode %s at %.3f Hz, CRTC %u, overlay plane %u\n", display->driver().c_str(),
                o.mode.name.c_str(), o.mode.refresh_mhz() / 1000.0, o.crtc, overlay);

    // Creating a device under emulation takes seconds: say what is happening.
    std::printf("kms_present: creating the Vulkan device\n");
    vulkan::ContextOptions options;
    options.device_name = cl.vulkan_device;
    options.validation = cl.validate;
    if (cl.validate) options.on_validation_message = [&log](const std::string& m) { log.on_message(m); };
    auto context = vulkan::Context::create(options);
    if (!context) return fail("vulkan", context.error());
    auto renderer = Renderer::create(*context);
    if (!renderer) return fail("vulkan (" + context->device().name() + ")", renderer.error());
    auto bridge = vulkan::SyncBridge::create(context->device());
    if (!bridge) return fail("sync bridge", bridge.error());

    auto background_desc = make_background(o);
    if (!background_desc) return fail("background", background_desc.error());
    auto background = display->add_framebuffer(*background_desc);
    if (!background) return fail("background", background.error());
    kms::FramebufferCache framebuffers(*display);

    // The first frame goes up with the mode set (blocking); every later one is a flip.
    std::vector<std::uint32_t> sequences;
    std::uint32_t frame = 1;
    const auto start = std::chrono::steady_clock::now();
    for (; frame <= cl.frames; ++frame) {
        const std::size_t slot = frame % ring_size;
        if (auto rendered = renderer->render(slot, frame, *bridge); !rendered)
            return fail("frame " + std::to_string(frame) + ": render", rendered.error());
        // The image arrives as new fds, as from another process or a camera's DQBUF: the cache
        // finds its framebuffer by the buffer's identity.
        auto received = renderer->desc(slot).dup();
        if (!received) return fail("dup", received.error());
        auto fb = framebuffers.get(*received);
        if (!fb) return fail("frame " + std::to_string(frame) + ": framebuffer", fb.error());
        // The render's release fence (the dma-buf's writers) holds the flip until the GPU is done.
        auto gpu_done = received->planes[0].buffer.export_sync_file(dmabridge::Access::read);
        if (!gpu_done) return fail("frame " + std::to_string(frame) + ": release fence", gpu_done.error());
        kms::Commit commit(*display);
        commit.show(overlay, o.crtc, **fb, {}, placement(o, frame), &*gpu_done);
        if (frame == 1) {
            commit.set_mode(o.crtc, o.connector, o.mode).show(o.primary, o.crtc, *background);
            if (auto done = commit.apply(true); !done) return fail("mode set", done.error());
            continue;
        }
        auto flip = commit.flip();
        if (!flip) return fail("frame " + std::to_string(frame) + ": flip", flip.error());
        // The event loop: poll the device's fd, dispatch, until this flip's event came.
        for (bool completed = false; !completed;) {
            pollfd p{display->fd(), POLLIN, 0};
            if (::poll(&p, 1, 2000) <= 0)
                return fail("frame " + std::to_string(frame),
                            Error::library(dmabridge::Errc::unsupported, "no page-flip event within 2 s"));
            auto events = display->dispatch_events();
            if (!events) return fail("events", events.error());
            for (const auto& e : *events)
                if (e.flip == flip->id) {
                    completed = true;
                    sequences.push_back(e.sequence);
                }
        }
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const std::uint32_t last = cl.frames;
    bool ok = true;
    for (std::size_t i = 1; i < sequences.size(); ++i) ok = ok && sequences[i] > sequences[i - 1];
    const auto stats = framebuffers.stats();
    std::printf("kms_present: %u frames in %.2f s (%.1f frames/s), %zu flips with events%s; framebuffer cache: "
                "%" PRIu64 " misses, %" PRIu64 " hits\n",
                cl.frames, seconds, cl.frames / seconds, sequences.size(),
                ok ? ", vblank sequence rising" : ", vblank sequence NOT rising", stats.misses, stats.hits);
    ok = ok && stats.misses == std::min<std::uint64_t>(ring_size, cl.frames);
    if (cl.check) {
        auto differ = check_last_frame(*display, o, last);
        if (!differ) return fail("check", differ.error());
        const std::uint64_t total = std::uint64_t{o.mode.hdisplay} * o.mode.vdisplay;
        std::printf("check: %" PRIu64 "/%" PRIu64 " pixels of the last frame match (writeback)\n", total - *differ, total);
        ok = ok && *differ == 0;
    }
    kms::Commit off(*display);
    off.hide(overlay).hide(o.primary).detach(o.connector).disable_crtc(o.crtc);
    if (auto done = off.apply(true); !done) return fail("turn off", done.error());
    return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    for (int i = 1; i < argc; ++i)
        if (std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "-h") == 0) {
            print_usage(stdout);
            return 0;
        }
    const auto cl = parse_command_line(argc, argv);
    if (!cl) {
        print_usage(stderr);
        return 2;
    }
    ValidationLog log;
    int status = run(*cl, log);
    if (cl->validate) {
        std::printf("validation: %d messages\n", log.messages());
        if (log.messages() > 0) status = 1;
    }
    return status;
}
