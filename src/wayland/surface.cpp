// SPDX-License-Identifier: MIT
#include <dmabridge/wayland/surface.hpp>

#include <dmabridge/format/buffer_fences.hpp>

#include <algorithm>
#include <climits>
#include <cerrno>

#include <dmabridge/format/fourcc.hpp>

#include "base/sys.hpp"
#include "wayland/state.hpp"

namespace dmabridge::wayland {

const char* to_string(PresentSync sync) noexcept {
    switch (sync) {
    case PresentSync::implicit: return "implicit";
    case PresentSync::explicit_fences: return "explicit";
    case PresentSync::syncobj: return "syncobj";
    case PresentSync::automatic: return "automatic";
    }
    return "?";
}

namespace {

Error moved_from(const char* operation) {
    return Error::library(Errc::empty_object, std::string("wayland::Surface::") + operation +
                                                  ": the Surface is empty (moved from)");
}

// --- xdg_surface / xdg_toplevel: the size the compositor wants, acknowledged at once. ---
void xdg_surface_configure(void* data, xdg_surface* xdg, std::uint32_t serial) {
    auto* state = static_cast<Surface::State*>(data);
    xdg_surface_ack_configure(xdg, serial);
    state->width = state->pending_width;
    state->height = state->pending_height;
    state->configured = true;
}
constexpr xdg_surface_listener xdg_surface_listener_{.configure = xdg_surface_configure};

void toplevel_configure(void* data, xdg_toplevel*, std::int32_t width, std::int32_t height, wl_array*) {
    auto* state = static_cast<Surface::State*>(data);
    state->pending_width = width > 0 ? static_cast<std::uint32_t>(width) : 0;
    state->pending_height = height > 0 ? static_cast<std::uint32_t>(height) : 0;
}
void toplevel_close(void*, xdg_toplevel*) {}
void toplevel_configure_bounds(void*, xdg_toplevel*, std::int32_t, std::int32_t) {}
void toplevel_wm_capabilities(void*, xdg_toplevel*, wl_array*) {}
constexpr xdg_toplevel_listener toplevel_listener{
    .configure = toplevel_configure,
    .close = toplevel_close,
    .configure_bounds = toplevel_configure_bounds,
    .wm_capabilities = toplevel_wm_capabilities,
};

// --- wl_buffer.release: the compositor no longer reads the buffer (for this commit). ---
void buffer_release(void* data, wl_buffer*) {
    auto* slot = static_cast<SurfaceBuffer*>(data);
    if (!slot->awaiting_release) return;  // a release for a commit we did not make: ignore
    slot->awaiting_release = false;
    ++slot->surface->stats.released;
}
constexpr wl_buffer_listener buffer_listener{.release = buffer_release};

// --- zwp_linux_buffer_release_v1: the explicit release of one commit, with or without a fence. ---
void finish_explicit_release(SurfaceBuffer* slot) {
    zwp_linux_buffer_release_v1_destroy(slot->pending_release);  // a destructor event: the proxy is ours to free
    slot->pending_release = nullptr;
    slot->awaiting_explicit_release = false;
}
void fenced_release(void* data, zwp_linux_buffer_release_v1*, std::int32_t fd) {
    auto* slot = static_cast<SurfaceBuffer*>(data);
    ++slot->surface->stats.fenced_releases;
    auto fence = SyncFile::adopt(UniqueFd(fd));  // the fd is closed by adopt when it fails
    if (!fence) {
        // The compositor says "free once this fence signals" and sends something that is no
        // fence: when it stops reading the buffer is unknowable, so the buffer is never handed
        // out again, and the connection is treated as broken (as libwayland treats a malformed
        // message): every later call of the Display and its Surfaces returns this error.
        slot->unknown_release = true;
        zwp_linux_buffer_release_v1_destroy(slot->pending_release);
        slot->pending_release = nullptr;
        auto& display = *slot->surface->display;
        if (!display.broken)
            display.broken = Error::from_errno(
                EPROTO, "the compositor's fenced_release of buffer " + std::to_string(slot->index) +
                            " carried an fd that is not a sync_file (" + fence.error().message() +
                            "); the buffer stays busy and the connection is treated as broken");
        return;
    }
    // The compositor may read the buffer until the fence signals: it joins every distinct
    // dma-buf's fences as a read fence, so whoever writes next and waits for the dma-bufs (a
    // GPU acquire through the sync bridge, DmaBuf::wait, another process) waits for it too;
    // every client did this by hand, and usually for plane 0 only.
    if (auto attached = attach_fence(slot->desc, *fence, Access::read); !attached) {
        // Before Linux 6.0 a dma-buf takes no fence: acquire_free() waits for it on the CPU.
        if (!attached.error().is(Errc::unsupported))
            dmabridge::detail::log_message(LogLevel::warning, "wayland release of buffer " + std::to_string(slot->index) +
                                                                  ": " + attached.error().message() +
                                                                  " (acquire_free waits for the fence instead)");
        auto copy = fence->dup();
        if (copy) slot->cpu_wait_fence = std::move(*copy);
        else slot->unknown_release = true;  // no fd left to wait with: never handed out again
    }
    slot->release_fence = std::move(*fence);
    finish_explicit_release(slot);
}
void immediate_release(void* data, zwp_linux_buffer_release_v1*) {
    auto* slot = static_cast<SurfaceBuffer*>(data);
    slot->release_fence.reset();
    ++slot->surface->stats.immediate_releases;
    finish_explicit_release(slot);
}
constexpr zwp_linux_buffer_release_v1_listener explicit_release_listener{.fenced_release = fenced_release,
                                                                         .immediate_release = immediate_release};

// --- wl_surface.frame: a good time to draw the next frame. ---
void frame_done(void* data, wl_callback* callback, std::uint32_t) {
    auto* state = static_cast<Surface::State*>(data);
    wl_callback_destroy(callback);
    if (state->frame == callback) state->frame = nullptr;
    ++state->stats.frames_done;
}
constexpr wl_callback_listener frame_listener{.done = frame_done};

bool slot_busy(const SurfaceBuffer& slot) {
    return slot.awaiting_release || slot.awaiting_explicit_release || slot.unknown_release ||
           slot.awaiting_release_point;
}

struct ResolvedSync {
    PresentSync sync;
    std::string reason;
};

// The sync mode a Surface uses: automatic resolved against what the compositor offers, best
// first (syncobj timelines, explicit fences, implicit), and why. An adopted surface takes
// syncobj only when asked for by name: while a wp_linux_drm_syncobj_surface_v1 exists, every
// commit with a buffer must carry points, so the application's own attach (a placeholder, a
// wl_shm frame after the Surface is gone) would end its connection (no_acquire_point).
Result<ResolvedSync> resolve_sync(const Display::State& display, PresentSync sync, bool adopting) {
    const char* operation = adopting ? "adopt" : "create";
    const bool syncobj = display.watcher.has_value();
    const bool fences = display.explicit_sync != nullptr;
    const std::string fences_offered = fences ? "the compositor offers zwp_linux_explicit_synchronization_v1"
                                              : "the compositor offers no zwp_linux_explicit_synchronization_v1";
    if (sync == PresentSync::automatic) {
        if (syncobj && !adopting)
            return ResolvedSync{PresentSync::syncobj, "the compositor offers wp_linux_drm_syncobj_manager_v1"};
        if (adopting)
            return ResolvedSync{fences ? PresentSync::explicit_fences : PresentSync::implicit,
                                "an adopted surface takes syncobj only when asked for (the application's own commits "
                                "would need points); " + fences_offered};
        return ResolvedSync{fences ? PresentSync::explicit_fences : PresentSync::implicit,
                            "no syncobj: " + display.syncobj_unavailable + "; " + fences_offered};
    }
    if (sync == PresentSync::explicit_fences && !fences)
        return Error::library(Errc::unsupported, std::string("wayland::Surface::") + operation +
                                                     ": explicit sync was asked for but the compositor offers no "
                                                     "zwp_linux_explicit_synchronization_v1");
    if (sync == PresentSync::syncobj && !syncobj)
        return Error::library(Errc::unsupported, std::string("wayland::Surface::") + operation +
                                                     ": syncobj sync was asked for but " + display.syncobj_unavailable);
    return ResolvedSync{sync, std::string("asked for (") + to_string(sync) + ")"};
}

// The next point of `timeline`: above both the last one we used and the last one anything
// submitted (a compositor can signal points of a timeline it imported, also far ahead).
Result<std::uint64_t> next_point(const Timeline& timeline, std::uint64_t last_used, const std::string& what) {
    auto submitted = timeline.last_submitted();
    if (!submitted) return submitted.error().with_context(what);
    const std::uint64_t base = std::max(last_used, *submitted);
    if (base == UINT64_MAX)
        return Error::library(Errc::limit_exceeded, what + ": the timeline reached point 2^64-1 (" +
                                                        std::to_string(base) + "): no point is left above it");
    return base + 1;
}

// A new timeline on the Display's timeline device and the compositor's import of it.
Status make_timeline(Display::State& display, std::optional<Timeline>& timeline,
                     wp_linux_drm_syncobj_timeline_v1*& proxy, const std::string& what) {
    auto made = Timeline::create(display.timeline_device.get());
    if (!made) return made.error().with_context(what);
    auto fd = made->export_fd();
    if (!fd) return fd.error().with_context(what);
    // libwayland duplicates the fd into the message: ours closes here.
    proxy = wp_linux_drm_syncobj_manager_v1_import_timeline(display.syncobj_manager, fd->get());
    timeline = std::move(*made);
    return {};
}

// Makes a Surface's syncobj object and acquire timeline.
Status init_syncobj_surface(Surface::State& state, wl_surface* surface, const std::string& what) {
    auto& display = *state.display;
    state.syncobj_surface = wp_linux_drm_syncobj_manager_v1_get_surface(display.syncobj_manager, surface);
    return make_timeline(display, state.acquire_timeline, state.acquire_proxy, what + ": acquire timeline");
}

void release_point_signalled(SurfaceBuffer* slot) {
    slot->awaiting_release_point = false;
    slot->release_watch = 0;
    ++slot->surface->stats.release_points;
}

// What a syncobj Surface's busy buffers wait for, for a timeout's message.
std::string pending_release_points(const Surface::State& state) {
    std::string out;
    for (const auto& slot : state.buffers) {
        if (!slot->awaiting_release_point || !slot->release_timeline) continue;
        auto last = slot->release_timeline->last_signalled();
        out += (out.empty() ? "" : "; ") + std::string("buffer ") + std::to_string(slot->index) +
               " waits for release point " + std::to_string(slot->release_point) + " (its timeline reached " +
               (last ? std::to_string(*last) : "? (" + last.error().message() + ")") + ")";
    }
    return out;
}

// PresentSync::syncobj: sets the commit's acquire point (from `acquire` or the buffer's implicit
// fences) and release point (watched at once), before commit().
Status set_points(Surface::State& state, SurfaceBuffer& slot, std::optional<SyncFile> acquire, const std::string& what) {
    auto& display = *state.display;
    // The acquire point: the caller's fence, or the writers' fences of the buffer's dma-bufs.
    auto point = next_point(*state.acquire_timeline, state.acquire_point, what + ": acquire timeline");
    if (!point) return point.error();
    if (!acquire) {
        auto exported = export_fences(slot.desc, Access::read, "dmabridge-acquire");
        if (!exported) return exported.error().with_context(what + ": export the dma-bufs' fences");
        acquire = std::move(*exported);  // nullopt before Linux 6.0: nothing to wait for
    }
    if (acquire) {
        if (auto r = state.acquire_timeline->import_sync_file(*point, *acquire); !r)
            return r.error().with_context(what + ": acquire point " + std::to_string(*point));
    } else if (auto r = state.acquire_timeline->signal(*point); !r) {
        return r.error().with_context(what + ": acquire point " + std::to_string(*point));
    }
    state.acquire_point = *point;
    // The release point, on the buffer's own timeline, watched before the compositor has it: the
    // watch waits for the submit too (DRM_IOCTL_SYNCOBJ_EVENTFD).
    auto release = next_point(*slot.release_timeline, slot.release_point,
                              what + ": release timeline of buffer " + std::to_string(slot.index));
    if (!release) return release.error();
    SurfaceBuffer* target = &slot;
    auto watch = display.watcher->watch(
        *slot.release_timeline, *release, [target](WatchId, WaitStatus status) {
            // Only a signalled point frees the buffer: any other end leaves it busy.
            if (status == WaitStatus::ready) release_point_signalled(target);
        }, forever);
    if (!watch) return watch.error().with_context(what + ": release point " + std::to_string(*release));
    slot.release_point = *release;
    slot.release_watch = *watch;
    slot.awaiting_release_point = true;
    wp_linux_drm_syncobj_surface_v1_set_acquire_point(state.syncobj_surface, state.acquire_proxy,
                                                      static_cast<std::uint32_t>(*point >> 32),
                                                      static_cast<std::uint32_t>(*point & 0xffffffffu));
    wp_linux_drm_syncobj_surface_v1_set_release_point(state.syncobj_surface, slot.release_proxy,
                                                      static_cast<std::uint32_t>(*release >> 32),
                                                      static_cast<std::uint32_t>(*release & 0xffffffffu));
    return {};
}

// Attaches, damages, asks for a frame callback, commits and flushes: the end of every present().
Status commit(Surface::State& state, SurfaceBuffer& slot, const std::string& what) {
    auto& display = *state.display;
    slot.release_fence.reset();
    slot.cpu_wait_fence.reset();  // presented again: the caller has made sure it was free
    wl_surface_attach(state.surface, slot.buffer, 0, 0);
    wl_surface_damage_buffer(state.surface, 0, 0, INT32_MAX, INT32_MAX);
    if (state.frame == nullptr) {
        // From the wrapper of an adopted surface: the callback lands on the library's queue,
        // not on the application's (a callback inherits the queue of the proxy that made it).
        state.frame = wl_surface_frame(state.surface_wrapper != nullptr ? state.surface_wrapper : state.surface);
        wl_callback_add_listener(state.frame, &frame_listener, &state);
    }
    wl_surface_commit(state.surface);
    // With a syncobj object, wl_buffer.release is undefined: the release point alone says free.
    slot.awaiting_release = state.sync != PresentSync::syncobj;
    slot.presented_at = ++state.sequence;
    ++state.stats.presented;
    return display.flush(what);  // the acquire fence's fd was duplicated into the message: ours closes here
}

}  // namespace

Surface::State::~State() {
    for (auto& slot : buffers) {
        // The watch's callback points at the slot: it must never run once the slot is gone. (The
        // compositor keeps its own import of the release timeline, as of the dma-bufs.)
        if (slot->release_watch != 0 && display && display->watcher) display->watcher->cancel(slot->release_watch);
        // A buffer the compositor still holds: once its release point is submitted, its fence
        // goes onto the dma-bufs as a reader's fence, so that a later writer with implicit sync
        // waits for the compositor's last read (under syncobj the compositor need not put its
        // reads there itself). Best effort: a point not yet submitted has no fence to give.
        if (slot->awaiting_release_point && slot->release_timeline) {
            auto submitted = slot->release_timeline->wait(slot->release_point, Timeout{0}, PointState::submitted);
            if (submitted && *submitted == WaitStatus::ready)
                if (auto fence = slot->release_timeline->export_sync_file(slot->release_point))
                    (void)attach_fence(slot->desc, *fence, Access::read);
        }
        if (slot->release_proxy != nullptr) wp_linux_drm_syncobj_timeline_v1_destroy(slot->release_proxy);
        if (slot->pending_release != nullptr) zwp_linux_buffer_release_v1_destroy(slot->pending_release);
        if (slot->buffer != nullptr) wl_buffer_destroy(slot->buffer);
    }
    if (frame != nullptr) wl_callback_destroy(frame);
    if (sync_object != nullptr) zwp_linux_surface_synchronization_v1_destroy(sync_object);
    // Before the wl_surface: the syncobj object must not outlive its surface (no_surface).
    if (syncobj_surface != nullptr) wp_linux_drm_syncobj_surface_v1_destroy(syncobj_surface);
    if (acquire_proxy != nullptr) wp_linux_drm_syncobj_timeline_v1_destroy(acquire_proxy);
    if (toplevel != nullptr) xdg_toplevel_destroy(toplevel);
    if (xdg != nullptr) xdg_surface_destroy(xdg);
    if (surface_wrapper != nullptr) wl_proxy_wrapper_destroy(surface_wrapper);
    if (!owns_surface && display) std::erase(display->adopted, surface);
    if (surface != nullptr && owns_surface) wl_surface_destroy(surface);  // an adopted one stays the application's
    if (display && display->display != nullptr) wl_display_flush(display->display);
}

Result<Surface> Surface::create(Display& display, const SurfaceOptions& options) {
    if (!display.state_)
        return Error::library(Errc::empty_object, "wayland::Surface::create: the Display is empty (moved from)");
    const auto& dstate = display.state_;
    if (dstate->broken) return dstate->broken->with_context("wayland::Surface::create");
    auto resolved = resolve_sync(*dstate, options.sync, false);
    if (!resolved) return resolved.error();
    const PresentSync sync = resolved->sync;

    auto state = std::make_shared<State>();
    state->display = dstate;
    state->sync = sync;
    state->sync_reason = std::move(resolved->reason);
    state->acquire_wait_timeout = options.acquire_wait_timeout;
    state->surface = wl_compositor_create_surface(dstate->compositor);
    state->xdg = xdg_wm_base_get_xdg_surface(dstate->wm_base, state->surface);
    xdg_surface_add_listener(state->xdg, &xdg_surface_listener_, state.get());
    state->toplevel = xdg_surface_get_toplevel(state->xdg);
    xdg_toplevel_add_listener(state->toplevel, &toplevel_listener, state.get());
    xdg_toplevel_set_title(state->toplevel, options.title.c_str());
    xdg_toplevel_set_app_id(state->toplevel, options.app_id.c_str());
    if (sync == PresentSync::explicit_fences)
        state->sync_object = zwp_linux_explicit_synchronization_v1_get_synchronization(dstate->explicit_sync,
                                                                                       state->surface);
    if (sync == PresentSync::syncobj)
        if (auto made = init_syncobj_surface(*state, state->surface, "wayland::Surface::create"); !made)
            return made.error();
    wl_surface_commit(state->surface);
    if (auto r = dstate->dispatch_until([&] { return state->configured; }, options.configure_timeout,
                                        "wayland::Surface::create: first configure of \"" + options.title + "\"");
        !r)
        return r.error();
    return Surface(std::move(state));
}

Result<Surface> Surface::adopt(Display& display, wl_surface* surface, PresentSync sync) {
    if (!display.state_)
        return Error::library(Errc::empty_object, "wayland::Surface::adopt: the Display is empty (moved from)");
    if (surface == nullptr) return Error::library(Errc::empty_object, "wayland::Surface::adopt: the wl_surface is null");
    const auto& dstate = display.state_;
    if (dstate->broken) return dstate->broken->with_context("wayland::Surface::adopt");
    auto* proxy = reinterpret_cast<wl_proxy*>(surface);
    if (std::string_view(wl_proxy_get_class(proxy)) != wl_surface_interface.name)
        return Error::library(Errc::invalid_argument, std::string("wayland::Surface::adopt: the proxy is a ") +
                                                          wl_proxy_get_class(proxy) + ", not a wl_surface");
    if (wl_proxy_get_display(proxy) != dstate->display)
        return Error::library(Errc::invalid_argument,
                              "wayland::Surface::adopt: the wl_surface belongs to another connection than the Display's");
    // Two Surfaces committing to one wl_surface would break the protocols: the second one's
    // commits would lack the first's acquire/release points (no_acquire_point), or its sync
    // object would be the surface's second (surface_exists, synchronization_exists).
    if (std::find(dstate->adopted.begin(), dstate->adopted.end(), surface) != dstate->adopted.end())
        return Error::library(Errc::invalid_argument,
                              "wayland::Surface::adopt: another Surface of this Display already presents to the "
                              "wl_surface; destroy it first");
    auto resolved = resolve_sync(*dstate, sync, true);
    if (!resolved) return resolved.error();

    auto state = std::make_shared<State>();
    state->display = dstate;
    state->sync = resolved->sync;
    state->sync_reason = std::move(resolved->reason);
    state->surface = surface;
    state->owns_surface = false;
    state->surface_wrapper = static_cast<wl_surface*>(wl_proxy_create_wrapper(surface));
    if (state->surface_wrapper == nullptr) return dmabridge::detail::last_error("wayland::Surface::adopt: wl_proxy_create_wrapper");
    wl_proxy_set_queue(reinterpret_cast<wl_proxy*>(state->surface_wrapper), dstate->queue);
    state->configured = true;  // the application's business
    dstate->adopted.push_back(surface);
    if (state->sync == PresentSync::explicit_fences)
        state->sync_object = zwp_linux_explicit_synchronization_v1_get_synchronization(dstate->explicit_sync, surface);
    if (state->sync == PresentSync::syncobj)
        if (auto made = init_syncobj_surface(*state, surface, "wayland::Surface::adopt"); !made) return made.error();
    if (auto flushed = dstate->flush("wayland::Surface::adopt"); !flushed) return flushed.error();
    return Surface(std::move(state));
}

Surface::Surface(std::shared_ptr<State> state) noexcept : state_(std::move(state)) {}
Surface::Surface(Surface&&) noexcept = default;
Surface& Surface::operator=(Surface&&) noexcept = default;
Surface::~Surface() = default;

std::uint32_t Surface::configured_width() const noexcept { return state_ ? state_->width : 0; }
std::uint32_t Surface::configured_height() const noexcept { return state_ ? state_->height : 0; }
PresentSync Surface::sync() const noexcept { return state_ ? state_->sync : PresentSync::implicit; }
std::string Surface::sync_reason() const { return state_ ? state_->sync_reason : std::string(); }
SurfaceStats Surface::stats() const noexcept { return state_ ? state_->stats : SurfaceStats{}; }
std::uint32_t Surface::buffer_count() const noexcept {
    return state_ ? static_cast<std::uint32_t>(state_->buffers.size()) : 0;
}

Result<SurfaceBufferId> Surface::add_buffer(BufferDesc desc) {
    if (!state_) return moved_from("add_buffer");
    auto& display = *state_->display;
    if (display.broken) return display.broken->with_context("wayland::Surface::add_buffer");
    for (std::size_t i = 0; i < desc.planes.size(); ++i)
        if (!desc.planes[i].buffer.valid())
            return Error::library(Errc::empty_object, "wayland::Surface::add_buffer: plane " + std::to_string(i) +
                                                          "'s dma-buf is empty (moved from or released)");
    if (auto valid = desc.validate(); !valid) return valid.error().with_context("wayland::Surface::add_buffer");
    if (!display.formats.contains(desc.fourcc, desc.modifier))
        return Error::library(Errc::unsupported, "wayland::Surface::add_buffer: the compositor does not accept " +
                                                     fourcc_to_string(desc.fourcc) + " with modifier " +
                                                     modifier_to_string(desc.modifier) + " (" +
                                                     std::to_string(display.formats.modifiers(desc.fourcc).size()) +
                                                     " modifiers offered for that fourcc)");
    if (desc.width > static_cast<std::uint32_t>(INT32_MAX) || desc.height > static_cast<std::uint32_t>(INT32_MAX))
        return Error::library(Errc::invalid_argument, "wayland::Surface::add_buffer: " + std::to_string(desc.width) +
                                                          "x" + std::to_string(desc.height) + " does not fit int32");
    for (std::size_t i = 0; i < desc.planes.size(); ++i) {
        const auto& plane = desc.planes[i];
        if (plane.offset > UINT32_MAX || plane.stride > UINT32_MAX)
            return Error::library(Errc::invalid_argument,
                                  "wayland::Surface::add_buffer: plane " + std::to_string(i) + " offset " +
                                      std::to_string(plane.offset) + " or stride " + std::to_string(plane.stride) +
                                      " does not fit the protocol's 32 bits");
    }
    std::optional<Timeline> release_timeline;
    wp_linux_drm_syncobj_timeline_v1* release_proxy = nullptr;
    if (state_->sync == PresentSync::syncobj)
        if (auto made = make_timeline(display, release_timeline, release_proxy,
                                      "wayland::Surface::add_buffer: release timeline of buffer " +
                                          std::to_string(state_->buffers.size()));
            !made)
            return made.error();
    auto* params = zwp_linux_dmabuf_v1_create_params(display.dmabuf);
    for (std::size_t i = 0; i < desc.planes.size(); ++i) {
        const auto& plane = desc.planes[i];
        // libwayland duplicates the fd for the message: desc keeps its own.
        zwp_linux_buffer_params_v1_add(params, plane.buffer.fd(), static_cast<std::uint32_t>(i),
                                       static_cast<std::uint32_t>(plane.offset),
                                       static_cast<std::uint32_t>(plane.stride),
                                       static_cast<std::uint32_t>(desc.modifier >> 32),
                                       static_cast<std::uint32_t>(desc.modifier & 0xffffffffu));
    }
    wl_buffer* buffer = zwp_linux_buffer_params_v1_create_immed(params, static_cast<std::int32_t>(desc.width),
                                                                static_cast<std::int32_t>(desc.height), desc.fourcc, 0);
    zwp_linux_buffer_params_v1_destroy(params);
    auto slot = std::make_unique<SurfaceBuffer>();
    slot->desc = std::move(desc);
    slot->buffer = buffer;
    slot->surface = state_.get();
    slot->index = static_cast<SurfaceBufferId>(state_->buffers.size());
    slot->release_timeline = std::move(release_timeline);
    slot->release_proxy = release_proxy;
    wl_buffer_add_listener(buffer, &buffer_listener, slot.get());
    state_->buffers.push_back(std::move(slot));
    if (auto flushed = display.flush("wayland::Surface::add_buffer"); !flushed) return flushed.error();
    return static_cast<SurfaceBufferId>(state_->buffers.size() - 1);
}

const BufferDesc* Surface::buffer(SurfaceBufferId id) const noexcept {
    if (!state_ || id >= state_->buffers.size()) return nullptr;
    return &state_->buffers[id]->desc;
}

bool Surface::busy(SurfaceBufferId id) const noexcept {
    if (!state_ || id >= state_->buffers.size()) return false;
    return slot_busy(*state_->buffers[id]);
}

std::optional<SyncFile> Surface::take_release_fence(SurfaceBufferId id) {
    if (!state_ || id >= state_->buffers.size()) return std::nullopt;
    return std::exchange(state_->buffers[id]->release_fence, std::nullopt);
}

Result<SurfaceBufferId> Surface::acquire_free(Timeout timeout) {
    if (!state_) return moved_from("acquire_free");
    if (state_->buffers.empty())
        return Error::library(Errc::not_found, "wayland::Surface::acquire_free: no buffer was added");
    const dmabridge::detail::Deadline deadline(timeout);
    std::optional<SurfaceBufferId> found;
    auto pick = [&] {
        for (std::size_t i = 0; i < state_->buffers.size(); ++i) {
            const auto& slot = *state_->buffers[i];
            if (slot_busy(slot)) continue;
            if (!found || slot.presented_at < state_->buffers[*found]->presented_at)
                found = static_cast<SurfaceBufferId>(i);
        }
        return found.has_value();
    };
    if (auto r = state_->display->dispatch_until(pick, timeout,
                                                 "wayland::Surface::acquire_free: all " +
                                                     std::to_string(state_->buffers.size()) +
                                                     " buffers held by the compositor");
        !r) {
        if (state_->sync == PresentSync::syncobj && r.error().is_errno(ETIMEDOUT))
            return Error::from_errno(ETIMEDOUT, r.error().message() + " (" + pending_release_points(*state_) + ")");
        return r.error();
    }
    auto& slot = *state_->buffers[*found];
    if (slot.cpu_wait_fence) {
        // The release fence could not go on the dma-bufs (before Linux 6.0): it is waited for
        // here, within the same timeout, so that a buffer handed out is never still read.
        const auto left = deadline.wait_timeout();
        auto waited = slot.cpu_wait_fence->wait(left ? *left : Timeout(0));
        if (!waited) return waited.error().with_context("wayland::Surface::acquire_free: release fence of buffer " +
                                                        std::to_string(*found));
        if (*waited == WaitStatus::timed_out)
            return Error::from_errno(ETIMEDOUT, "wayland::Surface::acquire_free: the release fence of buffer " +
                                                    std::to_string(*found) + " did not signal within " +
                                                    std::to_string(timeout.count()) + " ms");
        slot.cpu_wait_fence.reset();
    }
    return *found;
}

Status Surface::present(SurfaceBufferId id, std::optional<SyncFile> acquire) {
    if (!state_) return moved_from("present");
    auto& display = *state_->display;
    const std::string what = "wayland::Surface::present buffer " + std::to_string(id);
    if (display.broken) return display.broken->with_context(what);
    if (id >= state_->buffers.size())
        return Error::library(Errc::invalid_argument, what + ": unknown id (" + std::to_string(state_->buffers.size()) +
                                                          " buffers added)");
    auto& slot = *state_->buffers[id];
    if (slot_busy(slot))
        return Error::library(Errc::invalid_argument,
                              what + ": the compositor still holds it (no release since its last present)");
    if (acquire && !acquire->valid())
        return Error::library(Errc::empty_object, what + ": the acquire fence is empty (moved from or released)");

    if (state_->sync == PresentSync::syncobj) {
        if (auto points = set_points(*state_, slot, std::move(acquire), what); !points) return points.error();
        return commit(*state_, slot, what);
    }
    const bool explicit_sync = state_->sync == PresentSync::explicit_fences;
    if (acquire && !explicit_sync) {
        // Implicit sync: the fence joins every distinct dma-buf's own, where the compositor's
        // import waits.
        if (auto r = attach_fence(slot.desc, *acquire, Access::write); !r) {
            if (!r.error().is(Errc::unsupported)) return r.error().with_context(what);
            // A kernel before 6.0 cannot add fences to a dma-buf: the CPU waits instead.
            auto waited = acquire->wait(state_->acquire_wait_timeout);
            if (!waited) return waited.error().with_context(what + ": wait for the acquire fence");
            if (*waited == WaitStatus::timed_out)
                return Error::from_errno(ETIME, what + ": the acquire fence did not signal within " +
                                                    std::to_string(state_->acquire_wait_timeout.count()) +
                                                    " ms (SurfaceOptions::acquire_wait_timeout); nothing was committed");
        }
    }
    if (explicit_sync && !acquire) {
        // The caller published its rendering on the dma-bufs (or finished writing): the
        // acquire fence is what a reader of every distinct dma-buf must wait for, merged into
        // one. Before Linux 6.0 there is none to export: the commit goes without (the caller
        // finished writing, as PresentSync::implicit documents for that kernel).
        auto exported = export_fences(slot.desc, Access::read, "dmabridge-acquire");
        if (!exported) return exported.error().with_context(what + ": export the dma-bufs' fences");
        acquire = std::move(*exported);
    }
    if (explicit_sync) {
        if (acquire) zwp_linux_surface_synchronization_v1_set_acquire_fence(state_->sync_object, acquire->fd());
        slot.pending_release = zwp_linux_surface_synchronization_v1_get_release(state_->sync_object);
        zwp_linux_buffer_release_v1_add_listener(slot.pending_release, &explicit_release_listener, &slot);
        slot.awaiting_explicit_release = true;
    }
    return commit(*state_, slot, what);
}

Status Surface::present(SurfaceBufferId id, const Timeline& timeline, std::uint64_t point) {
    if (!state_) return moved_from("present");
    const std::string what = "wayland::Surface::present buffer " + std::to_string(id);
    if (!timeline.valid())
        return Error::library(Errc::empty_object, what + ": the acquire Timeline is empty (moved from)");
    auto fence = timeline.export_sync_file(point);
    if (!fence) return fence.error().with_context(what + ": acquire point " + std::to_string(point));
    return present(id, std::move(*fence));
}

}  // namespace dmabridge::wayland
