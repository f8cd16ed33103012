// SPDX-License-Identifier: MIT
#include "fake_compositor.hpp"

#include <chrono>
#include <cstring>
#include <future>
#include <algorithm>
#include <map>
#include <string>

#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <wayland-server.h>

#include "linux-dmabuf-v1-server.h"
#include "linux-drm-syncobj-v1-server.h"
#include "linux-explicit-synchronization-v1-server.h"
#include "xdg-shell-server.h"

#include <doctest/doctest.h>

namespace dmabridge::test {

namespace {

// Request opcodes (the order of the requests in each protocol's XML).
namespace op {
constexpr std::uint32_t compositor_create_surface = 0, compositor_create_region = 1;
constexpr std::uint32_t surface_destroy = 0, surface_attach = 1, surface_frame = 3, surface_commit = 6;
constexpr std::uint32_t wm_base_destroy = 0, wm_base_get_xdg_surface = 2, wm_base_pong = 3;
constexpr std::uint32_t xdg_surface_destroy = 0, xdg_surface_get_toplevel = 1;
constexpr std::uint32_t dmabuf_destroy = 0, dmabuf_create_params = 1, dmabuf_get_default_feedback = 2;
constexpr std::uint32_t params_destroy = 0, params_add = 1, params_create_immed = 3;
constexpr std::uint32_t explicit_destroy = 0, explicit_get_synchronization = 1;
constexpr std::uint32_t sync_destroy = 0, sync_set_acquire_fence = 1, sync_get_release = 2;
constexpr std::uint32_t syncobj_manager_destroy = 0, syncobj_get_surface = 1, syncobj_import_timeline = 2;
constexpr std::uint32_t syncobj_timeline_destroy = 0;
constexpr std::uint32_t syncobj_surface_destroy = 0, syncobj_set_acquire_point = 1, syncobj_set_release_point = 2;
}  // namespace op

// Closes every fd argument of a request that its handler did not take (set to -1).
void close_fds(const wl_message* message, wl_argument* args) {
    int i = 0;
    for (const char* c = message->signature; *c != '\0'; ++c) {
        if (*c == '?' || (*c >= '0' && *c <= '9')) continue;
        if (*c == 'h' && args[i].h >= 0) ::close(args[i].h);
        ++i;
    }
}

using Handler = void (*)(FakeCompositor::Impl& impl, wl_resource* resource, std::uint32_t opcode, wl_argument* args);

}  // namespace

struct FakeCompositor::Impl {
    FakeCompositor* self = nullptr;
    FakeCompositorOptions options;
    std::vector<wl_resource*> wm_bases;

    struct Buffer {
        std::vector<UniqueFd> planes;
    };
    struct Params {
        std::vector<UniqueFd> planes;
    };
    struct PendingPoint {
        bool set = false;
        std::shared_ptr<Timeline> timeline;  // null when the compositor dropped its import
        std::uint64_t point = 0;
    };
    struct Surface {
        wl_resource* syncobj = nullptr;  // wp_linux_drm_syncobj_surface_v1
        PendingPoint acquire_point, release_point;
        wl_resource* pending_buffer = nullptr;
        bool attached = false;
        UniqueFd pending_acquire;
        wl_resource* pending_release = nullptr;
        std::vector<wl_resource*> frames;
        FakeCommit current;
        wl_resource* sync = nullptr;
        wl_resource* xdg = nullptr;
    };
    std::map<wl_resource*, std::unique_ptr<Surface>> surfaces;
    std::map<wl_resource*, std::unique_ptr<Buffer>> buffers;
    std::map<wl_resource*, std::unique_ptr<Params>> params;
    std::uint32_t serial = 1;
    UniqueFd drm;  // where the client's timelines are imported (options.syncobj)
    std::map<wl_resource*, std::shared_ptr<Timeline>> timelines;
    std::map<const Timeline*, std::uint64_t> last_acquire, last_release;  // the points committed last

    void post_error(wl_resource* r, std::uint32_t code, const std::string& message) {
        ++self->protocol_errors;
        wl_resource_post_error(r, code, "%s", message.c_str());
    }

    // A resource whose requests go to `handler` (opcode destroy of a destructor is handled there).
    wl_resource* create(wl_client* client, const wl_interface* iface, int version, std::uint32_t id, Handler handler,
                        void (*destroy)(wl_resource*) = nullptr) {
        wl_resource* r = wl_resource_create(client, iface, version, id);
        REQUIRE(r != nullptr);
        wl_resource_set_dispatcher(r, dispatch, reinterpret_cast<const void*>(handler), this, destroy);
        return r;
    }
    static int dispatch(const void* implementation, void* target, std::uint32_t opcode, const wl_message* message,
                        wl_argument* args) {
        auto* resource = static_cast<wl_resource*>(target);
        auto* impl = static_cast<Impl*>(wl_resource_get_user_data(resource));
        // Handler pointers travel through libwayland's const void* implementation.
        auto handler = reinterpret_cast<Handler>(const_cast<void*>(implementation));
        handler(*impl, resource, opcode, args);
        close_fds(message, args);
        return 0;
    }

    static void ignore(Impl&, wl_resource*, std::uint32_t, wl_argument*) {}
    static void destroy_on_0(Impl&, wl_resource* r, std::uint32_t opcode, wl_argument*) {
        if (opcode == 0) wl_resource_destroy(r);
    }

    static void compositor(Impl& impl, wl_resource* r, std::uint32_t opcode, wl_argument* args) {
        wl_client* client = wl_resource_get_client(r);
        if (opcode == op::compositor_create_surface) {
            wl_resource* s = impl.create(client, &wl_surface_interface, wl_resource_get_version(r), args[0].n, surface,
                                         surface_destroyed);
            impl.surfaces[s] = std::make_unique<Surface>();
        } else if (opcode == op::compositor_create_region) {
            impl.create(client, &wl_region_interface, 1, args[0].n, destroy_on_0);
        }
    }
    static void surface_destroyed(wl_resource* r) {
        auto* impl = static_cast<Impl*>(wl_resource_get_user_data(r));
        impl->surfaces.erase(r);
    }
    static void surface(Impl& impl, wl_resource* r, std::uint32_t opcode, wl_argument* args) {
        Surface& s = *impl.surfaces.at(r);
        switch (opcode) {
        case op::surface_destroy: wl_resource_destroy(r); return;
        case op::surface_attach:
            s.pending_buffer = args[0].o != nullptr ? reinterpret_cast<wl_resource*>(args[0].o) : nullptr;
            s.attached = true;
            return;
        case op::surface_frame:
            s.frames.push_back(impl.create(wl_resource_get_client(r), &wl_callback_interface, 1, args[0].n, ignore));
            return;
        case op::surface_commit: impl.commit(s); return;
        default: return;
        }
    }
    // The protocol's rules for a commit of a surface with a syncobj object (and the fake's
    // stricter rising points); false after posting the error.
    bool check_syncobj_commit(Surface& s) {
        const bool buffer = s.attached && s.pending_buffer != nullptr;
        const auto& a = s.acquire_point;
        const auto& r = s.release_point;
        if (!buffer) {
            if (a.set || r.set) {
                post_error(s.syncobj, WP_LINUX_DRM_SYNCOBJ_SURFACE_V1_ERROR_NO_BUFFER, "points set without a buffer");
                return false;
            }
            return true;
        }
        if (buffers.find(s.pending_buffer) == buffers.end()) {
            post_error(s.syncobj, WP_LINUX_DRM_SYNCOBJ_SURFACE_V1_ERROR_UNSUPPORTED_BUFFER, "not a linux-dmabuf buffer");
            return false;
        }
        if (!a.set) {
            post_error(s.syncobj, WP_LINUX_DRM_SYNCOBJ_SURFACE_V1_ERROR_NO_ACQUIRE_POINT, "no acquire point");
            return false;
        }
        if (!r.set) {
            post_error(s.syncobj, WP_LINUX_DRM_SYNCOBJ_SURFACE_V1_ERROR_NO_RELEASE_POINT, "no release point");
            return false;
        }
        if (a.timeline && a.timeline == r.timeline && a.point >= r.point) {
            post_error(s.syncobj, WP_LINUX_DRM_SYNCOBJ_SURFACE_V1_ERROR_CONFLICTING_POINTS,
                       "acquire point " + std::to_string(a.point) + " not below release point " + std::to_string(r.point));
            return false;
        }
        if (a.timeline && a.point <= last_acquire[a.timeline.get()]) {
            post_error(s.syncobj, WP_LINUX_DRM_SYNCOBJ_SURFACE_V1_ERROR_CONFLICTING_POINTS,
                       "acquire point " + std::to_string(a.point) + " does not rise above " +
                           std::to_string(last_acquire[a.timeline.get()]));
            return false;
        }
        if (r.timeline) {
            auto submitted = r.timeline->last_submitted();
            REQUIRE(submitted);
            if (r.point <= last_release[r.timeline.get()] || r.point <= *submitted) {
                post_error(s.syncobj, WP_LINUX_DRM_SYNCOBJ_SURFACE_V1_ERROR_CONFLICTING_POINTS,
                           "release point " + std::to_string(r.point) + " does not rise above " +
                               std::to_string(std::max(last_release[r.timeline.get()], *submitted)));
                return false;
            }
            last_release[r.timeline.get()] = r.point;
        }
        if (a.timeline) last_acquire[a.timeline.get()] = a.point;
        return true;
    }
    void commit(Surface& s) {
        if (s.syncobj != nullptr && !check_syncobj_commit(s)) return;
        if (s.attached && s.pending_buffer != nullptr) {
            FakeCommit next;
            next.buffer = s.pending_buffer;
            next.acquire_timeline = s.acquire_point.timeline;
            next.acquire_point = s.acquire_point.point;
            next.release_timeline = s.release_point.timeline;
            next.release_point = s.release_point.point;
            if (auto it = buffers.find(next.buffer); it != buffers.end())
                for (const auto& plane : it->second->planes) next.planes.emplace_back(::dup(plane.get()));
            next.acquire_fence = std::move(s.pending_acquire);
            next.release = std::exchange(s.pending_release, nullptr);
            ++self->commits;
            if (options.on_commit) options.on_commit(next);
            if (s.current.buffer != nullptr) {
                if (options.release) options.release(s.current, next);
                else release_previous(s.current, next);
            }
            s.current = std::move(next);
        }
        s.attached = false;
        s.pending_buffer = nullptr;
        s.acquire_point = {};
        s.release_point = {};
        for (wl_resource* frame : s.frames) {
            wl_callback_send_done(frame, 0);
            wl_resource_destroy(frame);
        }
        s.frames.clear();
    }

    static void wm_base(Impl& impl, wl_resource* r, std::uint32_t opcode, wl_argument* args) {
        wl_client* client = wl_resource_get_client(r);
        if (opcode == op::wm_base_destroy) {
            std::erase(impl.wm_bases, r);
            wl_resource_destroy(r);
        } else if (opcode == op::wm_base_get_xdg_surface) {
            auto* surface_resource = reinterpret_cast<wl_resource*>(args[1].o);
            wl_resource* xdg = impl.create(client, &xdg_surface_interface, 1, args[0].n, xdg_surface);
            impl.surfaces.at(surface_resource)->xdg = xdg;
        } else if (opcode == op::wm_base_pong) {
            ++impl.self->pongs;
        }
    }
    static void xdg_surface(Impl& impl, wl_resource* r, std::uint32_t opcode, wl_argument* args) {
        if (opcode == op::xdg_surface_destroy) {
            wl_resource_destroy(r);
        } else if (opcode == op::xdg_surface_get_toplevel) {
            wl_resource* top = impl.create(wl_resource_get_client(r), &xdg_toplevel_interface, 1, args[0].n, destroy_on_0);
            wl_array states;
            wl_array_init(&states);
            xdg_toplevel_send_configure(top, 64, 64, &states);
            wl_array_release(&states);
            xdg_surface_send_configure(r, impl.serial++);
        }
    }

    static void dmabuf(Impl& impl, wl_resource* r, std::uint32_t opcode, wl_argument* args) {
        wl_client* client = wl_resource_get_client(r);
        if (opcode == op::dmabuf_destroy) {
            wl_resource_destroy(r);
        } else if (opcode == op::dmabuf_create_params) {
            wl_resource* p = impl.create(client, &zwp_linux_buffer_params_v1_interface, wl_resource_get_version(r),
                                         args[0].n, buffer_params, params_destroyed);
            impl.params[p] = std::make_unique<Params>();
        } else if (opcode == op::dmabuf_get_default_feedback) {
            wl_resource* feedback = impl.create(client, &zwp_linux_dmabuf_feedback_v1_interface,
                                                wl_resource_get_version(r), args[0].n, destroy_on_0);
            if (impl.options.feedback) impl.options.feedback(feedback);
            else impl.honest_feedback(feedback);
        }
    }
    void honest_feedback(wl_resource* feedback) {
        struct Row {
            std::uint32_t fourcc, pad;
            std::uint64_t modifier;
        };
        std::vector<Row> rows;
        std::vector<std::uint16_t> indices;
        for (const auto& [fourcc, modifier] : options.formats) {
            indices.push_back(static_cast<std::uint16_t>(rows.size()));
            rows.push_back({fourcc, 0, modifier});
        }
        const int fd = ::memfd_create("fake-table", MFD_CLOEXEC);
        REQUIRE(fd >= 0);
        REQUIRE(::write(fd, rows.data(), rows.size() * sizeof(Row)) == static_cast<ssize_t>(rows.size() * sizeof(Row)));
        zwp_linux_dmabuf_feedback_v1_send_format_table(feedback, fd, static_cast<std::uint32_t>(rows.size() * sizeof(Row)));
        ::close(fd);
        wl_array array;
        wl_array_init(&array);
        const dev_t dev = 0;
        std::memcpy(wl_array_add(&array, sizeof dev), &dev, sizeof dev);
        zwp_linux_dmabuf_feedback_v1_send_main_device(feedback, &array);
        zwp_linux_dmabuf_feedback_v1_send_tranche_target_device(feedback, &array);
        wl_array_release(&array);
        wl_array_init(&array);
        std::memcpy(wl_array_add(&array, indices.size() * 2), indices.data(), indices.size() * 2);
        zwp_linux_dmabuf_feedback_v1_send_tranche_formats(feedback, &array);
        wl_array_release(&array);
        zwp_linux_dmabuf_feedback_v1_send_tranche_flags(feedback, 0);
        zwp_linux_dmabuf_feedback_v1_send_tranche_done(feedback);
        zwp_linux_dmabuf_feedback_v1_send_done(feedback);
    }
    static void params_destroyed(wl_resource* r) {
        static_cast<Impl*>(wl_resource_get_user_data(r))->params.erase(r);
    }
    static void buffer_destroyed(wl_resource* r) {
        auto* impl = static_cast<Impl*>(wl_resource_get_user_data(r));
        impl->buffers.erase(r);
        // A client may destroy a buffer the compositor still shows: no release for it then.
        for (auto& [resource, s] : impl->surfaces) {
            if (s->current.buffer == r) s->current.buffer = nullptr;
            if (s->pending_buffer == r) s->pending_buffer = nullptr;
        }
    }
    static void buffer_params(Impl& impl, wl_resource* r, std::uint32_t opcode, wl_argument* args) {
        Params& p = *impl.params.at(r);
        if (opcode == op::params_destroy) {
            wl_resource_destroy(r);
        } else if (opcode == op::params_add) {
            const std::uint32_t plane = args[1].u;
            if (p.planes.size() <= plane) p.planes.resize(plane + 1);
            p.planes[plane] = UniqueFd(std::exchange(args[0].h, -1));
        } else if (opcode == op::params_create_immed) {
            wl_resource* b = impl.create(wl_resource_get_client(r), &wl_buffer_interface, 1, args[0].n, destroy_on_0,
                                         buffer_destroyed);
            auto buffer = std::make_unique<Buffer>();
            buffer->planes = std::move(p.planes);
            impl.buffers[b] = std::move(buffer);
        }
    }

    static void explicit_sync(Impl& impl, wl_resource* r, std::uint32_t opcode, wl_argument* args) {
        if (opcode == op::explicit_destroy) {
            wl_resource_destroy(r);
        } else if (opcode == op::explicit_get_synchronization) {
            auto* surface_resource = reinterpret_cast<wl_resource*>(args[1].o);
            wl_resource* sync = impl.create(wl_resource_get_client(r), &zwp_linux_surface_synchronization_v1_interface,
                                            wl_resource_get_version(r), args[0].n, surface_sync);
            impl.surfaces.at(surface_resource)->sync = sync;
        }
    }
    Surface* surface_of_sync(wl_resource* sync) {
        for (auto& [resource, s] : surfaces)
            if (s->sync == sync) return s.get();
        return nullptr;
    }
    static void surface_sync(Impl& impl, wl_resource* r, std::uint32_t opcode, wl_argument* args) {
        Surface* s = impl.surface_of_sync(r);
        if (opcode == op::sync_destroy) {
            if (s != nullptr) s->sync = nullptr;
            wl_resource_destroy(r);
        } else if (opcode == op::sync_set_acquire_fence && s != nullptr) {
            s->pending_acquire = UniqueFd(std::exchange(args[0].h, -1));
        } else if (opcode == op::sync_get_release && s != nullptr) {
            s->pending_release = impl.create(wl_resource_get_client(r), &zwp_linux_buffer_release_v1_interface, 1,
                                             args[0].n, ignore);
        }
    }

    static void syncobj_manager(Impl& impl, wl_resource* r, std::uint32_t opcode, wl_argument* args) {
        wl_client* client = wl_resource_get_client(r);
        if (opcode == op::syncobj_manager_destroy) {
            wl_resource_destroy(r);
        } else if (opcode == op::syncobj_get_surface) {
            auto* surface_resource = reinterpret_cast<wl_resource*>(args[1].o);
            wl_resource* obj = impl.create(client, &wp_linux_drm_syncobj_surface_v1_interface, 1, args[0].n,
                                           syncobj_surface, syncobj_surface_destroyed);
            Surface& s = *impl.surfaces.at(surface_resource);
            if (s.syncobj != nullptr) {
                impl.post_error(r, WP_LINUX_DRM_SYNCOBJ_MANAGER_V1_ERROR_SURFACE_EXISTS, "the surface has a syncobj object");
                return;
            }
            s.syncobj = obj;
        } else if (opcode == op::syncobj_import_timeline) {
            wl_resource* t = impl.create(client, &wp_linux_drm_syncobj_timeline_v1_interface, 1, args[0].n,
                                         destroy_on_0, timeline_destroyed);
            if (impl.options.refuse_timelines) {
                impl.post_error(r, WP_LINUX_DRM_SYNCOBJ_MANAGER_V1_ERROR_INVALID_TIMELINE, "refused (scripted)");
                return;
            }
            if (!impl.drm) {
                auto drm = Timeline::open_device();
                if (!drm) {
                    impl.post_error(r, WP_LINUX_DRM_SYNCOBJ_MANAGER_V1_ERROR_INVALID_TIMELINE, drm.error().message());
                    return;
                }
                impl.drm = std::move(*drm);
            }
            auto imported = Timeline::import(impl.drm.get(), args[1].h);  // the fd is closed by close_fds
            if (!imported) {
                impl.post_error(r, WP_LINUX_DRM_SYNCOBJ_MANAGER_V1_ERROR_INVALID_TIMELINE, imported.error().message());
                return;
            }
            impl.timelines[t] = std::make_shared<Timeline>(std::move(*imported));
        }
    }
    static void timeline_destroyed(wl_resource* r) {
        // Points already set keep their timeline (the commit holds it): the protocol says so.
        auto* impl = static_cast<Impl*>(wl_resource_get_user_data(r));
        if (auto it = impl->timelines.find(r); it != impl->timelines.end()) {
            impl->last_acquire.erase(it->second.get());  // its address may be reused
            impl->last_release.erase(it->second.get());
            impl->timelines.erase(it);
        }
    }
    Surface* surface_of_syncobj(wl_resource* obj) {
        for (auto& [resource, s] : surfaces)
            if (s->syncobj == obj) return s.get();
        return nullptr;
    }
    static void syncobj_surface_destroyed(wl_resource* r) {
        auto* impl = static_cast<Impl*>(wl_resource_get_user_data(r));
        if (Surface* s = impl->surface_of_syncobj(r)) {
            s->syncobj = nullptr;
            s->acquire_point = {};
            s->release_point = {};
        }
    }
    static void syncobj_surface(Impl& impl, wl_resource* r, std::uint32_t opcode, wl_argument* args) {
        if (opcode == op::syncobj_surface_destroy) {
            wl_resource_destroy(r);
            return;
        }
        Surface* s = impl.surface_of_syncobj(r);
        if (s == nullptr) {
            impl.post_error(r, WP_LINUX_DRM_SYNCOBJ_SURFACE_V1_ERROR_NO_SURFACE, "the wl_surface was destroyed");
            return;
        }
        PendingPoint point;
        point.set = true;
        if (auto it = impl.timelines.find(reinterpret_cast<wl_resource*>(args[0].o)); it != impl.timelines.end())
            point.timeline = it->second;
        point.point = static_cast<std::uint64_t>(args[1].u) << 32 | args[2].u;
        if (opcode == op::syncobj_set_acquire_point) s->acquire_point = std::move(point);
        else if (opcode == op::syncobj_set_release_point) s->release_point = std::move(point);
    }

    static void bind(wl_client* client, void* data, std::uint32_t version, std::uint32_t id, const wl_interface* iface,
                     Handler handler) {
        auto* impl = static_cast<Impl*>(data);
        wl_resource* r = impl->create(client, iface, static_cast<int>(version), id, handler);
        if (iface == &xdg_wm_base_interface) impl->wm_bases.push_back(r);
        if (iface == &zwp_linux_dmabuf_v1_interface && version < 4) {
            for (const auto& [fourcc, modifier] : impl->options.formats)
                zwp_linux_dmabuf_v1_send_modifier(r, fourcc, static_cast<std::uint32_t>(modifier >> 32),
                                                  static_cast<std::uint32_t>(modifier & 0xffffffffu));
        }
    }
};

void FakeCompositor::release_previous(FakeCommit& previous, FakeCommit&) {
    if (previous.release_timeline) {
        auto signalled = previous.release_timeline->signal(previous.release_point);
        REQUIRE_MESSAGE(signalled, (signalled ? "" : signalled.error().message()));
        return;
    }
    if (previous.buffer != nullptr) wl_buffer_send_release(previous.buffer);
    if (previous.release != nullptr) {
        zwp_linux_buffer_release_v1_send_immediate_release(previous.release);
        wl_resource_destroy(previous.release);
        previous.release = nullptr;
    }
}

FakeCompositor::FakeCompositor(FeedbackScript script)
    : FakeCompositor([&] {
          FakeCompositorOptions o;
          o.feedback = std::move(script);
          return o;
      }()) {}

FakeCompositor::FakeCompositor(FakeCompositorOptions options) : impl_(std::make_unique<Impl>()) {
    impl_->self = this;
    impl_->options = std::move(options);
    char dir[] = "/tmp/dmabridge-wl-fake-XXXXXX";
    REQUIRE(::mkdtemp(dir) != nullptr);
    dir_ = dir;
    display_ = wl_display_create();
    REQUIRE(display_ != nullptr);
    socket_ = dir_ + "/wl-fake";
    // wl_display_add_socket puts relative names under XDG_RUNTIME_DIR: bind the full path
    // through a listening fd instead, so the test does not touch the environment.
    REQUIRE(wl_display_add_socket_fd(display_, listen_on(socket_)) == 0);
    Impl* impl = impl_.get();
    wl_global_create(display_, &wl_compositor_interface, 4, impl, [](wl_client* c, void* d, std::uint32_t v, std::uint32_t id) {
        Impl::bind(c, d, v, id, &wl_compositor_interface, Impl::compositor);
    });
    wl_global_create(display_, &xdg_wm_base_interface, 1, impl, [](wl_client* c, void* d, std::uint32_t v, std::uint32_t id) {
        Impl::bind(c, d, v, id, &xdg_wm_base_interface, Impl::wm_base);
    });
    wl_global_create(display_, &zwp_linux_dmabuf_v1_interface, static_cast<int>(impl_->options.dmabuf_version), impl,
                     [](wl_client* c, void* d, std::uint32_t v, std::uint32_t id) {
                         Impl::bind(c, d, v, id, &zwp_linux_dmabuf_v1_interface, Impl::dmabuf);
                     });
    if (impl_->options.explicit_sync)
        wl_global_create(display_, &zwp_linux_explicit_synchronization_v1_interface, 2, impl,
                         [](wl_client* c, void* d, std::uint32_t v, std::uint32_t id) {
                             Impl::bind(c, d, v, id, &zwp_linux_explicit_synchronization_v1_interface,
                                        Impl::explicit_sync);
                         });
    if (impl_->options.syncobj) {
        wl_global_create(display_, &wp_linux_drm_syncobj_manager_v1_interface, 1, impl,
                         [](wl_client* c, void* d, std::uint32_t v, std::uint32_t id) {
                             Impl::bind(c, d, v, id, &wp_linux_drm_syncobj_manager_v1_interface,
                                        Impl::syncobj_manager);
                         });
    }
    thread_ = std::thread([this] {
        wl_event_loop* loop = wl_display_get_event_loop(display_);
        while (!stop_) {
            std::vector<std::function<void()>> tasks;
            {
                std::lock_guard lock(tasks_mutex_);
                tasks.swap(tasks_);
            }
            for (auto& task : tasks) task();
            if (paused_) std::this_thread::sleep_for(std::chrono::milliseconds(5));
            else wl_event_loop_dispatch(loop, 5);
            wl_display_flush_clients(display_);
        }
    });
}

FakeCompositor::~FakeCompositor() {
    stop_ = true;
    thread_.join();
    wl_display_destroy_clients(display_);
    wl_display_destroy(display_);
    ::unlink(socket_.c_str());
    ::rmdir(dir_.c_str());
}

void FakeCompositor::run(const std::function<void()>& task) {
    std::promise<void> done;
    {
        std::lock_guard lock(tasks_mutex_);
        tasks_.emplace_back([&] {
            task();
            done.set_value();
        });
    }
    done.get_future().wait();
}

void FakeCompositor::drop_timelines() {
    run([&] {
        impl_->timelines.clear();
        impl_->last_acquire.clear();
        impl_->last_release.clear();
        for (auto& [resource, s] : impl_->surfaces) {
            s->current.acquire_timeline.reset();
            s->current.release_timeline.reset();
            s->acquire_point.timeline.reset();
            s->release_point.timeline.reset();
        }
    });
}

void FakeCompositor::ping(std::uint32_t count) {
    run([&] {
        for (wl_resource* wm_base : impl_->wm_bases)
            for (std::uint32_t i = 0; i < count; ++i) xdg_wm_base_send_ping(wm_base, impl_->serial++);
    });
}

int FakeCompositor::listen_on(const std::string& path) {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    REQUIRE(path.size() < sizeof addr.sun_path);
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(fd, 4) == 0);
    return fd;
}

}  // namespace dmabridge::test
