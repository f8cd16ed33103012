// SPDX-License-Identifier: MIT
#include "camera_pipeline.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <deque>
#include <optional>
#include <vector>

#include <poll.h>

#include <linux/videodev2.h>

#include <dmabridge/cpu_access.hpp>
#include <dmabridge/fence_watcher.hpp>
#include <dmabridge/v4l2/buffer_ring.hpp>
#include <dmabridge/v4l2/device.hpp>
#include <dmabridge/vulkan/import_cache.hpp>
#include <dmabridge/vulkan/sync_bridge.hpp>

#include "gpu_converter.hpp"
#include "pipeline_util.hpp"

namespace camera {

using dmabridge::Errc;
using dmabridge::Error;
using dmabridge::Result;
using dmabridge::Status;
namespace vulkan = dmabridge::vulkan;
namespace v4l2 = dmabridge::v4l2;

const char* to_string(Path p) noexcept { return p == Path::zero_copy ? "zero-copy" : "copy"; }

namespace {

using detail::BufferSet;
using detail::Clock;
using detail::distinct_buffers;
using detail::ms_since;
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

constexpr VkBufferUsageFlags source_usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT;
const vulkan::BufferUse shader_read{VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_ACCESS_SHADER_READ_BIT};

}  // namespace

// One V4L2 buffer (zero_copy) or one staging set (copy) and the frame the GPU works on in it.
struct Slot {
    // The slot's commands, recorded when its buffers were (re)bound, submitted every frame:
    // [0] converts, [1] converts and copies the result into the slot's read-back buffer (recorded
    // on the first frame that asks for a read-back).
    std::array<vulkan::RecordedCommands, 2> commands;
    bool read_back = false;  // the frame in flight was submitted with commands[1]
    vulkan::Submission submission;
    bool with_gpu = false;
    std::uint64_t number = 0;
    std::uint32_t v4l2_index = 0;
    std::uint32_t sequence = 0;
    // zero_copy: the cached imports and the semaphores of the frame in flight.
    std::vector<vulkan::CachedBuffer> imports;
    std::vector<vulkan::Acquire> acquires;
    std::vector<vulkan::Release> releases;
    // The next frame's releases, prepared when the slot went back to the driver: they depend
    // only on the slot's buffers, so preparing them is off the dequeue -> submit path.
    std::vector<vulkan::Release> next_releases;
    std::uint32_t pending_watches = 0;
    std::vector<dmabridge::WatchId> watches;
    // copy: one staging buffer per dma-buf of the V4L2 buffer.
    std::vector<sample::HostBuffer> staging;
    // The imports the commands (and next_releases) were made for.
    std::vector<const vulkan::Buffer*> recorded_for;
    bool commands_stale(const std::vector<vulkan::CachedBuffer>& now) const {
        if (now.size() != recorded_for.size()) return true;
        for (std::size_t i = 0; i < now.size(); ++i)
            if (now[i].get() != recorded_for[i]) return true;
        return false;
    }
};

struct CameraPipeline::State {
    const vulkan::Context* context = nullptr;
    PipelineOptions options;
    double camera_fps = 0;
    sample::DeviceFunctions vk;
    std::optional<v4l2::Device> device;
    std::optional<v4l2::BufferRing> ring;  // after device: stops streaming before the device closes
    FrameLayout layout;
    std::vector<BufferSet> buffer_sets;                    // per V4L2 buffer
    std::vector<std::vector<dmabridge::Mapping>> mappings;  // copy: per V4L2 buffer, per dma-buf
    std::vector<std::vector<std::uint32_t>> copy_bytes;     // copy: per V4L2 buffer, per dma-buf
    std::optional<dmabridge::FenceWatcher> watcher;
    std::optional<vulkan::SyncBridge> bridge;
    std::optional<GpuConverter> converter;
    std::vector<Slot> slots;
    // After slots: destroyed first, it waits for the fences the slots' Submissions own.
    std::optional<vulkan::ImportCache> cache;

    // run()'s bookkeeping.
    std::deque<std::uint32_t> released;  // zero_copy: slots the watcher found idle, in that order
    std::deque<std::uint32_t> unpublished;  // zero_copy: slots submitted, not published yet
    std::optional<Error> watch_error;
    std::deque<std::uint32_t> copy_fifo;  // copy: slots with the GPU, oldest first
    std::uint32_t queued = 0;             // buffers with the driver
    std::size_t incomplete_in_a_row = 0;  // frames skipped as incomplete since the last good one
    std::uint32_t in_flight = 0;
    std::uint64_t submitted = 0, completed = 0, wanted = 0;
    PipelineStats stats;
    std::vector<double> cpu_samples;  // per frame, dequeue -> submit (thread CPU time)
    vulkan::Context::SubmitSemaphores submit_semaphores;
    const FrameCallback* on_frame = nullptr;

    Status queue(std::uint32_t index) {
        if (auto ok = ring->queue(index); !ok) return ok;
        ++queued;
        return {};
    }
    Status submit_zero_copy(const v4l2::Dequeued& d, double cpu_start);
    Status submit_copy(const v4l2::Dequeued& d, double cpu_start);
    Status finish(Slot& slot);
    // Puts the GPU's read fence of the slot's frame on its V4L2 buffers and watches them.
    Status publish(std::uint32_t index);
    // Publishes the submitted frames not published yet, oldest first; all but the newest when
    // `keep_newest` (see run()).
    Status publish_pending(bool keep_newest);
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
};

Result<CameraPipeline> CameraPipeline::create(const vulkan::Context& context, const PipelineOptions& options) {
    auto st = std::make_unique<State>();
    st->context = &context;
    st->options = options;
    const std::uint32_t pixel_format = options.pixel_format ? options.pixel_format : V4L2_PIX_FMT_YUYV;
    auto device = options.device.empty() ? v4l2::Device::find(v4l2::Direction::capture)
                                         : v4l2::Device::open(options.device);
    if (!device) return device.error().with_context("camera");
    st->device.emplace(std::move(*device));
    const auto& caps = st->device->capabilities();
    if (!caps.capture || !caps.streaming)
        return Error::library(Errc::unsupported, "camera: " + st->device->path() + " (" + caps.driver +
                                                     ") cannot stream video capture");
    auto format = st->device->set_format(v4l2::Direction::capture, options.width, options.height, pixel_format);
    if (!format) return format.error().with_context("camera");
    if (options.fps != 0) {
        auto interval = st->device->set_frame_interval(v4l2::Direction::capture, {1, options.fps});
        if (!interval) return interval.error().with_context("camera");
        st->camera_fps = interval->numerator ? static_cast<double>(interval->denominator) / interval->numerator : 0;
    }
    if (options.ring_size == 0) return Error::library(Errc::invalid_argument, "camera: a ring of 0 buffers");
    auto ring = v4l2::BufferRing::create_exported(*st->device, v4l2::Direction::capture, options.ring_size);
    if (!ring) return ring.error().with_context("camera");
    st->ring.emplace(std::move(*ring));
    const auto n = static_cast<std::uint32_t>(st->ring->size());

    for (std::uint32_t i = 0; i < n; ++i) {
        auto layout = frame_layout(st->ring->buffer(i));
        if (!layout)
            return layout.error().with_context("camera: " + st->device->path() + " buffer " + std::to_string(i));
        st->layout = *layout;
        st->buffer_sets.push_back(distinct_buffers(st->ring->buffer(i)));
    }

    auto vk = sample::DeviceFunctions::load(context);
    if (!vk) return vk.error();
    st->vk = *vk;
    auto converter = GpuConverter::create(st->vk, format->width, format->height, n, static_cast<bool>(options.read_back));
    if (!converter) return converter.error().with_context("camera: GPU converter");
    st->converter.emplace(std::move(*converter));
    st->slots.resize(n);

    if (options.path == Path::zero_copy) {
        auto bridge = vulkan::SyncBridge::create(context.device());
        if (!bridge) return bridge.error();
        st->bridge.emplace(std::move(*bridge));
        auto watcher = dmabridge::FenceWatcher::create();
        if (!watcher) return watcher.error();
        st->watcher.emplace(std::move(*watcher));
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
        if (!sizes) return sizes.error().with_context("camera: " + st->device->path());
        st->copy_bytes = sizes->bytes;
        for (std::size_t b = 0; b < sizes->staging.size(); ++b)
            for (auto& slot : st->slots) {
                // As large as the largest of those dma-bufs, so every buffer's layout, checked
                // against its own dma-buf, holds in the copy.
                auto staging = sample::HostBuffer::create(st->vk, sizes->staging[b], source_usage);
                if (!staging) return staging.error().with_context("camera: staging buffer");
                slot.staging.push_back(std::move(*staging));
            }
    }
    return CameraPipeline(std::move(st));
}

CameraPipeline::CameraPipeline(std::unique_ptr<State> state) noexcept : state_(std::move(state)) {}
CameraPipeline::CameraPipeline(CameraPipeline&&) noexcept = default;
CameraPipeline& CameraPipeline::operator=(CameraPipeline&&) noexcept = default;
CameraPipeline::~CameraPipeline() = default;

const FrameLayout& CameraPipeline::layout() const noexcept { return state_->layout; }
const std::string& CameraPipeline::device_path() const noexcept { return state_->device->path(); }

Status CameraPipeline::State::submit_zero_copy(const v4l2::Dequeued& d, double cpu_start) {
    Slot& slot = slots.at(d.index);
    // The slot's last frame is complete (the slot came back from the driver after finish()). The
    // import cache holds that frame's completion itself, whatever happens to the Submission.
    const vulkan::Submission previous = std::move(slot.submission);
    const BufferSet& set = buffer_sets.at(d.index);
    // Cached imports: a miss the first time each V4L2 buffer comes, a hit ever after.
    slot.imports.clear();
    for (const auto* buf : set.buffers) {
        auto imported = cache->import_buffer(*buf, source_usage);
        if (!imported) return imported.error().with_context("camera: import V4L2 buffer " + std::to_string(d.index));
        slot.imports.push_back(std::move(*imported));
    }
    slot.acquires.clear();
    slot.releases.clear();
    for (std::size_t b = 0; b < set.buffers.size(); ++b) {
        auto acquire = bridge->acquire_buffer(*set.buffers[b], *slot.imports[b], dmabridge::Access::read, shader_read);
        if (!acquire) return acquire.error().with_context("camera: acquire");
        slot.acquires.push_back(std::move(*acquire));
    }
    // Releases depend only on the slot's buffers: usually prepared when the slot went back to
    // the driver (finish()); on a slot's first frame, or after its imports changed, here.
    if (slot.next_releases.size() != set.buffers.size() || slot.commands_stale(slot.imports))
        if (auto ok = prepare_releases(slot); !ok) return ok;
    slot.releases = std::move(slot.next_releases);
    // A fence the acquire found goes forward with the release (see SyncBridge::publish).
    for (std::size_t b = 0; b < set.buffers.size(); ++b)
        if (slot.acquires[b].fences) {
            auto carried = slot.acquires[b].fences->dup();
            if (!carried) return carried.error().with_context("camera: release");
            slot.releases[b].depends_on.push_back(std::move(*carried));
        }
    slot.next_releases.clear();
    const bool rebound = converter->bind(d.index, slot.imports[set.of_plane[0]]->handle(),
                                         slot.imports[set.of_plane[1]]->handle());
    if (rebound) {
        for (auto& c : slot.commands) c = {};
    }
    slot.read_back = options.read_back && options.read_back(submitted);
    auto& commands = slot.commands[slot.read_back ? 1 : 0];
    if (!commands.handle()) {
        // The barriers name the buffers, which stay the same as long as the cache keeps them:
        // recorded on the slot's first frame, then submitted as they are.
        auto recorded = context->record([&](VkCommandBuffer cmd) {
            std::vector<VkBufferMemoryBarrier> acquire_barriers, release_barriers;
            for (const auto& a : slot.acquires) acquire_barriers.push_back(a.buffer_barrier);
            for (const auto& r : slot.releases) release_barriers.push_back(r.buffer_barrier);
            vk.CmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, 0, 0,
                                  nullptr, static_cast<std::uint32_t>(acquire_barriers.size()),
                                  acquire_barriers.data(), 0, nullptr);
            converter->record(cmd, d.index, layout, slot.read_back);
            vk.CmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, 0,
                                  0, nullptr, static_cast<std::uint32_t>(release_barriers.size()),
                                  release_barriers.data(), 0, nullptr);
        });
        if (!recorded) return recorded.error().with_context("camera: record");
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
    const double cpu_submitted = thread_cpu_us();
    cpu_samples.push_back(cpu_submitted - cpu_start);

    for (std::size_t b = 0; b < set.buffers.size(); ++b)
        if (auto used = cache->set_last_use(*slot.imports[b], slot.submission); !used)
            return used.error().with_context("camera: record the GPU's use");
    // Published by run() once it has tried to submit the next frame (publish_pending()).
    unpublished.push_back(d.index);
    stats.cpu_us_after_submit += thread_cpu_us() - cpu_submitted;
    return {};
}

Status CameraPipeline::State::publish(std::uint32_t index) {
    const double cpu_start = thread_cpu_us();
    Slot& slot = slots[index];
    const BufferSet& set = buffer_sets.at(index);
    // The GPU's read fence goes on the V4L2 buffer; the watcher hands the slot back once every
    // fence on it has signalled (Access::write: the driver will write into it next).
    slot.pending_watches = 0;
    slot.watches.clear();
    const auto wait_start = Clock::now();  // publish waits for the GPU in wait_for_submit mode
    for (std::size_t b = 0; b < set.buffers.size(); ++b)
        if (auto ok = bridge->publish(slot.releases[b], *set.buffers[b], dmabridge::Access::read,
                                      slot.submission.fence());
            !ok)
            return ok.error().with_context("camera: publish");
    stats.fence_wait_ms += ms_since(wait_start);
    for (std::size_t b = 0; b < set.buffers.size(); ++b) {
        auto id = watcher->watch(
            *set.buffers[b], dmabridge::Access::write,
            [this, index](dmabridge::WatchId, dmabridge::WaitStatus status) {
                if (status != dmabridge::WaitStatus::ready) {
                    watch_error = Error::from_errno(ETIMEDOUT, "camera: the GPU kept V4L2 buffer " +
                                                                      std::to_string(index) + " past the timeout");
                    return;
                }
                if (--slots[index].pending_watches == 0) released.push_back(index);
            },
            options.timeout);
        if (!id) return id.error().with_context("camera: watch");
        slot.watches.push_back(*id);
        ++slot.pending_watches;
    }
    stats.cpu_us_after_submit += thread_cpu_us() - cpu_start;
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

Status CameraPipeline::State::submit_copy(const v4l2::Dequeued& d, double cpu_start) {
    // The staging slot: round robin; the oldest frame's GPU work must be done before reuse.
    const auto k = static_cast<std::uint32_t>(submitted % slots.size());
    Slot& slot = slots[k];
    while (slot.with_gpu)
        if (auto ok = wait_for_gpu(); !ok) return ok;
    const vulkan::Submission previous = std::move(slot.submission);  // complete; freed on return
    const BufferSet& set = buffer_sets.at(d.index);
    for (std::size_t b = 0; b < set.buffers.size(); ++b) {
        // The copy the zero-copy path avoids, bracketed as the kernel asks for CPU access.
        auto cpu = dmabridge::CpuAccess::begin(*set.buffers[b], dmabridge::Access::read);
        if (!cpu) return cpu.error().with_context("camera: begin CPU access");
        const std::uint32_t bytes = copy_bytes.at(d.index).at(b);
        std::memcpy(slot.staging[b].data(), mappings[d.index][b].data(), bytes);
        if (auto ok = cpu->end(); !ok) return ok.error().with_context("camera: end CPU access");
        stats.bytes_copied_by_cpu += bytes;
    }
    // The frame is copied: the driver can have its buffer back at once.
    if (auto ok = queue(d.index); !ok) return ok.error().with_context("camera: re-queue");
    const bool rebound =
        converter->bind(k, slot.staging[set.of_plane[0]].handle(), slot.staging[set.of_plane[1]].handle());
    if (rebound) {
        for (auto& c : slot.commands) c = {};
    }
    slot.read_back = options.read_back && options.read_back(submitted);
    auto& commands = slot.commands[slot.read_back ? 1 : 0];
    if (!commands.handle()) {
        // Host writes before the submit are visible to it (coherent memory, submission order).
        auto recorded =
            context->record([&](VkCommandBuffer cmd) { converter->record(cmd, k, layout, slot.read_back); });
        if (!recorded) return recorded.error().with_context("camera: record");
        commands = std::move(*recorded);
    }
    auto submission = context->submit_async(commands, {});
    if (!submission) return submission.error().with_context("camera: submit");
    slot.submission = std::move(*submission);
    cpu_samples.push_back(thread_cpu_us() - cpu_start);
    copy_fifo.push_back(k);
    return {};
}

// The GPU is done with `slot`'s frame: report it, and (zero_copy) give the buffer back.
Status CameraPipeline::State::finish(Slot& slot) {
    // zero_copy: the watcher says every fence on the buffer signalled; the submit's fence should
    // say the same. Counted if not; the wait below makes sure either way.
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
        if (slot.read_back) info.rgba = converter->readback(k);
        if (options.path == Path::zero_copy) {
            info.source = &ring->buffer(slot.v4l2_index);
        } else {
            const BufferSet& set = buffer_sets.at(slot.v4l2_index);
            const auto bytes = [&](std::size_t b) {
                return std::span<const std::byte>(static_cast<const std::byte*>(slot.staging[b].data()),
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
        if (submitted < wanted) {
            if (auto ok = queue(slot.v4l2_index); !ok) return ok.error().with_context("camera: re-queue");
            const double cpu_start = thread_cpu_us();
            if (auto ok = prepare_releases(slot); !ok) return ok;
            stats.cpu_us_after_submit += thread_cpu_us() - cpu_start;
        }
    }
    return {};
}

// Blocks until the GPU finishes something: the watcher (zero_copy) or the oldest copy frame.
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
    auto ran = watcher->dispatch(options.timeout);
    stats.fence_wait_ms += ms_since(start);
    if (!ran) return ran.error().with_context("camera: fence watcher");
    if (watch_error) return *watch_error;
    if (*ran == 0 && released.empty())
        return Error::from_errno(ETIMEDOUT, "camera: no GPU work completed within the timeout");
    return {};
}

Result<PipelineStats> CameraPipeline::run(std::uint64_t frames, const FrameCallback& on_frame) {
    State& st = *state_;
    st.stats = {};
    st.cpu_samples.clear();
    st.stats.ring_size = static_cast<std::uint32_t>(st.ring->size());
    st.stats.camera_fps = st.camera_fps;
    st.stats.sync_mode = st.bridge ? std::string(vulkan::to_string(st.bridge->mode())) + ", releases " +
                                         vulkan::to_string(st.bridge->release_mode())
                                   : "none (CPU copy)";
    st.on_frame = &on_frame;
    st.wanted = frames;
    st.submitted = st.completed = 0;
    st.queued = st.in_flight = 0;
    st.incomplete_in_a_row = 0;
    st.released.clear();
    st.unpublished.clear();
    st.watch_error.reset();
    const auto cache_before = st.cache ? st.cache->stats() : vulkan::ImportCacheStats{};

    for (std::uint32_t i = 0; i < st.ring->size(); ++i)
        if (auto ok = st.queue(i); !ok) return ok.error().with_context("camera: queue");
    if (auto ok = st.ring->stream_on(); !ok) return ok.error().with_context("camera");
    const auto start = Clock::now();
    const std::string device = st.device->path();

    Status status;
    while (status && st.completed < frames) {
        // Slots the GPU released since the last turn.
        while (status && !st.released.empty()) {
            const std::uint32_t index = st.released.front();
            st.released.pop_front();
            status = st.finish(st.slots[index]);
        }
        if (!status || st.completed >= frames) break;
        if (st.submitted == frames || st.queued == 0) {
            // Everything is submitted, or every buffer is with the GPU: only the GPU can move.
            status = st.publish_pending(false);
            if (status) status = st.wait_for_gpu();
            continue;
        }
        std::array<pollfd, 2> fds{pollfd{st.device->fd(), POLLIN, 0}, pollfd{-1, POLLIN, 0}};
        if (st.watcher) fds[1].fd = st.watcher->fd();
        // Frames not published yet are published before the loop sleeps: their slots come back
        // through the watcher, which needs their fences.
        int ready = st.unpublished.empty() ? 0 : ::poll(fds.data(), fds.size(), 0);
        if (ready == 0 && !st.unpublished.empty()) status = st.publish_pending(false);
        if (!status) break;
        if (ready == 0) ready = ::poll(fds.data(), fds.size(), static_cast<int>(st.options.timeout.count()));
        if (ready < 0 && errno == EINTR) continue;
        if (ready < 0) {
            status = Error::from_errno(errno, "camera: poll");
            break;
        }
        if (ready == 0) {
            status = Error::from_errno(ETIMEDOUT, "camera: no frame from " + device + " within " +
                                                         std::to_string(st.options.timeout.count()) + " ms");
            break;
        }
        if (fds[1].revents) {
            auto ran = st.watcher->dispatch(dmabridge::Timeout{0});
            if (!ran) status = ran.error();
            else if (st.watch_error) status = *st.watch_error;
            if (!status) break;
        }
        if (!fds[0].revents) continue;
        const double cpu_start = thread_cpu_us();
        auto d = st.ring->dequeue(dmabridge::Timeout{0});
        if (!d) {
            status = d.error().with_context("camera");
            break;
        }
        if (!d->has_value()) continue;
        --st.queued;
        const v4l2::Dequeued frame = **d;
        if (frame.error) {
            ++st.stats.driver_errors;
            status = st.queue(frame.index);
            continue;
        }
        if (frame.incomplete) {
            // Fewer bytes than the layout covers (bytesused), or not where it says: the rest
            // of the buffer is an older frame's. Neither path converts it.
            ++st.stats.incomplete_frames;
            // A driver that never fills the layout (data always at an offset) would starve the
            // loop: give up after every buffer of the ring came back so, twice.
            if (++st.incomplete_in_a_row > 2 * st.ring->size()) {
                status = Error::library(
                    Errc::unsupported,
                    "camera: " + device + " delivered " + std::to_string(st.incomplete_in_a_row) +
                        " frames in a row that do not fill the frame layout from byte 0 (buffer plane 0: bytesused " +
                        std::to_string(frame.plane_bytes_used[0]) + ", data_offset " +
                        std::to_string(frame.plane_data_offset[0]) + ")");
                break;
            }
            status = st.queue(frame.index);
            continue;
        }
        st.incomplete_in_a_row = 0;
        Slot& slot = st.slots[st.options.path == Path::zero_copy ? frame.index : st.submitted % st.slots.size()];
        status = st.options.path == Path::zero_copy ? st.submit_zero_copy(frame, cpu_start)
                                                    : st.submit_copy(frame, cpu_start);
        if (!status) break;
        slot.with_gpu = true;
        slot.number = st.submitted++;
        slot.v4l2_index = frame.index;
        slot.sequence = frame.sequence;
        st.stats.max_in_flight = std::max(st.stats.max_in_flight, ++st.in_flight);
        // The frames before this one are published now, this one after the next submit (or
        // before the loop sleeps). Where publish() waits for the GPU (ReleaseMode::
        // wait_for_submit: lavapipe), the next frame is then already queued behind the one
        // waited for, so the GPU does not idle between frames and the next vkQueueSubmit does
        // not have to wake an idle queue (about 110 us against 30 us in the VM).
        status = st.publish_pending(true);
    }
    // Whatever happened, leave nothing on the GPU and nothing streaming.
    for (auto& slot : st.slots)
        if (slot.with_gpu) (void)slot.submission.wait(st.options.timeout);
    for (auto& slot : st.slots) {
        if (st.watcher)
            for (auto id : slot.watches) (void)st.watcher->cancel(id);
        slot.watches.clear();
        slot.with_gpu = false;
        slot.acquires.clear();
        slot.releases.clear();
        slot.next_releases.clear();
    }
    st.copy_fifo.clear();
    st.in_flight = 0;
    st.released.clear();
    st.unpublished.clear();
    const auto stopped = st.ring->stream_off();
    if (!status) return status.error();
    if (!stopped) return stopped.error().with_context("camera");

    PipelineStats s = st.stats;
    s.frames = st.completed;
    s.seconds = ms_since(start) / 1000.0;
    s.fps = s.seconds > 0 ? static_cast<double>(s.frames) / s.seconds : 0;
    if (st.cache) {
        const auto after = st.cache->stats();
        s.cache_hits = after.hits - cache_before.hits;
        s.cache_misses = after.misses - cache_before.misses;
    }
    if (s.frames > 0) s.cpu_us_after_submit /= static_cast<double>(s.frames);
    if (!st.cpu_samples.empty()) {
        auto samples = st.cpu_samples;
        double sum = 0;
        for (double v : samples) sum += v;
        s.cpu_us_dequeue_to_submit = sum / static_cast<double>(samples.size());
        std::sort(samples.begin(), samples.end());
        s.cpu_us_dequeue_to_submit_median = samples[samples.size() / 2];
    }
    return s;
}

}  // namespace camera
