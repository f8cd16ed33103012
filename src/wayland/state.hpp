// SPDX-License-Identifier: MIT
#pragma once
// The state behind Display and Surface. Not part of the public API.

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <wayland-client.h>

#include "linux-dmabuf-v1-client.h"
#include "linux-drm-syncobj-v1-client.h"
#include "linux-explicit-synchronization-v1-client.h"
#include "xdg-shell-client.h"

#include <dmabridge/base/result.hpp>
#include <dmabridge/format/format_set.hpp>
#include <dmabridge/kernel/fence_watcher.hpp>
#include <dmabridge/kernel/timeline.hpp>
#include <dmabridge/wayland/display.hpp>
#include <dmabridge/wayland/surface.hpp>

#include "wayland/format_table.hpp"

namespace dmabridge::wayland {

struct Display::State {
    wl_display* display = nullptr;       // the connection: ours (connect) or the application's (adopt)
    bool owns_display = true;            // false: adopted, never disconnected
    wl_event_queue* queue = nullptr;     // every proxy of the library lives here
    wl_display* wrapper = nullptr;       // a proxy wrapper of `display` on `queue` (registry, syncs)
    wl_registry* registry = nullptr;
    wl_compositor* compositor = nullptr;
    std::uint32_t compositor_version = 0;
    xdg_wm_base* wm_base = nullptr;
    zwp_linux_dmabuf_v1* dmabuf = nullptr;
    std::uint32_t dmabuf_version = 0;
    zwp_linux_dmabuf_feedback_v1* feedback = nullptr;
    zwp_linux_explicit_synchronization_v1* explicit_sync = nullptr;
    wp_linux_drm_syncobj_manager_v1* syncobj_manager = nullptr;
    UniqueFd timeline_device;             // where syncobj Surfaces make their timelines (valid: usable)
    std::string syncobj_unavailable;      // why syncobj surfaces cannot be made (empty: they can)
    std::optional<FenceWatcher> watcher;  // waits for the release points of every syncobj Surface
    std::vector<wl_surface*> adopted;     // wl_surfaces a live Surface presents to (one each)
    DisplayOptions options;

    FormatSet formats;                    // what the compositor accepts (after the feedback's done)
    std::optional<dev_t> main_device;
    // The feedback being received: the table and the formats of its tranches so far.
    std::vector<detail::FormatTableEntry> table;
    FormatSet pending_formats;
    bool feedback_done = false;
    std::optional<Error> feedback_error;  // a malformed table or tranche, reported by connect()
    std::optional<Error> broken;          // the connection failed: every later call returns it

    ~State();

    /// Makes the queue, the wrapper and the registry, binds the globals and waits for the
    /// dma-buf formats. `who` starts every message.
    Status init(const std::string& who);

    /// The error of a broken connection (protocol error or socket errno), remembered.
    Error connection_error(const std::string& operation);
    /// See Display::dispatch().
    Result<bool> dispatch(Timeout timeout, const std::string& operation);
    /// Dispatches until `done()` or the timeout (ETIMEDOUT naming `what`).
    Status dispatch_until(const std::function<bool()>& done, Timeout timeout, const std::string& what);
    /// A wl_display.sync round trip with a timeout.
    Status roundtrip(Timeout timeout, const std::string& what);
    /// wl_display_flush, keeping EAGAIN (the rest is sent by the next dispatch).
    Status flush(const std::string& operation);
    /// Opens the timeline device and the watcher when the syncobj manager is bound; otherwise,
    /// or when that fails, says why in syncobj_unavailable (not an error of the Display).
    void init_syncobj();
    /// Runs the callbacks of the release points that signalled; true when any ran.
    Result<bool> dispatch_release_points(const std::string& operation);
};

struct SurfaceBuffer {
    BufferDesc desc;
    wl_buffer* buffer = nullptr;
    zwp_linux_buffer_release_v1* pending_release = nullptr;
    bool awaiting_release = false;           // wl_buffer.release not yet received
    bool awaiting_explicit_release = false;  // the commit's buffer_release event not yet received
    bool unknown_release = false;            // released with a "fence" that is none: never free again
    std::optional<SyncFile> release_fence;   // for take_release_fence()
    std::optional<SyncFile> cpu_wait_fence;  // a release fence no dma-buf took: acquire_free waits for it
    std::uint64_t presented_at = 0;          // sequence number of its last present (0: never)
    // PresentSync::syncobj: the buffer's own release timeline (the protocol recommends one per
    // buffer: a compositor may signal release points out of order, and a point signals every
    // earlier one), imported once, and the point of its last commit.
    std::optional<Timeline> release_timeline;
    wp_linux_drm_syncobj_timeline_v1* release_proxy = nullptr;
    std::uint64_t release_point = 0;
    bool awaiting_release_point = false;     // the last commit's release point not yet signalled
    WatchId release_watch = 0;               // the FenceWatcher's watch of it (0: none)
    struct Surface::State* surface = nullptr;
    SurfaceBufferId index = 0;               // its id, for messages
};

struct Surface::State {
    std::shared_ptr<Display::State> display;
    wl_surface* surface = nullptr;
    bool owns_surface = true;              // false: adopted, never destroyed
    wl_surface* surface_wrapper = nullptr; // adopted: a wrapper on the library's queue (frame callbacks)
    xdg_surface* xdg = nullptr;
    xdg_toplevel* toplevel = nullptr;
    zwp_linux_surface_synchronization_v1* sync_object = nullptr;
    // PresentSync::syncobj: the surface's syncobj object and its acquire timeline (one per
    // surface, imported once; points strictly increasing).
    wp_linux_drm_syncobj_surface_v1* syncobj_surface = nullptr;
    std::optional<Timeline> acquire_timeline;
    wp_linux_drm_syncobj_timeline_v1* acquire_proxy = nullptr;
    std::uint64_t acquire_point = 0;
    wl_callback* frame = nullptr;
    PresentSync sync = PresentSync::implicit;
    Timeout acquire_wait_timeout = std::chrono::seconds(10);  // SurfaceOptions::acquire_wait_timeout
    std::string sync_reason;                              // why this mode (Surface::sync_reason())
    std::vector<std::unique_ptr<SurfaceBuffer>> buffers;  // stable addresses: listener user data
    bool configured = false;
    std::uint32_t width = 0, height = 0;                  // last applied configure
    std::uint32_t pending_width = 0, pending_height = 0;  // toplevel configure before its xdg_surface.configure
    std::uint64_t sequence = 0;
    SurfaceStats stats;

    ~State();
};

}  // namespace dmabridge::wayland
