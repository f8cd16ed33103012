// SPDX-License-Identifier: MIT
#include <dmabridge/wayland/display.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <poll.h>
#include <unistd.h>

#include <dmabridge/format/fourcc.hpp>
#include <dmabridge/wayland/surface.hpp>

#include "base/sys.hpp"
#include "wayland/state.hpp"

namespace dmabridge::wayland {

namespace {

std::span<const std::byte> array_bytes(const wl_array* array) {
    if (array == nullptr || array->data == nullptr) return {};
    return {static_cast<const std::byte*>(array->data), array->size};
}

// --- xdg_wm_base: answer pings, or the compositor declares us unresponsive. ---
void wm_base_ping(void*, xdg_wm_base* wm_base, std::uint32_t serial) { xdg_wm_base_pong(wm_base, serial); }
constexpr xdg_wm_base_listener wm_base_listener{.ping = wm_base_ping};

// --- zwp_linux_dmabuf_v1 version 3: one modifier event per (format, modifier). ---
void dmabuf_format(void*, zwp_linux_dmabuf_v1*, std::uint32_t) {}  // deprecated: the modifier events say it all
void dmabuf_modifier(void* data, zwp_linux_dmabuf_v1*, std::uint32_t format, std::uint32_t hi, std::uint32_t lo) {
    auto* state = static_cast<Display::State*>(data);
    state->formats.add(format, static_cast<std::uint64_t>(hi) << 32 | lo);
}
constexpr zwp_linux_dmabuf_v1_listener dmabuf_listener{.format = dmabuf_format, .modifier = dmabuf_modifier};

// --- zwp_linux_dmabuf_feedback_v1 (version 4+): format table, main device, tranches. ---
void feedback_done(void* data, zwp_linux_dmabuf_feedback_v1*) {
    auto* state = static_cast<Display::State*>(data);
    state->formats = std::move(state->pending_formats);
    state->pending_formats = {};
    state->feedback_done = true;
}
void feedback_format_table(void* data, zwp_linux_dmabuf_feedback_v1*, std::int32_t fd, std::uint32_t size) {
    auto* state = static_cast<Display::State*>(data);
    UniqueFd owned(fd);  // the event hands us the fd: closed whatever happens
    auto table = detail::read_format_table(owned.get(), size);
    if (!table) {
        // A refused fd may be a file whose close waits for its file system: not on this thread.
        auto link = dmabridge::detail::fd_link(owned.get(), "linux-dmabuf format table");
        dmabridge::detail::close_untrusted(std::move(owned), link ? *link : std::string());
        if (!state->feedback_error) state->feedback_error = table.error();
        state->table.clear();
        return;
    }
    state->table = std::move(*table);
}
void feedback_main_device(void* data, zwp_linux_dmabuf_feedback_v1*, wl_array* device) {
    auto* state = static_cast<Display::State*>(data);
    const auto bytes = array_bytes(device);
    if (bytes.size() != sizeof(dev_t)) {
        if (state->feedback_error) return;  // the first problem is the one reported
        state->feedback_error = Error::library(Errc::invalid_argument, "linux-dmabuf main_device: " +
                                                                           std::to_string(bytes.size()) + " bytes, expected " +
                                                                           std::to_string(sizeof(dev_t)));
        return;
    }
    dev_t dev{};
    std::memcpy(&dev, bytes.data(), sizeof dev);
    state->main_device = dev;
}
void feedback_tranche_done(void*, zwp_linux_dmabuf_feedback_v1*) {}
void feedback_tranche_target_device(void*, zwp_linux_dmabuf_feedback_v1*, wl_array*) {}
void feedback_tranche_formats(void* data, zwp_linux_dmabuf_feedback_v1*, wl_array* indices) {
    auto* state = static_cast<Display::State*>(data);
    if (auto added = detail::add_tranche_formats(state->table, array_bytes(indices), state->pending_formats);
        !added && !state->feedback_error)
        state->feedback_error = added.error();
}
void feedback_tranche_flags(void*, zwp_linux_dmabuf_feedback_v1*, std::uint32_t) {}
constexpr zwp_linux_dmabuf_feedback_v1_listener feedback_listener{
    .done = feedback_done,
    .format_table = feedback_format_table,
    .main_device = feedback_main_device,
    .tranche_done = feedback_tranche_done,
    .tranche_target_device = feedback_tranche_target_device,
    .tranche_formats = feedback_tranche_formats,
    .tranche_flags = feedback_tranche_flags,
};

// --- wl_registry: bind what dmabridge uses. ---
void registry_global(void* data, wl_registry* registry, std::uint32_t name, const char* interface,
                     std::uint32_t version) {
    auto* state = static_cast<Display::State*>(data);
    const std::string_view iface(interface);
    if (iface == wl_compositor_interface.name && state->compositor == nullptr && version >= 4) {
        state->compositor_version = std::min<std::uint32_t>(version, 4);
        state->compositor = static_cast<wl_compositor*>(
            wl_registry_bind(registry, name, &wl_compositor_interface, state->compositor_version));
    } else if (iface == xdg_wm_base_interface.name && state->wm_base == nullptr) {
        state->wm_base = static_cast<xdg_wm_base*>(wl_registry_bind(registry, name, &xdg_wm_base_interface, 1));
        xdg_wm_base_add_listener(state->wm_base, &wm_base_listener, state);
    } else if (iface == zwp_linux_dmabuf_v1_interface.name && state->dmabuf == nullptr && version >= 3) {
        state->dmabuf_version = std::min({version, state->options.max_dmabuf_version,
                                          static_cast<std::uint32_t>(zwp_linux_dmabuf_v1_interface.version)});
        state->dmabuf_version = std::max<std::uint32_t>(state->dmabuf_version, 3);
        state->dmabuf = static_cast<zwp_linux_dmabuf_v1*>(
            wl_registry_bind(registry, name, &zwp_linux_dmabuf_v1_interface, state->dmabuf_version));
        if (state->dmabuf_version < 4) zwp_linux_dmabuf_v1_add_listener(state->dmabuf, &dmabuf_listener, state);
    } else if (iface == zwp_linux_explicit_synchronization_v1_interface.name && state->explicit_sync == nullptr &&
               state->options.explicit_sync) {
        state->explicit_sync = static_cast<zwp_linux_explicit_synchronization_v1*>(wl_registry_bind(
            registry, name, &zwp_linux_explicit_synchronization_v1_interface, std::min<std::uint32_t>(version, 2)));
    } else if (iface == wp_linux_drm_syncobj_manager_v1_interface.name && state->syncobj_manager == nullptr &&
               state->options.syncobj) {
        state->syncobj_manager = static_cast<wp_linux_drm_syncobj_manager_v1*>(
            wl_registry_bind(registry, name, &wp_linux_drm_syncobj_manager_v1_interface, 1));
    }
}
void registry_global_remove(void*, wl_registry*, std::uint32_t) {}
constexpr wl_registry_listener registry_listener{.global = registry_global, .global_remove = registry_global_remove};

void sync_done(void* data, wl_callback* callback, std::uint32_t) {
    *static_cast<bool*>(data) = true;
    wl_callback_destroy(callback);
}
constexpr wl_callback_listener sync_listener{.done = sync_done};

Error moved_from(const char* operation) {
    return Error::library(Errc::empty_object, std::string("wayland::Display::") + operation +
                                                  ": the Display is empty (moved from)");
}

}  // namespace

Display::State::~State() {
    if (feedback != nullptr) zwp_linux_dmabuf_feedback_v1_destroy(feedback);
    if (explicit_sync != nullptr) zwp_linux_explicit_synchronization_v1_destroy(explicit_sync);
    if (syncobj_manager != nullptr) wp_linux_drm_syncobj_manager_v1_destroy(syncobj_manager);
    if (dmabuf != nullptr) zwp_linux_dmabuf_v1_destroy(dmabuf);
    if (wm_base != nullptr) xdg_wm_base_destroy(wm_base);
    if (compositor != nullptr) wl_compositor_destroy(compositor);
    if (registry != nullptr) wl_registry_destroy(registry);
    if (wrapper != nullptr) wl_proxy_wrapper_destroy(wrapper);
    if (queue != nullptr) wl_event_queue_destroy(queue);  // after every proxy on it
    if (display != nullptr) {
        wl_display_flush(display);
        if (owns_display) wl_display_disconnect(display);  // an adopted display stays the application's
    }
}

Error Display::State::connection_error(const std::string& operation) {
    if (broken) return broken->with_context(operation);
    const int err = wl_display_get_error(display);
    if (err == EPROTO) {
        const wl_interface* interface = nullptr;
        std::uint32_t id = 0;
        const std::uint32_t code = wl_display_get_protocol_error(display, &interface, &id);
        broken = Error::from_errno(EPROTO, "the compositor raised protocol error " + std::to_string(code) + " on " +
                                               (interface != nullptr ? interface->name : "wl_display") + "@" +
                                               std::to_string(id) + " (the connection is closed)");
    } else {
        broken = Error::from_errno(err != 0 ? err : EPIPE, "the Wayland connection failed");
    }
    return broken->with_context(operation);
}

Status Display::State::flush(const std::string& operation) {
    if (broken) return broken->with_context(operation);
    if (wl_display_flush(display) < 0 && errno != EAGAIN) return connection_error(operation);
    return {};
}

Result<bool> Display::State::dispatch(Timeout timeout, const std::string& operation) {
    if (broken) return broken->with_context(operation);
    const dmabridge::detail::Deadline deadline(timeout);
    for (;;) {
        // Events already read (by an earlier read) go first. A handler can find the compositor
        // breaking the protocol (a release "fence" that is none): that error is returned at once.
        int n = wl_display_dispatch_queue_pending(display, queue);
        if (n < 0) return connection_error(operation);
        if (broken) return broken->with_context(operation);
        if (n > 0) return true;
        if (auto ran = dispatch_release_points(operation); !ran || *ran) return ran;
        while (wl_display_prepare_read_queue(display, queue) != 0) {
            n = wl_display_dispatch_queue_pending(display, queue);
            if (n < 0) return connection_error(operation);
            if (broken) return broken->with_context(operation);
            if (n > 0) return true;
        }
        // Send what is queued. EAGAIN means the socket is full and part of it is still in
        // libwayland's buffer: the compositor may answer nothing before it has that part (a
        // roundtrip's sync, a commit), so the wait below is also for the socket to take more,
        // as every wl_display_flush user must. Waiting for events alone could sleep until the
        // timeout with our own requests unsent.
        bool unsent = false;
        if (wl_display_flush(display) < 0) {
            if (errno != EAGAIN) {
                wl_display_cancel_read(display);
                return connection_error(operation);
            }
            unsent = true;
        }
        const auto left = deadline.wait_ms();  // nothing once passed: then one poll that does not block
        // The release points of syncobj Surfaces signal through the watcher's fd: a wake-up too.
        const bool points = watcher && watcher->pending() > 0;
        pollfd fds[2] = {{wl_display_get_fd(display), static_cast<short>(POLLIN | (unsent ? POLLOUT : 0)), 0},
                         {points ? watcher->fd() : -1, POLLIN, 0}};
        const int ready = ::poll(fds, points ? 2 : 1, left ? *left : 0);
        if (ready < 0) {
            const int err = errno;
            wl_display_cancel_read(display);
            if (err == EINTR) continue;
            return Error::from_errno(err, "wayland dispatch: poll").with_context(operation);
        }
        if (ready == 0) {
            wl_display_cancel_read(display);
            if (!left) return false;
            continue;  // a rounded-down wait: the deadline decides on the next turn
        }
        pollfd& p = fds[0];
        if (points && (fds[1].revents & POLLIN) != 0) {
            wl_display_cancel_read(display);
            auto ran = dispatch_release_points(operation);
            if (!ran) return ran.error();
            if (*ran) return true;
            continue;
        }
        if ((p.revents & (POLLIN | POLLHUP | POLLERR)) == 0) {
            // Writable only: send the rest on the next turn, then wait again.
            wl_display_cancel_read(display);
            continue;
        }
        if (wl_display_read_events(display) < 0) return connection_error(operation);
        n = wl_display_dispatch_queue_pending(display, queue);
        if (n < 0) return connection_error(operation);
        if (broken) return broken->with_context(operation);
        return true;
    }
}

Result<bool> Display::State::dispatch_release_points(const std::string& operation) {
    if (!watcher || watcher->pending() == 0) return false;
    auto ran = watcher->dispatch(Timeout{0});
    if (!ran) return ran.error().with_context(operation + ": release points");
    return *ran > 0;
}

void Display::State::init_syncobj() {
    if (syncobj_manager == nullptr) {
        syncobj_unavailable = options.syncobj ? "the compositor offers no wp_linux_drm_syncobj_manager_v1"
                                              : "DisplayOptions::syncobj is false";
        return;
    }
    auto fail = [&](const Error& e) {
        syncobj_unavailable = "wp_linux_drm_syncobj_manager_v1 is offered but no timeline can be waited for here: " +
                              e.message();
        timeline_device.reset();
    };
    if (options.timeline_device >= 0) {
        auto dup = UniqueFd::dup_of(options.timeline_device);
        if (!dup) return fail(dup.error().with_context("DisplayOptions::timeline_device"));
        timeline_device = std::move(*dup);
    } else {
        auto found = Timeline::open_device();
        if (!found) return fail(found.error());
        timeline_device = std::move(*found);
    }
    if (auto ok = Timeline::supported(timeline_device.get()); !ok) return fail(ok.error());
    // Release points are watched before the compositor submits them: that takes the eventfd.
    if (auto ok = Timeline::eventfd_supported(timeline_device.get()); !ok) return fail(ok.error());
    auto made = FenceWatcher::create();
    if (!made) return fail(made.error());
    watcher = std::move(*made);
    syncobj_unavailable.clear();
}

Status Display::State::dispatch_until(const std::function<bool()>& done, Timeout timeout, const std::string& what) {
    const dmabridge::detail::Deadline deadline(timeout);
    while (!done()) {
        const auto wait = deadline.wait_timeout();
        if (!wait)
            return Error::from_errno(ETIMEDOUT, what + ": no answer from the compositor within " +
                                                    std::to_string(timeout.count()) + " ms");
        auto dispatched = dispatch(*wait, what);
        if (!dispatched) return dispatched.error();
    }
    return {};
}

Status Display::State::roundtrip(Timeout timeout, const std::string& what) {
    if (broken) return broken->with_context(what);
    bool done = false;
    wl_callback* callback = wl_display_sync(wrapper);  // on the library's queue
    wl_callback_add_listener(callback, &sync_listener, &done);
    auto waited = dispatch_until([&] { return done; }, timeout, what);
    if (!done) wl_callback_destroy(callback);  // its event never came: nothing else refers to it
    return waited;
}

Status Display::State::init(const std::string& who) {
    // A queue of the library's own: its registry, globals, feedback, surfaces and callbacks are
    // dispatched by dispatch() alone, and dispatch() dispatches nothing else. Proxies inherit
    // the queue of the proxy that made them, so the wrapper's registry puts all of them there.
    queue = wl_display_create_queue(display);
    if (queue == nullptr) return dmabridge::detail::last_error(who + ": wl_display_create_queue");
    wrapper = static_cast<wl_display*>(wl_proxy_create_wrapper(display));
    if (wrapper == nullptr) return dmabridge::detail::last_error(who + ": wl_proxy_create_wrapper");
    wl_proxy_set_queue(reinterpret_cast<wl_proxy*>(wrapper), queue);
    registry = wl_display_get_registry(wrapper);
    wl_registry_add_listener(registry, &registry_listener, this);
    if (auto r = roundtrip(options.timeout, who + ": registry"); !r) return r.error();

    if (compositor == nullptr)
        return Error::library(Errc::unsupported, who + ": the compositor offers no wl_compositor version 4 or later");
    if (wm_base == nullptr) return Error::library(Errc::unsupported, who + ": the compositor offers no xdg_wm_base");
    if (dmabuf == nullptr)
        return Error::library(Errc::unsupported,
                              who + ": the compositor offers no zwp_linux_dmabuf_v1 version 3 or later");

    if (dmabuf_version >= 4) {
        feedback = zwp_linux_dmabuf_v1_get_default_feedback(dmabuf);
        zwp_linux_dmabuf_feedback_v1_add_listener(feedback, &feedback_listener, this);
        if (auto r = dispatch_until([&] { return feedback_done || feedback_error.has_value(); }, options.timeout,
                                    who + ": linux-dmabuf default feedback");
            !r)
            return r.error();
    } else {
        // The modifier events follow the bind; a round trip after it has them all.
        if (auto r = roundtrip(options.timeout, who + ": linux-dmabuf formats"); !r) return r.error();
    }
    if (feedback_error) return feedback_error->with_context(who);
    init_syncobj();
    dmabridge::detail::log_message(LogLevel::info, who + ": linux-dmabuf v" + std::to_string(dmabuf_version) + ", " +
                                                       std::to_string(formats.size()) +
                                                       " format/modifier pairs, explicit sync " +
                                                       (explicit_sync != nullptr ? "yes" : "no") + ", syncobj " +
                                                       (syncobj_unavailable.empty() ? "yes" : "no (" + syncobj_unavailable + ")"));
    return {};
}

namespace {
Status check_options(const DisplayOptions& options, const char* operation) {
    if (options.max_dmabuf_version < 3)
        return Error::library(Errc::invalid_argument, std::string("wayland::Display::") + operation +
                                                          ": max_dmabuf_version " +
                                                          std::to_string(options.max_dmabuf_version) +
                                                          " < 3 (version 3 is the first with modifiers)");
    return {};
}
}  // namespace

Result<Display> Display::connect(const DisplayOptions& options) {
    if (auto ok = check_options(options, "connect"); !ok) return ok.error();
    auto state = std::make_shared<State>();
    state->options = options;
    const char* name = options.name.empty() ? nullptr : options.name.c_str();
    state->display = wl_display_connect(name);
    const std::string who = "connect to Wayland display " +
                            (name != nullptr ? std::string(name)
                                             : std::string(getenv("WAYLAND_DISPLAY") != nullptr ? getenv("WAYLAND_DISPLAY")
                                                                                                : "wayland-0"));
    if (state->display == nullptr) return dmabridge::detail::last_error(who);
    if (auto r = state->init(who); !r) return r.error();
    return Display(std::move(state));
}

Result<Display> Display::adopt(wl_display* display, const DisplayOptions& options) {
    if (display == nullptr)
        return Error::library(Errc::empty_object, "wayland::Display::adopt: the wl_display is null");
    if (auto ok = check_options(options, "adopt"); !ok) return ok.error();
    auto state = std::make_shared<State>();
    state->options = options;
    state->display = display;
    state->owns_display = false;
    const std::string who = "wayland::Display::adopt";
    if (wl_display_get_error(display) != 0) return state->connection_error(who);
    if (auto r = state->init(who); !r) return r.error();
    return Display(std::move(state));
}

Display::Display(std::shared_ptr<State> state) noexcept : state_(std::move(state)) {}
Display::Display(Display&&) noexcept = default;
Display& Display::operator=(Display&&) noexcept = default;
Display::~Display() = default;

int Display::fd() const noexcept { return state_ ? wl_display_get_fd(state_->display) : -1; }

Result<bool> Display::dispatch(Timeout timeout) {
    if (!state_) return moved_from("dispatch");
    return state_->dispatch(timeout, "wayland::Display::dispatch");
}

Status Display::roundtrip() {
    if (!state_) return moved_from("roundtrip");
    return state_->roundtrip(state_->options.timeout, "wayland::Display::roundtrip");
}

std::uint32_t Display::dmabuf_version() const noexcept { return state_ ? state_->dmabuf_version : 0; }

const FormatSet& Display::formats() const noexcept {
    static const FormatSet empty;
    return state_ ? state_->formats : empty;
}

std::optional<dev_t> Display::main_device() const noexcept {
    return state_ ? state_->main_device : std::nullopt;
}

bool Display::explicit_sync() const noexcept { return state_ && state_->explicit_sync != nullptr; }

bool Display::syncobj() const noexcept { return state_ && state_->watcher.has_value(); }

const std::string& Display::syncobj_unavailable() const noexcept {
    static const std::string moved = "the Display is empty (moved from)";
    return state_ ? state_->syncobj_unavailable : moved;
}

int Display::release_fd() const noexcept { return state_ && state_->watcher ? state_->watcher->fd() : -1; }

namespace {
std::string fourcc_list(const FormatSet& set) {
    std::string out;
    for (const auto code : set.fourccs()) {
        if (!out.empty()) out += ' ';
        out += fourcc_to_string(code);
    }
    return out.empty() ? "(none)" : out;
}
}  // namespace

Result<FormatSet> Display::negotiate(const FormatSet& producer) const {
    if (!state_) return moved_from("negotiate");
    FormatSet common = state_->formats.intersect(producer);
    if (common.empty())
        return Error::library(Errc::unsupported,
                              "wayland::Display::negotiate: no (fourcc, modifier) in common; the compositor accepts " +
                                  std::to_string(state_->formats.size()) + " pairs of " + fourcc_list(state_->formats) +
                                  "; the producer exports " + std::to_string(producer.size()) + " pairs of " +
                                  fourcc_list(producer));
    return common;
}

Result<Surface> Display::create_surface(const SurfaceOptions& options) {
    if (!state_) return moved_from("create_surface");
    return Surface::create(*this, options);
}

}  // namespace dmabridge::wayland
