// SPDX-License-Identifier: MIT
// wayland_present: a Vulkan compute shader renders an animated pattern into exported images,
// which a Wayland compositor shows with no copy.
//
// The formats both sides can do are negotiated (the device's exportable (fourcc, modifier)
// pairs against the compositor's linux-dmabuf formats), a ring of images is exported once and
// each becomes a wl_buffer once (create_immed). Per frame: take a buffer the compositor has
// released (the Surface has put the compositor's release fence on its dma-bufs), fill it with
// frame N's pattern on the GPU (whose acquire waits for the dma-bufs' fences), publish the
// rendering's fence on the dma-bufs through the SyncBridge and present: the Surface hands the
// fence to the compositor on the dma-bufs (implicit sync), with the commit (explicit sync) or as
// a timeline point with the commit (syncobj: the buffer then comes back when its release point
// signals).
// Nothing waits on the CPU but the compositor's releases.
//
//   wayland_present [--frames N] [--size WxH] [--buffers N] [--sync implicit|explicit|syncobj|auto]
//                   [--display NAME] [--device NAME] [--hold]
//
// Exits 0 after presenting N frames (default 60) to $WAYLAND_DISPLAY (or --display). With
// --hold, the last frame stays on screen (events still dispatched) until stdin is closed: a test
// captures the compositor's output meanwhile. Frame N shows pattern_texel(x, y, N) of
// shaders/pattern.glsl.

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <poll.h>
#include <unistd.h>

#include <vulkan/vulkan_core.h>

#include <dmabridge/base/result.hpp>
#include <dmabridge/format/fourcc.hpp>
#include <dmabridge/vulkan/context.hpp>
#include <dmabridge/vulkan/device.hpp>
#include <dmabridge/vulkan/sync_bridge.hpp>
#include <dmabridge/wayland/display.hpp>
#include <dmabridge/wayland/surface.hpp>

#include <dmabridge_shaders/fill_pattern.hpp>

#include "vulkan_compute.hpp"

namespace {

namespace vulkan = dmabridge::vulkan;
namespace wayland = dmabridge::wayland;
using dmabridge::Error;
using dmabridge::Result;
using dmabridge::Status;

// XBGR8888 is R, G, B, X in memory: what the shader's rgba8 image writes (alpha ignored).
constexpr std::uint32_t image_fourcc = dmabridge::fourcc::XBGR8888;
constexpr VkFormat image_format = VK_FORMAT_R8G8B8A8_UNORM;

struct CommandLine {
    std::uint32_t frames = 60;
    std::uint32_t width = 256, height = 256;
    std::uint32_t buffers = 3;
    wayland::PresentSync sync = wayland::PresentSync::automatic;
    std::string display;
    std::string device;
    bool hold = false;
};

void print_usage() {
    std::fprintf(stderr,
                 "usage: wayland_present [--frames N] [--size WxH] [--buffers N] [--sync implicit|explicit|syncobj|auto]\n"
                 "                       [--display NAME] [--device NAME] [--hold]\n");
}

std::optional<std::uint32_t> parse_number(const char* text, std::uint32_t min, std::uint32_t max) {
    char* end = nullptr;
    errno = 0;
    const unsigned long v = std::strtoul(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v < min || v > max) return std::nullopt;
    return static_cast<std::uint32_t>(v);
}

std::optional<CommandLine> parse_command_line(int argc, char** argv) {
    CommandLine cl;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        const char* value = i + 1 < argc ? argv[i + 1] : nullptr;
        auto need = [&]() -> bool {
            if (value == nullptr) std::fprintf(stderr, "wayland_present: %s needs a value\n", arg.c_str());
            ++i;
            return value != nullptr;
        };
        if (arg == "--frames") {
            if (!need()) return std::nullopt;
            auto n = parse_number(value, 1, 1000000);
            if (!n) return std::fprintf(stderr, "wayland_present: bad --frames '%s'\n", value), std::nullopt;
            cl.frames = *n;
        } else if (arg == "--buffers") {
            if (!need()) return std::nullopt;
            auto n = parse_number(value, 2, 8);
            if (!n) return std::fprintf(stderr, "wayland_present: --buffers takes 2 to 8\n"), std::nullopt;
            cl.buffers = *n;
        } else if (arg == "--size") {
            if (!need()) return std::nullopt;
            const std::string s = value;
            const auto x = s.find('x');
            auto w = x == std::string::npos ? std::nullopt : parse_number(s.substr(0, x).c_str(), 1, 4096);
            auto h = x == std::string::npos ? std::nullopt : parse_number(s.substr(x + 1).c_str(), 1, 4096);
            if (!w || !h) return std::fprintf(stderr, "wayland_present: bad --size '%s'\n", value), std::nullopt;
            cl.width = *w;
            cl.height = *h;
        } else if (arg == "--sync") {
            if (!need()) return std::nullopt;
            const std::string s = value;
            if (s == "implicit") cl.sync = wayland::PresentSync::implicit;
            else if (s == "explicit") cl.sync = wayland::PresentSync::explicit_fences;
            else if (s == "syncobj") cl.sync = wayland::PresentSync::syncobj;
            else if (s == "auto") cl.sync = wayland::PresentSync::automatic;
            else return std::fprintf(stderr, "wayland_present: bad --sync '%s'\n", value), std::nullopt;
        } else if (arg == "--display") {
            if (!need()) return std::nullopt;
            cl.display = value;
        } else if (arg == "--hold") {
            cl.hold = true;
        } else if (arg == "--device") {
            if (!need()) return std::nullopt;
            cl.device = value;
        } else {
            std::fprintf(stderr, "wayland_present: unexpected argument '%s'\n", arg.c_str());
            return std::nullopt;
        }
    }
    return cl;
}

// One buffer of the ring: the exported image, its storage view and its last GPU work.
struct RingImage {
    vulkan::Image image;
    support::ImageView view;
    std::optional<vulkan::Acquire> acquire;
    std::optional<vulkan::Release> release;
    vulkan::Submission submission;
};

class Presenter {
public:
    static Result<Presenter> create(const CommandLine& cl) {
        Presenter p;
        p.cl_ = cl;
        vulkan::ContextOptions context_options;
        context_options.device_name = cl.device;
        auto context = vulkan::Context::create(context_options);
        if (!context) return context.error().with_context("Vulkan");
        p.context_ = std::make_unique<vulkan::Context>(std::move(*context));
        auto vk = support::DeviceFunctions::load(*p.context_);
        if (!vk) return vk.error();
        p.vk_ = *vk;
        auto bridge = vulkan::SyncBridge::create(p.context_->device());
        if (!bridge) return bridge.error();
        p.bridge_ = std::make_unique<vulkan::SyncBridge>(std::move(*bridge));

        wayland::DisplayOptions display_options;
        display_options.name = cl.display;
        auto display = wayland::Display::connect(display_options);
        if (!display) return display.error();
        p.display_ = std::make_unique<wayland::Display>(std::move(*display));

        vulkan::ImageOptions image_options;
        image_options.usage = VK_IMAGE_USAGE_STORAGE_BIT | VK_IMAGE_USAGE_TRANSFER_SRC_BIT;
        image_options.format = image_format;
        auto common = p.display_->negotiate(p.context_->device().exportable_formats(image_options));
        if (!common) return common.error();
        if (!common->contains(image_fourcc, dmabridge::modifier::linear))
            return Error::library(dmabridge::Errc::unsupported,
                                  "XBGR8888 LINEAR is not among the " + std::to_string(common->size()) +
                                      " (fourcc, modifier) pairs both the device and the compositor can do");
        std::printf("wayland_present: device \"%s\", linux-dmabuf v%u, %zu pairs in common, explicit sync %s, "
                    "syncobj %s\n",
                    p.context_->device().name().c_str(), p.display_->dmabuf_version(), common->size(),
                    p.display_->explicit_sync() ? "offered" : "not offered",
                    p.display_->syncobj() ? "usable" : p.display_->syncobj_unavailable().c_str());

        wayland::SurfaceOptions surface_options;
        surface_options.title = "wayland_present";
        surface_options.app_id = "dmabridge.wayland_present";
        surface_options.sync = cl.sync;
        auto surface = p.display_->create_surface(surface_options);
        if (!surface) return surface.error();
        p.surface_ = std::make_unique<wayland::Surface>(std::move(*surface));
        std::printf("wayland_present: %s sync: %s\n", wayland::to_string(p.surface_->sync()),
                    p.surface_->sync_reason().c_str());

        const VkDescriptorType bindings[] = {VK_DESCRIPTOR_TYPE_STORAGE_IMAGE};
        auto pipeline = support::ComputePipeline::create(p.vk_, "fill_pattern", dmabridge::shaders::fill_pattern,
                                                        bindings, sizeof(std::uint32_t), cl.buffers);
        if (!pipeline) return pipeline.error();
        p.pipeline_ = std::make_unique<support::ComputePipeline>(std::move(*pipeline));

        for (std::uint32_t i = 0; i < cl.buffers; ++i) {
            dmabridge::ImageRequest request;
            request.width = cl.width;
            request.height = cl.height;
            request.fourcc = image_fourcc;
            request.modifiers = {dmabridge::modifier::linear};
            request.name = "wayland_present";
            auto exported = p.context_->device().export_image(request, image_options);
            if (!exported) return exported.error().with_context("export image " + std::to_string(i));
            RingImage ring;
            ring.image = std::move(exported->image);
            auto view = support::make_storage_view(p.vk_, ring.image.handle(), image_format);
            if (!view) return view.error();
            ring.view = std::move(*view);
            p.pipeline_->set_storage_image(0, ring.view.get(), i);
            auto id = p.surface_->add_buffer(std::move(exported->desc));
            if (!id) return id.error();
            if (*id != i) return Error::library(dmabridge::Errc::invalid_argument, "unexpected buffer id");
            p.ring_.push_back(std::move(ring));
        }
        return p;
    }

    // Renders frame `frame` into a released buffer and presents it.
    Status frame(std::uint32_t frame) {
        auto id = surface_->acquire_free(std::chrono::seconds(30));
        if (!id) return id.error();
        RingImage& ring = ring_[*id];
        const dmabridge::BufferDesc& desc = *surface_->buffer(*id);
        if (!ring.submission.done()) {  // the buffer's previous rendering: long done, as it was shown
            if (auto waited = ring.submission.wait(); !waited) return waited.error();
        }
        // The compositor's release fence, if any, is already on the buffer's dma-bufs (the
        // Surface put it there): the write acquire below makes the GPU wait for it.
        const vulkan::ImageUse write{VK_IMAGE_LAYOUT_GENERAL, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                                     VK_ACCESS_SHADER_WRITE_BIT};
        auto acquire = bridge_->acquire_image(desc, ring.image, dmabridge::Access::write, write,
                                              VK_IMAGE_LAYOUT_UNDEFINED);
        if (!acquire) return acquire.error().with_context("acquire");
        ring.acquire = std::move(*acquire);
        auto release = bridge_->prepare_release_image(ring.image, write, {&*ring.acquire});
        if (!release) return release.error().with_context("release");
        ring.release = std::move(*release);
        const auto index = *id;
        auto submitted = context_->submit_async(
            [&](VkCommandBuffer cmd) {
                vk_.CmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, 0,
                                       0, nullptr, 0, nullptr, 1, &ring.acquire->image_barrier);
                pipeline_->record_dispatch(cmd, std::as_bytes(std::span(&frame, 1)), cl_.width, cl_.height, index);
                // To the foreign queue family in GENERAL: the compositor reads it next.
                vk_.CmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT,
                                       0, 0, nullptr, 0, nullptr, 1, &ring.release->image_barrier);
            },
            {{ring.acquire->semaphore.handle()}, {ring.acquire->wait_stage}, {ring.release->semaphore.handle()}});
        if (!submitted) return submitted.error().with_context("submit");
        ring.submission = std::move(*submitted);
        // The rendering's completion becomes the dma-bufs' write fence; present() hands it to the
        // compositor there (implicit sync) or exports it from them for the commit (explicit).
        if (auto r = bridge_->publish(*ring.release, desc, dmabridge::Access::write, ring.submission.fence()); !r)
            return r.error().with_context("publish");
        return surface_->present(*id);
    }

    // Waits until the compositor has processed every commit, then for the GPU's last work.
    Status finish() {
        if (auto r = display_->roundtrip(); !r) return r;
        for (auto& ring : ring_) {
            if (ring.submission.done()) continue;
            if (auto w = ring.submission.wait(); !w) return w.error();
        }
        return {};
    }

    // Keeps the window (answering the compositor's events) until stdin reaches its end.
    Status hold() {
        for (;;) {
            // release_fd() is -1 unless the Surface presents with syncobj timelines (poll skips it).
            pollfd fds[3] = {{STDIN_FILENO, POLLIN, 0}, {display_->fd(), POLLIN, 0}, {display_->release_fd(), POLLIN, 0}};
            if (::poll(fds, 3, -1) < 0) {
                if (errno == EINTR) continue;
                return Error::from_errno(errno, "poll stdin and the display");
            }
            if (fds[1].revents != 0 || fds[2].revents != 0) {
                if (auto r = display_->dispatch(std::chrono::milliseconds(0)); !r) return r.error();
            }
            if (fds[0].revents != 0) {
                char buf[256];
                const ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
                if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) return {};
            }
        }
    }

    const wayland::Surface& surface() const { return *surface_; }
    wayland::PresentSync sync() const { return surface_->sync(); }

private:
    Presenter() = default;
    CommandLine cl_;
    std::unique_ptr<vulkan::Context> context_;
    support::DeviceFunctions vk_;
    std::unique_ptr<vulkan::SyncBridge> bridge_;
    std::unique_ptr<wayland::Display> display_;
    std::unique_ptr<wayland::Surface> surface_;
    std::unique_ptr<support::ComputePipeline> pipeline_;
    std::vector<RingImage> ring_;  // after pipeline_: the views go before the descriptor sets
};

}  // namespace

int main(int argc, char** argv) {
    auto cl = parse_command_line(argc, argv);
    if (!cl) {
        print_usage();
        return 2;
    }
    auto presenter = Presenter::create(*cl);
    if (!presenter) {
        std::fprintf(stderr, "wayland_present: %s\n", presenter.error().message().c_str());
        return 1;
    }
    const auto start = std::chrono::steady_clock::now();
    for (std::uint32_t f = 1; f <= cl->frames; ++f) {
        if (auto r = presenter->frame(f); !r) {
            std::fprintf(stderr, "wayland_present: frame %u: %s\n", f, r.error().message().c_str());
            return 1;
        }
    }
    if (auto r = presenter->finish(); !r) {
        std::fprintf(stderr, "wayland_present: %s\n", r.error().message().c_str());
        return 1;
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const auto stats = presenter->surface().stats();
    std::printf("wayland_present: presented %u frames of %ux%u in %.2f s (%.1f frames/s), %s sync, "
                "%llu releases (%llu with a fence), %llu frame callbacks\n",
                cl->frames, cl->width, cl->height, seconds, cl->frames / seconds,
                wayland::to_string(presenter->sync()), static_cast<unsigned long long>(stats.released),
                static_cast<unsigned long long>(stats.fenced_releases),
                static_cast<unsigned long long>(stats.frames_done));
    std::fflush(stdout);
    if (cl->hold) {
        if (auto r = presenter->hold(); !r) {
            std::fprintf(stderr, "wayland_present: %s\n", r.error().message().c_str());
            return 1;
        }
    }
    return 0;
}
