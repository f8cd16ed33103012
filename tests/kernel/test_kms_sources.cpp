// SPDX-License-Identifier: MIT
// What the display scans out from each kind of buffer the library makes: XRGB8888 and ARGB8888
// images from udmabuf memory, GBM on the display's own node and a Vulkan export (lavapipe, the
// pixels written by the GPU), each on the primary plane and read back through writeback, pixel for
// pixel. The camera ring's buffers are shown the same way by camera_zero_copy --display --check
// (ci/test). Suite kms (ci/vm --vkms).
#include <cstdint>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include <dmabridge/alloc/gbm_allocator.hpp>
#include <dmabridge/alloc/udmabuf.hpp>
#include <dmabridge/format/fourcc.hpp>
#include <dmabridge/kernel/cpu_access.hpp>
#include <dmabridge/kms/device.hpp>
#include <dmabridge/vulkan/device.hpp>

#include "kms_harness.hpp"
#include "vk_fixture.hpp"

using namespace dmabridge;
using namespace dmabridge::test::kms_harness;
using dmabridge::test::VkTest;
using dmabridge::test::device_a;

namespace {

// The pattern's RGB at (x, y); alpha is opaque, so ARGB8888 blends to the same picture.
std::uint32_t pattern_rgb(std::uint32_t x, std::uint32_t y) {
    return ((x * 3 + 17) & 0xffu) << 16 | ((y * 5 + 29) & 0xffu) << 8 | ((x ^ y) & 0xffu);
}

std::vector<std::uint32_t> expected_pixels(std::uint32_t w, std::uint32_t h) {
    std::vector<std::uint32_t> out;
    out.reserve(std::size_t{w} * h);
    for (std::uint32_t y = 0; y < h; ++y)
        for (std::uint32_t x = 0; x < w; ++x) out.push_back(pattern_rgb(x, y));
    return out;
}

// Writes the pattern into a one-plane 32-bit image with the CPU, inside a DMA_BUF_IOCTL_SYNC bracket.
void fill_with_cpu(const BufferDesc& desc) {
    const auto& p = desc.planes[0];
    auto map = Mapping::map(p.buffer, Access::write);
    REQUIRE_MESSAGE(map, (map ? "" : map.error().message()));
    auto cpu = CpuAccess::begin(p.buffer, Access::write);
    REQUIRE(cpu);
    for (std::uint32_t y = 0; y < desc.height; ++y) {
        auto* row = reinterpret_cast<std::uint32_t*>(map->data() + p.offset + std::uint64_t{y} * p.stride);
        for (std::uint32_t x = 0; x < desc.width; ++x) row[x] = 0xff000000u | pattern_rgb(x, y);
    }
    REQUIRE(cpu->end());
}

ImageRequest request(const Output& o, std::uint32_t format, const char* name) {
    ImageRequest r;
    r.width = o.mode.hdisplay;
    r.height = o.mode.vdisplay;
    r.fourcc = format;
    r.modifiers = {modifier::linear};  // what every vkms plane takes
    r.name = name;
    return r;
}

// Shows `desc` on the primary plane, captures the CRTC and counts the pixels that differ.
std::size_t shown_differing(const kms::Device& d, const Output& o, const BufferDesc& desc) {
    auto fb = d.add_framebuffer(desc);
    REQUIRE_MESSAGE(fb, (fb ? "" : fb.error().message()));
    const auto captured = show_and_capture(d, o, *fb);
    turn_off(d, o);
    return differing(captured, expected_pixels(o.mode.hdisplay, o.mode.vdisplay));
}

}  // namespace

TEST_SUITE("kms") {

TEST_CASE_FIXTURE(VkTest, "XRGB8888 and ARGB8888 from udmabuf, GBM and a Vulkan export scan out pixel for pixel") {
    const auto d = open_vkms();
    const auto o = find_output(d);
    for (const std::uint32_t format : {fourcc::XRGB8888, fourcc::ARGB8888}) {
        CAPTURE(fourcc_to_string(format));
        REQUIRE(d.planes().size() > 0);
        {
            INFO("udmabuf");
            auto alloc = UdmabufAllocator::open();
            REQUIRE(alloc);
            auto desc = alloc->allocate(request(o, format, "kms-udmabuf"));
            REQUIRE_MESSAGE(desc, (desc ? "" : desc.error().message()));
            fill_with_cpu(*desc);
            CHECK(shown_differing(d, o, *desc) == 0);
        }
        {
            INFO("GBM on the display's node");
            auto gbm = GbmAllocator::open(d.path());
            REQUIRE_MESSAGE(gbm, (gbm ? "" : gbm.error().message()));
            auto desc = gbm->allocate(request(o, format, "kms-gbm"));
            REQUIRE_MESSAGE(desc, (desc ? "" : desc.error().message()));
            fill_with_cpu(*desc);
            CHECK(shown_differing(d, o, *desc) == 0);
        }
        {
            INFO("Vulkan export, written by the GPU");
            auto exported = device_a().device().export_image(request(o, format, "kms-vulkan"));
            REQUIRE_MESSAGE(exported, (exported ? "" : exported.error().message()));
            // Tightly packed B, G, R, A bytes: the little-endian 32-bit pixels of both formats.
            std::vector<std::uint8_t> bytes(std::size_t{o.mode.hdisplay} * o.mode.vdisplay * 4);
            for (std::uint32_t y = 0; y < o.mode.vdisplay; ++y)
                for (std::uint32_t x = 0; x < o.mode.hdisplay; ++x) {
                    const std::uint32_t v = 0xff000000u | pattern_rgb(x, y);
                    std::uint8_t* px = &bytes[(std::size_t{y} * o.mode.hdisplay + x) * 4];
                    px[0] = static_cast<std::uint8_t>(v);
                    px[1] = static_cast<std::uint8_t>(v >> 8);
                    px[2] = static_cast<std::uint8_t>(v >> 16);
                    px[3] = static_cast<std::uint8_t>(v >> 24);
                }
            device_a().upload(exported->image, format, {bytes});
            CHECK(shown_differing(d, o, exported->desc) == 0);
        }
    }
    CHECK(d.gem_handles() == 0);  // every framebuffer's handle closed, none leaked
}

}  // TEST_SUITE
