// SPDX-License-Identifier: MIT
// What the KMS tests share: finding vkms and its output, pattern images, writeback targets made
// on vkms itself, and capture of what a CRTC shows.
#include "kms_harness.hpp"

#include <dmabridge/alloc/udmabuf.hpp>
#include <dmabridge/kernel/cpu_access.hpp>

#include <chrono>
#include <string>

#include <fcntl.h>
#include <libdrm/drm.h>
#include <libdrm/drm_mode.h>
#include <sys/ioctl.h>

#include <doctest/doctest.h>

using namespace std::chrono_literals;

namespace dmabridge::test::kms_harness {

// vkms among the primary nodes (vgem is card0; virtio_gpu, when the VM has it, also does KMS).
kms::Device open_vkms() {
    std::string tried;
    for (int i = 0; i < 8; ++i) {
        const std::string node = "/dev/dri/card" + std::to_string(i);
        auto d = kms::Device::open(node);
        if (d && d->driver() == "vkms") return std::move(*d);
        tried += node + ": " + (d ? d->driver() : d.error().message()) + "; ";
    }
    FAIL("no vkms device: " << tried);
    return kms::Device::open("").value();
}

Output find_output(const kms::Device& d) {
    Output o;
    REQUIRE_FALSE(d.crtcs().empty());
    o.crtc = d.crtcs()[0].id;
    for (const auto& c : d.connectors()) {
        if (c.writeback) o.writeback = c.id;
        else if (c.connected && !c.modes.empty()) {
            o.connector = c.id;
            o.mode = c.modes[0];
            for (const auto& m : c.modes)
                if (m.preferred) o.mode = m;
            // 640x480 where the connector lists it (vkms does): vkms blends and writes back in
            // software, and at its preferred 1024x768 that work under emulation outlasts the
            // vblank period ("vblank timer overrun"), the state in which the guest froze in rare
            // runs (shared/DESIGN.md). A smaller screen tests the same paths with 40% of the work.
            for (const auto& m : c.modes)
                if (m.hdisplay == 640 && m.vdisplay == 480) {
                    o.mode = m;
                    break;
                }
        }
    }
    for (const auto& p : d.planes()) {
        if (!(p.possible_crtcs & 1)) continue;
        if (p.type == kms::PlaneType::primary && !o.primary) o.primary = p.id;
        if (p.type == kms::PlaneType::overlay && !o.overlay) o.overlay = p.id;
        if (p.type == kms::PlaneType::cursor && !o.cursor) o.cursor = p.id;
    }
    REQUIRE(o.connector != 0);
    REQUIRE(o.writeback != 0);
    REQUIRE(o.primary != 0);
    return o;
}

// An XRGB8888 image of `w` x `h` in udmabuf memory, every pixel (x, y) a function of `seed`.
BufferDesc pattern_image(std::uint32_t w, std::uint32_t h, std::uint8_t seed) {
    auto alloc = UdmabufAllocator::open();
    REQUIRE(alloc);
    ImageRequest r;
    r.width = w;
    r.height = h;
    r.fourcc = fourcc::XRGB8888;
    r.name = "kms-pattern";
    auto desc = alloc->allocate(r);
    REQUIRE_MESSAGE(desc, (desc ? "" : desc.error().message()));
    const auto& p = desc->planes[0];
    auto map = Mapping::map(p.buffer, Access::write);
    REQUIRE(map);
    for (std::uint32_t y = 0; y < h; ++y) {
        auto* row = reinterpret_cast<std::uint32_t*>(map->data() + p.offset + y * p.stride);
        for (std::uint32_t x = 0; x < w; ++x)
            row[x] = 0xff000000u | ((x * 3 + seed) & 0xff) << 16 | ((y * 5 + seed) & 0xff) << 8 | ((x ^ y) & 0xff);
    }
    return std::move(*desc);
}

// A writeback target: a dumb buffer made on vkms itself (writeback into imported vgem memory froze
// the guest; into vkms's own buffers it did not: shared/DESIGN.md), exported as a dma-buf.
BufferDesc dumb_target(const kms::Device& d, std::uint32_t w, std::uint32_t h) {
    drm_mode_create_dumb create{};
    create.width = w;
    create.height = h;
    create.bpp = 32;
    REQUIRE(::ioctl(d.fd(), DRM_IOCTL_MODE_CREATE_DUMB, &create) == 0);
    drm_prime_handle prime{};
    prime.handle = create.handle;
    prime.flags = DRM_CLOEXEC | DRM_RDWR;
    const int exported = ::ioctl(d.fd(), DRM_IOCTL_PRIME_HANDLE_TO_FD, &prime);
    drm_gem_close close{};
    close.handle = create.handle;
    (void)::ioctl(d.fd(), DRM_IOCTL_GEM_CLOSE, &close);  // the dma-buf keeps the buffer
    REQUIRE(exported == 0);
    auto buf = DmaBuf::adopt(UniqueFd(prime.fd));
    REQUIRE(buf);
    BufferDesc desc;
    desc.width = w;
    desc.height = h;
    desc.fourcc = fourcc::XRGB8888;
    desc.modifier = modifier::linear;
    desc.planes.push_back({std::move(*buf), 0, create.pitch});
    REQUIRE(desc.validate());
    return desc;
}

// The RGB of every pixel (the X byte is undefined), rows packed.
std::vector<std::uint32_t> rgb_pixels(const BufferDesc& desc) {
    const auto& p = desc.planes[0];
    auto map = Mapping::map(p.buffer, Access::read);
    REQUIRE(map);
    auto cpu = CpuAccess::begin(p.buffer, Access::read);
    REQUIRE(cpu);
    std::vector<std::uint32_t> out(std::size_t{desc.width} * desc.height);
    for (std::uint32_t y = 0; y < desc.height; ++y) {
        const auto* row = reinterpret_cast<const std::uint32_t*>(map->data() + p.offset + y * p.stride);
        for (std::uint32_t x = 0; x < desc.width; ++x) out[std::size_t{y} * desc.width + x] = row[x] & 0xffffffu;
    }
    REQUIRE(cpu->end());
    return out;
}

std::size_t differing(const std::vector<std::uint32_t>& a, const std::vector<std::uint32_t>& b) {
    REQUIRE(a.size() == b.size());
    std::size_t n = 0;
    for (std::size_t i = 0; i < a.size(); ++i) n += a[i] != b[i];
    return n;
}

// Everything off: planes hidden, connectors detached, the CRTC disabled.
void turn_off(const kms::Device& d, const Output& o) {
    kms::Commit off(d);
    off.hide(o.primary).detach(o.connector).detach(o.writeback).disable_crtc(o.crtc);
    if (o.overlay) off.hide(o.overlay);
    auto done = off.apply(true);
    REQUIRE_MESSAGE(done, (done ? "" : done.error().message()));
}

// Shows `fb` full screen and captures the CRTC through writeback; returns the captured pixels.
std::vector<std::uint32_t> show_and_capture(const kms::Device& d, const Output& o, const kms::Framebuffer& fb,
                                            const SyncFile* in_fence) {
    const auto target_desc = dumb_target(d, o.mode.hdisplay, o.mode.vdisplay);
    auto target = d.add_framebuffer(target_desc);
    REQUIRE_MESSAGE(target, (target ? "" : target.error().message()));
    kms::Commit commit(d);
    commit.set_mode(o.crtc, o.connector, o.mode)
        .show(o.primary, o.crtc, fb, {}, {}, in_fence)
        .want_out_fence(o.crtc)
        .capture(o.writeback, o.crtc, *target);
    auto fences = commit.apply(true);
    REQUIRE_MESSAGE(fences, (fences ? "" : fences.error().message()));
    REQUIRE(fences->writeback_fence);
    REQUIRE(fences->writeback_fence->wait(10s).value() == WaitStatus::ready);
    return rgb_pixels(target_desc);
}

std::vector<std::uint32_t> capture_now(const kms::Device& d, const Output& o) {
    const auto target_desc = dumb_target(d, o.mode.hdisplay, o.mode.vdisplay);
    auto target = d.add_framebuffer(target_desc);
    REQUIRE_MESSAGE(target, (target ? "" : target.error().message()));
    kms::Commit commit(d);
    commit.capture(o.writeback, o.crtc, *target);
    // Routing the writeback connector to the CRTC is a mode set when it was not there already.
    auto fences = commit.apply(true);
    REQUIRE_MESSAGE(fences, (fences ? "" : fences.error().message()));
    REQUIRE(fences->writeback_fence);
    REQUIRE(fences->writeback_fence->wait(10s).value() == WaitStatus::ready);
    return rgb_pixels(target_desc);
}

}  // namespace dmabridge::test::kms_harness
