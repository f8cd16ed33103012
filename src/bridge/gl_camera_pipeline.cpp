// SPDX-License-Identifier: MIT
#include <dmabridge/bridge/gl_camera_pipeline.hpp>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <deque>
#include <optional>
#include <vector>

#include <dmabridge/egl/import_cache.hpp>
#include <dmabridge/egl/sync_bridge.hpp>
#include <dmabridge/kernel/cpu_access.hpp>
#include <dmabridge/queue/consumer.hpp>

#include "bridge/camera_frame_loop.hpp"
#include <dmabridge/egl/frame_converter.hpp>
#include "bridge/camera_util.hpp"

namespace dmabridge::camera {

using dmabridge::Errc;
using dmabridge::Error;
using dmabridge::Result;
using dmabridge::Status;
namespace egl = dmabridge::egl;
namespace queue = dmabridge::queue;
using detail::BufferSet;
using detail::Clock;
using detail::distinct_buffers;
using detail::ms_since;
using detail::release_fence;
using detail::thread_cpu_us;

namespace {

// One V4L2 buffer (zero_copy) or one upload slot (copy) and the frame the GPU works on in it.
struct GlSlot {
    bool with_gpu = false;
    bool read_back = false;
    std::uint64_t number = 0;
    std::uint32_t v4l2_index = 0;
    std::uint32_t sequence = 0;
    // When the GL work of the frame completed (the release's native fence, or a GL fence).
    std::shared_ptr<const dmabridge::Completion> done;
    // zero_copy: the frame's buffer as the queue's consumer received it (the same objects
    // whenever the buffer comes back), its distinct dma-bufs, and its cached imports.
    const dmabridge::BufferDesc* desc = nullptr;
    BufferSet set;
    std::vector<egl::CachedImage> imports;
    // copy: the CPU's copy of the frame, per dma-buf of the V4L2 buffer.
    std::vector<std::vector<std::byte>> staging;
};

}  // namespace

struct GlCameraPipeline::State {
    const egl::Context* context = nullptr;
    PipelineOptions options;
    // The camera: V4L2 device and ring, served through a queue. Its one consumer, per run():
    // buffers come back to the driver when released with the GL work's fence and that signalled.
    std::optional<dmabridge::v4l2::CaptureSource> source;
    std::optional<queue::Consumer> consumer;
    dmabridge::FrameLayout layout;
    std::vector<BufferSet> buffer_sets;                     // per V4L2 buffer (the ring's)
    // zero_copy: per V4L2 buffer, texel views of the consumer's description (made on the
    // buffer's first frame of a run)
    std::vector<std::vector<dmabridge::BufferDesc>> views;
    std::vector<std::vector<dmabridge::Mapping>> mappings;  // copy: per V4L2 buffer, per dma-buf
    std::optional<egl::SyncBridge> bridge;
    std::optional<egl::FrameConverter> converter;
    std::vector<GlSlot> slots;
    // After slots: destroyed first, once every recorded use completed.
    std::optional<egl::ImportCache> cache;

    std::deque<std::uint32_t> copy_fifo;  // copy: slots with the GPU, oldest first
    std::size_t to_acquire = 0;           // frames the queue holds for the consumer
    std::uint32_t in_flight = 0;
    std::uint64_t submitted = 0, completed = 0, wanted = 0;
    PipelineStats stats;
    std::vector<double> cpu_samples;
    std::vector<std::uint8_t> rgba;  // the read-back frame
    const FrameCallback* on_frame = nullptr;

    Status submit_zero_copy(const queue::AcquiredFrame& f, double cpu_start);
    Status submit_copy(const queue::AcquiredFrame& f, double cpu_start);
    Status finish(GlSlot& slot);
    Status wait_for_gpu();
    Status finish_completed_copies();
    // For detail::stream_frames: copies the GL finished since the last turn; releases are made
    // at submit (GL's native fence exists as soon as the work is flushed).
    Status before_turn() { return options.path == Path::copy ? finish_completed_copies() : Status{}; }
    Status publish_pending(bool) { return {}; }
    bool has_unpublished() const noexcept { return false; }
    // Called by the source when buffer `index` came back from the queue, before the driver
    // has it again: the frame in it is complete.
    Status returned(std::uint32_t index) {
        if (options.path != Path::zero_copy || index >= slots.size() || !slots[index].with_gpu) return {};
        return finish(slots[index]);
    }
};

Result<GlCameraPipeline> GlCameraPipeline::create(const egl::Context& context, const PipelineOptions& options) {
    if (context.empty() || !context.is_current())
        return Error::library(Errc::invalid_argument, "GL camera: the EGL context is not current on this thread");
    auto st = std::make_unique<State>();
    st->context = &context;
    st->options = options;
    auto source = dmabridge::v4l2::CaptureSource::open(capture_options(options), "GL camera");
    if (!source) return source.error();
    st->source.emplace(std::move(*source));
    const auto n = static_cast<std::uint32_t>(st->source->size());
    for (std::uint32_t i = 0; i < n; ++i) {
        auto layout = dmabridge::frame_layout(st->source->buffer(i));
        if (!layout)
            return layout.error().with_context("GL camera: " + st->source->device().path() + " buffer " +
                                               std::to_string(i));
        st->layout = *layout;
        st->buffer_sets.push_back(distinct_buffers(st->source->buffer(i)));
    }
    auto converter = egl::FrameConverter::create(st->source->buffer(0).layout(), n, options.path == Path::copy);
    if (!converter) return converter.error();
    st->converter.emplace(std::move(*converter));
    st->slots.resize(n);

    if (options.path == Path::zero_copy) {
        // Checked now, on the ring's descriptions (the consumer's are the same buffers).
        for (std::uint32_t i = 0; i < n; ++i)
            if (auto views = dmabridge::texel_views(st->source->buffer(i)); !views)
                return views.error().with_context("GL camera: buffer " + std::to_string(i));
        st->views.resize(n);
        auto bridge = egl::SyncBridge::create(context);
        if (!bridge) return bridge.error();
        st->bridge.emplace(std::move(*bridge));
        // Room for every view of every buffer of the ring: each is imported once, then hit.
        st->cache.emplace(context, egl::ImportCacheOptions{.max_entries = std::size_t{n} * 4});
    } else {
        for (std::uint32_t i = 0; i < n; ++i) {
            std::vector<dmabridge::Mapping> maps;
            for (const auto* buf : st->buffer_sets[i].buffers) {
                auto map = dmabridge::Mapping::map(*buf, dmabridge::Access::read);
                if (!map) return map.error().with_context("GL camera: map V4L2 buffer " + std::to_string(i));
                maps.push_back(std::move(*map));
            }
            st->mappings.push_back(std::move(maps));
        }
        // Staging as large as the largest dma-buf at each position, as the Vulkan copy path.
        std::vector<std::size_t> largest;
        for (const auto& set : st->buffer_sets)
            for (std::size_t b = 0; b < set.buffers.size(); ++b) {
                if (largest.size() <= b) largest.resize(b + 1, 0);
                largest[b] = std::max<std::size_t>(largest[b], set.buffers[b]->size());
            }
        for (auto& slot : st->slots)
            for (std::size_t size : largest) slot.staging.emplace_back(size);
    }
    State* state = st.get();  // stable: the State lives on the heap, whoever owns it
    st->source->on_returned([state](queue::BufferIndex index) { return state->returned(index); });
    return GlCameraPipeline(std::move(st));
}

GlCameraPipeline::GlCameraPipeline(std::unique_ptr<State> state) noexcept : state_(std::move(state)) {}
GlCameraPipeline::GlCameraPipeline(GlCameraPipeline&&) noexcept = default;
GlCameraPipeline& GlCameraPipeline::operator=(GlCameraPipeline&&) noexcept = default;
GlCameraPipeline::~GlCameraPipeline() = default;

const dmabridge::FrameLayout& GlCameraPipeline::layout() const noexcept {
    static const dmabridge::FrameLayout none{};
    return state_ ? state_->layout : none;
}
const std::string& GlCameraPipeline::device_path() const noexcept {
    static const std::string none;
    return state_ ? state_->source->device().path() : none;
}

Status GlCameraPipeline::State::submit_zero_copy(const queue::AcquiredFrame& f, double cpu_start) {
    const std::uint32_t index = f.buffer;
    GlSlot& slot = slots.at(index);
    const dmabridge::BufferDesc& frame = *f.desc;
    if (slot.desc != f.desc) {  // the buffer's first frame of this run: the consumer's objects stay
        slot.desc = f.desc;
        slot.set = distinct_buffers(frame);
    }
    if (views.at(index).empty()) {
        auto made = dmabridge::texel_views(frame);
        if (!made) return made.error().with_context("GL camera: buffer " + std::to_string(index));
        views[index] = std::move(*made);
    }
    // Cached imports: a miss the first time each V4L2 buffer comes, a hit ever after (in later
    // runs too: another consumer's fds, the same dma-bufs).
    slot.imports.clear();
    for (const auto& view : views[index]) {
        auto imported = cache->import(view, egl::ImportOptions{.target = egl::texture_2d});
        if (!imported) return imported.error().with_context("GL camera: import");
        slot.imports.push_back(std::move(*imported));
    }
    // The driver's fences on the buffer (if any) become a wait of the GPU, not of this thread.
    if (auto ok = bridge->acquire(frame, dmabridge::Access::read); !ok)
        return ok.error().with_context("GL camera: acquire");
    slot.read_back = options.read_back && options.read_back(submitted);
    const unsigned int plane1 = slot.imports.size() > 1 ? slot.imports[1]->texture() : 0;
    if (auto ok = converter->convert(index, slot.imports[0]->texture(), plane1); !ok) return ok;
    // The work's fence goes on the V4L2 buffer as a read fence, and with the release to the
    // queue: the buffer goes back to the driver once it signalled (the producer's FenceWatcher).
    auto done = bridge->release(frame, dmabridge::Access::read);
    if (!done) return done.error().with_context("GL camera: release");
    slot.done = *done;
    cpu_samples.push_back(thread_cpu_us() - cpu_start);

    for (const auto& image : slot.imports)
        if (auto ok = cache->set_last_use(*image, slot.done); !ok)
            return ok.error().with_context("GL camera: record the GPU's use");
    auto fence = release_fence(*slot.desc);
    if (!fence) return fence.error().with_context("GL camera: release fence");
    if (!*fence) {  // no fence to give (a kernel before 6.0): the GL work must be done first
        const auto gpu_start = Clock::now();
        auto waited = slot.done->wait(options.timeout);
        stats.fence_wait_ms += ms_since(gpu_start);
        if (!waited || *waited != dmabridge::WaitStatus::ready)
            return Error::from_errno(ETIMEDOUT, "GL camera: the GPU did not finish a frame in time");
    }
    if (auto ok = consumer->release(index, std::move(*fence)); !ok) return ok.error().with_context("GL camera: release");
    return {};
}

Status GlCameraPipeline::State::submit_copy(const queue::AcquiredFrame& f, double cpu_start) {
    const auto k = static_cast<std::uint32_t>(submitted % slots.size());
    GlSlot& slot = slots[k];
    while (slot.with_gpu)
        if (auto ok = wait_for_gpu(); !ok) return ok;
    const BufferSet& set = buffer_sets.at(f.buffer);
    for (std::size_t b = 0; b < set.buffers.size(); ++b) {
        // The copy the zero-copy path avoids, bracketed as the kernel asks for CPU access.
        auto cpu = dmabridge::CpuAccess::begin(*set.buffers[b], dmabridge::Access::read);
        if (!cpu) return cpu.error().with_context("GL camera: begin CPU access");
        const std::size_t bytes = set.buffers[b]->size();
        std::memcpy(slot.staging[b].data(), mappings[f.buffer][b].data(), bytes);
        if (auto ok = cpu->end(); !ok) return ok.error().with_context("GL camera: end CPU access");
        stats.bytes_copied_by_cpu += bytes;
    }
    // The frame is copied: the driver can have its buffer back at once (no fence: the CPU is done).
    if (auto ok = consumer->release(f.buffer); !ok) return ok.error().with_context("GL camera: release");
    const auto bytes = [&](std::size_t plane) {
        const std::size_t b = set.of_plane[plane];
        return std::span<const std::byte>(slot.staging[b].data(), set.buffers[b]->size());
    };
    auto uploaded = converter->upload_and_convert(k, bytes(0), bytes(1));
    if (!uploaded) return uploaded.error();
    slot.read_back = options.read_back && options.read_back(submitted);
    auto done = context->fence();
    if (!done) return done.error().with_context("GL camera: fence");
    slot.done = *done;
    cpu_samples.push_back(thread_cpu_us() - cpu_start);
    copy_fifo.push_back(k);
    return {};
}

// The GPU is done with `slot`'s frame: report it, and (zero_copy) give the buffer back.
Status GlCameraPipeline::State::finish(GlSlot& slot) {
    if (slot.done)
        if (auto waited = slot.done->wait(options.timeout); !waited || *waited != dmabridge::WaitStatus::ready)
            return Error::from_errno(ETIMEDOUT, "GL camera: the GPU did not finish a frame in time");
    const auto k = static_cast<std::uint32_t>(&slot - slots.data());
    if (on_frame && *on_frame) {
        FrameInfo info;
        info.number = slot.number;
        info.slot = slot.v4l2_index;
        info.sequence = slot.sequence;
        info.layout = layout;
        info.gl_texture = converter->target(k);
        if (slot.read_back) {
            if (auto ok = converter->read_back(k, rgba); !ok) return ok;
            info.rgba = rgba;
        }
        if (options.path == Path::zero_copy) {
            info.source = slot.desc;
        } else {
            const BufferSet& set = buffer_sets.at(slot.v4l2_index);
            const auto bytes = [&](std::size_t plane) {
                const std::size_t b = set.of_plane[plane];
                return std::span<const std::byte>(slot.staging[b].data(), set.buffers[b]->size());
            };
            info.staged0 = bytes(0);
            info.staged1 = bytes(1);
        }
        (*on_frame)(info);
    }
    slot.with_gpu = false;
    slot.done.reset();
    slot.imports.clear();
    --in_flight;
    ++completed;
    return {};
}

Status GlCameraPipeline::State::finish_completed_copies() {
    while (!copy_fifo.empty() && slots[copy_fifo.front()].done->done()) {
        const std::uint32_t k = copy_fifo.front();
        copy_fifo.pop_front();
        if (auto ok = finish(slots[k]); !ok) return ok;
    }
    return {};
}

// Blocks until the GPU finishes something: the oldest copy frame, or (zero_copy) a buffer the
// queue gives back (the source calls finish() for it).
Status GlCameraPipeline::State::wait_for_gpu() {
    const auto start = Clock::now();
    if (options.path == Path::copy) {
        if (copy_fifo.empty())
            return Error::library(Errc::invalid_argument, "GL camera: nothing on the GPU to wait for");
        const std::uint32_t k = copy_fifo.front();
        copy_fifo.pop_front();
        auto waited = slots[k].done->wait(options.timeout);
        stats.fence_wait_ms += ms_since(start);
        if (!waited) return waited.error();
        return finish(slots[k]);
    }
    return detail::pump_source(*this, start);
}

Result<PipelineStats> GlCameraPipeline::run(std::uint64_t frames, const FrameCallback& on_frame) {
    if (!state_) return Error::library(Errc::empty_object, "camera: run a moved-from GlCameraPipeline");
    State& st = *state_;
    if (!st.context->is_current())
        return Error::library(Errc::invalid_argument, "GL camera: the EGL context is not current on this thread");
    st.stats = {};
    st.cpu_samples.clear();
    st.stats.ring_size = static_cast<std::uint32_t>(st.source->size());
    st.stats.camera_fps = st.source->frame_rate();
    if (st.bridge) {
        st.stats.sync_mode = std::string("EGL ") + egl::to_string(st.bridge->mode());
        if (const auto why = st.bridge->reason(); !why.empty()) st.stats.sync_mode += " (" + why + ")";
    } else {
        st.stats.sync_mode = "none (CPU copy)";
    }
    st.on_frame = &on_frame;
    st.wanted = frames;
    st.submitted = st.completed = 0;
    st.in_flight = 0;
    st.copy_fifo.clear();
    for (auto& v : st.views) v.clear();  // of the last run's consumer
    return detail::run_frames(st, frames, "GL camera", [&st] {
        for (auto& slot : st.slots) {
            if (slot.done) (void)slot.done->wait(st.options.timeout);
            slot.imports.clear();
            slot.done.reset();
            slot.with_gpu = false;
            slot.desc = nullptr;  // the consumer's, gone after this
            slot.set = {};
        }
        st.copy_fifo.clear();
        for (auto& v : st.views) v.clear();
    });
}

}  // namespace dmabridge::camera
