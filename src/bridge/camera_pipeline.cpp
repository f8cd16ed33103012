// SPDX-License-Identifier: MIT
#include <dmabridge/bridge/camera_pipeline.hpp>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <deque>
#include <mutex>
#include <optional>
#include <span>
#include <vector>

#include <dmabridge/kernel/cpu_access.hpp>
#include <dmabridge/queue/consumer.hpp>
#include <dmabridge/vulkan/frame_converter.hpp>
#include <dmabridge/vulkan/host_buffer.hpp>
#include <dmabridge/vulkan/import_cache.hpp>
#include <dmabridge/vulkan/storage_image.hpp>
#include <dmabridge/vulkan/sync_bridge.hpp>

#include "base/sys.hpp"
#include "bridge/camera_frame_loop.hpp"
#include "bridge/camera_util.hpp"

namespace dmabridge::camera {

using dmabridge::Errc;
using dmabridge::Error;
using dmabridge::Result;
using dmabridge::Status;
namespace vulkan = dmabridge::vulkan;
namespace queue = dmabridge::queue;

const char* to_string(Path p) noexcept { return p == Path::zero_copy ? "zero-copy" : "copy"; }

namespace {

using detail::BufferSet;
using detail::Clock;
using detail::distinct_buffers;
using detail::ms_since;
using detail::release_fence;
using detail::thread_cpu_us;

}  // namespace

Result<CopySizes> copy_sizes(const std::vector<std::vector<std::uint64_t>>& dmabuf_sizes,
                            std::span<const std::uint32_t> size_image) {
    CopySizes out;
    for (std::size_t i = 0; i < dmabuf_sizes.size(); ++i) {
        const auto& sizes = dmabuf_sizes[i];
        if (sizes.size() != dmabuf_sizes[0].size())
            return Error::library(Errc::invalid_argument, "V4L2 buffer " + std::to_string(i) + " has " +
                                                              std::to_string(sizes.size()) + " dma-bufs, buffer 0 " +
                                                              std::to_string(dmabuf_sizes[0].size()));
        std::vector<std::uint32_t> bytes;
        for (std::size_t b = 0; b < sizes.size(); ++b) {
            const std::uint64_t image = b < size_image.size() ? size_image[b] : 0;
            bytes.push_back(static_cast<std::uint32_t>(std::min<std::uint64_t>(image ? image : sizes[b], sizes[b])));
            if (out.staging.size() <= b) out.staging.push_back(0);
            out.staging[b] = std::max(out.staging[b], sizes[b]);
        }
        out.bytes.push_back(std::move(bytes));
    }
    return out;
}

namespace {

constexpr VkBufferUsageFlags source_usage = vulkan::FrameConverter::source_usage;
const vulkan::BufferUse shader_read{VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_ACCESS_SHADER_READ_BIT};


}  // namespace

// One V4L2 buffer (zero_copy) or one staging set (copy) and the frame the GPU works on in it.
struct Slot {
    // The slot's commands, recorded when its buffers were (re)bound, submitted every frame:
    // [0] converts, [1] converts and copies the result into the slot's read-back buffer (recorded
    // on the first frame that asks for a read-back).
    std::array<vulkan::RecordedCommands, 2> commands;
    bool read_back = false;  // the frame in flight was submitted with commands[1]
    bool with_gpu = false;
    std::uint64_t number = 0;
    std::uint32_t v4l2_index = 0;
    std::uint32_t sequence = 0;
    // zero_copy: the frame's buffer as the queue's consumer received it (its own fds, the same
    // objects whenever the buffer comes back) and its distinct dma-bufs.
    const dmabridge::BufferDesc* desc = nullptr;
    BufferSet set;
    // zero_copy: the cached imports and the semaphores of the frame in flight.
    std::vector<vulkan::CachedBuffer> imports;
    std::vector<vulkan::Acquire> acquires;
    std::vector<vulkan::Release> releases;
    // The next frame's releases, prepared when the slot went back to the driver: they depend
    // only on the slot's buffers, so preparing them is off the dequeue -> submit path.
    std::vector<vulkan::Release> next_releases;
    // copy: one staging buffer per dma-buf of the V4L2 buffer.
    std::vector<vulkan::HostBuffer> staging;
    std::vector<std::uint64_t> staging_size;
    // The imports the commands (and next_releases) were made for.
    std::vector<const vulkan::Buffer*> recorded_for;
    bool commands_stale(const std::vector<vulkan::CachedBuffer>& now) const {
        if (now.size() != recorded_for.size()) return true;
        for (std::size_t i = 0; i < now.size(); ++i)
            if (now[i].get() != recorded_for[i]) return true;
        return false;
    }
    // Last: destroyed first, its wait for the frame's work comes before the semaphores, staging
    // buffers and commands that work uses are destroyed.
    vulkan::Submission submission;
};

struct CameraPipeline::State {
    const vulkan::Context* context = nullptr;
    // A run ended with a frame's GPU work not complete within the timeout: its semaphores,
    // buffers and images may still be used, so nothing of the pipeline is destroyed any more
    // (the destructor leaks the State) and run() refuses.
    bool gpu_stuck = false;
    PipelineOptions options;
    // vkCmdPipelineBarrier, through Context::device_proc: the barriers around the conversion.
    PFN_vkCmdPipelineBarrier cmd_pipeline_barrier = nullptr;
    // The camera: V4L2 device and ring, served through a queue. Its one consumer, per run():
    // buffers come back to the driver when released with the GPU's fence and that signalled.
    std::optional<dmabridge::v4l2::CaptureSource> source;
    std::optional<queue::Consumer> consumer;
    dmabridge::FrameLayout layout;
    std::vector<BufferSet> buffer_sets;                    // copy: per V4L2 buffer, the ring's
    std::vector<std::vector<dmabridge::Mapping>> mappings;  // copy: per V4L2 buffer, per dma-buf
    std::vector<std::vector<std::uint32_t>> copy_bytes;     // copy: per V4L2 buffer, per dma-buf
    std::optional<vulkan::SyncBridge> bridge;
    // The conversion (dmabridge::vulkan::FrameConverter, one descriptor set per slot) into the
    // application's RGBA image, and per slot a host buffer the image is copied to when the
    // frame is read back.
    std::optional<vulkan::FrameConverter> converter;
    // Per slot: frames in flight are written at once, so each slot converts into its own image.
    std::vector<vulkan::StorageImage> rgba;
    std::vector<vulkan::HostBuffer> readback;
    std::vector<Slot> slots;
    // After slots: destroyed first, it waits for the fences the slots' Submissions own.
    std::optional<vulkan::ImportCache> cache;

    // run()'s bookkeeping.
    std::deque<std::uint32_t> unpublished;  // zero_copy: slots submitted, not published yet
    std::deque<std::uint32_t> copy_fifo;  // copy: slots with the GPU, oldest first
    std::size_t to_acquire = 0;           // frames the queue holds for the consumer
    std::uint32_t in_flight = 0;
    std::uint64_t submitted = 0, completed = 0, wanted = 0;
    PipelineStats stats;
    std::vector<double> cpu_samples;  // per frame, dequeue -> submit (thread CPU time)
    vulkan::Context::SubmitSemaphores submit_semaphores;
    const FrameCallback* on_frame = nullptr;

    Status submit_zero_copy(const queue::AcquiredFrame& f, double cpu_start);
    Status submit_copy(const queue::AcquiredFrame& f, double cpu_start);
    Status finish(Slot& slot);
    // Puts the GPU's read fence of the slot's frame on its V4L2 buffers and releases the buffer
    // to the queue with that fence.
    Status publish(std::uint32_t index);
    // Publishes the submitted frames not published yet, oldest first; all but the newest when
    // `keep_newest`. The loop (frame_loop.hpp) publishes a frame after the next one was
    // submitted, or before it sleeps. Where publish() waits for the GPU (ReleaseMode::
    // wait_for_submit: lavapipe), the next frame is then already queued behind the one waited
    // for, so the GPU does not idle between frames and the next vkQueueSubmit does not have to
    // wake an idle queue (about 110 us against 30 us in the VM).
    Status publish_pending(bool keep_newest);
    bool has_unpublished() const noexcept { return !unpublished.empty(); }
    Status before_turn() { return {}; }
    // Points slot `k`'s converter set at its source buffers and the RGBA image; true when the
    // binding changed (the slot's commands must be recorded again).
    Result<bool> bind(std::uint32_t k, vulkan::FrameSource plane0, vulkan::FrameSource plane1) {
        const vulkan::FrameTarget target{rgba.at(k).handle(), rgba.at(k).view(), {layout.width, layout.height}};
        auto rebound = converter->bind(k, plane0, plane1, target);
        if (!rebound) return rebound.error().with_context("camera: bind the converter");
        return *rebound;
    }
    // Binds slot `k`'s converter set to this frame's sources, drops the commands recorded for an
    // older binding, and picks this frame's commands: [1] when it is read back, else [0]
    // (empty when they must be recorded).
    Result<vulkan::RecordedCommands*> commands_for(Slot& slot, std::uint32_t k, vulkan::FrameSource plane0,
                                                   vulkan::FrameSource plane1) {
        const auto rebound = bind(k, plane0, plane1);
        if (!rebound) return rebound.error();
        if (*rebound)
            for (auto& c : slot.commands) c = {};
        slot.read_back = options.read_back && options.read_back(submitted);
        return &slot.commands[slot.read_back ? 1 : 0];
    }
    // Records slot `k`'s conversion, and its read-back when `read_back`.
    // `acquire`: the source buffers' acquire barriers, recorded in the conversion's own barrier.
    Status record_conversion(VkCommandBuffer cmd, std::uint32_t k, bool read_back,
                             std::span<const VkBufferMemoryBarrier> acquire = {}) {
        if (auto ok = converter->record(cmd, k, layout, acquire); !ok) return ok.error().with_context("camera: convert");
        if (read_back && !readback.empty())
            if (auto ok = rgba.at(k).record_copy_to(cmd, readback.at(k)); !ok)
                return ok.error().with_context("camera: read back");
        return {};
    }
    // The next frame's releases of the slot's imported buffers, into slot.next_releases.
    Status prepare_releases(Slot& slot) {
        slot.next_releases.clear();
        for (const auto& imported : slot.imports) {
            auto release = bridge->prepare_release_buffer(*imported, shader_read);
            if (!release) return release.error().with_context("camera: release");
            slot.next_releases.push_back(std::move(*release));
        }
        return {};
    }
    Status wait_for_gpu();
    // Called by the source when buffer `index` came back from the queue, before the driver
    // has it again: the frame in it is complete.
    Status returned(std::uint32_t index) {
        if (options.path != Path::zero_copy || index >= slots.size() || !slots[index].with_gpu) return {};
        return finish(slots[index]);
    }
};

Result<CameraPipeline> CameraPipeline::create(const vulkan::Context& context, const PipelineOptions& options) {
    auto st = std::make_unique<State>();
    st->context = &context;
    st->options = options;
    auto source = dmabridge::v4l2::CaptureSource::open(capture_options(options), "camera");
    if (!source) return source.error();
    st->source.emplace(std::move(*source));
    const auto* format = &st->source->format();
    const auto n = static_cast<std::uint32_t>(st->source->size());

    for (std::uint32_t i = 0; i < n; ++i) {
        auto layout = dmabridge::frame_layout(st->source->buffer(i));
        if (!layout)
            return layout.error().with_context("camera: " + st->source->device().path() + " buffer " +
                                               std::to_string(i));
        st->layout = *layout;
        st->buffer_sets.push_back(distinct_buffers(st->source->buffer(i)));
    }

    st->cmd_pipeline_barrier =
        reinterpret_cast<PFN_vkCmdPipelineBarrier>(context.device_proc("vkCmdPipelineBarrier"));
    if (!st->cmd_pipeline_barrier)
        return Error::library(Errc::unsupported, "camera: the device has no vkCmdPipelineBarrier");
    auto converter = vulkan::FrameConverter::create(context.device(), {.frames_in_flight = n});
    if (!converter) return converter.error().with_context("camera: GPU converter");
    st->converter.emplace(std::move(*converter));
    for (std::uint32_t i = 0; i < n; ++i) {
        auto image = vulkan::StorageImage::create(context.device(), VK_FORMAT_R8G8B8A8_UNORM, format->width,
                                                  format->height,
                                                  vulkan::FrameConverter::target_usage | VK_IMAGE_USAGE_TRANSFER_SRC_BIT);
        if (!image) return image.error().with_context("camera: the RGBA image");
        st->rgba.push_back(std::move(*image));
    }
    for (std::uint32_t i = 0; options.read_back && i < n; ++i) {
        auto buffer = vulkan::HostBuffer::create(context.device(), std::uint64_t{format->width} * format->height * 4,
                                                 VK_BUFFER_USAGE_TRANSFER_DST_BIT);
        if (!buffer) return buffer.error().with_context("camera: a read-back buffer");
        st->readback.push_back(std::move(*buffer));
    }
    st->slots.resize(n);

    if (options.path == Path::zero_copy) {
        auto bridge = vulkan::SyncBridge::create(context.device());
        if (!bridge) return bridge.error();
        st->bridge.emplace(std::move(*bridge));
        // Room for every buffer of the ring: each is imported once, then always hit.
        st->cache.emplace(context.device(), vulkan::ImportCacheOptions{.max_entries = std::size_t{n} * 2});
    } else {
        for (std::uint32_t i = 0; i < n; ++i) {
            std::vector<dmabridge::Mapping> maps;
            for (const auto* buf : st->buffer_sets[i].buffers) {
                auto map = dmabridge::Mapping::map(*buf, dmabridge::Access::read);
                if (!map) return map.error().with_context("camera: map V4L2 buffer " + std::to_string(i));
                maps.push_back(std::move(*map));
            }
            st->mappings.push_back(std::move(maps));
        }
        // Sized per V4L2 buffer: the ring's buffers need not all be as large as buffer 0.
        std::vector<std::vector<std::uint64_t>> dmabuf_sizes;
        for (const auto& set : st->buffer_sets) {
            dmabuf_sizes.emplace_back();
            for (const auto* buf : set.buffers) dmabuf_sizes.back().push_back(buf->size());
        }
        std::vector<std::uint32_t> size_image;
        for (const auto& plane : format->planes) size_image.push_back(plane.size_image);
        const auto sizes = copy_sizes(dmabuf_sizes, size_image);
        if (!sizes) return sizes.error().with_context("camera: " + st->source->device().path());
        st->copy_bytes = sizes->bytes;
        for (std::size_t b = 0; b < sizes->staging.size(); ++b)
            for (auto& slot : st->slots) {
                // As large as the largest of those dma-bufs, so every buffer's layout, checked
                // against its own dma-buf, holds in the copy.
                auto staging = vulkan::HostBuffer::create(context.device(), sizes->staging[b], source_usage);
                if (!staging) return staging.error().with_context("camera: staging buffer");
                slot.staging.push_back(std::move(*staging));
                slot.staging_size.push_back(sizes->staging[b]);
            }
    }
    State* state = st.get();  // stable: the State lives on the heap, whoever owns it
    st->source->on_returned([state](queue::BufferIndex index) { return state->returned(index); });
    return CameraPipeline(std::move(st));
}

CameraPipeline::CameraPipeline(std::unique_ptr<State> state) noexcept : state_(std::move(state)) {}
CameraPipeline::CameraPipeline(CameraPipeline&&) noexcept = default;
CameraPipeline& CameraPipeline::operator=(CameraPipeline&&) noexcept = default;
CameraPipeline::~CameraPipeline() {
    if (!state_ || !state_->gpu_stuck) return;
    // Work that never completed may still use the slots' semaphores, staging buffers, images and
    // commands: they are never destroyed (kept reachable, not even freed at exit, when the
    // application's VkDevice may be gone).
    dmabridge::detail::log_message(dmabridge::LogLevel::error,
                                   "camera pipeline destroyed with GPU work that never completed: leaking its "
                                   "Vulkan objects rather than destroying what the GPU may still use");
    static std::mutex mutex;
    static auto* const leaked = new std::vector<std::unique_ptr<State>>;
    std::lock_guard lock(mutex);
    leaked->push_back(std::move(state_));
}

const dmabridge::FrameLayout& CameraPipeline::layout() const noexcept {
    static const dmabridge::FrameLayout none{};
    return state_ ? state_->layout : none;
}
const std::string& CameraPipeline::device_path() const noexcept {
    static const std::string none;
    return state_ ? state_->source->device().path() : none;
}

Status CameraPipeline::State::submit_zero_copy(const queue::AcquiredFrame& f, double cpu_start) {
    const std::uint32_t index = f.buffer;
    Slot& slot = slots.at(index);
    // The slot's last frame is complete (the buffer came back from the queue after finish()).
    // The import cache holds that frame's completion itself, whatever happens to the Submission.
    const vulkan::Submission previous = std::move(slot.submission);
    const bool new_desc = slot.desc != f.desc;
    if (new_desc) {  // the buffer's first frame of this run: the consumer's objects stay
        slot.desc = f.desc;
        slot.set = distinct_buffers(*f.desc);
    }
    const BufferSet& set = slot.set;
    // Cached imports: a miss the first time each V4L2 buffer comes, a hit ever after (in later
    // runs too: another consumer's fds, the same dma-bufs). Within a run the slot keeps them:
    // the consumer's objects for its buffer stay the same, so its later frames look nothing up.
    if (!new_desc && slot.imports.size() == set.buffers.size()) {
        stats.cache_hits += slot.imports.size();  // counted as the hits they stand for
    } else {
        // The old imports go only once the new ones exist: the recorded commands are matched to
        // imports by address, which a freed import could hand on to a new one.
        std::vector<vulkan::CachedBuffer> fresh;
        for (const auto* buf : set.buffers) {
            auto imported = cache->import_buffer(*buf, source_usage);
            if (!imported) return imported.error().with_context("camera: import V4L2 buffer " + std::to_string(index));
            fresh.push_back(std::move(*imported));
        }
        slot.imports = std::move(fresh);
    }
    // The commands to submit: recorded again when the imports changed (they name the buffers)
    // or this frame's kind (converted only, or also read back) was never recorded.
    const bool rebind = slot.commands_stale(slot.imports);
    slot.read_back = options.read_back && options.read_back(submitted);
    auto& commands = slot.commands[slot.read_back ? 1 : 0];
    // Bound to the converter's set of the slot only when the imports changed: the set is the
    // slot's own, and the commands recorded for these imports still hold that binding.
    if (rebind) {
        // Dropped first, before anything below can fail: they name the old imports, which may be
        // gone. Recorded again even when the set's binding stays (bind() compares handles, and a
        // new import may reuse a destroyed one's handle).
        for (auto& c : slot.commands) c = {};
        slot.recorded_for.clear();
        auto rebound = bind(index, vulkan::FrameSource::of(slot.imports[set.of_plane[0]]),
                            vulkan::FrameSource::of(slot.imports[set.of_plane[1]]));
        if (!rebound) return rebound.error();
    }
    slot.acquires.clear();
    slot.releases.clear();
    // The acquire's poll() of each dma-buf is only needed when the commands are recorded (for
    // their barriers): a V4L2 frame is complete once dequeued, and V4L2 puts no fences on the
    // dma-bufs it exports (vb2 has no implicit sync; the GPU read fences publish() adds do not
    // hold a reader). So a slot's later frames wait for nothing and skip that system call.
    if (!commands.handle())
        for (std::size_t b = 0; b < set.buffers.size(); ++b) {
            auto acquire = bridge->acquire_buffer(*set.buffers[b], *slot.imports[b], dmabridge::Access::read, shader_read);
            if (!acquire) return acquire.error().with_context("camera: acquire");
            slot.acquires.push_back(std::move(*acquire));
        }
    // Releases depend only on the slot's buffers: usually prepared when the slot went back to
    // the driver (finish()); on a slot's first frame, or after its imports changed, here.
    if (slot.next_releases.size() != set.buffers.size() || rebind)
        if (auto ok = prepare_releases(slot); !ok) return ok;
    slot.releases = std::move(slot.next_releases);
    // A fence the acquire found goes forward with the release (see SyncBridge::publish).
    for (std::size_t b = 0; b < slot.acquires.size(); ++b)
        if (slot.acquires[b].fences) {
            auto carried = slot.acquires[b].fences->dup();
            if (!carried) return carried.error().with_context("camera: release");
            slot.releases[b].depends_on.push_back(std::move(*carried));
        }
    slot.next_releases.clear();
    if (!commands.handle()) {
        // The barriers name the buffers, which stay the same as long as the cache keeps them:
        // recorded on the slot's first frame, then submitted as they are.
        Status converted;
        auto recorded = context->record([&](VkCommandBuffer cmd) {
            std::vector<VkBufferMemoryBarrier> acquire_barriers, release_barriers;
            for (const auto& a : slot.acquires) acquire_barriers.push_back(a.buffer_barrier);
            for (const auto& r : slot.releases) release_barriers.push_back(r.buffer_barrier);
            converted = record_conversion(cmd, index, slot.read_back, acquire_barriers);
            cmd_pipeline_barrier(cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, 0,
                                  0, nullptr, static_cast<std::uint32_t>(release_barriers.size()),
                                  release_barriers.data(), 0, nullptr);
        });
        if (!recorded) return recorded.error().with_context("camera: record");
        if (!converted) return converted;
        commands = std::move(*recorded);
        slot.recorded_for.clear();
        for (const auto& i : slot.imports) slot.recorded_for.push_back(i.get());
    }
    auto& semaphores = submit_semaphores;  // reused: no allocation per frame
    semaphores.wait.clear();
    semaphores.wait_stages.clear();
    semaphores.signal.clear();
    for (const auto& a : slot.acquires) {
        semaphores.wait.push_back(a.semaphore.handle());
        semaphores.wait_stages.push_back(a.wait_stage);
    }
    for (const auto& r : slot.releases) semaphores.signal.push_back(r.semaphore.handle());
    auto submission = context->submit_async(commands, semaphores);
    if (!submission) return submission.error().with_context("camera: submit");
    slot.submission = std::move(*submission);
    cpu_samples.push_back(thread_cpu_us() - cpu_start);

    if (auto used = converter->set_last_use(index, slot.submission); !used)
        return used.error().with_context("camera: record the GPU's use");
    for (std::size_t b = 0; b < set.buffers.size(); ++b)
        if (auto used = cache->set_last_use(*slot.imports[b], slot.submission); !used)
            return used.error().with_context("camera: record the GPU's use");
    // Published by run() once it has tried to submit the next frame (publish_pending()).
    unpublished.push_back(index);
    return {};
}

Status CameraPipeline::State::publish(std::uint32_t index) {
    Slot& slot = slots[index];
    const BufferSet& set = slot.set;
    // The GPU's read fence goes on the V4L2 buffer, and with the release to the queue: the
    // buffer goes back to the driver once it signalled (the producer's FenceWatcher).
    const auto wait_start = Clock::now();  // publish waits for the GPU in wait_for_submit mode
    for (std::size_t b = 0; b < set.buffers.size(); ++b)
        if (auto ok = bridge->publish(slot.releases[b], *set.buffers[b], dmabridge::Access::read,
                                      slot.submission.fence());
            !ok)
            return ok.error().with_context("camera: publish");
    stats.fence_wait_ms += ms_since(wait_start);
    // A release without a semaphore was published by waiting for the submit on the CPU
    // (ReleaseMode::wait_for_submit, or a kernel without sync_file ioctls): the GPU is done with
    // the buffer, and a release fence would only be an already-signalled sync_file to export,
    // pass and watch.
    if (std::none_of(slot.releases.begin(), slot.releases.end(),
                     [](const vulkan::Release& r) { return r.semaphore.handle() != VK_NULL_HANDLE; })) {
        if (auto ok = consumer->release(index); !ok) return ok.error().with_context("camera: release");
        return {};
    }
    auto fence = release_fence(*slot.desc);
    if (!fence) return fence.error().with_context("camera: release fence");
    if (!*fence) {  // no fence to give (a kernel before 6.0): the GPU's work must be done first
        const auto gpu_start = Clock::now();
        auto waited = slot.submission.wait(options.timeout);
        stats.fence_wait_ms += ms_since(gpu_start);
        if (!waited || *waited != dmabridge::WaitStatus::ready)
            return Error::from_errno(ETIMEDOUT, "camera: the GPU did not finish a frame in time");
    }
    if (auto ok = consumer->release(index, std::move(*fence)); !ok) return ok.error().with_context("camera: release");
    return {};
}

Status CameraPipeline::State::publish_pending(bool keep_newest) {
    while (unpublished.size() > (keep_newest ? 1u : 0u)) {
        const std::uint32_t index = unpublished.front();
        unpublished.pop_front();
        if (auto ok = publish(index); !ok) return ok;
    }
    return {};
}

Status CameraPipeline::State::submit_copy(const queue::AcquiredFrame& f, double cpu_start) {
    // The staging slot: round robin; the oldest frame's GPU work must be done before reuse.
    const auto k = static_cast<std::uint32_t>(submitted % slots.size());
    Slot& slot = slots[k];
    while (slot.with_gpu)
        if (auto ok = wait_for_gpu(); !ok) return ok;
    const vulkan::Submission previous = std::move(slot.submission);  // complete; freed on return
    const BufferSet& set = buffer_sets.at(f.buffer);
    for (std::size_t b = 0; b < set.buffers.size(); ++b) {
        // The copy the zero-copy path avoids, bracketed as the kernel asks for CPU access.
        auto cpu = dmabridge::CpuAccess::begin(*set.buffers[b], dmabridge::Access::read);
        if (!cpu) return cpu.error().with_context("camera: begin CPU access");
        const std::uint32_t bytes = copy_bytes.at(f.buffer).at(b);
        std::memcpy(slot.staging[b].bytes().data(), mappings[f.buffer][b].data(), bytes);
        if (auto ok = cpu->end(); !ok) return ok.error().with_context("camera: end CPU access");
        stats.bytes_copied_by_cpu += bytes;
    }
    // The frame is copied: the driver can have its buffer back at once (no fence: the CPU is done).
    if (auto ok = consumer->release(f.buffer); !ok) return ok.error().with_context("camera: release");
    auto chosen =
        commands_for(slot, k, {slot.staging[set.of_plane[0]].handle(), slot.staging_size[set.of_plane[0]], nullptr},
                     {slot.staging[set.of_plane[1]].handle(), slot.staging_size[set.of_plane[1]], nullptr});
    if (!chosen) return chosen.error();
    auto& commands = **chosen;
    if (!commands.handle()) {
        // Host writes before the submit are visible to it (coherent memory, submission order).
        Status converted;
        auto recorded =
            context->record([&](VkCommandBuffer cmd) { converted = record_conversion(cmd, k, slot.read_back); });
        if (!recorded) return recorded.error().with_context("camera: record");
        if (!converted) return converted;
        commands = std::move(*recorded);
    }
    auto submission = context->submit_async(commands, {});
    if (!submission) return submission.error().with_context("camera: submit");
    slot.submission = std::move(*submission);
    cpu_samples.push_back(thread_cpu_us() - cpu_start);
    if (auto used = converter->set_last_use(k, slot.submission); !used)
        return used.error().with_context("camera: record the GPU's use");
    copy_fifo.push_back(k);
    return {};
}

// The GPU is done with `slot`'s frame: report it, and (zero_copy) give the buffer back.
Status CameraPipeline::State::finish(Slot& slot) {
    // zero_copy: the queue says the release fence signalled; the submit's fence should say the
    // same. Counted if not; the wait below makes sure either way.
    if (options.path == Path::zero_copy && !slot.submission.done()) ++stats.released_before_gpu_done;
    // Makes the read-back visible to the host (a no-op wait when done).
    if (auto waited = slot.submission.wait(options.timeout); !waited || *waited != dmabridge::WaitStatus::ready)
        return Error::from_errno(ETIMEDOUT, "camera: the GPU did not finish a frame in time");
    const auto k = static_cast<std::uint32_t>(&slot - slots.data());
    if (on_frame && *on_frame) {
        FrameInfo info;
        info.number = slot.number;
        info.slot = slot.v4l2_index;
        info.sequence = slot.sequence;
        info.layout = layout;
        if (slot.read_back && !readback.empty())
            info.rgba = {reinterpret_cast<const std::uint8_t*>(readback.at(k).bytes().data()),
                         std::size_t{layout.width} * layout.height * 4};
        info.image = rgba.at(k).handle();
        if (options.path == Path::zero_copy) {
            info.source = slot.desc;
        } else {
            const BufferSet& set = buffer_sets.at(slot.v4l2_index);
            const auto bytes = [&](std::size_t b) {
                return std::span<const std::byte>(slot.staging[b].bytes().data(),
                                                  set.buffers[b]->size());
            };
            info.staged0 = bytes(set.of_plane[0]);
            info.staged1 = bytes(set.of_plane[1]);
        }
        (*on_frame)(info);
    }
    slot.with_gpu = false;
    --in_flight;
    ++completed;
    if (options.path == Path::zero_copy) {
        slot.acquires.clear();  // their semaphores were used by the completed submit
        slot.releases.clear();
        if (submitted < wanted)
            if (auto ok = prepare_releases(slot); !ok) return ok;
    }
    return {};
}

// Blocks until the GPU finishes something: the oldest copy frame, or (zero_copy) a buffer the
// queue gives back (the source calls finish() for it).
Status CameraPipeline::State::wait_for_gpu() {
    const auto start = Clock::now();
    if (options.path == Path::copy) {
        if (copy_fifo.empty()) return Error::library(Errc::invalid_argument, "camera: nothing on the GPU to wait for");
        const std::uint32_t k = copy_fifo.front();
        copy_fifo.pop_front();
        auto waited = slots[k].submission.wait(options.timeout);
        stats.fence_wait_ms += ms_since(start);
        if (!waited) return waited.error();
        return finish(slots[k]);
    }
    return detail::pump_source(*this, start);
}

Result<PipelineStats> CameraPipeline::run(std::uint64_t frames, const FrameCallback& on_frame) {
    if (!state_) return Error::library(Errc::empty_object, "camera: run a moved-from CameraPipeline");
    State& st = *state_;
    if (st.gpu_stuck)
        return Error::library(Errc::unsupported, "camera: an earlier run left GPU work that never completed");
    st.stats = {};
    st.cpu_samples.clear();
    st.stats.ring_size = static_cast<std::uint32_t>(st.source->size());
    st.stats.camera_fps = st.source->frame_rate();
    st.stats.sync_mode = st.bridge ? std::string(vulkan::to_string(st.bridge->mode())) + ", releases " +
                                         vulkan::to_string(st.bridge->release_mode())
                                   : "none (CPU copy)";
    st.on_frame = &on_frame;
    st.wanted = frames;
    st.submitted = st.completed = 0;
    st.in_flight = 0;
    st.unpublished.clear();
    // Every slot's last submission is waited for at the end, also one whose frame failed after
    // its submit.
    auto result = detail::run_frames(st, frames, "camera", [&st] {
        for (auto& slot : st.slots)
            if (slot.submission.fence() != VK_NULL_HANDLE) {
                auto waited = slot.submission.wait(st.options.timeout);
                if (!waited || *waited != dmabridge::WaitStatus::ready) st.gpu_stuck = true;
            }
        for (auto& slot : st.slots) {
            slot.with_gpu = false;
            slot.desc = nullptr;  // the consumer's, gone after this
            slot.set = {};
            if (st.gpu_stuck) continue;  // pending work may wait on or signal these semaphores
            slot.acquires.clear();
            slot.releases.clear();
            slot.next_releases.clear();
        }
        st.copy_fifo.clear();
        st.unpublished.clear();
    });
    if (st.gpu_stuck)
        return Error::from_errno(ETIMEDOUT, "camera: a frame's GPU work did not complete within " +
                                                std::to_string(st.options.timeout.count()) +
                                                " ms; the pipeline keeps (and will leak) what it may still use" +
                                                (result ? std::string() : ": " + result.error().message()));
    return result;
}

}  // namespace dmabridge::camera
