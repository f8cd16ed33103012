// SPDX-License-Identifier: MIT
#pragma once
// A connection to a Wayland compositor and what it accepts as dma-bufs.
//
// Life cycle: Display::connect() -> negotiate() the formats the producer can export against
// what the compositor accepts -> create_surface() (surface.hpp) -> present buffers -> dispatch()
// events (buffer releases, configures, pings) from the application's loop whenever fd() is
// readable -> destroy the surfaces, then the Display.
//
// Link dmabridge::wayland (libdmabridge_wayland, which links libwayland-client).
//
// Inside a toolkit (SDL, GTK, Qt, a game engine) that already has a connection and a window:
// Display::adopt() the toolkit's wl_display and Surface::adopt() its wl_surface (surface.hpp)
// instead; the library then works beside the toolkit on an event queue of its own.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include <sys/types.h>

struct wl_display;

#include <dmabridge/base/access.hpp>
#include <dmabridge/base/result.hpp>
#include <dmabridge/format/format_set.hpp>

namespace dmabridge::wayland {

class Surface;
struct SurfaceOptions;

/// Options of Display::connect() and Display::adopt(). The zero value connects to
/// $WAYLAND_DISPLAY and uses everything the compositor offers.
struct DisplayOptions {
    /// The display socket name or path; empty means $WAYLAND_DISPLAY (then "wayland-0").
    /// Not used by adopt().
    std::string name;
    /// The highest zwp_linux_dmabuf_v1 version to bind (3 to 5). Version 4 and later get the
    /// default feedback (format table, main device, tranches); 3 gets format/modifier events.
    std::uint32_t max_dmabuf_version = 5;
    /// Bind zwp_linux_explicit_synchronization_v1 when the compositor offers it.
    bool explicit_sync = true;
    /// Bind wp_linux_drm_syncobj_manager_v1 when the compositor offers it (explicit sync on DRM
    /// syncobj timelines: acquire and release points per commit; see PresentSync::syncobj).
    bool syncobj = true;
    /// The DRM device (an open fd, borrowed: the Display keeps a dup) on which the Surfaces make
    /// their syncobj timelines, for example the render node the producer's GPU uses (its
    /// timelines can then be shared without a transfer). -1: the first render node whose driver
    /// has syncobj timelines (Timeline::open_device()). Either way the device must have
    /// DRM_CAP_SYNCOBJ_TIMELINE and the kernel DRM_IOCTL_SYNCOBJ_EVENTFD (Linux 6.6: release
    /// points are waited for through the FenceWatcher); otherwise the Surfaces fall back to
    /// zwp_linux_explicit_synchronization_v1 and say why (Surface::sync_reason()). The
    /// compositor imports the timelines on its own device: any DRM device with syncobjs works.
    int timeline_device = -1;
    /// How long connect() waits for the compositor's globals and its format list.
    Timeout timeout = std::chrono::seconds(10);
};

/// A connection to a compositor: the wl_display, its registry, and the globals dmabridge uses
/// (wl_compositor, xdg_wm_base, zwp_linux_dmabuf_v1 and, when offered,
/// wp_linux_drm_syncobj_manager_v1 and zwp_linux_explicit_synchronization_v1).
///
/// Every proxy the library makes lives on an event queue of its own (wl_event_queue), and
/// dispatch() dispatches that queue alone: the library never dispatches events of another
/// queue, and objects it did not make never get its listeners.
///
/// Thread safety: not thread-safe. One thread calls every function of a Display and of its
/// Surfaces (they share the library's event queue). A moved-from Display fails every call at once with
/// Errc::empty_object (fd() returns -1, the queries their zero values).
class Display {
public:
    /// Connects, binds the globals and waits (up to options.timeout) until the compositor has
    /// sent its dma-buf formats: the v4 default feedback's `done`, or a roundtrip after the
    /// v3 format/modifier events. Costs a socket connect and two or three roundtrips.
    /// Fails with ENOENT-like errno from wl_display_connect when no compositor listens, with
    /// Errc::unsupported naming the missing global when the compositor lacks wl_compositor,
    /// xdg_wm_base or zwp_linux_dmabuf_v1 v3+, and with EPROTO naming the interface and code
    /// when the compositor raises a protocol error. A malformed format table (size, indices, a
    /// file that is not regular or shorter than announced, also when the compositor shrinks it
    /// meanwhile: it is read, never mapped, so that cannot raise SIGBUS) fails with
    /// Errc::invalid_argument; a table announced larger than 65536 rows with Errc::limit_exceeded.
    static Result<Display> connect(const DisplayOptions& options = {});

    /// Uses a connection the application made and keeps (`display`, for example from
    /// SDL_GetPointerProperty(..., SDL_PROP_WINDOW_WAYLAND_DISPLAY_POINTER),
    /// gdk_wayland_display_get_wl_display() or QNativeInterface::QWaylandApplication::display()):
    /// makes an event queue of its own and a registry on it, binds the globals it uses there
    /// (its own bindings, beside the application's) and waits for the dma-buf formats as
    /// connect() does, with `options` but for `name`. Costs two or three round trips on the
    /// library's queue; the application's events that arrive meanwhile are read and queued on
    /// their own queues, never dispatched.
    ///
    /// Ownership: the application keeps `display`. The Display never disconnects it: its
    /// destructor destroys only the library's proxies and queue (after the last Surface made
    /// from it is gone). `display` must outlive the Display and every Surface made from it.
    ///
    /// Threading: the library's calls (this, dispatch(), the Surfaces') run on one thread of the
    /// application's choosing; the application may use `display` from other threads as
    /// libwayland allows. Its event loop must read with wl_display_prepare_read() (or
    /// wl_display_dispatch()), as SDL, GTK and Qt do: events the library's dispatch() reads
    /// for the application's queues wait there until the application dispatches them, and a
    /// loop that polls the fd without first dispatching what is pending would not see them.
    ///
    /// Fails with Errc::empty_object for a null `display`, with the connection's error when it
    /// is already broken, and otherwise as connect() (missing globals, protocol errors,
    /// malformed feedback, ETIMEDOUT).
    static Result<Display> adopt(wl_display* display, const DisplayOptions& options = {});

    Display(Display&&) noexcept;
    Display& operator=(Display&&) noexcept;
    Display(const Display&) = delete;
    Display& operator=(const Display&) = delete;
    /// Releases the connection: it closes once the Display and every Surface made from it are
    /// destroyed (Surfaces keep working until then). An adopted connection is not closed: only
    /// the library's own proxies and event queue are destroyed.
    ~Display();

    /// The connection's fd: poll it for POLLIN, then call dispatch(0). -1 when moved from.
    /// For an adopted display this is the application's own connection fd.
    int fd() const noexcept;

    /// Flushes pending requests, waits up to `timeout` for events (0: do not wait), reads and
    /// dispatches them (buffer releases, configures, pings) and the release points that
    /// signalled (release_fd()). While requests remain unsent (the
    /// socket was full: the compositor reads slowly) it also waits for the socket to take more
    /// and sends them, so that a compositor that answers only once it has them is not waited
    /// for in vain. Returns true when events were
    /// dispatched, false when the timeout passed first. Fails with the protocol error
    /// (EPROTO: interface, object id, code, and the compositor's message when it sent one) or
    /// the socket's errno once the connection is broken; every later call fails the same way.
    /// The library also declares the connection broken (EPROTO, saying what the compositor
    /// sent) when the compositor breaks a rule libwayland cannot check, such as a
    /// fenced_release whose fd is not a sync_file (see Surface::take_release_fence()).
    /// Every wait of a Display and its Surfaces has a bound the caller chose: this one's
    /// timeout (no default; `forever` waits without limit), DisplayOptions::timeout for
    /// connect() and roundtrip(), SurfaceOptions::configure_timeout for create_surface().
    Result<bool> dispatch(Timeout timeout);

    /// Sends a wl_display.sync and dispatches until the compositor answered it: every request
    /// sent before has been processed. Costs a round trip to the compositor.
    Status roundtrip();

    /// The zwp_linux_dmabuf_v1 version bound (3, 4 or 5).
    std::uint32_t dmabuf_version() const noexcept;

    /// Every (fourcc, modifier) the compositor accepts: the union of its default feedback's
    /// tranches (v4+) or its modifier events (v3).
    const FormatSet& formats() const noexcept;

    /// The compositor's main device (v4+ feedback), when it named one. A compositor rendering
    /// in software (llvmpipe, no DRM node) names none.
    std::optional<dev_t> main_device() const noexcept;

    /// True when zwp_linux_explicit_synchronization_v1 is bound (acquire fences per commit,
    /// release fences per buffer).
    bool explicit_sync() const noexcept;

    /// True when wp_linux_drm_syncobj_manager_v1 is bound and a DRM device with syncobj
    /// timelines and eventfd waits is open for it (see DisplayOptions::timeline_device): the
    /// Surfaces can present with PresentSync::syncobj.
    bool syncobj() const noexcept;
    /// Why syncobj() is false ("the compositor offers no wp_linux_drm_syncobj_manager_v1",
    /// the device discovery's or the probe's error), or empty when it is true.
    const std::string& syncobj_unavailable() const noexcept;

    /// For event loops, beside fd(): the FenceWatcher's fd (fence_watcher.hpp) through which
    /// the release points of every syncobj Surface of this Display are waited for; readable
    /// when one signalled: then call dispatch(0). -1 when syncobj() is false (nothing to wait
    /// for there) or moved from. dispatch() and Surface::acquire_free() poll it themselves.
    int release_fd() const noexcept;

    /// The (fourcc, modifier) pairs both the compositor accepts and `producer` can export (for
    /// example vulkan::Device::exportable_formats()). Fails with Errc::unsupported, listing
    /// both sides' fourccs, when nothing is common. No system call.
    Result<FormatSet> negotiate(const FormatSet& producer) const;

    /// Creates a mapped xdg toplevel surface: see Surface::create().
    Result<Surface> create_surface(const SurfaceOptions& options);

    struct State;

private:
    friend class Surface;
    explicit Display(std::shared_ptr<State> state) noexcept;
    std::shared_ptr<State> state_;
};

}  // namespace dmabridge::wayland
