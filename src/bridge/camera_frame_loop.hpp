// SPDX-License-Identifier: MIT
#pragma once
// The run loop the Vulkan and GL camera pipelines share (stream_frames), and what their run()
// does around it (run_frames). Frames come from the pipeline's
// CaptureSource through its queue (one consumer in this process): each is acquired, submitted to
// the GPU and released to the queue with the GPU's fence (zero_copy) or at once after the CPU
// copy (copy). A zero-copy buffer comes back through the source once that fence signalled; the
// source then calls the pipeline's finish() for it before the driver has it again.
//
// What it needs of a pipeline's State (see CameraPipeline::State, GlCameraPipeline::State):
//   source, consumer, options, slots (with_gpu, number, v4l2_index, sequence), stats,
//   cpu_samples, cache (an optional import cache), submitted, completed, to_acquire, in_flight;
//   submit_zero_copy(frame, cpu_start), submit_copy(frame, cpu_start);
//   before_turn(): what completed since the last turn (GL's copies);
//   publish_pending(bool keep_newest), has_unpublished(): releases submitted but not made yet
//     (Vulkan: see CameraPipeline::State::publish_pending);
//   wait_for_gpu(): blocks until the GPU finished something (copy: the oldest frame; zero_copy:
//     source->pump with the timeout, adding its frames to to_acquire).

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <string>
#include <utility>

#include <dmabridge/base/result.hpp>

#include <dmabridge/bridge/camera_pipeline.hpp>
#include "bridge/camera_util.hpp"

namespace dmabridge::camera::detail {

/// The zero-copy half of a pipeline's wait_for_gpu(): pumps the source for up to the timeout (a
/// buffer the queue gives back makes the source call finish() for it), counts the wait since
/// `start` as fence_wait_ms and the frames the queue now holds in to_acquire.
template <typename State>
dmabridge::Status pump_source(State& st, Clock::time_point start) {
    auto pumped = st.source->pump(st.options.timeout);
    st.stats.fence_wait_ms += ms_since(start);
    if (!pumped) return pumped.error();
    st.to_acquire += pumped->frames_queued;
    return {};
}

template <typename State>
dmabridge::Status stream_frames(State& st, std::uint64_t frames, const char* who) {
    dmabridge::Status status;
    st.to_acquire = 0;
    // A frame on the GPU that never completes (its release fence never signals) must end the
    // run: the camera's frames keep pump() busy, so no wait alone times out.
    auto progress_at = Clock::now();
    std::uint64_t completed_before = st.completed;
    while (status && st.completed < frames) {
        if (st.completed != completed_before || st.in_flight == 0) {
            completed_before = st.completed;
            progress_at = Clock::now();
        } else if (Clock::now() - progress_at > st.options.timeout) {
            status = dmabridge::Error::from_errno(
                ETIMEDOUT, std::string(who) + ": " + std::to_string(st.in_flight) +
                               " frames stayed on the GPU (or in the queue) past the timeout of " +
                               std::to_string(st.options.timeout.count()) + " ms");
            break;
        }
        status = st.before_turn();
        while (status && st.to_acquire > 0 && st.completed < frames) {
            --st.to_acquire;
            const double cpu_start = thread_cpu_us();
            auto f = st.consumer->acquire(dmabridge::Timeout{0});
            if (!f) {
                status = f.error().with_context(std::string(who) + ": acquire");
                break;
            }
            if (st.submitted == frames) {  // enough frames: back to the driver at once
                status = st.consumer->release(f->buffer);
                continue;
            }
            const bool zero_copy = st.options.path == Path::zero_copy;
            auto& slot = st.slots[zero_copy ? f->buffer : st.submitted % st.slots.size()];
            status = zero_copy ? st.submit_zero_copy(*f, cpu_start) : st.submit_copy(*f, cpu_start);
            if (!status) break;
            slot.with_gpu = true;
            slot.number = st.submitted++;
            slot.v4l2_index = f->buffer;
            slot.sequence = static_cast<std::uint32_t>(f->info.sequence);
            st.stats.max_in_flight = std::max(st.stats.max_in_flight, ++st.in_flight);
            // The frames before this one are released now, this one after the next submit (or
            // before the loop sleeps): why, see CameraPipeline::State::publish_pending.
            status = st.publish_pending(true);
        }
        if (!status || st.completed >= frames) break;
        if (st.submitted == frames || (st.options.path == Path::zero_copy && st.source->with_driver() == 0)) {
            // Everything is submitted, or every buffer is with the GPU: only the GPU can move.
            status = st.publish_pending(false);
            if (status) status = st.wait_for_gpu();
            continue;
        }
        // Releases not made yet are made before the loop sleeps: their buffers come back
        // through the queue, which needs their fences.
        auto pumped = st.source->pump(st.has_unpublished() ? dmabridge::Timeout{0} : st.options.timeout);
        if (!pumped) {
            status = pumped.error();
            break;
        }
        st.to_acquire += pumped->frames_queued;
        if (pumped->frames_queued == 0 && pumped->buffers_returned == 0 && st.has_unpublished())
            status = st.publish_pending(false);
    }
    return status;
}

/// What both pipelines' run() do once their State is reset for a run: start the source with one
/// consumer in this process, stream `frames` frames, end the run and sum up its statistics.
/// `drop_frames` waits for the GPU work of every frame and forgets what points into the consumer;
/// then the consumer goes and the source stops. That end comes whatever happens: an error, or
/// on_frame throwing.
template <typename State, typename DropFrames>
dmabridge::Result<PipelineStats> run_frames(State& st, std::uint64_t frames, const char* who, DropFrames drop_frames) {
    using CacheStats = decltype(st.cache->stats());
    const CacheStats cache_before = st.cache ? st.cache->stats() : CacheStats{};
    auto consumer = st.source->start_local();
    if (!consumer) return consumer.error();
    st.consumer.emplace(std::move(*consumer));
    const auto start = Clock::now();
    const double cpu_at_start = thread_cpu_us();
    const auto end_run = [&] {
        drop_frames();
        st.in_flight = 0;
        st.consumer.reset();
        return st.source->stop();
    };
    ScopeExit on_throw{[&] { (void)end_run(); }};
    const dmabridge::Status status = stream_frames(st, frames, who);
    const double cpu_of_run = thread_cpu_us() - cpu_at_start;
    on_throw.armed = false;
    const auto stopped = end_run();
    if (!status) return status.error();
    if (!stopped) return stopped.error();

    PipelineStats s = st.stats;
    const auto source_stats = st.source->stats();
    s.driver_errors = source_stats.driver_errors;
    s.incomplete_frames = source_stats.incomplete_frames;
    s.frames = st.completed;
    s.seconds = ms_since(start) / 1000.0;
    s.fps = s.seconds > 0 ? static_cast<double>(s.frames) / s.seconds : 0;
    if (st.cache) {
        const auto after = st.cache->stats();
        s.cache_hits += after.hits - cache_before.hits;  // added to the imports a pipeline kept itself
        s.cache_misses = after.misses - cache_before.misses;
    }
    if (!st.cpu_samples.empty()) {
        auto samples = st.cpu_samples;
        double sum = 0;
        for (double v : samples) sum += v;
        if (s.frames > 0) s.cpu_us_after_submit = std::max(0.0, cpu_of_run - sum) / static_cast<double>(s.frames);
        s.cpu_us_dequeue_to_submit = sum / static_cast<double>(samples.size());
        std::sort(samples.begin(), samples.end());
        s.cpu_us_dequeue_to_submit_median = samples[samples.size() / 2];
    }
    return s;
}

}  // namespace dmabridge::camera::detail
