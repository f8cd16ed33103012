// SPDX-License-Identifier: MIT
#pragma once
// What the Vulkan and GL camera pipelines share: the thread's CPU clock, the distinct dma-bufs
// of a V4L2 buffer, and the fence a frame's buffer is released to the queue with.

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <ctime>
#include <optional>
#include <utility>
#include <vector>

#include <dmabridge/base/access.hpp>
#include <dmabridge/base/result.hpp>
#include <dmabridge/format/buffer_desc.hpp>
#include <dmabridge/format/buffer_fences.hpp>
#include <dmabridge/kernel/sync_file.hpp>

namespace dmabridge::camera::detail {

/// CPU time of the calling thread (CLOCK_THREAD_CPUTIME_ID), in microseconds.
inline double thread_cpu_us() {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) * 1e6 + static_cast<double>(ts.tv_nsec) / 1e3;
}

using Clock = std::chrono::steady_clock;
inline double ms_since(Clock::time_point t) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

/// The distinct dma-bufs of a description, and for each plane the index of its dma-buf there:
/// NV12 from one V4L2 buffer has two planes in one dma-buf, NV12M one dma-buf per plane.
struct BufferSet {
    std::vector<const dmabridge::DmaBuf*> buffers;
    std::array<std::size_t, 2> of_plane{0, 0};
};

inline BufferSet distinct_buffers(const dmabridge::BufferDesc& desc) {
    BufferSet set;
    set.buffers = desc.distinct_buffers();
    const auto index = desc.plane_buffer_indices();
    if (!index.empty()) set.of_plane = {index[0], index.size() > 1 ? index[1] : index[0]};
    return set;
}

/// Calls `f` when it goes out of scope unless disarmed: a run's cleanup also when a callback
/// throws (the tests' on_frame REQUIREs).
template <typename F>
struct ScopeExit {
    F f;
    bool armed = true;
    explicit ScopeExit(F fn) : f(std::move(fn)) {}
    ScopeExit(const ScopeExit&) = delete;
    ScopeExit& operator=(const ScopeExit&) = delete;
    ~ScopeExit() {
        if (armed) f();
    }
};
template <typename F>
ScopeExit(F) -> ScopeExit<F>;

/// Every fence on the frame's dma-bufs (the GPU's read fence, once published there) as one
/// sync_file: the release fence of the frame, after which the driver may write the buffer again.
/// std::nullopt on a kernel without DMA_BUF_IOCTL_EXPORT_SYNC_FILE (before 6.0): the caller then
/// waits for the frame's GPU work itself and releases with no fence.
inline dmabridge::Result<std::optional<dmabridge::SyncFile>> release_fence(const dmabridge::BufferDesc& frame) {
    return dmabridge::export_fences(frame, dmabridge::Access::write, "camera-release");
}

}  // namespace dmabridge::camera::detail
