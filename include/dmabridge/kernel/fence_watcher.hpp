// SPDX-License-Identifier: MIT
#pragma once
/// @file fence_watcher.hpp
/// FenceWatcher: waits for many dma-bufs and sync_files at once, without a thread per wait, and
/// calls back when each becomes idle (or its timeout passes). A camera pipeline uses it to
/// re-queue a buffer to the driver only once the GPU has finished reading it.
///
/// Two ways to drive it: start() runs it on its own thread; or the application adds fd() to its
/// own event loop (poll/epoll/...) and calls dispatch() when fd() is readable or when
/// next_timeout() has passed. Callbacks run on whichever thread dispatches.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>

#include <dmabridge/base/access.hpp>
#include <dmabridge/base/result.hpp>
#include <dmabridge/kernel/dmabuf.hpp>
#include <dmabridge/kernel/sync_file.hpp>
#include <dmabridge/kernel/timeline.hpp>

namespace dmabridge {

/// Identifies one watch; never 0.
using WatchId = std::uint64_t;

/// Called once per watch: with WaitStatus::ready when the fences signalled, or
/// WaitStatus::timed_out when the watch's timeout passed first.
using WatchCallback = std::function<void(WatchId, WaitStatus)>;

/// An epoll-based watcher of dma-bufs, sync_files and syncobj timeline points. Thread-safe: watch() and cancel() may be
/// called from any thread, callbacks included; dispatch() from one thread at a time.
/// Move: the watches and a running thread go with the watcher (the thread works on state on
/// the heap, never on the object). A moved-from watcher is empty: watch(), dispatch() and
/// start() fail at once with Errc::empty_object, cancel() is false, pending() 0, fd() -1,
/// next_timeout() 0 (an event loop must not sleep on it), stop() does nothing.
/// Timeouts: negative, Timeout::max() and any value too large for the clock wait without limit.
class FenceWatcher {
public:
    /// Creates the epoll instance and a wake-up eventfd (two fds).
    static Result<FenceWatcher> create();
    FenceWatcher(FenceWatcher&&) noexcept;
    FenceWatcher& operator=(FenceWatcher&&) noexcept;
    /// Stops the thread if running; pending watches are dropped without a callback.
    ~FenceWatcher();

    /// Calls `callback` once `buf` is idle for `access` (read: its writers are done; write and
    /// read_write: every fence is done), or once `timeout` passed. Keeps a dup of the fd (one
    /// fd per pending watch) and no other reference. A buffer already idle calls back at the
    /// next dispatch.
    Result<WatchId> watch(const DmaBuf& buf, Access access, WatchCallback callback, Timeout timeout = forever);
    /// Calls `callback` once every fence of `fence` signalled, or once `timeout` passed.
    Result<WatchId> watch(const SyncFile& fence, WatchCallback callback, Timeout timeout = forever);
    /// Calls `callback` once `point` of `timeline` reached `state` (signalled; or submitted: a
    /// fence stands for it), or once `timeout` passed. A point nothing submitted yet is watched
    /// too. Many points of many timelines, in any order, go through the one fd(). Costs one
    /// eventfd and one fd of the timeline per pending watch, armed with DRM_IOCTL_SYNCOBJ_EVENTFD
    /// (Linux 6.6). The watch keeps the syncobj alive (the kernel frees a syncobj's eventfd
    /// entries unsignalled with it), so the Timeline may be destroyed meanwhile. A cancelled or
    /// timed-out watch leaves its entry in the kernel (the uapi cannot remove one) until the
    /// point arrives or the syncobj is freed; it costs a little kernel memory, nothing else.
    /// Before 6.6 (the ioctl answers EINVAL or ENOTTY) a point that is already submitted is
    /// watched through its sync_file (Timeline::export_sync_file()), and PointState::submitted
    /// of a submitted point calls back at the next dispatch; a point nothing submitted yet fails
    /// with Errc::unsupported saying so (watch it once submitted, or wait on a thread with
    /// Timeline::wait()).
    Result<WatchId> watch(const Timeline& timeline, std::uint64_t point, WatchCallback callback, Timeout timeout,
                          PointState state = PointState::signalled);

    /// Cancels a watch: its callback will not run (unless it is running right now). Safe from
    /// inside callbacks. Returns false when the watch already completed or never existed.
    bool cancel(WatchId id);

    /// Watches not yet called back or cancelled.
    std::size_t pending() const;

    /// For event loops: an fd that is readable when dispatch() has fences to report.
    int fd() const noexcept;
    /// For event loops: time until the earliest watch times out (forever when none can).
    Timeout next_timeout() const;
    /// Waits up to `timeout` for fences, then runs the callbacks of every watch that completed
    /// or timed out. Returns how many callbacks ran. Timeout{0} never blocks.
    Result<std::size_t> dispatch(Timeout timeout = Timeout{0});

    /// Runs dispatch() on a thread of its own until stop() (or destruction).
    Status start();
    /// Stops the thread (waits for a running callback to return). Not from a callback.
    void stop();

    struct State;

private:
    explicit FenceWatcher(std::unique_ptr<State> state) noexcept;
    std::unique_ptr<State> state_;
};

}  // namespace dmabridge
