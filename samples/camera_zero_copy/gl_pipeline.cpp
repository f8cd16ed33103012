// SPDX-License-Identifier: MIT
#include "gl_pipeline.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <deque>
#include <optional>
#include <vector>

#include <poll.h>

#include <linux/videodev2.h>

#include <dmabridge/cpu_access.hpp>
#include <dmabridge/egl/import_cache.hpp>
#include <dmabridge/egl/sync_bridge.hpp>
#include <dmabridge/fence_watcher.hpp>
#include <dmabridge/v4l2/buffer_ring.hpp>
#include <dmabridge/v4l2/device.hpp>

#include "gl_converter.hpp"
#include "pipeline_util.hpp"

namespace camera {

using dmabridge::Errc;
using dmabridge::Error;
using dmabridge::Result;
using dmabridge::Status;
namespace egl = dmabridge::egl;
namespace v4l2 = dmabridge::v4l2;
using detail::BufferSet;
using detail::Clock;
using detail::distinct_buffers;
using detail::ms_since;
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
    // zero_copy: the cached imports of the frame in flight and the watches of its buffers.
    std::vector<egl::CachedImage> imports;
    std::vector<dmabridge::WatchId> watches;
    std::uint32_t pending_watches = 0;
    // copy: the CPU's copy of the frame, per dma-buf of the V4L2 buffer.
    std::vector<std::vector<std::byte>> staging;
};

}  // namespace

struct GlCameraPipeline::State {
    const egl::Context* context = nullptr;
    PipelineOptions options;
    double camera_fps = 0;
    std::optional<v4l2::Device> device;
    std::optional<v4l2::BufferRing> ring;  // after device: stops streaming before the device closes
    FrameLayout layout;
    std::vector<BufferSet> buffer_sets;                     // per V4L2 buffer
    std::vector<std::vector<dmabridge::BufferDesc>> views;  // zero_copy: per V4L2 buffer, texel views
    std::vector<std::vector<dmabridge::Mapping>> mappings;  // copy: per V4L2 buffer, per dma-buf
    std::optional<dmabridge::FenceWatcher> watcher;
    std::optional<egl::SyncBridge> bridge;
    std::optional<GlConverter> converter;
    std::vector<GlSlot> slots;
    // After slots: destroyed first, once every recorded use completed.
    std::optional<egl::ImportCache> cache;

    std::deque<std::uint32_t> released;   // zero_copy: slots the watcher found idle
    std::deque<std::uint32_t> copy_fifo;  // copy: slots with the GPU, oldest first
    std::optional<Error> watch_error;
    std::uint32_t queued = 0;
    std::size_t incomplete_in_a_row = 0;
    std::uint32_t in_flight = 0;
    std::uint64_t submitted = 0, completed = 0, wanted = 0;
    PipelineStats stats;
    std::vector<double> cpu_samples;
    std::vector<std::uint8_t> rgba;  // the read-back frame
    const FrameCallback* on_frame = nullptr;

    Status queue(std::uint32_t index) {
        if (auto ok = ring->queue(index); !ok) return ok;
        ++queued;
        return {};
    }
    Status submit_zero_copy(const v4l2::Dequeued& d, double cpu_start);
    Status submit_copy(const v4l2::Dequeued& d, double cpu_start);
    Status finish(GlSlot& slot);
    Status wait_for_gpu();
    Status finish_completed_copies();
};

Result<GlCameraPipeline> GlCameraPipeline::create(const egl::Context& context, const PipelineOptions& options) {
    if (context.empty() || !context.is_current())
        return Error::library(Errc::invalid_argument, "GL camera: the EGL context is not current on this thread");
    auto st = std::make_unique<State>();
    st->context = &context;
    st->options = options;
    const std::uint32_t pixel_format = options.pixel_format ? options.pixel_format : V4L2_PIX_FMT_YUYV;
    auto device = options.device.empty() ? v4l2::Device::find(v4l2::Direction::capture)
                                         : v4l2::Device::open(options.device);
    if (!device) return device.error().with_context("GL camera");
    st->device.emplace(std::move(*device));
    const auto& caps = st->device->capabilities();
    if (!caps.capture || !caps.streaming)
        return Error::library(Errc::unsupported, "GL camera: " + st->device->path() + " (" + caps.driver +
                                                     ") cannot stream video capture");
    auto format = st->device->set_format(v4l2::Direction::capture, options.width, options.height, pixel_format);
    if (!format) return format.error().with_context("GL camera");
    if (options.fps != 0) {
        auto interval = st->device->set_frame_interval(v4l2::Direction::capture, {1, options.fps});
        if (!interval) return interval.error().with_context("GL camera");
        st->camera_fps = interval->numerator ? static_cast<double>(interval->denominator) / interval->numerator : 0;
    }
    if (options.ring_size == 0) return Error::library(Errc::invalid_argument, "GL camera: a ring of 0 buffers");
    auto ring = v4l2::BufferRing::create_exported(*st->device, v4l2::Direction::capture, options.ring_size);
    if (!ring) return ring.error().with_context("GL camera");
    st->ring.emplace(std::move(*ring));
    const auto n = static_cast<std::uint32_t>(st->ring->size());
    for (std::uint32_t i = 0; i < n; ++i) {
        auto layout = frame_layout(st->ring->buffer(i));
        if (!layout)
            return layout.error().with_context("GL camera: " + st->device->path() + " buffer " + std::to_string(i));
        st->layout = *layout;
        st->buffer_sets.push_back(distinct_buffers(st->ring->buffer(i)));
    }
    auto converter = GlConverter::create(st->layout, n, options.path == Path::copy);
    if (!converter) return converter.error();
    st->converter.emplace(std::move(*converter));
    st->slots.resize(n);

    if (options.path == Path::zero_copy) {
        for (std::uint32_t i = 0; i < n; ++i) {
            auto views = view_descriptions(st->ring->buffer(i), st->layout);
            if (!views) return views.error().with_context("GL camera: buffer " + std::to_string(i));
            st->views.push_back(std::move(*views));
        }
        auto bridge = egl::SyncBridge::create(context);
        if (!bridge) return bridge.error();
        st->bridge.emplace(std::move(*bridge));
        auto watcher = dmabridge::FenceWatcher::create();
        if (!watcher) return watcher.error();
        st->watcher.emplace(std::move(*watcher));
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
    return GlCameraPipeline(std::move(st));
}

GlCameraPipeline::GlCameraPipeline(std::unique_ptr<State> state) noexcept : state_(std::move(state)) {}
GlCameraPipeline::GlCameraPipeline(GlCameraPipeline&&) noexcept = default;
GlCameraPipeline& GlCameraPipeline::operator=(GlCameraPipeline&&) noexcept = default;
GlCameraPipeline::~GlCameraPipeline() = default;

const FrameLayout& GlCameraPipeline::layout() const noexcept { return state_->layout; }
const std::string& GlCameraPipeline::device_path() const noexcept { return state_->device->path(); }

Status GlCameraPipeline::State::submit_zero_copy(const v4l2::Dequeued& d, double cpu_start) {
    GlSlot& slot = slots.at(d.index);
    const dmabridge::BufferDesc& frame = ring->buffer(d.index);
    // Cached imports: a miss the first time each V4L2 buffer comes, a hit ever after.
    slot.imports.clear();
    for (const auto& view : views.at(d.index)) {
        auto imported = cache->import(view, egl::ImportOptions{.target = egl::texture_2d});
        if (!imported) return imported.error().with_context("GL camera: import");
        slot.imports.push_back(std::move(*imported));
    }
    // The driver's fences on the buffer (if any) become a wait of the GPU, not of this thread.
    if (auto ok = bridge->acquire(frame, dmabridge::Access::read); !ok)
        return ok.error().with_context("GL camera: acquire");
    slot.read_back = options.read_back && options.read_back(submitted);
    const unsigned int plane1 = slot.imports.size() > 1 ? slot.imports[1]->texture() : 0;
    if (auto ok = converter->convert(d.index, slot.imports[0]->texture(), plane1); !ok) return ok;
    // The work's fence goes on the V4L2 buffer as a read fence: the driver, and the watcher
    // below, wait for it by themselves.
    auto done = bridge->release(frame, dmabridge::Access::read);
    if (!done) return done.error().with_context("GL camera: release");
    slot.done = *done;
    cpu_samples.push_back(thread_cpu_us() - cpu_start);

    const double cpu_after = thread_cpu_us();
    for (const auto& image : slot.imports)
        if (auto ok = cache->set_last_use(*image, slot.done); !ok)
            return ok.error().with_context("GL camera: record the GPU's use");
    const BufferSet& set = buffer_sets.at(d.index);
    slot.watches.clear();
    slot.pending_watches = 0;
    const std::uint32_t index = d.index;
    for (const auto* buf : set.buffers) {
        auto id = watcher->watch(
            *buf, dmabridge::Access::write,
            [this, index](dmabridge::WatchId, dmabridge::WaitStatus status) {
                if (status != dmabridge::WaitStatus::ready) {
                    watch_error = Error::from_errno(ETIMEDOUT, "GL camera: the GPU kept V4L2 buffer " +
                                                                   std::to_string(index) + " past the timeout");
                    return;
                }
                if (--slots[index].pending_watches == 0) released.push_back(index);
            },
            options.timeout);
        if (!id) return id.error().with_context("GL camera: watch");
        slot.watches.push_back(*id);
        ++slot.pending_watches;
    }
    stats.cpu_us_after_submit += thread_cpu_us() - cpu_after;
    return {};
}

Status GlCameraPipeline::State::submit_copy(const v4l2::Dequeued& d, double cpu_start) {
    const auto k = static_cast<std::uint32_t>(submitted % slots.size());
    GlSlot& slot = slots[k];
    while (slot.with_gpu)
        if (auto ok = wait_for_gpu(); !ok) return ok;
    const BufferSet& set = buffer_sets.at(d.index);
    for (std::size_t b = 0; b < set.buffers.size(); ++b) {
        // The copy the zero-copy path avoids, bracketed as the kernel asks for CPU access.
        auto cpu = dmabridge::CpuAccess::begin(*set.buffers[b], dmabridge::Access::read);
        if (!cpu) return cpu.error().with_context("GL camera: begin CPU access");
        const std::size_t bytes = set.buffers[b]->size();
        std::memcpy(slot.staging[b].data(), mappings[d.index][b].data(), bytes);
        if (auto ok = cpu->end(); !ok) return ok.error().with_context("GL camera: end CPU access");
        stats.bytes_copied_by_cpu += bytes;
    }
    if (auto ok = queue(d.index); !ok) return ok.error().with_context("GL camera: re-queue");
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
        if (slot.read_back) {
            if (auto ok = converter->read_back(k, rgba); !ok) return ok;
            info.rgba = rgba;
        }
        if (options.path == Path::zero_copy) {
            info.source = &ring->buffer(slot.v4l2_index);
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
    slot.watches.clear();
    --in_flight;
    ++completed;
    if (options.path == Path::zero_copy && submitted < wanted)
        if (auto ok = queue(slot.v4l2_index); !ok) return ok.error().with_context("GL camera: re-queue");
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

// Blocks until the GPU finishes something: the watcher (zero_copy) or the oldest copy frame.
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
    auto ran = watcher->dispatch(options.timeout);
    stats.fence_wait_ms += ms_since(start);
    if (!ran) return ran.error().with_context("GL camera: fence watcher");
    if (watch_error) return *watch_error;
    if (*ran == 0 && released.empty())
        return Error::from_errno(ETIMEDOUT, "GL camera: no GPU work completed within the timeout");
    return {};
}

Result<PipelineStats> GlCameraPipeline::run(std::uint64_t frames, const FrameCallback& on_frame) {
    State& st = *state_;
    if (!st.context->is_current())
        return Error::library(Errc::invalid_argument, "GL camera: the EGL context is not current on this thread");
    st.stats = {};
    st.cpu_samples.clear();
    st.stats.ring_size = static_cast<std::uint32_t>(st.ring->size());
    st.stats.camera_fps = st.camera_fps;
    if (st.bridge) {
        st.stats.sync_mode = std::string("EGL ") + egl::to_string(st.bridge->mode());
        if (const auto why = st.bridge->reason(); !why.empty()) st.stats.sync_mode += " (" + why + ")";
    } else {
        st.stats.sync_mode = "none (CPU copy)";
    }
    st.on_frame = &on_frame;
    st.wanted = frames;
    st.submitted = st.completed = 0;
    st.queued = st.in_flight = 0;
    st.incomplete_in_a_row = 0;
    st.released.clear();
    st.copy_fifo.clear();
    st.watch_error.reset();
    const auto cache_before = st.cache ? st.cache->stats() : egl::ImportCacheStats{};

    for (std::uint32_t i = 0; i < st.ring->size(); ++i)
        if (auto ok = st.queue(i); !ok) return ok.error().with_context("GL camera: queue");
    if (auto ok = st.ring->stream_on(); !ok) return ok.error().with_context("GL camera");
    const auto start = Clock::now();
    const std::string device = st.device->path();

    Status status;
    while (status && st.completed < frames) {
        while (status && !st.released.empty()) {
            const std::uint32_t index = st.released.front();
            st.released.pop_front();
            status = st.finish(st.slots[index]);
        }
        if (status && st.options.path == Path::copy) status = st.finish_completed_copies();
        if (!status || st.completed >= frames) break;
        if (st.submitted == frames || st.queued == 0) {
            status = st.wait_for_gpu();  // only the GPU can move
            continue;
        }
        std::array<pollfd, 2> fds{pollfd{st.device->fd(), POLLIN, 0}, pollfd{-1, POLLIN, 0}};
        if (st.watcher) fds[1].fd = st.watcher->fd();
        int ready = ::poll(fds.data(), fds.size(), static_cast<int>(st.options.timeout.count()));
        if (ready < 0 && errno == EINTR) continue;
        if (ready < 0) {
            status = Error::from_errno(errno, "GL camera: poll");
            break;
        }
        if (ready == 0) {
            status = Error::from_errno(ETIMEDOUT, "GL camera: no frame from " + device + " within " +
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
            status = d.error().with_context("GL camera");
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
            ++st.stats.incomplete_frames;
            if (++st.incomplete_in_a_row > 2 * st.ring->size()) {
                status = Error::library(Errc::unsupported, "GL camera: " + device + " delivered " +
                                                               std::to_string(st.incomplete_in_a_row) +
                                                               " incomplete frames in a row");
                break;
            }
            status = st.queue(frame.index);
            continue;
        }
        st.incomplete_in_a_row = 0;
        GlSlot& slot = st.slots[st.options.path == Path::zero_copy ? frame.index : st.submitted % st.slots.size()];
        status = st.options.path == Path::zero_copy ? st.submit_zero_copy(frame, cpu_start)
                                                    : st.submit_copy(frame, cpu_start);
        if (!status) break;
        slot.with_gpu = true;
        slot.number = st.submitted++;
        slot.v4l2_index = frame.index;
        slot.sequence = frame.sequence;
        st.stats.max_in_flight = std::max(st.stats.max_in_flight, ++st.in_flight);
    }
    // Whatever happened, leave nothing on the GPU and nothing streaming.
    for (auto& slot : st.slots) {
        if (slot.done) (void)slot.done->wait(st.options.timeout);
        if (st.watcher)
            for (auto id : slot.watches) (void)st.watcher->cancel(id);
        slot.watches.clear();
        slot.imports.clear();
        slot.done.reset();
        slot.with_gpu = false;
    }
    st.copy_fifo.clear();
    st.released.clear();
    st.in_flight = 0;
    const auto stopped = st.ring->stream_off();
    if (!status) return status.error();
    if (!stopped) return stopped.error().with_context("GL camera");

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
