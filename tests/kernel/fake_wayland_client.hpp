// SPDX-License-Identifier: MIT
#pragma once
// The client side of the tests against the scripted compositor (tests/support/fake_compositor):
// a Display connected to it, a Surface on that Display, and vgem buffers to present.

#include <chrono>
#include <utility>

#include <doctest/doctest.h>

#include <dmabridge/format/fourcc.hpp>
#include <dmabridge/kernel/sync_file.hpp>
#include <dmabridge/wayland/display.hpp>
#include <dmabridge/wayland/surface.hpp>

#include "fake_compositor.hpp"
#include "vgem.hpp"

namespace dmabridge::test {

/// A Display connected to `compositor` with `options` (name and timeout set here).
inline wayland::Display connect_to(const FakeCompositor& compositor, wayland::DisplayOptions options = {}) {
    options.name = compositor.socket();
    options.timeout = std::chrono::seconds(10);
    auto d = wayland::Display::connect(options);
    REQUIRE_MESSAGE(d, (d ? "" : d.error().message()));
    return std::move(*d);
}

/// A toplevel Surface on `display` presenting with `sync`.
inline wayland::Surface surface_on(wayland::Display& display, wayland::PresentSync sync = wayland::PresentSync::automatic) {
    wayland::SurfaceOptions o;
    o.sync = sync;
    o.configure_timeout = std::chrono::seconds(10);
    auto s = display.create_surface(o);
    REQUIRE_MESSAGE(s, (s ? "" : s.error().message()));
    return std::move(*s);
}

/// The side of the tests' square buffers.
inline constexpr std::uint32_t fake_side = 64;

/// A 64x64 XBGR8888 buffer in one vgem dma-buf (vgem's last buffer: attach_fence() lands on it).
inline BufferDesc rgb_buffer(Vgem& vgem) {
    BufferDesc d;
    d.width = fake_side;
    d.height = fake_side;
    d.fourcc = fourcc::XBGR8888;
    d.planes.push_back({vgem.create_buffer(fake_side * fake_side * 4), 0, fake_side * 4});
    return d;
}

/// A pending vgem fence as a sync_file (the caller signals `second` with vgem.signal()): a
/// fence the test holds back.
inline std::pair<SyncFile, std::uint32_t> held_fence(Vgem& vgem) {
    auto source = vgem.create_buffer(4096);
    const auto id = vgem.attach_fence(true);
    auto fence = source.export_sync_file(Access::read);
    REQUIRE_MESSAGE(fence, (fence ? "" : fence.error().message()));
    return {std::move(*fence), id};
}

}  // namespace dmabridge::test
