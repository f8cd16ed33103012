// SPDX-License-Identifier: MIT
// Hostile descriptions on a real device: each refused with a clear error before anything is
// made, no fds leaked (fixture), no Vulkan objects leaked (a device destroyed under validation).
#include <dmabridge/alloc/udmabuf.hpp>
#include <dmabridge/vulkan/import_cache.hpp>

#include <string>

#include <sys/mman.h>

#include <doctest/doctest.h>

#include "vk_fixture.hpp"

using namespace dmabridge;
using namespace dmabridge::test;

namespace {

BufferDesc xrgb_on_udmabuf(std::uint64_t bytes, std::uint32_t w, std::uint32_t h, std::uint64_t stride) {
    auto alloc = UdmabufAllocator::open();
    REQUIRE(alloc);
    auto buf = alloc->allocate_bytes(bytes, "hostile");
    REQUIRE(buf);
    BufferDesc d;
    d.width = w;
    d.height = h;
    d.fourcc = fourcc::XRGB8888;
    d.modifier = modifier::linear;
    d.planes.push_back({std::move(*buf), 0, stride});
    return d;
}

std::string refusal(const vulkan::Device& device, const BufferDesc& desc) {
    auto r = device.import_image(desc);
    REQUIRE_FALSE(r);
    return r.error().message();
}

bool has(const std::string& text, const std::string& part) {
    if (text.find(part) != std::string::npos) return true;
    MESSAGE("\"" << part << "\" not in: " << text);
    return false;
}

}  // namespace

TEST_CASE_FIXTURE(VkTest, "a truncated buffer is refused with the numbers") {
    // 64x64 XRGB8888 at stride 256 needs 16384 bytes; the buffer has 12288.
    auto desc = xrgb_on_udmabuf(12288, 64, 64, 256);
    CHECK(has(refusal(device_b().device(), desc), "16384 > buffer size 12288"));
}

TEST_CASE_FIXTURE(VkTest, "a buffer smaller than the driver's memory requirement is refused") {
    // Fits the layout (stride 8192 x 63 rows + 256 = 516352 <= 520192) but lavapipe wants
    // stride x rows = 524288 bytes of memory: refused before the driver reads past the end.
    auto desc = xrgb_on_udmabuf(516352, 64, 64, 8192);
    REQUIRE(desc.planes[0].buffer.size() == 520192);
    CHECK(desc.validate());
    CHECK(has(refusal(device_b().device(), desc), "the driver needs 524288 bytes of memory, the dma-buf has 520192"));
}

TEST_CASE_FIXTURE(VkTest, "an unsupported modifier is refused, naming what is supported") {
    auto desc = xrgb_on_udmabuf(1 << 16, 64, 64, 256);
    desc.modifier = 0x0100000000000001ull;  // I915_FORMAT_MOD_X_TILED
    auto r = device_b().device().import_image(desc);
    REQUIRE_FALSE(r);
    CHECK(r.error().is(Errc::unsupported));
    CHECK(has(r.error().message(), "modifier 0x0100000000000001 cannot be imported"));
    CHECK(has(r.error().message(), "importable: LINEAR"));
}

TEST_CASE_FIXTURE(VkTest, "an implicit modifier is refused: nobody may guess the layout") {
    auto desc = xrgb_on_udmabuf(1 << 16, 64, 64, 256);
    desc.modifier = modifier::invalid;
    CHECK(has(refusal(device_b().device(), desc), "cannot be imported explicitly"));
}

TEST_CASE_FIXTURE(VkTest, "a wrong plane count and a short stride are refused") {
    auto nv12 = xrgb_on_udmabuf(1 << 16, 64, 64, 256);
    nv12.fourcc = fourcc::NV12;  // two planes expected, one given
    CHECK(has(refusal(device_b().device(), nv12), "1 planes, the format has 2"));
    auto narrow = xrgb_on_udmabuf(1 << 16, 64, 64, 128);
    CHECK(has(refusal(device_b().device(), narrow), "stride 128 < row size 256"));
    auto unknown = xrgb_on_udmabuf(1 << 16, 64, 64, 256);
    unknown.fourcc = fourcc::NV21;  // known to dmabridge, not to Vulkan
    unknown.planes.push_back({*unknown.planes[0].buffer.dup(), 16384, 256});
    CHECK(has(refusal(device_b().device(), unknown), "Vulkan has no format for NV21"));
}

TEST_CASE_FIXTURE(VkTest, "an fd that is not a dma-buf never reaches Vulkan") {
    auto r = DmaBuf::adopt(UniqueFd(::memfd_create("not-a-dmabuf", MFD_CLOEXEC)));
    REQUIRE_FALSE(r);
    CHECK(r.error().is(Errc::not_a_dmabuf));
}

TEST_CASE_FIXTURE(VkTest, "failed cache imports count nothing and keep nothing") {
    vulkan::ImportCache cache(device_b().device());
    auto desc = xrgb_on_udmabuf(12288, 64, 64, 256);
    CHECK_FALSE(cache.import(desc));
    const auto stats = cache.stats();
    CHECK(stats.misses == 0);
    CHECK(stats.live_entries == 0);
}

TEST_CASE_FIXTURE(FdLeakCheck, "hostile imports leak no Vulkan object (checked by destroying a device)") {
    std::vector<std::string> messages;
    {
        vulkan::ContextOptions options;
        options.validation = true;
        options.device_name = "llvmpipe";
        options.on_validation_message = [&](const std::string& m) { messages.push_back(m); };
        auto ctx = vulkan::Context::create(options);
        REQUIRE(ctx);
        const auto& device = ctx->device();
        auto truncated = xrgb_on_udmabuf(516352, 64, 64, 8192);  // fails after vkCreateImage
        CHECK_FALSE(device.import_image(truncated));
        auto tiled = xrgb_on_udmabuf(1 << 16, 64, 64, 256);
        tiled.modifier = 0x0100000000000001ull;
        CHECK_FALSE(device.import_image(tiled));
        auto good = xrgb_on_udmabuf(1 << 16, 64, 64, 256);
        auto image = device.import_image(good);  // made and destroyed: the control
        CHECK(image);
    }  // vkDestroyDevice reports every object still alive
    for (const auto& m : messages) FAIL_CHECK("validation: " << m);
}

TEST_CASE_FIXTURE(VkTest, "an export with modifiers the device cannot make names the ones it can") {
    ImageRequest r;
    r.width = 64;
    r.height = 64;
    r.fourcc = fourcc::XRGB8888;
    r.modifiers = {0x0100000000000001ull};
    auto e = device_a().device().export_image(r);
    REQUIRE_FALSE(e);
    CHECK(e.error().is(Errc::unsupported));
    CHECK(has(e.error().message(), "exportable: [LINEAR]"));
    CHECK(std::string(vulkan::result_name(VK_ERROR_INVALID_EXTERNAL_HANDLE)) == "VK_ERROR_INVALID_EXTERNAL_HANDLE");
}
