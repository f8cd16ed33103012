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
#include <dmabridge/kernel/sync_file.hpp>

namespace camera::detail {

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
    for (std::size_t p = 0; p < desc.planes.size() && p < 2; ++p) {
        const auto& buf = desc.planes[p].buffer;
        auto it = std::find_if(set.buffers.begin(), set.buffers.end(),
                               [&](const dmabridge::DmaBuf* b) { return b->id() == buf.id(); });
        set.of_plane[p] = static_cast<std::size_t>(it - set.buffers.begin());
        if (it == set.buffers.end()) set.buffers.push_back(&buf);
    }
    if (desc.planes.size() < 2) set.of_plane[1] = set.of_plane[0];
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

/// Every fence on the set's dma-bufs (the GPU's read fence, once published there) as one
/// sync_file: the release fence of the frame, after which the driver may write the buffer again.
/// std::nullopt on a kernel without DMA_BUF_IOCTL_EXPORT_SYNC_FILE (before 6.0): the caller then
/// waits for the frame's GPU work itself and releases with no fence.
inline dmabridge::Result<std::optional<dmabridge::SyncFile>> release_fence(const BufferSet& set) {
    auto fence = set.buffers.at(0)->export_sync_file(dmabridge::Access::write);
    if (!fence && fence.error().is(dmabridge::Errc::unsupported)) return std::optional<dmabridge::SyncFile>{};
    for (std::size_t b = 1; fence && b < set.buffers.size(); ++b) {
        auto more = set.buffers[b]->export_sync_file(dmabridge::Access::write);
        if (!more) return more.error();
        fence = dmabridge::SyncFile::merge(*fence, *more, "camera-release");
    }
    if (!fence) return fence.error();
    return std::optional<dmabridge::SyncFile>(std::move(*fence));
}

}  // namespace camera::detail
