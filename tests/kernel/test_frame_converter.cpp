// SPDX-License-Identifier: MIT
// vulkan::FrameConverter on lavapipe: frames in exported dma-bufs (filled through CPU mappings)
// converted into an exported RGBA dma-buf, read back through its own mapping and compared with
// the CPU reference byte for byte; hostile layouts, sets and handles refused before anything is
// recorded; and the converter's objects outliving work that still uses them.
#include <dmabridge/format/fourcc.hpp>
#include <dmabridge/format/frame_layout.hpp>
#include <dmabridge/kernel/cpu_access.hpp>
#include <dmabridge/kernel/sync_file.hpp>
#include <dmabridge/vulkan/frame_converter.hpp>

#include <chrono>
#include <optional>
#include <span>
#include <thread>
#include <cstring>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "vgem.hpp"
#include "vk_fixture.hpp"

using namespace dmabridge;
using namespace dmabridge::test;
using namespace std::chrono_literals;

namespace {

constexpr VkBufferUsageFlags source_usage = vulkan::FrameConverter::source_usage;

// A source buffer: exported Vulkan memory whose dma-buf the CPU fills (inside a CPU-access
// bracket), as a camera driver fills its dma-bufs.
vulkan::ExportedBuffer filled_buffer(const vulkan::Device& device, const std::vector<std::uint8_t>& bytes) {
    auto exported = device.export_buffer(bytes.size(), source_usage, "frame source");
    REQUIRE_MESSAGE(exported, exported.error().message());
    auto map = Mapping::map(exported->dmabuf, Access::write);
    REQUIRE_MESSAGE(map, map.error().message());
    auto cpu = CpuAccess::begin(exported->dmabuf, Access::write);
    REQUIRE(cpu);
    std::memcpy(map->data(), bytes.data(), bytes.size());
    REQUIRE(cpu->end());
    return std::move(*exported);
}

std::vector<std::uint8_t> pattern(std::size_t size, std::uint32_t seed) {
    std::vector<std::uint8_t> v(size);
    std::uint32_t x = seed * 2654435761u + 1;
    for (auto& b : v) {
        x = x * 1664525u + 1013904223u;
        b = static_cast<std::uint8_t>(x >> 24);
    }
    return v;
}

// The converter's target: an exported LINEAR ABGR8888 (R, G, B, A in memory: what the shader's
// rgba8 writes) image with a storage view, readable through its dma-buf.
struct Target {
    vulkan::ExportedImage image;
    VkImageView view = VK_NULL_HANDLE;
    const vulkan::Context* ctx = nullptr;
    Target(const vulkan::Context& context, std::uint32_t width, std::uint32_t height) : ctx(&context) {
        auto exported = context.device().export_image(
            ImageRequest{width, height, fourcc::ABGR8888, {}, "converter target"},
            vulkan::ImageOptions{.usage = vulkan::FrameConverter::target_usage | VK_IMAGE_USAGE_TRANSFER_SRC_BIT});
        REQUIRE_MESSAGE(exported, exported.error().message());
        image = std::move(*exported);
        VkImageViewCreateInfo info{};
        info.sType = VK_STRUCTURE_TYPE_IMAGE_VIEW_CREATE_INFO;
        info.image = image.image.handle();
        info.viewType = VK_IMAGE_VIEW_TYPE_2D;
        info.format = VK_FORMAT_R8G8B8A8_UNORM;
        info.subresourceRange = {VK_IMAGE_ASPECT_COLOR_BIT, 0, 1, 0, 1};
        auto create = reinterpret_cast<PFN_vkCreateImageView>(context.device_proc("vkCreateImageView"));
        REQUIRE(create(context.handles().device, &info, nullptr, &view) == VK_SUCCESS);
    }
    ~Target() {
        auto destroy = reinterpret_cast<PFN_vkDestroyImageView>(ctx->device_proc("vkDestroyImageView"));
        destroy(ctx->handles().device, view, nullptr);
    }
    vulkan::FrameTarget target() const {
        return {image.image.handle(), view, {image.image.extent().width, image.image.extent().height}};
    }
    // The converted pixels, tightly packed RGBA, read through the dma-buf's mapping.
    std::vector<std::uint8_t> read(std::uint32_t width, std::uint32_t height) const {
        const auto& plane = image.desc.planes[0];
        auto map = Mapping::map(plane.buffer, Access::read);
        REQUIRE(map);
        auto cpu = CpuAccess::begin(plane.buffer, Access::read);
        REQUIRE(cpu);
        std::vector<std::uint8_t> out(std::size_t{width} * height * 4);
        for (std::uint32_t y = 0; y < height; ++y)
            std::memcpy(&out[std::size_t{y} * width * 4], map->data() + plane.offset + std::size_t{y} * plane.stride,
                        std::size_t{width} * 4);
        REQUIRE(cpu->end());
        return out;
    }
};

// Converts with set `set`, waits, and makes the writes visible to the host.
// `acquire`: source buffer barriers recorded in the conversion's own barrier.
void convert(const vulkan::Context& ctx, vulkan::FrameConverter& conv, std::uint32_t set, const FrameLayout& layout,
             VkImage image, std::span<const VkBufferMemoryBarrier> acquire = {}) {
    auto barrier = reinterpret_cast<PFN_vkCmdPipelineBarrier>(ctx.device_proc("vkCmdPipelineBarrier"));
    Status recorded;
    auto work = ctx.submit_async([&](VkCommandBuffer cmd) {
        recorded = acquire.empty() ? conv.record(cmd, set, layout) : conv.record(cmd, set, layout, acquire);
        VkImageMemoryBarrier to_host{};
        to_host.sType = VK_STRUCTURE_TYPE_IMAGE_MEMORY_BARRIER;
        to_host.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT;
        to_host.dstAccessMask = VK_ACCESS_HOST_READ_BIT;
        to_host.oldLayout = VK_IMAGE_LAYOUT_GENERAL;
        to_host.newLayout = VK_IMAGE_LAYOUT_GENERAL;
        to_host.srcQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED;
        to_host.dstQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED;
        to_host.image = image;
        to_host.subresourceRange = {VK_IMAGE_ASPECT_COLOR_BIT, 0, 1, 0, 1};
        barrier(cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_PIPELINE_STAGE_HOST_BIT, 0, 0, nullptr, 0, nullptr, 1,
                &to_host);
    });
    REQUIRE_MESSAGE(recorded, recorded.error().message());
    REQUIRE_MESSAGE(work, work.error().message());
    REQUIRE(conv.set_last_use(set, *work));
    auto waited = work->wait(30s);
    REQUIRE(waited);
    REQUIRE(*waited == WaitStatus::ready);
}

std::size_t differing(const std::vector<std::uint8_t>& a, const std::vector<std::uint8_t>& b) {
    if (a.size() != b.size()) return std::max(a.size(), b.size());
    std::size_t n = 0;
    for (std::size_t i = 0; i < a.size(); ++i) n += a[i] != b[i];
    return n;
}

}  // namespace

TEST_CASE_FIXTURE(VkTest, "FrameConverter turns YUYV, UYVY, NV12 in one and two dma-bufs and XR24 into the CPU reference's RGBA") {
    const auto& ctx = device_a().context();
    constexpr std::uint32_t w = 48, h = 20;  // not a multiple of the workgroup: the edges count
    Target target(ctx, w, h);
    auto conv = vulkan::FrameConverter::create(ctx.device(), {.frames_in_flight = 2});
    REQUIRE_MESSAGE(conv, conv.error().message());
    CHECK(conv->frames_in_flight() == 2);

    struct Case {
        const char* name;
        FrameLayout layout;
        std::size_t size0, size1;  // size1 == 0: one buffer holds both planes
    };
    // Strides with padding and offsets, so that a shader reading them wrong would show.
    const Case cases[] = {
        {"YUYV", {FrameFormat::yuyv, w, h, 64, w * 2 + 32, 0, 0}, 64 + (w * 2 + 32) * h, 0},
        {"UYVY", {FrameFormat::uyvy, w, h, 0, w * 2, 0, 0}, w * 2 * h, 0},
        {"NV12 one buffer", {FrameFormat::nv12, w, h, 0, w + 16, (w + 16) * h + 128, w + 16},
         (w + 16) * h + 128 + (w + 16) * h / 2, 0},
        {"NV12 two buffers", {FrameFormat::nv12, w, h, 0, w, 256, w + 64}, w * h, 256 + (w + 64) * h / 2},
        {"XR24", {FrameFormat::xrgb8888, w, h, 4096, w * 4, 0, 0}, 4096 + w * 4 * h, 0},
    };
    std::uint32_t seed = 1;
    for (const auto& c : cases) {
        CAPTURE(c.name);
        const auto bytes0 = pattern(c.size0, seed++);
        const auto bytes1 = c.size1 ? pattern(c.size1, seed++) : bytes0;
        auto buf0 = filled_buffer(ctx.device(), bytes0);
        std::optional<vulkan::ExportedBuffer> buf1;
        if (c.size1) buf1.emplace(filled_buffer(ctx.device(), bytes1));
        const auto plane1 = buf1 ? vulkan::FrameSource::of(buf1->buffer) : vulkan::FrameSource::of(buf0.buffer);
        const std::uint32_t set = seed % 2;
        auto bound = conv->bind(set, vulkan::FrameSource::of(buf0.buffer), plane1, target.target());
        REQUIRE_MESSAGE(bound, bound.error().message());
        CHECK(*bound);
        convert(ctx, *conv, set, c.layout, target.image.image.handle());
        const auto want = convert_to_rgba(c.layout, std::as_bytes(std::span(bytes0)), std::as_bytes(std::span(bytes1)));
        REQUIRE(want);
        const auto got = target.read(w, h);
        CHECK_MESSAGE(differing(got, *want) == 0, differing(got, *want) << " of " << got.size() << " bytes differ");
        // The same binding again costs nothing and says so.
        auto again = conv->bind(set, vulkan::FrameSource::of(buf0.buffer), plane1, target.target());
        REQUIRE(again);
        CHECK_FALSE(*again);
    }

    // bgra_bytes: the same frame stored as B, G, R, A (XRGB8888 memory, for scan-out).
    auto bgra = vulkan::FrameConverter::create(ctx.device(), {.frames_in_flight = 1, .bgra_bytes = true});
    REQUIRE_MESSAGE(bgra, bgra.error().message());
    const FrameLayout yuyv{FrameFormat::yuyv, w, h, 0, w * 2, 0, 0};
    const auto bytes = pattern(std::size_t{w} * 2 * h, 77);
    auto buf = filled_buffer(ctx.device(), bytes);
    REQUIRE(bgra->bind(0, vulkan::FrameSource::of(buf.buffer), vulkan::FrameSource::of(buf.buffer), target.target()));
    convert(ctx, *bgra, 0, yuyv, target.image.image.handle());
    auto want = convert_to_rgba(yuyv, std::as_bytes(std::span(bytes)), std::as_bytes(std::span(bytes)));
    REQUIRE(want);
    for (std::size_t i = 0; i + 3 < want->size(); i += 4) std::swap((*want)[i], (*want)[i + 2]);
    const auto got = target.read(w, h);
    CHECK_MESSAGE(differing(got, *want) == 0, differing(got, *want) << " of " << got.size() << " bytes differ");
}

TEST_CASE_FIXTURE(VkTest, "FrameConverter records the source buffers' acquire barriers in its own barrier") {
    const auto& ctx = device_a().context();
    constexpr std::uint32_t w = 32, h = 16;
    Target target(ctx, w, h);
    auto conv = vulkan::FrameConverter::create(ctx.device(), {.frames_in_flight = 1});
    REQUIRE_MESSAGE(conv, conv.error().message());
    const FrameLayout yuyv{FrameFormat::yuyv, w, h, 0, w * 2, 0, 0};
    const auto bytes = pattern(std::size_t{w} * 2 * h, 5);
    auto buf = filled_buffer(ctx.device(), bytes);
    REQUIRE(conv->bind(0, vulkan::FrameSource::of(buf.buffer), vulkan::FrameSource::of(buf.buffer), target.target()));
    VkBufferMemoryBarrier acquire{};
    acquire.sType = VK_STRUCTURE_TYPE_BUFFER_MEMORY_BARRIER;
    acquire.srcAccessMask = VK_ACCESS_HOST_WRITE_BIT;
    acquire.dstAccessMask = VK_ACCESS_SHADER_READ_BIT;
    acquire.srcQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED;
    acquire.dstQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED;
    acquire.buffer = buf.buffer.handle();
    acquire.size = VK_WHOLE_SIZE;
    convert(ctx, *conv, 0, yuyv, target.image.image.handle(), std::span(&acquire, 1));
    const auto want = convert_to_rgba(yuyv, std::as_bytes(std::span(bytes)), std::as_bytes(std::span(bytes)));
    REQUIRE(want);
    const auto got = target.read(w, h);
    CHECK_MESSAGE(differing(got, *want) == 0, differing(got, *want) << " of " << got.size() << " bytes differ");
    check_no_validation_messages();
    // The barrier really is recorded: one that reaches past the buffer is the validation layer's
    // error (and only that barrier is wrong here).
    acquire.offset = buf.buffer.size() + 256;
    acquire.size = 64;
    convert(ctx, *conv, 0, yuyv, target.image.image.handle(), std::span(&acquire, 1));
    CHECK_FALSE(validation_log().empty());
    validation_log().clear();
}

TEST_CASE_FIXTURE(VkTest, "FrameConverter refuses hostile layouts, sets and handles before recording anything") {
    const auto& ctx = device_a().context();
    Target target(ctx, 64, 32);
    auto src = filled_buffer(ctx.device(), pattern(64 * 2 * 32, 7));
    const auto source = vulkan::FrameSource::of(src.buffer);

    for (std::uint32_t bad : {0u, 65u}) {
        auto conv = vulkan::FrameConverter::create(ctx.device(), {.frames_in_flight = bad});
        REQUIRE_FALSE(conv);
        CHECK(conv.error().is(Errc::invalid_argument));
    }
    auto conv = vulkan::FrameConverter::create(ctx.device(), {.frames_in_flight = 1});
    REQUIRE(conv);

    // Set numbers, null handles, an empty target.
    CHECK(conv->bind(1, source, source, target.target()).error().is(Errc::invalid_argument));
    CHECK(conv->bind(0, {}, source, target.target()).error().is(Errc::invalid_argument));
    CHECK(conv->bind(0, source, {}, target.target()).error().is(Errc::invalid_argument));
    CHECK(conv->bind(0, source, source, {}).error().is(Errc::invalid_argument));
    // A size of 0, and one past what a storage buffer descriptor may bind, named with the limit.
    for (const std::uint64_t size : {std::uint64_t{0}, std::uint64_t{1} << 40}) {
        CAPTURE(size);
        auto sized = source;
        sized.size = size;
        auto refused = conv->bind(0, source, sized, target.target());
        REQUIRE_FALSE(refused);
        CHECK(refused.error().is(Errc::invalid_argument));
        CHECK(refused.error().message().find("plane 1 binds " + std::to_string(size) + " bytes") != std::string::npos);
        CHECK(refused.error().message().find("maxStorageBufferRange") != std::string::npos);
    }

    const FrameLayout fits{FrameFormat::yuyv, 64, 32, 0, 128, 0, 0};
    std::vector<std::pair<FrameLayout, std::string>> hostile = {
        // One row past the buffer's end: 0 + 128 x 32 rows ends at 4224 > 4096.
        {{FrameFormat::yuyv, 64, 32, 128, 128, 0, 0}, "plane 0: offset 128 + stride 128 x 32 rows = 4224 > 4096 bytes"},
        {{FrameFormat::yuyv, 64, 32, 0, 64, 0, 0}, "stride 64 < 128"},
        {{FrameFormat::nv12, 64, 32, 0, 64, 3100, 64}, "plane 1: offset 3100 + stride 64 x 16 rows = 4124 > 4096 bytes"},
        {{FrameFormat::nv12, 64, 32, 0, 64, 0xFFFFFF00u, 0xFFFFFFF0u}, "plane 1: offset 4294967040"},
        {{FrameFormat::yuyv, 63, 32, 0, 128, 0, 0}, "odd width 63"},
        {{static_cast<FrameFormat>(9), 64, 32, 0, 128, 0, 0}, "format code 9"},
        {{FrameFormat::yuyv, 0, 32, 0, 128, 0, 0}, "empty frame 0x32"},
        {{FrameFormat::nv12, 64, 64, 0, 64, 0, 64}, "larger than the target 64x32"},
    };
    Status status;
    // Not bound yet.
    auto not_bound = ctx.submit_async([&](VkCommandBuffer cmd) { status = conv->record(cmd, 0, fits); });
    REQUIRE(not_bound);
    REQUIRE(not_bound->wait(30s));
    REQUIRE_FALSE(status);
    CHECK(status.error().message().find("not bound") != std::string::npos);

    REQUIRE(conv->bind(0, source, source, target.target()));
    for (const auto& [layout, says] : hostile) {
        CAPTURE(says);
        auto work = ctx.submit_async([&](VkCommandBuffer cmd) { status = conv->record(cmd, 0, layout); });
        REQUIRE(work);
        REQUIRE(work->wait(30s));
        REQUIRE_FALSE(status);
        CHECK(status.error().is(Errc::invalid_argument));
        CHECK_MESSAGE(status.error().message().find(says) != std::string::npos, status.error().message());
    }
    auto outside = ctx.submit_async([&](VkCommandBuffer cmd) { status = conv->record(cmd, 1, fits); });
    REQUIRE(outside);
    REQUIRE(outside->wait(30s));
    CHECK(status.error().is(Errc::invalid_argument));
    CHECK(conv->record(VK_NULL_HANDLE, 0, fits).error().is(Errc::invalid_argument));
    CHECK(conv->set_last_use(0, std::shared_ptr<const Completion>{}).error().is(Errc::empty_object));
    CHECK(conv->set_last_use(3, vulkan::Submission{}).error().is(Errc::invalid_argument));

    // Moved from: every call fails at once with empty_object.
    vulkan::FrameConverter taker = std::move(*conv);
    CHECK_FALSE(conv->valid());
    CHECK(conv->frames_in_flight() == 0);
    CHECK(conv->bind(0, source, source, target.target()).error().is(Errc::empty_object));
    CHECK(conv->record(VK_NULL_HANDLE, 0, fits).error().is(Errc::empty_object));
    CHECK(conv->set_last_use(0, vulkan::Submission{}).error().is(Errc::empty_object));
    CHECK(vulkan::FrameConverter::create(vulkan::Device{}).error().is(Errc::empty_object));
    CHECK(taker.valid());
}

TEST_CASE_FIXTURE(VkTest, "a FrameConverter set in use is not rebound, and the converter outlives its Device object and pending work") {
    const auto& ctx = device_a().context();
    Target target(ctx, 32, 16);
    const auto bytes = pattern(32 * 2 * 16, 3);
    auto src = filled_buffer(ctx.device(), bytes);
    auto other = filled_buffer(ctx.device(), bytes);
    Vgem vgem;
    const auto held = vgem.create_buffer();
    const std::uint32_t fence = vgem.attach_fence(true);
    auto pending = held.export_sync_file(Access::write);
    REQUIRE_MESSAGE(pending, pending.error().message());

    std::optional<vulkan::FrameConverter> conv;
    {
        vulkan::Device copy = ctx.device();  // the converter keeps the device's state, not this object
        auto made = vulkan::FrameConverter::create(copy, {.frames_in_flight = 1, .destroy_timeout = 8s});
        REQUIRE(made);
        conv.emplace(std::move(*made));
    }
    const auto source = vulkan::FrameSource::of(src.buffer);
    REQUIRE(conv->bind(0, source, source, target.target()));
    // Work nobody has finished uses set 0: the set cannot change under it.
    REQUIRE(conv->set_last_use(0, completion_of(std::move(*pending))));
    auto rebind = conv->bind(0, vulkan::FrameSource::of(other.buffer), vulkan::FrameSource::of(other.buffer),
                             target.target());
    REQUIRE_FALSE(rebind);
    CHECK(rebind.error().is(Errc::invalid_argument));
    CHECK_MESSAGE(rebind.error().message().find("still in use by sync_file") != std::string::npos,
                  rebind.error().message());
    // The same binding is not a change: allowed while in use.
    REQUIRE(conv->bind(0, source, source, target.target()));
    // Destroyed while the use is pending: the objects go only once the work ended. The signal
    // comes from another thread no earlier than 300 ms after the destruction began, so a
    // destruction that did not wait ends before it.
    const auto start = std::chrono::steady_clock::now();
    std::thread signaller([&] {
        std::this_thread::sleep_until(start + 300ms);
        vgem.signal(fence);
    });
    conv.reset();
    const auto took = std::chrono::steady_clock::now() - start;
    signaller.join();
    CHECK(took >= 300ms);
    CHECK(took < 8s);

    // A converter whose work completed is destroyed at once; recorded commands ran with it.
    auto done = vulkan::FrameConverter::create(ctx.device(), {.frames_in_flight = 1});
    REQUIRE(done);
    REQUIRE(done->bind(0, source, source, target.target()));
    const FrameLayout layout{FrameFormat::yuyv, 32, 16, 0, 64, 0, 0};
    convert(ctx, *done, 0, layout, target.image.image.handle());
    const auto want = convert_to_rgba(layout, std::as_bytes(std::span(bytes)), std::as_bytes(std::span(bytes)));
    REQUIRE(want);
    CHECK(differing(target.read(32, 16), *want) == 0);
}
