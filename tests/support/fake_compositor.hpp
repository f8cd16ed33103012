// SPDX-License-Identifier: MIT
#pragma once
// A small compositor (libwayland-server in a thread of the test) that the test scripts: it
// offers wl_compositor, xdg_wm_base, zwp_linux_dmabuf_v1 (v3 or v4) and, when asked,
// zwp_linux_explicit_synchronization_v1, and does what a compositor does on a commit (hold the
// new buffer, release the previous one, fire the frame callbacks) unless the test replaces
// that. What it sends can be a lie: a feedback whose table is short, a release "fence" that is
// not a sync_file, no reads at all from the client's socket.
//
// Every callback runs on the compositor's thread. Fds the client sends (dma-buf planes,
// acquire fences) are kept by the compositor's objects and closed with them.

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <dmabridge/base/unique_fd.hpp>
#include <dmabridge/kernel/timeline.hpp>

struct wl_display;
struct wl_resource;
struct wl_client;

namespace dmabridge::test {

/// One commit of a surface with a buffer attached.
struct FakeCommit {
    wl_resource* buffer = nullptr;   ///< the wl_buffer attached (held until the next commit)
    std::vector<UniqueFd> planes;    ///< the buffer's plane fds as the client sent them (dups)
    UniqueFd acquire_fence;          ///< set_acquire_fence of this commit, if any
    wl_resource* release = nullptr;  ///< zwp_linux_buffer_release_v1 of this commit, if any
    /// wp_linux_drm_syncobj_surface_v1: the commit's acquire and release points, on the
    /// compositor's own imports of the client's timelines (real syncobjs on its DRM device).
    std::shared_ptr<Timeline> acquire_timeline, release_timeline;
    std::uint64_t acquire_point = 0, release_point = 0;
};

/// What the compositor does with the previous commit when a new one arrives: by default it
/// sends wl_buffer.release and immediate_release (see FakeCompositor::release_previous).
using ReleaseScript = std::function<void(FakeCommit& previous, FakeCommit& current)>;
/// The events sent in answer to get_default_feedback (linux-dmabuf v4).
using FeedbackScript = std::function<void(wl_resource* feedback)>;

struct FakeCompositorOptions {
    std::uint32_t dmabuf_version = 4;  ///< 3: modifier events; 4: the feedback script
    bool explicit_sync = false;        ///< offer zwp_linux_explicit_synchronization_v1
    /// Offer wp_linux_drm_syncobj_manager_v1: the compositor imports the client's timelines on
    /// the first DRM render node with syncobj timelines (opened at the first import; none:
    /// invalid_timeline, as a compositor without one would answer), enforces the
    /// protocol's rules with its errors (surface_exists, invalid_timeline, no_surface,
    /// unsupported_buffer, no_buffer, no_acquire_point, no_release_point, conflicting_points)
    /// and, stricter than the protocol, posts conflicting_points for a point that does not
    /// rise on its timeline (an acquire point at or below the last one committed, a release
    /// point at or below one committed or already submitted). Every error counts in
    /// protocol_errors. By default a replaced commit's release point is signalled.
    bool syncobj = false;
    /// Answer every import_timeline with invalid_timeline (a compositor that cannot import).
    bool refuse_timelines = false;
    /// (fourcc, modifier) offered; the default feedback sends them as one table and tranche.
    std::vector<std::pair<std::uint32_t, std::uint64_t>> formats;
    FeedbackScript feedback;           ///< replaces the honest feedback when set
    ReleaseScript release;             ///< replaces release_previous when set
    std::function<void(FakeCommit& current)> on_commit;  ///< sees every commit with a buffer first
};

class FakeCompositor {
public:
    explicit FakeCompositor(FakeCompositorOptions options);
    /// The old constructor's shape: linux-dmabuf v4 answering get_default_feedback with `script`.
    explicit FakeCompositor(FeedbackScript script);
    ~FakeCompositor();
    FakeCompositor(const FakeCompositor&) = delete;
    FakeCompositor& operator=(const FakeCompositor&) = delete;

    /// The socket path to connect to.
    const std::string& socket() const { return socket_; }

    /// Runs `task` on the compositor's thread and waits for it.
    void run(const std::function<void()>& task);

    /// While paused, the compositor reads nothing from its clients (their requests pile up in
    /// the socket) but still runs tasks and flushes what it sends.
    void pause_reading(bool paused) { paused_ = paused; }

    /// Sends `count` xdg_wm_base.ping events to every bound xdg_wm_base (on its thread).
    void ping(std::uint32_t count);

    /// Drops the compositor's imports of every timeline (its syncobj handles close), as a
    /// compositor that lost them would: their points are never signalled by it again.
    void drop_timelines();

    /// The default ReleaseScript: wl_buffer.release of the previous buffer and, when the
    /// previous commit asked for an explicit release, immediate_release; a syncobj commit's
    /// release point is signalled instead (wl_buffer.release is undefined there).
    static void release_previous(FakeCommit& previous, FakeCommit& current);

    /// Counters (read them with run() or after the client is done).
    std::atomic<std::uint32_t> commits{0};
    std::atomic<std::uint32_t> pongs{0};
    std::atomic<std::uint32_t> protocol_errors{0};  ///< errors posted to the client

    struct Impl;

private:
    static int listen_on(const std::string& path);
    std::unique_ptr<Impl> impl_;
    std::string dir_, socket_;
    wl_display* display_ = nullptr;
    std::atomic<bool> stop_{false};
    std::atomic<bool> paused_{false};
    std::mutex tasks_mutex_;
    std::vector<std::function<void()>> tasks_;
    std::thread thread_;
    friend struct Impl;
};

}  // namespace dmabridge::test
