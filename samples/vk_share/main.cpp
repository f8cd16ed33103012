// SPDX-License-Identifier: MIT
// vk_share: one image, two Vulkan devices, no copy.
//
// Device A exports a 256x256 ABGR8888 image as a dma-buf and fills it with a compute shader.
// Device B receives the buffer as new fds every frame (as a compositor receives a client's
// buffers, or a consumer a camera's ring), imports it through an ImportCache and checks every
// pixel with another compute shader. The image changes hands with queue family ownership
// transfers to and from VK_QUEUE_FAMILY_FOREIGN_EXT, the protocol for memory shared outside one
// Vulkan device, and every hand-off is ordered by the dma-buf's own fences through each device's
// SyncBridge: device A's write waits for device B's previous read and device B's read for A's
// write, with no vkQueueWaitIdle, vkDeviceWaitIdle or CPU wait per frame. The CPU waits once, at
// the end, to read the counts.
//
//   vk_share [--device NAME] [--validate]
//
// Exits 0 when every frame's pixels matched and the cache imported the buffer exactly once.

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <vulkan/vulkan_core.h>

#include <dmabridge/base/result.hpp>
#include <dmabridge/format/buffer_desc.hpp>
#include <dmabridge/format/fourcc.hpp>
#include <dmabridge/vulkan/context.hpp>
#include <dmabridge/vulkan/device.hpp>
#include <dmabridge/vulkan/import_cache.hpp>
#include <dmabridge/vulkan/host_buffer.hpp>
#include <dmabridge/vulkan/sync_bridge.hpp>

#include <dmabridge_shaders/fill_pattern.hpp>
#include <dmabridge_shaders/verify_pattern.hpp>

#include "vulkan_compute.hpp"

namespace {

namespace vulkan = dmabridge::vulkan;
using dmabridge::BufferDesc;
using dmabridge::Error;
using dmabridge::Result;
using dmabridge::Status;
using support::ComputePipeline;
using support::DeviceFunctions;
using dmabridge::vulkan::HostBuffer;
using support::ImageView;

constexpr std::uint32_t image_size = 256;
constexpr std::uint32_t pixel_count = image_size * image_size;
constexpr std::uint32_t frame_count = 3;
constexpr std::uint32_t image_fourcc = dmabridge::fourcc::ABGR8888;
// ABGR8888's memory layout (R, G, B, A), and what the shaders' `rgba8` images are.
constexpr VkFormat image_format = VK_FORMAT_R8G8B8A8_UNORM;

// --- command line ---

struct CommandLine {
    std::string device_name;  // empty: the first device that can share dma-bufs
    bool validate = false;
};

void print_usage(std::FILE* to) {
    std::fprintf(to,
                 "usage: vk_share [--device NAME] [--validate]\n"
                 "  --device NAME  use a Vulkan device whose name contains NAME (e.g. llvmpipe)\n"
                 "  --validate     enable VK_LAYER_KHRONOS_validation; any message fails the run\n");
}

// The parsed command line, or nothing after printing what was wrong.
std::optional<CommandLine> parse_command_line(int argc, char** argv) {
    CommandLine cl;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "--validate") {
            cl.validate = true;
        } else if (arg == "--device") {
            if (i + 1 == argc) {
                std::fprintf(stderr, "vk_share: --device needs a NAME\n");
                return std::nullopt;
            }
            cl.device_name = argv[++i];
        } else {
            std::fprintf(stderr, "vk_share: unexpected argument '%s'\n", arg.c_str());
            return std::nullopt;
        }
    }
    return cl;
}

// --- validation messages ---

// Counts and prints the validation layer's messages. Must outlive both Contexts: the layer also
// reports while a Context is destroyed (objects leaked on its device, for one).
class ValidationLog {
public:
    void on_message(const std::string& message) {
        std::lock_guard lock(mutex_);
        if (is_known_false_positive(message)) {
            ++known_false_positives_;
            std::fprintf(stderr, "vk_share: validation (known layer false positive, ignored): %s\n", message.c_str());
        } else {
            ++messages_;
            std::fprintf(stderr, "vk_share: validation: %s\n", message.c_str());
        }
    }
    int messages() const {
        std::lock_guard lock(mutex_);
        return messages_;
    }
    int known_false_positives() const {
        std::lock_guard lock(mutex_);
        return known_false_positives_;
    }

private:
    // The 1.3.239 layer reads the format features of DRM-modifier tiling from
    // VkDrmFormatModifierPropertiesList2EXT, which lavapipe (Mesa 25.0) leaves empty, and then
    // reports features 0x0 for such images, although the v1 list lavapipe does fill has them
    // (tests/kernel/vk_harness.cpp has the whole story). Only this message is forgiven.
    static bool is_known_false_positive(const std::string& m) {
        return m.find("VkFormatFeatureFlags (0x0) does not support required feature") != std::string::npos &&
               m.find("VK_IMAGE_TILING_DRM_FORMAT_MODIFIER_EXT") != std::string::npos;
    }

    mutable std::mutex mutex_;  // the layer calls back from whichever thread made the Vulkan call
    int messages_ = 0;
    int known_false_positives_ = 0;
};

// --- the two devices ---

// A device that can export and import dma-bufs and hand images to VK_QUEUE_FAMILY_FOREIGN_EXT.
Result<vulkan::Context> make_context(const CommandLine& cl, ValidationLog& log) {
    vulkan::ContextOptions options;
    options.device_name = cl.device_name;
    options.validation = cl.validate;
    if (cl.validate) options.on_validation_message = [&log](const std::string& m) { log.on_message(m); };
    auto context = vulkan::Context::create(options);
    if (!context) return context.error();
    // Foreign-queue transfers are optional in ContextOptions; this sample's protocol needs them.
    if (!context->device().has(vulkan::Capability::foreign_queue))
        return Error::library(dmabridge::Errc::unsupported,
                              "\"" + context->device().name() + "\" has no VK_EXT_queue_family_foreign");
    return context;
}

std::span<const std::byte> frame_push_constant(const std::uint32_t& frame) {
    return std::as_bytes(std::span(&frame, 1));
}

// One submit's GPU work and the sync objects it uses: kept until the work completed.
struct GpuWork {
    vulkan::Acquire acquire;
    vulkan::Release release;
    vulkan::Submission submission;
};

// Time the CPU spent inside acquire and publish. dmabridge itself never waits there in
// sync_file mode; drivers that export a semaphore only once the submit's waits resolved
// (lavapipe) block inside publish, and that is reported, not hidden.
class BlockedTime {
public:
    template <typename Fn>
    auto time(Fn&& fn) {
        const auto start = std::chrono::steady_clock::now();
        auto result = fn();
        total_ += std::chrono::steady_clock::now() - start;
        return result;
    }
    double milliseconds() const { return std::chrono::duration<double, std::milli>(total_).count(); }

private:
    std::chrono::steady_clock::duration total_{};
};

// Device A: owns the exported image and writes each frame's pattern into it.
class PatternWriter {
public:
    static Result<PatternWriter> create(const vulkan::Context& context) {
        PatternWriter w;
        w.context_ = &context;
        auto vk = DeviceFunctions::load(context);
        if (!vk) return vk.error();
        w.vk_ = *vk;

        dmabridge::ImageRequest request;
        request.width = image_size;
        request.height = image_size;
        request.fourcc = image_fourcc;
        // LINEAR, asked for by name: every device understands it, and lavapipe can use it as a
        // storage image.
        request.modifiers = {dmabridge::modifier::linear};
        request.name = "vk_share";
        vulkan::ImageOptions options;
        options.usage = VK_IMAGE_USAGE_STORAGE_BIT | VK_IMAGE_USAGE_TRANSFER_SRC_BIT | VK_IMAGE_USAGE_TRANSFER_DST_BIT;
        options.format = image_format;
        auto exported = context.device().export_image(request, options);
        if (!exported) return exported.error().with_context("export the image");
        w.exported_ = std::move(*exported);

        auto view = support::make_storage_view(w.vk_, w.exported_.image.handle(), image_format);
        if (!view) return view.error();
        w.view_ = std::move(*view);
        const VkDescriptorType bindings[] = {VK_DESCRIPTOR_TYPE_STORAGE_IMAGE};
        auto pipeline = ComputePipeline::create(w.vk_, "fill_pattern", dmabridge::shaders::fill_pattern, bindings,
                                                sizeof(std::uint32_t));
        if (!pipeline) return pipeline.error();
        w.pipeline_ = std::move(*pipeline);
        w.pipeline_.set_storage_image(0, w.view_.get());
        return w;
    }

    /// The image as dma-bufs: what device B receives (as new fds) every frame.
    const BufferDesc& desc() const noexcept { return exported_.desc; }

    /// Queues the writing of frame `frame`'s pattern: the submit waits (on the GPU) for the
    /// image's fences, its earlier readers included, and its completion becomes the image's
    /// write fence. Returns without waiting; keep the returned work until it completed.
    Result<GpuWork> fill(std::uint32_t frame, vulkan::SyncBridge& bridge, BlockedTime& blocked) const {
        const vulkan::ImageUse write{VK_IMAGE_LAYOUT_GENERAL, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                                     VK_ACCESS_SHADER_WRITE_BIT};
        GpuWork work;
        // Every pixel is rewritten: UNDEFINED lets the driver drop the old contents.
        auto acquire = blocked.time([&] {
            return bridge.acquire_image(exported_.desc, exported_.image, dmabridge::Access::write, write,
                                        VK_IMAGE_LAYOUT_UNDEFINED);
        });
        if (!acquire) return acquire.error().with_context("device A: acquire");
        work.acquire = std::move(*acquire);
        auto release = bridge.prepare_release_image(exported_.image, write, {&work.acquire});
        if (!release) return release.error().with_context("device A: release");
        work.release = std::move(*release);
        auto submitted = context_->submit_async(
            [&](VkCommandBuffer cmd) {
                vk_.CmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, 0,
                                       0, nullptr, 0, nullptr, 1, &work.acquire.image_barrier);
                pipeline_.record_dispatch(cmd, frame_push_constant(frame), image_size, image_size);
                // Release to FOREIGN in GENERAL: the shader's writes become available to whoever
                // acquires next, another device or another API.
                vk_.CmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT,
                                       0, 0, nullptr, 0, nullptr, 1, &work.release.image_barrier);
            },
            {{work.acquire.semaphore.handle()}, {work.acquire.wait_stage}, {work.release.semaphore.handle()}});
        if (!submitted) return submitted.error().with_context("device A: submit");
        work.submission = std::move(*submitted);
        auto published = blocked.time([&] {
            return bridge.publish(work.release, exported_.desc, dmabridge::Access::write, work.submission.fence());
        });
        if (!published) return published.error().with_context("device A: publish");
        return work;
    }

private:
    PatternWriter() = default;
    const vulkan::Context* context_ = nullptr;
    DeviceFunctions vk_;
    vulkan::ExportedImage exported_;  // declared before view_: the view goes first
    ImageView view_;
    ComputePipeline pipeline_;
};

// Device B: counts the pixels of an imported image that differ from a frame's pattern. Each
// frame has a slot of its own (pipeline with its descriptor set, view, counter), so that no
// frame's check has to wait for the previous one.
class PatternChecker {
public:
    static Result<PatternChecker> create(const vulkan::Context& context) {
        PatternChecker c;
        c.context_ = &context;
        auto vk = DeviceFunctions::load(context);
        if (!vk) return vk.error();
        c.vk_ = *vk;
        for (std::uint32_t i = 0; i < frame_count; ++i) {
            Slot slot;
            auto counter = HostBuffer::create(context.device(), sizeof(std::uint32_t), VK_BUFFER_USAGE_STORAGE_BUFFER_BIT);
            if (!counter) return counter.error();
            slot.counter = std::move(*counter);
            const VkDescriptorType bindings[] = {VK_DESCRIPTOR_TYPE_STORAGE_IMAGE, VK_DESCRIPTOR_TYPE_STORAGE_BUFFER};
            auto pipeline = ComputePipeline::create(c.vk_, "verify_pattern", dmabridge::shaders::verify_pattern,
                                                    bindings, sizeof(std::uint32_t));
            if (!pipeline) return pipeline.error();
            slot.pipeline = std::move(*pipeline);
            slot.pipeline.set_storage_buffer(1, slot.counter.handle());
            c.slots_.push_back(std::move(slot));
        }
        return c;
    }

    /// How device B imports: only as a storage image, as it only reads with imageLoad. The same
    /// options every frame, or the cache would see a different entry.
    static vulkan::ImageOptions import_options() {
        vulkan::ImageOptions options;
        options.usage = VK_IMAGE_USAGE_STORAGE_BIT;
        options.format = image_format;
        return options;
    }

    /// Queues the check of `image` (the import of `received`) against frame `frame`'s pattern in
    /// that frame's slot: the submit waits (on the GPU) for the writers' fences, and its
    /// completion becomes a read fence on the dma-buf, which device A's next write waits for.
    Result<GpuWork> submit_check(const vulkan::Image& image, const BufferDesc& received, std::uint32_t frame,
                                 vulkan::SyncBridge& bridge, BlockedTime& blocked) {
        Slot& slot = slots_.at(frame - 1);
        auto view = support::make_storage_view(vk_, image.handle(), image_format);
        if (!view) return view.error();
        slot.view = std::move(*view);
        slot.pipeline.set_storage_image(0, slot.view.get());
        *reinterpret_cast<std::uint32_t*>(slot.counter.bytes().data()) = 0;  // coherent: seen by the work below

        const vulkan::ImageUse read{VK_IMAGE_LAYOUT_GENERAL, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                                    VK_ACCESS_SHADER_READ_BIT};
        GpuWork work;
        // Acquire in the layout device A released in (GENERAL): UNDEFINED would allow the driver
        // to discard the very pixels this check is about.
        auto acquire = blocked.time([&] { return bridge.acquire_image(received, image, dmabridge::Access::read, read); });
        if (!acquire) return acquire.error().with_context("device B: acquire");
        work.acquire = std::move(*acquire);
        auto release = bridge.prepare_release_image(image, read, {&work.acquire});
        if (!release) return release.error().with_context("device B: release");
        work.release = std::move(*release);
        auto submitted = context_->submit_async(
            [&](VkCommandBuffer cmd) { record_check(cmd, slot, work, frame); },
            {{work.acquire.semaphore.handle()}, {work.acquire.wait_stage}, {work.release.semaphore.handle()}});
        if (!submitted) return submitted.error().with_context("device B: submit");
        work.submission = std::move(*submitted);
        auto published = blocked.time(
            [&] { return bridge.publish(work.release, received, dmabridge::Access::read, work.submission.fence()); });
        if (!published) return published.error().with_context("device B: publish");
        return work;
    }

    /// Pixels that differed in frame `frame`'s check, once its work completed.
    std::uint32_t mismatches(std::uint32_t frame) const {
        return *reinterpret_cast<const std::uint32_t*>(slots_.at(frame - 1).counter.bytes().data());
    }

private:
    struct Slot {
        HostBuffer counter;  // the shader's count of differing pixels
        ComputePipeline pipeline;
        ImageView view;  // of the image this slot checked
    };

    PatternChecker() = default;

    void record_check(VkCommandBuffer cmd, const Slot& slot, const GpuWork& work, std::uint32_t frame) const {
        vk_.CmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, 0, 0,
                               nullptr, 0, nullptr, 1, &work.acquire.image_barrier);
        slot.pipeline.record_dispatch(cmd, frame_push_constant(frame), image_size, image_size);
        // The count must reach the host, and the image must go back to FOREIGN for device A.
        VkBufferMemoryBarrier to_host{};
        to_host.sType = VK_STRUCTURE_TYPE_BUFFER_MEMORY_BARRIER;
        to_host.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT;
        to_host.dstAccessMask = VK_ACCESS_HOST_READ_BIT;
        to_host.srcQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED;
        to_host.dstQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED;
        to_host.buffer = slot.counter.handle();
        to_host.size = VK_WHOLE_SIZE;
        vk_.CmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_PIPELINE_STAGE_HOST_BIT, 0, 0, nullptr,
                               1, &to_host, 0, nullptr);
        vk_.CmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, 0, 0,
                               nullptr, 0, nullptr, 1, &work.release.image_barrier);
    }

    const vulkan::Context* context_ = nullptr;
    DeviceFunctions vk_;
    std::vector<Slot> slots_;
};

// --- one frame ---

struct FrameResult {
    dmabridge::BufferId id;  // the dma-buf's identity, the same through every fd
    int fd = -1;             // the fd device B received this frame
    bool hit = false;        // the cache found the import of an earlier frame
    VkImage image = VK_NULL_HANDLE;
    std::uint32_t mismatches = 0;
};

// Device B's side of a frame: import the received description through the cache and queue
// the check against frame `frame`'s pattern. Nothing waits here. The check's work goes into
// `in_flight`, whose fences the cache borrows as the image's last use: it must outlive the cache.
Result<FrameResult> receive_frame(vulkan::ImportCache& cache, PatternChecker& checker, vulkan::SyncBridge& bridge,
                                  BlockedTime& blocked, std::vector<GpuWork>& in_flight, const BufferDesc& received,
                                  std::uint32_t frame) {
    FrameResult result;
    result.id = received.planes[0].buffer.id();
    result.fd = received.planes[0].buffer.fd();

    const auto hits_before = cache.stats().hits;
    auto image = cache.import(received, PatternChecker::import_options());
    if (!image) return image.error().with_context("device B: import " + received.describe());
    result.hit = cache.stats().hits > hits_before;
    result.image = (*image)->handle();

    auto check = checker.submit_check(**image, received, frame, bridge, blocked);
    if (!check) return check.error().with_context("device B: check");
    // The cache destroys the image, once evicted, only after this work completed.
    if (auto used = cache.set_last_use(**image, check->submission); !used)
        return used.error().with_context("device B: record the check's use");
    in_flight.push_back(std::move(*check));
    return result;
}

void print_frame(std::uint32_t frame, const FrameResult& r) {
    std::printf("frame %u: dma-buf inode %llu as fd %d, import cache %s, VkImage %#llx, %u pixels differ\n", frame,
                static_cast<unsigned long long>(r.id.inode), r.fd, r.hit ? "hit" : "miss",
                static_cast<unsigned long long>(reinterpret_cast<std::uintptr_t>(r.image)), r.mismatches);
}

// --- the report ---

const char* plural(std::uint64_t n, const char* one, const char* many) { return n == 1 ? one : many; }

// Prints the report; true when everything is as it must be: every frame's pixels matched, the
// cache imported once and found the import again on every later frame, always the same image.
bool report(const BufferDesc& shared, const vulkan::Context& a, const vulkan::Context& b,
            const vulkan::ImportCacheStats& stats, const std::vector<FrameResult>& frames) {
    std::printf("vk_share: shared %ux%u %s %s dma-buf inode %llu between \"%s\" and \"%s\"\n", shared.width,
                shared.height, dmabridge::fourcc_to_string(shared.fourcc).c_str(),
                dmabridge::modifier_to_string(shared.modifier).c_str(),
                static_cast<unsigned long long>(shared.planes[0].buffer.id().inode), a.device().name().c_str(),
                b.device().name().c_str());
    // Device B reads device A's memory through the imported dma-buf: the sample records no copy
    // command and never touches the pixels on the CPU.
    std::printf("bytes copied: 0\n");

    bool same_image = true;
    for (const auto& f : frames) same_image = same_image && f.image == frames.front().image;
    std::printf("cache: %llu %s, %llu %s%s\n", static_cast<unsigned long long>(stats.misses),
                plural(stats.misses, "miss", "misses"), static_cast<unsigned long long>(stats.hits),
                plural(stats.hits, "hit", "hits"), same_image ? "" : " (but not the same VkImage every frame)");
    const bool cache_ok = stats.misses == 1 && stats.hits == frame_count - 1 && same_image;

    bool pixels_ok = true;
    for (std::uint32_t i = 0; i < frames.size(); ++i) {
        if (frames[i].mismatches == 0) continue;
        pixels_ok = false;
        std::printf("check: frame %u: %u/%u pixels match\n", i + 1, pixel_count - frames[i].mismatches, pixel_count);
    }
    if (pixels_ok) std::printf("check: %u/%u pixels match in each of %u frames\n", pixel_count, pixel_count, frame_count);
    return cache_ok && pixels_ok;
}

// --- the run ---

// Prints "vk_share: <where>: <message>" and gives the exit status of a failed run.
int fail(const std::string& where, const Error& error) {
    std::fprintf(stderr, "vk_share: %s: %s\n", where.c_str(), error.message().c_str());
    return 1;
}

// Everything with a Vulkan object in it; returns the exit status. The ValidationLog outlives it.
int run(const CommandLine& cl, ValidationLog& log) {
    // Creating a device under emulation takes seconds: say what is happening.
    std::printf("vk_share: creating device A\n");
    auto a = make_context(cl, log);
    if (!a) return fail("device A", a.error());
    std::printf("vk_share: creating device B\n");
    auto b = make_context(cl, log);
    if (!b) return fail("device B", b.error());

    auto writer = PatternWriter::create(*a);
    if (!writer) return fail("device A", writer.error());
    auto bridge_a = vulkan::SyncBridge::create(a->device());
    auto bridge_b = vulkan::SyncBridge::create(b->device());
    if (!bridge_a) return fail("device A: sync bridge", bridge_a.error());
    if (!bridge_b) return fail("device B: sync bridge", bridge_b.error());

    // Declared in this order on purpose: the cache's destructor waits for the fences of the work
    // in flight, so that work must outlive it; the checker's views of a cached image must go
    // before the cache destroys the image.
    std::vector<GpuWork> in_flight;
    vulkan::ImportCache cache(b->device());
    auto checker = PatternChecker::create(*b);
    if (!checker) return fail("device B", checker.error());

    BlockedTime blocked;
    std::vector<FrameResult> frames;
    // Each frame's fds stay open to the end only so that each frame shows an fd number of its own
    // (a closed fd's number is reused at once): different fds, one inode, one import.
    std::vector<BufferDesc> received_frames;
    const auto start = std::chrono::steady_clock::now();
    for (std::uint32_t frame = 1; frame <= frame_count; ++frame) {
        const std::string frame_name = "frame " + std::to_string(frame);
        auto filled = writer->fill(frame, *bridge_a, blocked);
        if (!filled) return fail(frame_name, filled.error());
        in_flight.push_back(std::move(*filled));
        // The same buffer arrives again as new fds, as if passed over a socket each frame.
        auto received = writer->desc().dup();
        if (!received) return fail(frame_name + ": dup", received.error());
        auto result = receive_frame(cache, *checker, *bridge_b, blocked, in_flight, *received, frame);
        if (!result) return fail(frame_name, result.error());
        frames.push_back(*result);
        received_frames.push_back(std::move(*received));
    }
    const auto queued = std::chrono::steady_clock::now();
    // The one CPU wait of the run: every frame's work, to read the counts.
    for (const auto& work : in_flight)
        if (auto done = work.submission.wait(); !done) return fail("wait for the frames", done.error());
    for (std::uint32_t frame = 1; frame <= frame_count; ++frame) {
        frames[frame - 1].mismatches = checker->mismatches(frame);
        print_frame(frame, frames[frame - 1]);
    }
    std::printf("sync: %s on device A, %s on device B; %u frames queued in %.1f ms with no CPU wait per frame "
                "by dmabridge (%.1f ms blocked inside the driver's acquire/publish calls)\n",
                vulkan::to_string(bridge_a->mode()), vulkan::to_string(bridge_b->mode()), frame_count,
                std::chrono::duration<double, std::milli>(queued - start).count(), blocked.milliseconds());
    return report(writer->desc(), *a, *b, cache.stats(), frames) ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
    // Line-buffered even into a pipe or file (ci/vm streams the output): each line shows up as
    // it happens, and a crash loses none.
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "-h") == 0) {
            print_usage(stdout);
            return 0;
        }
    }
    const auto cl = parse_command_line(argc, argv);
    if (!cl) {
        print_usage(stderr);
        return 2;
    }
    ValidationLog log;
    int status = run(*cl, log);
    // The Contexts are gone now, so this also counts what the layer said while they were destroyed.
    if (cl->validate) {
        std::printf("validation: %d %s, %d known layer false %s ignored\n", log.messages(),
                    plural(static_cast<std::uint64_t>(log.messages()), "message", "messages"),
                    log.known_false_positives(),
                    plural(static_cast<std::uint64_t>(log.known_false_positives()), "positive", "positives"));
        if (log.messages() > 0) status = 1;
    }
    return status;
}
