// SPDX-License-Identifier: MIT
// Images and buffers that cross between two Vulkan devices as dma-bufs, with pixel checks read
// back on the importing device.
#include <dmabridge/format/format.hpp>
#include <dmabridge/kernel/cpu_access.hpp>
#include <dmabridge/vulkan/device.hpp>

#include <cstring>

#include <fcntl.h>

#include <doctest/doctest.h>

#include "vk_fixture.hpp"

using namespace dmabridge;
using namespace dmabridge::test;

namespace {

ImageRequest request(std::uint32_t w, std::uint32_t h, std::uint32_t code) {
    ImageRequest r;
    r.width = w;
    r.height = h;
    r.fourcc = code;
    r.name = "vk-share";
    return r;
}

// Exports a `fourcc` image on device A, fills it there, imports it on device B, reads it back.
void round_trip(std::uint32_t code, std::uint32_t w, std::uint32_t h) {
    CAPTURE(fourcc_to_string(code));
    auto exported = device_a().device().export_image(request(w, h, code));
    REQUIRE_MESSAGE(exported, (exported ? "" : exported.error().message()));
    CHECK(exported->desc.modifier == modifier::linear);
    CHECK(exported->image.modifier() == modifier::linear);
    const auto pattern = make_pattern(code, w, h, 17);
    device_a().upload(exported->image, code, pattern);

    auto imported = device_b().device().import_image(exported->desc);
    REQUIRE_MESSAGE(imported, (imported ? "" : imported.error().message()));
    CHECK(imported->extent().width == w);
    const auto back = device_b().download(*imported, code);
    REQUIRE(back.size() == pattern.size());
    for (std::size_t p = 0; p < back.size(); ++p) CHECK_MESSAGE(back[p] == pattern[p], "plane " << p << " differs");
}

}  // namespace

TEST_CASE_FIXTURE(VkTest, "XRGB8888 pixels written on device A read back exactly on device B") {
    round_trip(fourcc::XRGB8888, 64, 48);
}

TEST_CASE_FIXTURE(VkTest, "ABGR8888 pixels written on device A read back exactly on device B") {
    round_trip(fourcc::ABGR8888, 50, 30);
}

TEST_CASE_FIXTURE(VkTest, "RGB565 pixels written on device A read back exactly on device B") {
    round_trip(fourcc::RGB565, 32, 32);
}

TEST_CASE_FIXTURE(VkTest, "two-plane NV12 pixels written on device A read back exactly on device B") {
    // lavapipe offers no DRM-modifier tiling for NV12: LINEAR goes through plain linear tiling.
    auto support = device_a().device().modifier_support(fourcc::NV12);
    REQUIRE(support);
    REQUIRE(support->size() == 1);
    CHECK((*support)[0].linear_tiling);
    CHECK((*support)[0].plane_count == 2);
    round_trip(fourcc::NV12, 64, 48);
}

TEST_CASE_FIXTURE(VkTest, "an exported image's dma-buf has the layout the description claims") {
    auto exported = device_a().device().export_image(request(64, 64, fourcc::XRGB8888));
    REQUIRE(exported);
    const auto& plane = exported->desc.planes[0];
    CHECK(plane.stride >= 256);
    CHECK(plane.buffer.size() >= plane.stride * 64);
    CHECK(*plane.buffer.name() == "vk-share");
    CHECK(*plane.buffer.exporter_name() == "udmabuf");  // lavapipe backs exports with udmabuf
    CHECK((::fcntl(plane.buffer.fd(), F_GETFD) & FD_CLOEXEC) != 0);
    // The CPU sees what device A wrote, at the offsets and strides the description gives.
    const auto pattern = make_pattern(fourcc::XRGB8888, 64, 64, 5);
    device_a().upload(exported->image, fourcc::XRGB8888, pattern);
    auto map = Mapping::map(plane.buffer, Access::read);
    REQUIRE(map);
    auto cpu = CpuAccess::begin(plane.buffer, Access::read);
    REQUIRE(cpu);
    for (std::uint32_t y = 0; y < 64; ++y)
        REQUIRE(std::memcmp(map->data() + plane.offset + y * plane.stride, pattern[0].data() + y * 256, 256) == 0);
}

TEST_CASE_FIXTURE(VkTest, "a buffer exported on device A is read on device B") {
    auto exported = device_a().device().export_buffer(65536, VK_BUFFER_USAGE_TRANSFER_SRC_BIT, "vk-buffer");
    REQUIRE_MESSAGE(exported, (exported ? "" : exported.error().message()));
    CHECK(exported->dmabuf.size() >= 65536);
    {
        auto map = Mapping::map(exported->dmabuf, Access::write);
        REQUIRE(map);
        auto cpu = CpuAccess::begin(exported->dmabuf, Access::write);
        REQUIRE(cpu);
        for (std::size_t i = 0; i < 65536; ++i) map->data()[i] = std::byte(static_cast<std::uint8_t>(i ^ (i >> 8)));
    }
    auto imported = device_b().device().import_buffer(exported->dmabuf, VK_BUFFER_USAGE_TRANSFER_SRC_BIT, 65536);
    REQUIRE_MESSAGE(imported, (imported ? "" : imported.error().message()));
    const auto bytes = device_b().read_buffer(imported->handle(), 65536);
    std::size_t bad = 0;
    for (std::size_t i = 0; i < bytes.size(); ++i) bad += bytes[i] != static_cast<std::uint8_t>(i ^ (i >> 8));
    CHECK(bad == 0);
}
