// SPDX-License-Identifier: MIT
// What the Vulkan adapter must check before it asks the driver: extents Vulkan cannot create,
// format overrides, external buffer properties, disjoint support asked with the DISJOINT flag,
// dedicated-only disjoint imports; and what it must not fail for (a refused DMA_BUF_SET_NAME).
// A Device attached through VkInterposer (the application's vkGetInstanceProcAddr, wrapped)
// counts what the adapter calls and plays devices with other capabilities.
#include <dmabridge/alloc/udmabuf.hpp>
#include <dmabridge/base/log.hpp>
#include <dmabridge/vulkan/format.hpp>

#include <mutex>
#include <string>
#include <vector>

#include <fcntl.h>
#include <linux/dma-buf.h>

#include <doctest/doctest.h>

#include "ioctl_faults.hpp"
#include "vk_fixture.hpp"
#include "vk_interpose.hpp"

using namespace dmabridge;
using namespace dmabridge::test;

namespace {

BufferDesc udmabuf_image(std::uint32_t w, std::uint32_t h, std::uint32_t code) {
    auto alloc = UdmabufAllocator::open();
    REQUIRE(alloc);
    auto desc = alloc->allocate(ImageRequest{w, h, code, {}, "checks"});
    REQUIRE_MESSAGE(desc, (desc ? "" : desc.error().message()));
    return std::move(*desc);
}

bool has(const std::string& text, const std::string& part) {
    if (text.find(part) != std::string::npos) return true;
    MESSAGE("\"" << part << "\" not in: " << text);
    return false;
}

bool cloexec(int fd) {
    const int flags = ::fcntl(fd, F_GETFD);
    REQUIRE(flags >= 0);
    return (flags & FD_CLOEXEC) != 0;
}

// NV12 64x64 with its planes in two separate dma-bufs.
BufferDesc nv12_in_two_buffers() {
    auto alloc = UdmabufAllocator::open();
    REQUIRE(alloc);
    auto luma = alloc->allocate_bytes(4096, "luma");
    auto chroma = alloc->allocate_bytes(4096, "chroma");
    REQUIRE(luma);
    REQUIRE(chroma);
    BufferDesc d;
    d.width = 64;
    d.height = 64;
    d.fourcc = fourcc::NV12;
    d.modifier = modifier::linear;
    d.planes.push_back({std::move(*luma), 0, 64});
    d.planes.push_back({std::move(*chroma), 0, 64});
    REQUIRE(d.validate());
    return d;
}

}  // namespace

TEST_CASE_FIXTURE(VkTest, "odd extents of subsampled formats are refused before any Vulkan call") {
    VkInterposer spy;
    auto device = attach_interposed(spy, device_b().context().handles());
    struct Case {
        std::uint32_t w, h, code;
        const char* rule;
    };
    for (const Case& c : {Case{641, 481, fourcc::NV12, "format-04712"}, Case{642, 481, fourcc::NV12, "format-04713"},
                          Case{641, 480, fourcc::YUYV, "format-04712"}}) {
        CAPTURE(c.w);
        CAPTURE(c.h);
        const auto desc = udmabuf_image(c.w, c.h, c.code);
        REQUIRE(desc.validate());  // DRM allows it: chroma rounds up
        spy.reset_counts();
        auto imported = device.import_image(desc);
        REQUIRE_FALSE(imported);
        CHECK(imported.error().is(Errc::invalid_argument));
        CHECK(has(imported.error().message(), c.rule));
        CHECK(has(imported.error().message(), std::to_string(c.w) + "x" + std::to_string(c.h)));
        auto exported = device.export_image(ImageRequest{c.w, c.h, c.code, {}, "odd"});
        REQUIRE_FALSE(exported);
        CHECK(has(exported.error().message(), c.rule));
        CHECK(spy.vulkan_calls() == 0);
    }
    // The control: the even extent goes through.
    spy.reset_counts();
    auto even = device.export_image(ImageRequest{64, 48, fourcc::NV12, {}, "even"});
    CHECK_MESSAGE(even, (even ? "" : even.error().message()));
    CHECK(spy.create_image_calls == 1);
}

TEST_CASE_FIXTURE(VkTest, "a format override must have the fourcc's texel blocks") {
    VkInterposer spy;
    auto device = attach_interposed(spy, device_b().context().handles());
    const auto r8 = udmabuf_image(64, 64, fourcc::R8);
    vulkan::ImageOptions wide;
    wide.format = VK_FORMAT_R32G32B32A32_SFLOAT;
    auto refused = device.import_image(r8, wide);
    REQUIRE_FALSE(refused);
    CHECK(refused.error().is(Errc::invalid_argument));
    CHECK(has(refused.error().message(), "VK_FORMAT_R32G32B32A32_SFLOAT"));
    CHECK(has(refused.error().message(), "16-byte blocks, R8 has 1-byte blocks"));
    CHECK_FALSE(device.modifier_support(fourcc::R8, wide));
    CHECK_FALSE(device.export_image(ImageRequest{64, 64, fourcc::R8, {}, "wide"}, wide));
    vulkan::ImageOptions planes;
    planes.format = VK_FORMAT_G8_B8R8_2PLANE_420_UNORM;  // two planes for a one-plane fourcc
    CHECK_FALSE(device.import_image(r8, planes));
    CHECK(spy.vulkan_calls() == 0);

    // The same bytes under another name are fine: XRGB8888 sampled as sRGB.
    const auto xrgb = udmabuf_image(64, 64, fourcc::XRGB8888);
    vulkan::ImageOptions srgb;
    srgb.format = VK_FORMAT_B8G8R8A8_SRGB;
    CHECK(vulkan::check_format_matches(VK_FORMAT_B8G8R8A8_SRGB, fourcc::XRGB8888));
    auto same = device.import_image(xrgb, srgb);
    CHECK_MESSAGE(same, (same ? "" : same.error().message()));
    if (same) CHECK(same->format() == VK_FORMAT_B8G8R8A8_SRGB);
}

TEST_CASE_FIXTURE(VkTest, "dma-buf buffers follow the device's external buffer properties") {
    VkInterposer spy;
    auto device = attach_interposed(spy, device_b().context().handles());
    const VkBufferUsageFlags usage = VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT;

    // As the driver answers (lavapipe: importable and exportable, not dedicated-only).
    auto plain = device.export_buffer(4096, usage, "plain");
    REQUIRE_MESSAGE(plain, (plain ? "" : plain.error().message()));
    CHECK(spy.buffer_queries >= 1);
    CHECK(device.import_buffer(plain->dmabuf, usage));

    // A device that cannot share buffers: refused before a buffer exists.
    spy.buffer_features = 0;
    spy.reset_counts();
    auto no_import = device.import_buffer(plain->dmabuf, usage);
    REQUIRE_FALSE(no_import);
    CHECK(no_import.error().is(Errc::unsupported));
    CHECK(has(no_import.error().message(), "cannot import dma-buf memory for buffers"));
    auto no_export = device.export_buffer(4096, usage, "none");
    REQUIRE_FALSE(no_export);
    CHECK(has(no_export.error().message(), "cannot export dma-buf memory for buffers"));
    CHECK(spy.create_buffer_calls == 0);
    CHECK(spy.allocate_calls == 0);

    // DEDICATED_ONLY: both directions get a dedicated allocation.
    spy.buffer_features = VK_EXTERNAL_MEMORY_FEATURE_IMPORTABLE_BIT | VK_EXTERNAL_MEMORY_FEATURE_EXPORTABLE_BIT |
                          VK_EXTERNAL_MEMORY_FEATURE_DEDICATED_ONLY_BIT;
    spy.reset_counts();
    auto dedicated = device.export_buffer(4096, usage, "dedicated");
    REQUIRE_MESSAGE(dedicated, (dedicated ? "" : dedicated.error().message()));
    CHECK(spy.dedicated_allocations == 1);
    auto back = device.import_buffer(dedicated->dmabuf, usage);
    REQUIRE_MESSAGE(back, (back ? "" : back.error().message()));
    CHECK(spy.dedicated_allocations == 2);
    CHECK(spy.allocate_calls == 2);
}

TEST_CASE_FIXTURE(VkTest, "disjoint planes are asked with the DISJOINT flag and refused where the device cannot take them") {
    VkInterposer spy;
    spy.fake_format = VK_FORMAT_G8_B8R8_2PLANE_420_UNORM;
    auto device = attach_interposed(spy, device_b().context().handles());
    const auto desc = nv12_in_two_buffers();

    SUBCASE("DISJOINT images of the modifier are refused by the device") {
        spy.fake_disjoint_refused = true;
        auto support = device.modifier_support(fourcc::NV12);
        REQUIRE(support);
        REQUIRE(support->size() == 1);
        CHECK((support->front().features & VK_FORMAT_FEATURE_DISJOINT_BIT) != 0);
        CHECK_FALSE(support->front().disjoint);  // the feature alone does not make it so
        spy.reset_counts();
        auto r = device.import_image(desc);
        REQUIRE_FALSE(r);
        CHECK(r.error().is(Errc::unsupported));
        CHECK(has(r.error().message(), "cannot import DISJOINT images of this modifier"));
        CHECK(spy.disjoint_queries >= 1);
        CHECK(spy.fake_create_image_calls == 0);
    }
    SUBCASE("a dedicated-only modifier cannot be imported disjoint") {
        spy.fake_disjoint_dedicated_only = true;
        auto support = device.modifier_support(fourcc::NV12);
        REQUIRE(support);
        CHECK(support->front().disjoint);
        CHECK(support->front().disjoint_dedicated_only);
        spy.reset_counts();
        auto r = device.import_image(desc);
        REQUIRE_FALSE(r);
        CHECK(r.error().is(Errc::unsupported));
        CHECK(has(r.error().message(), "DEDICATED_ONLY"));
        CHECK(spy.fake_create_image_calls == 0);
        CHECK(spy.allocate_calls == 0);
    }
    SUBCASE("a device that takes DISJOINT images gets one") {
        spy.reset_counts();
        auto r = device.import_image(desc);
        REQUIRE_FALSE(r);  // the interposer refuses every image of the fake format
        CHECK(spy.disjoint_queries >= 1);
        CHECK(spy.fake_create_image_calls == 1);
        CHECK(has(r.error().message(), "vkCreateImage"));
    }
}

// Planes {A, A, B} in a disjoint image (lavapipe has no DISJOINT DRM-modifier images, so the
// image is the interposer's; its memory is imported by the driver for real): A is imported once
// and bound to planes 0 and 1, B once and bound to plane 2. Importing A twice would make two memory
// objects of one buffer object on one device, which only reference-counting drivers survive.
TEST_CASE_FIXTURE(VkTest, "a disjoint image imports each distinct dma-buf once and binds it to each of its planes") {
    VkInterposer spy;
    spy.fake_format = VK_FORMAT_G8_B8_R8_3PLANE_420_UNORM;
    spy.fake_plane_count = 3;
    spy.fake_image_accepted = true;
    auto device = attach_interposed(spy, device_b().context().handles());
    auto alloc = UdmabufAllocator::open();
    REQUIRE(alloc);
    auto a = alloc->allocate_bytes(8192, "y-and-u");
    auto b = alloc->allocate_bytes(4096, "v");
    REQUIRE(a);
    REQUIRE(b);
    auto a2 = a->dup();
    REQUIRE(a2);
    BufferDesc desc;
    desc.width = 64;
    desc.height = 64;
    desc.fourcc = fourcc::YUV420;
    desc.modifier = modifier::linear;
    desc.planes.push_back({std::move(*a), 0, 64});
    desc.planes.push_back({std::move(*a2), 4096, 32});
    desc.planes.push_back({std::move(*b), 0, 32});
    REQUIRE(desc.validate());
    spy.reset_counts();
    {
        auto image = device.import_image(desc);
        REQUIRE_MESSAGE(image, (image ? "" : image.error().message()));
        CHECK(spy.allocate_calls == 2);
        CHECK(image->memory_count() == 2);
        REQUIRE(spy.fake_binds.size() == 3);
        CHECK(spy.fake_binds[0].plane == VK_IMAGE_ASPECT_MEMORY_PLANE_0_BIT_EXT);
        CHECK(spy.fake_binds[1].plane == VK_IMAGE_ASPECT_MEMORY_PLANE_1_BIT_EXT);
        CHECK(spy.fake_binds[2].plane == VK_IMAGE_ASPECT_MEMORY_PLANE_2_BIT_EXT);
        CHECK(spy.fake_binds[0].memory == image->memory(0));
        CHECK(spy.fake_binds[1].memory == image->memory(0));  // A, bound twice, imported once
        CHECK(spy.fake_binds[2].memory == image->memory(1));
        CHECK(image->memory(0) != image->memory(1));
    }
    // Planes in three distinct dma-bufs still get three memories.
    auto c = alloc->allocate_bytes(4096, "u");
    REQUIRE(c);
    desc.planes[1] = {std::move(*c), 0, 32};
    REQUIRE(desc.validate());
    spy.reset_counts();
    spy.fake_binds.clear();
    auto three = device.import_image(desc);
    REQUIRE_MESSAGE(three, (three ? "" : three.error().message()));
    CHECK(spy.allocate_calls == 3);
    CHECK(three->memory_count() == 3);
    REQUIRE(spy.fake_binds.size() == 3);
    for (std::uint32_t i = 0; i < 3; ++i) CHECK(spy.fake_binds[i].memory == three->memory(i));
}

TEST_CASE_FIXTURE(VkTest, "a refused DMA_BUF_SET_NAME does not fail an export") {
    std::mutex mutex;
    std::vector<std::string> warnings;
    set_log_handler([&](LogLevel level, std::string_view message) {
        std::lock_guard lock(mutex);
        if (level == LogLevel::warning) warnings.emplace_back(message);
    });
    bool image_ok = false, buffer_ok = false;
    std::string errors;
    const auto failure = run_with_ioctl_faults({{DMA_BUF_SET_NAME_A, EPERM}, {DMA_BUF_SET_NAME_B, EPERM}}, [&] {
        auto image = device_a().device().export_image(ImageRequest{64, 32, fourcc::XRGB8888, {}, "named"});
        image_ok = image.ok();
        if (!image) errors += image.error().message() + "; ";
        auto buffer = device_a().device().export_buffer(4096, VK_BUFFER_USAGE_TRANSFER_SRC_BIT, "named");
        buffer_ok = buffer.ok() && buffer->dmabuf.size() >= 4096;
        if (!buffer) errors += buffer.error().message();
    });
    set_log_handler({});
    REQUIRE_MESSAGE(failure.empty(), failure);
    CHECK_MESSAGE(image_ok, errors);
    CHECK_MESSAGE(buffer_ok, errors);
    int unnamed = 0;
    for (const auto& w : warnings) unnamed += w.find("stays unnamed (\"named\")") != std::string::npos;
    CHECK(unnamed == 2);  // one per export, each logged
}

TEST_CASE_FIXTURE(VkTest, "every fd the Vulkan adapter hands out carries FD_CLOEXEC") {
    auto image = device_a().device().export_image(ImageRequest{64, 32, fourcc::XRGB8888, {}, "cloexec"});
    REQUIRE(image);
    for (const auto& p : image->desc.planes) CHECK(cloexec(p.buffer.fd()));
    auto buffer = device_a().device().export_buffer(4096, VK_BUFFER_USAGE_TRANSFER_SRC_BIT, "cloexec");
    REQUIRE(buffer);
    CHECK(cloexec(buffer->dmabuf.fd()));
}
