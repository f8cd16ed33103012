// SPDX-License-Identifier: MIT
#pragma once
// A Wayland application that knows nothing of dmabridge, for the tests of Display::adopt() and
// Surface::adopt() (against weston or the scripted compositor).

#include <cstdint>
#include <string>
#include <string_view>

#include <wayland-client.h>

#include "xdg-shell-client.h"

#include <doctest/doctest.h>

namespace dmabridge::test {

// An application that knows nothing of dmabridge: its own connection, globals and xdg toplevel,
// made with libwayland on its default queue (as SDL, GTK or Qt would).
struct Application {
    wl_display* display = nullptr;
    wl_registry* registry = nullptr;
    wl_compositor* compositor = nullptr;
    xdg_wm_base* wm_base = nullptr;
    wl_surface* surface = nullptr;
    xdg_surface* xdg = nullptr;
    xdg_toplevel* toplevel = nullptr;
    bool configured = false;

    static void global(void* data, wl_registry* registry, std::uint32_t name, const char* interface, std::uint32_t) {
        auto* app = static_cast<Application*>(data);
        if (std::string_view(interface) == wl_compositor_interface.name)
            app->compositor = static_cast<wl_compositor*>(wl_registry_bind(registry, name, &wl_compositor_interface, 4));
        else if (std::string_view(interface) == xdg_wm_base_interface.name)
            app->wm_base = static_cast<xdg_wm_base*>(wl_registry_bind(registry, name, &xdg_wm_base_interface, 1));
    }
    static void global_remove(void*, wl_registry*, std::uint32_t) {}
    static constexpr wl_registry_listener registry_listener{.global = global, .global_remove = global_remove};
    static void ping(void*, xdg_wm_base* wm_base, std::uint32_t serial) { xdg_wm_base_pong(wm_base, serial); }
    static constexpr xdg_wm_base_listener wm_base_listener{.ping = ping};
    static void configure(void* data, xdg_surface* xdg, std::uint32_t serial) {
        xdg_surface_ack_configure(xdg, serial);
        static_cast<Application*>(data)->configured = true;
    }
    static constexpr xdg_surface_listener xdg_listener{.configure = configure};

    explicit Application(const std::string& socket) {
        display = wl_display_connect(socket.c_str());
        REQUIRE(display != nullptr);
        registry = wl_display_get_registry(display);
        wl_registry_add_listener(registry, &registry_listener, this);
        REQUIRE(wl_display_roundtrip(display) >= 0);
        REQUIRE(compositor != nullptr);
        REQUIRE(wm_base != nullptr);
        xdg_wm_base_add_listener(wm_base, &wm_base_listener, this);
        surface = wl_compositor_create_surface(compositor);
        xdg = xdg_wm_base_get_xdg_surface(wm_base, surface);
        xdg_surface_add_listener(xdg, &xdg_listener, this);
        toplevel = xdg_surface_get_toplevel(xdg);
        xdg_toplevel_set_title(toplevel, "application");
        wl_surface_commit(surface);
        for (int i = 0; i < 600 && !configured; ++i) REQUIRE(wl_display_roundtrip(display) >= 0);
        REQUIRE(configured);
    }
    ~Application() {
        xdg_toplevel_destroy(toplevel);
        xdg_surface_destroy(xdg);
        wl_surface_destroy(surface);
        xdg_wm_base_destroy(wm_base);
        wl_compositor_destroy(compositor);
        wl_registry_destroy(registry);
        wl_display_disconnect(display);
    }
    Application(const Application&) = delete;
    Application& operator=(const Application&) = delete;
};

}  // namespace dmabridge::test
