// SPDX-License-Identifier: MIT
#pragma once
// A toplevel window of a Wayland compositor that shows dmabridge buffers.
//
// Life cycle: Display::create_surface() -> add_buffer() each buffer once (a wl_buffer is made
// with zwp_linux_buffer_params_v1.create_immed) -> per frame: acquire_free() a buffer, render
// into it, present() it with its acquire fence -> the compositor releases the previous one
// (wl_buffer.release, dispatched by Display::dispatch()) -> ... -> destroy the Surface.
//
// Buffers are reused only after the compositor released them: acquire_free() never returns a
// buffer that is attached to a commit the compositor has not released. A buffer released with
// an explicit release fence comes back with that fence on every distinct dma-buf (a read fence:
// whoever writes and waits for the dma-bufs' fences, such as vulkan::SyncBridge's acquire, waits
// for it); before Linux 6.0, where a dma-buf takes no fence, acquire_free() waits for it on the
// CPU instead.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include <dmabridge/base/access.hpp>
#include <dmabridge/base/result.hpp>
#include <dmabridge/format/buffer_desc.hpp>
#include <dmabridge/kernel/sync_file.hpp>
#include <dmabridge/kernel/timeline.hpp>
#include <dmabridge/wayland/display.hpp>

struct wl_surface;

namespace dmabridge::wayland {

/// How a frame's rendering is made known to the compositor.
enum class PresentSync : std::uint8_t {
    /// The acquire fence (if any) is put on the buffer's dma-bufs as a write fence
    /// (DMA_BUF_IOCTL_IMPORT_SYNC_FILE) before the commit; the compositor waits for the
    /// dma-buf's fences. Without a fence, the caller already published its GPU work on the
    /// dma-bufs (vulkan::SyncBridge::publish) or finished writing. On kernels without
    /// DMA_BUF_IOCTL_IMPORT_SYNC_FILE (before 6.0) present() waits for the fence on the CPU,
    /// at most SurfaceOptions::acquire_wait_timeout (10 s for adopted surfaces); a fence that
    /// does not signal by then fails present() with ETIME, and nothing is committed.
    implicit,
    /// The acquire fence travels with the commit (zwp_linux_surface_synchronization_v1
    /// set_acquire_fence) and the compositor's release fence comes back per commit. Without a
    /// fence given to present(), the acquire fence is exported from the buffer's dma-bufs (the
    /// writers' fences of every distinct dma-buf, merged): publish the rendering on them
    /// (vulkan::SyncBridge::publish) and present. Needs Display::explicit_sync(); present()
    /// fails otherwise.
    explicit_fences,
    /// Explicit sync on DRM syncobj timelines (wp_linux_drm_syncobj_v1): each commit carries an
    /// acquire point on the Surface's acquire timeline and a release point on the buffer's own
    /// release timeline (both made on the Display's timeline device and imported by the
    /// compositor once: per Surface, per buffer). The acquire point stands for the fence given to
    /// present() (imported into the point) or, without one, for the buffer's implicit fences (the
    /// writers' fences of every distinct dma-buf, merged; before Linux 6.0, where there are none
    /// to export, the point is signalled at once: the caller finished writing). The buffer comes
    /// back once the compositor signalled its release point (waited for through the Display's
    /// FenceWatcher: Display::release_fd()); wl_buffer.release, which the protocol makes
    /// undefined here, is not waited for. Needs Display::syncobj(); present() fails otherwise.
    syncobj,
    /// The first the compositor and this machine offer of: syncobj, explicit_fences, implicit.
    /// Surface::sync() says which was taken and Surface::sync_reason() why.
    automatic,
};

/// "implicit", "explicit", "syncobj" or "automatic".
const char* to_string(PresentSync sync) noexcept;

/// Options of Display::create_surface(). The zero value makes a toplevel titled "dmabridge".
struct SurfaceOptions {
    std::string title = "dmabridge";
    std::string app_id = "dmabridge";
    PresentSync sync = PresentSync::automatic;
    /// How long create waits for the compositor's first configure (a surface is mapped only
    /// after the first buffer that follows it).
    Timeout configure_timeout = std::chrono::seconds(10);
    /// PresentSync::implicit before Linux 6.0 only: how long present() waits on the CPU for an
    /// acquire fence the kernel cannot put on the dma-bufs. `forever` waits without limit.
    Timeout acquire_wait_timeout = std::chrono::seconds(10);
};

/// A handle of a buffer added to a Surface: its index in the order of add_buffer() calls.
using SurfaceBufferId = std::uint32_t;

/// Counters of a Surface, for tests and statistics.
struct SurfaceStats {
    std::uint64_t presented = 0;           ///< commits with a buffer
    std::uint64_t released = 0;            ///< wl_buffer.release events
    std::uint64_t fenced_releases = 0;     ///< explicit releases that carried a fence
    std::uint64_t immediate_releases = 0;  ///< explicit releases without a fence
    std::uint64_t frames_done = 0;         ///< wl_surface.frame callbacks that fired
    std::uint64_t release_points = 0;      ///< syncobj release points that signalled
};

/// A mapped xdg toplevel showing dma-bufs.
///
/// Thread safety: not thread-safe; the thread that drives its Display calls every function.
/// A moved-from Surface fails every call at once with Errc::empty_object (the queries return
/// their zero values); so do add_buffer() with a plane whose DmaBuf is empty and present() with
/// an empty acquire SyncFile.
class Surface {
public:
    /// Creates a wl_surface with an xdg_surface and xdg_toplevel role, commits it and
    /// dispatches until the compositor's first configure (up to options.configure_timeout,
    /// ETIMEDOUT after). Fails with Errc::unsupported when options.sync is explicit_fences
    /// and the compositor offers no explicit synchronization, or syncobj and Display::syncobj()
    /// is false (the message says why). A syncobj Surface also makes its acquire timeline here
    /// (a syncobj, an fd export, one import_timeline request).
    static Result<Surface> create(Display& display, const SurfaceOptions& options = {});

    /// Presents into a wl_surface the application made and keeps (a toolkit's window, a
    /// subsurface): the Surface attaches, damages and commits buffers on it and asks for frame
    /// callbacks (delivered on the library's queue), with `sync` as for create(). It makes no
    /// role, no xdg objects and no configure handling: the application gives the surface its
    /// role and acknowledges configures before the first present(), and attaches no buffers
    /// of its own while the Surface presents. configured_width()/configured_height() stay 0.
    ///
    /// Ownership: the application keeps `surface`; the Surface never destroys it. Its
    /// destructor destroys only the library's objects (wl_buffers, frame callback, the
    /// zwp_linux_surface_synchronization_v1 or wp_linux_drm_syncobj_surface_v1 and its
    /// timelines): destroy it after the application attached something else or destroyed the
    /// window, since the buffer last shown goes with it. `surface` must outlive the Surface.
    ///
    /// PresentSync::automatic here never picks syncobj: while a syncobj surface object exists,
    /// every commit with a buffer must carry acquire and release points, so an attach of the
    /// application's own (before the Surface is destroyed) would end the connection
    /// (no_acquire_point). Ask for PresentSync::syncobj by name only when the application
    /// attaches nothing itself while the Surface lives.
    ///
    /// Explicit sync: the protocols allow one synchronization object per wl_surface; a surface
    /// for which the application (or its EGL or Vulkan WSI) made one must be adopted with
    /// PresentSync::implicit (the compositor would otherwise end the connection with
    /// synchronization_exists or surface_exists).
    ///
    /// Threading: as the Display's (display.hpp); the application must not use `surface`
    /// from another thread while a call of this Surface runs.
    ///
    /// Fails with Errc::empty_object for a moved-from `display` or a null `surface`,
    /// Errc::invalid_argument for a proxy that is not a wl_surface, belongs to another
    /// connection or is presented to by another live Surface of `display` (its commits would
    /// break the other's sync protocol), Errc::unsupported as create() for explicit sync.
    /// Costs no round trip.
    static Result<Surface> adopt(Display& display, wl_surface* surface, PresentSync sync = PresentSync::automatic);

    Surface(Surface&&) noexcept;
    Surface& operator=(Surface&&) noexcept;
    Surface(const Surface&) = delete;
    Surface& operator=(const Surface&) = delete;
    /// Destroys the toplevel, the surface and every wl_buffer; the compositor stops showing
    /// the window. The dma-bufs are closed (the compositor keeps its own references).
    /// PresentSync::syncobj: the compositor may still read a buffer it held, and it need not
    /// put its reads on the dma-bufs. Where that buffer's release point is submitted already,
    /// its fence is put on the dma-bufs as a reader's fence, so a later writer with implicit
    /// sync waits for it; otherwise nothing tells when the compositor is done: wait for
    /// acquire_free() of every buffer first where the dma-bufs are reused.
    ~Surface();

    /// The size the compositor asked for in its last configure (0 means "client's choice").
    std::uint32_t configured_width() const noexcept;
    std::uint32_t configured_height() const noexcept;

    /// Validates `desc` (BufferDesc::validate), checks that the compositor accepts its
    /// (fourcc, modifier) and makes a wl_buffer with create_immed. A syncobj Surface also makes
    /// the buffer's release timeline (a syncobj on the timeline device, an fd export, one
    /// import_timeline request). The Surface keeps the
    /// description (and so the dma-bufs) until it is destroyed. Fails with Errc::unsupported
    /// naming the fourcc and modifier when the compositor did not offer them, with the
    /// validation error for a malformed description. A buffer the compositor still refuses on
    /// import is reported as a protocol error by the next dispatch()/present().
    /// Costs one small request per plane; no round trip.
    Result<SurfaceBufferId> add_buffer(BufferDesc desc);

    /// The description of buffer `id` (to render into), or nullptr for an unknown id.
    const BufferDesc* buffer(SurfaceBufferId id) const noexcept;

    /// Number of buffers added.
    std::uint32_t buffer_count() const noexcept;

    /// True while the compositor holds buffer `id`: from its present() until its release
    /// (wl_buffer.release and, for an explicit commit, the buffer_release event; for a syncobj
    /// commit, its release point signalled).
    bool busy(SurfaceBufferId id) const noexcept;

    /// A buffer the compositor does not hold, dispatching the display until one is released
    /// (up to `timeout`; ETIMEDOUT after, naming how many buffers are busy). Buffers are
    /// handed out least recently presented first. Fails with Errc::not_found when no buffer
    /// was added. A syncobj Surface's ETIMEDOUT names each buffer's pending release point and
    /// the last point its timeline reached (a compositor that never signals, or dropped its
    /// import of the timeline, leaves the buffer busy: never handed out while it may read). The timeout has no default: a compositor that never releases (hung, or
    /// hostile) would otherwise block the caller for good; pass `forever` to say so
    /// explicitly, 0 to only poll.
    Result<SurfaceBufferId> acquire_free(Timeout timeout);

    /// The fence the compositor gave back with buffer `id`'s last explicit release, if any:
    /// writes to the buffer must wait for it. It is also on every distinct dma-buf of the
    /// buffer already (see the top of this file): take it only to make a wait explicit (a
    /// Vulkan semaphore import, for example). Taking it clears it.
    /// A fenced release whose fd is not a sync_file never frees the buffer: when the compositor
    /// stops reading it cannot be known, so the buffer stays busy() and the connection is
    /// treated as broken (the dispatch that received it, and every later call, fail with
    /// EPROTO naming the buffer).
    std::optional<SyncFile> take_release_fence(SurfaceBufferId id);

    /// Attaches buffer `id`, damages all of it, asks for a frame callback and commits; then
    /// flushes. `acquire` is the fence that signals when rendering into the buffer is done
    /// (see PresentSync for where it goes); nullopt when the caller has made sure the
    /// buffer's contents are complete or published on its dma-bufs (for explicit sync the
    /// Surface then exports the dma-bufs' fences for the commit: one ioctl per distinct
    /// dma-buf and a merge per extra one). Fails with
    /// Errc::invalid_argument for an unknown id or a buffer the compositor still holds
    /// (present it only after acquire_free() returned it), and with the import or protocol
    /// error. Costs an ioctl per distinct dma-buf for implicit sync with a fence, and a sendmsg.
    /// A syncobj commit costs about 20 system calls (counted by the tests for a one-dma-buf
    /// buffer without a fence): the acquire point (the dma-bufs' fences exported, a query and
    /// a sync_file import into the point through a temporary syncobj), the release point's
    /// watch (a query, an eventfd, an fd export, DRM_IOCTL_SYNCOBJ_EVENTFD, epoll_ctl) and the
    /// sendmsg. Points only
    /// increase on each timeline, also past points the compositor signalled on its own; a
    /// timeline that reached 2^64-1 fails with Errc::limit_exceeded.
    Status present(SurfaceBufferId id, std::optional<SyncFile> acquire = std::nullopt);

    /// present() with the acquire fence of `point` of the caller's `timeline` (for example a
    /// Vulkan timeline semaphore's, through the vulkan sync bridge): the point must be submitted
    /// already (Timeline::export_sync_file(); wait for the submit with Timeline::wait(point,
    /// timeout, PointState::submitted)), else Errc::not_found. The fence is transferred: the
    /// caller's timeline is never shared with the compositor. Costs export_sync_file() on top.
    Status present(SurfaceBufferId id, const Timeline& timeline, std::uint64_t point);

    /// The sync mode present() uses (automatic resolved against the compositor).
    PresentSync sync() const noexcept;
    /// Why sync() is what it is: what the compositor offers and, when a better mode was passed
    /// over, why (for example "no syncobj: the compositor offers no
    /// wp_linux_drm_syncobj_manager_v1; the compositor offers zwp_linux_explicit_synchronization_v1").
    /// Empty when moved from.
    std::string sync_reason() const;

    /// The counters.
    SurfaceStats stats() const noexcept;

    struct State;

private:
    explicit Surface(std::shared_ptr<State> state) noexcept;
    std::shared_ptr<State> state_;
};

}  // namespace dmabridge::wayland
