// SPDX-License-Identifier: MIT
// The camera sample's host-side pieces: the CPU reference conversion (which the kernel tests
// hold the GPU to), the frame-layout checks in front of the shader, and the PNG writer.
#include <dmabridge/format/fourcc.hpp>
#include <dmabridge/format/frame_layout.hpp>

#include <array>
#include <cstring>
#include <vector>
#include <string>

#include <unistd.h>

#include <doctest/doctest.h>

#include <dmabridge/bridge/camera_pipeline.hpp>
#include "png.hpp"

using namespace dmabridge;

namespace {

std::array<std::uint8_t, 3> rgb_of(std::uint8_t y, std::uint8_t u, std::uint8_t v) {
    std::array<std::uint8_t, 3> rgb{};
    dmabridge::yuv_to_rgb(y, u, v, rgb.data());
    return rgb;
}

ImageLayout layout(std::uint32_t fourcc, std::uint32_t w, std::uint32_t h, std::vector<PlaneLayout> planes) {
    ImageLayout l;
    l.width = w;
    l.height = h;
    l.fourcc = fourcc;
    l.planes = std::move(planes);
    return l;
}

}  // namespace

TEST_CASE("BT.601 limited range: black, white and the primaries") {
    CHECK(rgb_of(16, 128, 128) == std::array<std::uint8_t, 3>{0, 0, 0});
    CHECK(rgb_of(235, 128, 128) == std::array<std::uint8_t, 3>{255, 255, 255});
    CHECK(rgb_of(81, 90, 240) == std::array<std::uint8_t, 3>{255, 0, 0});    // red
    CHECK(rgb_of(145, 54, 34) == std::array<std::uint8_t, 3>{0, 255, 1});    // green (8-bit rounding: B 1)
    CHECK(rgb_of(41, 240, 110) == std::array<std::uint8_t, 3>{0, 0, 255});   // blue
    CHECK(rgb_of(0, 0, 0) == std::array<std::uint8_t, 3>{0, 135, 0});        // out of range: clamped
}

TEST_CASE("the CPU conversion reads YUYV pairs, NV12 planes and XR24 words as the shader does") {
    // 2x2 YUYV, stride 8 (4 bytes of padding per row): Y0 U Y1 V.
    const std::uint8_t yuyv[] = {16, 128, 235, 128, 0, 0, 0, 0, 81, 90, 81, 240, 0, 0, 0, 0};
    auto f = dmabridge::frame_layout(layout(fourcc::YUYV, 2, 2, {{0, 8, sizeof yuyv}}));
    REQUIRE(f);
    auto rgba = dmabridge::convert_to_rgba(*f, std::as_bytes(std::span(yuyv)), std::as_bytes(std::span(yuyv))).value();
    CHECK(std::vector<std::uint8_t>(rgba.begin(), rgba.begin() + 8) ==
          std::vector<std::uint8_t>{0, 0, 0, 255, 255, 255, 255, 255});
    CHECK(std::vector<std::uint8_t>(rgba.begin() + 8, rgba.end()) ==
          std::vector<std::uint8_t>{255, 0, 0, 255, 255, 0, 0, 255});

    // 2x2 NV12 in one buffer: 4 luma bytes, then one U V pair for all four pixels.
    const std::uint8_t nv12[] = {16, 235, 235, 16, 128, 128};
    f = dmabridge::frame_layout(layout(fourcc::NV12, 2, 2, {{0, 2, sizeof nv12}, {4, 2, sizeof nv12}}));
    REQUIRE(f);
    rgba = dmabridge::convert_to_rgba(*f, std::as_bytes(std::span(nv12)), std::as_bytes(std::span(nv12))).value();
    CHECK(rgba[0] == 0);
    CHECK(rgba[4] == 255);
    CHECK(rgba[8] == 255);
    CHECK(rgba[12] == 0);

    // XR24: bytes B G R X.
    const std::uint8_t xr24[] = {1, 2, 3, 99};
    f = dmabridge::frame_layout(layout(fourcc::XRGB8888, 1, 1, {{0, 4, 4}}));
    REQUIRE(f);
    rgba = dmabridge::convert_to_rgba(*f, std::as_bytes(std::span(xr24)), std::as_bytes(std::span(xr24))).value();
    CHECK(rgba == std::vector<std::uint8_t>{3, 2, 1, 255});
}

TEST_CASE("frames the shader could read out of bounds, or cannot read, are refused before any dispatch") {
    // One byte short of the last row.
    auto r = dmabridge::frame_layout(layout(fourcc::YUYV, 640, 480, {{0, 1280, 1280 * 480 - 1}}));
    REQUIRE_FALSE(r);
    CHECK(r.error().is(Errc::invalid_argument));
    // A stride smaller than a row.
    r = dmabridge::frame_layout(layout(fourcc::YUYV, 640, 480, {{0, 1000, 1 << 22}}));
    REQUIRE_FALSE(r);
    // An offset that wraps around 64 bits.
    r = dmabridge::frame_layout(layout(fourcc::YUYV, 640, 480, {{~0ull - 10, 1280, 1 << 22}}));
    REQUIRE_FALSE(r);
    // Odd widths split a YUYV pair; odd heights an NV12 chroma row.
    r = dmabridge::frame_layout(layout(fourcc::YUYV, 3, 2, {{0, 8, 64}}));
    REQUIRE_FALSE(r);
    CHECK(r.error().message().find("odd width") != std::string::npos);
    r = dmabridge::frame_layout(layout(fourcc::NV12, 4, 3, {{0, 4, 64}, {12, 4, 64}}));
    REQUIRE_FALSE(r);
    // Formats and modifiers the shader does not read.
    r = dmabridge::frame_layout(layout(fourcc::RGB565, 4, 4, {{0, 8, 64}}));
    REQUIRE_FALSE(r);
    CHECK(r.error().is(Errc::unsupported));
    auto tiled = layout(fourcc::YUYV, 4, 4, {{0, 8, 64}});
    tiled.modifier = 0x0100000000000001ull;  // I915_FORMAT_MOD_X_TILED
    r = dmabridge::frame_layout(tiled);
    REQUIRE_FALSE(r);
    CHECK(r.error().is(Errc::unsupported));
}

TEST_CASE("the CPU conversion refuses a hand-made layout that does not fit its buffers, naming plane and numbers") {
    const std::vector<std::byte> small(1000);
    dmabridge::FrameLayout f{dmabridge::FrameFormat::yuyv, 16, 16, 0, 32, 0, 0};
    auto r = dmabridge::convert_to_rgba(f, small, small);  // 32 x 16 = 512 bytes: fits
    REQUIRE(r);
    CHECK(r->size() == 16u * 16 * 4);
    f.offset0 = 600;  // 600 + 32 x 15 + 32 = 1112 > 1000
    r = dmabridge::convert_to_rgba(f, small, small);
    REQUIRE_FALSE(r);
    CHECK(r.error().is(Errc::invalid_argument));
    CHECK_MESSAGE(r.error().message().find("plane 0: offset 600 + stride 32 x 16 rows = 1112 > 1000 bytes") !=
                      std::string::npos,
                  r.error().message());
    f = {dmabridge::FrameFormat::yuyv, 16, 16, 0, 8, 0, 0};  // stride below the 32-byte row
    r = dmabridge::convert_to_rgba(f, small, small);
    REQUIRE_FALSE(r);
    CHECK(r.error().message().find("plane 0: stride 8 < 32 bytes per row") != std::string::npos);
    // NV12's chroma plane in a second, too small buffer.
    const std::vector<std::byte> luma(256), chroma(100);
    f = {dmabridge::FrameFormat::nv12, 16, 16, 0, 16, 0, 16};
    r = dmabridge::convert_to_rgba(f, luma, chroma);  // 16 x 8 = 128 > 100
    REQUIRE_FALSE(r);
    CHECK_MESSAGE(r.error().message().find("plane 1: offset 0 + stride 16 x 8 rows = 128 > 100 bytes") !=
                      std::string::npos,
                  r.error().message());
    // Offsets near 2^32 do not wrap: the end is computed in 64 bits.
    f = {dmabridge::FrameFormat::xrgb8888, 1, 1, 0xffffffffu, 4, 0, 0};
    CHECK_FALSE(dmabridge::convert_to_rgba(f, small, small));
    // Codes outside the enumeration, empty frames and odd 4:2:2 widths.
    f = {static_cast<dmabridge::FrameFormat>(7), 2, 2, 0, 8, 0, 0};
    CHECK_FALSE(dmabridge::convert_to_rgba(f, small, small));
    f = {dmabridge::FrameFormat::xrgb8888, 0, 2, 0, 8, 0, 0};
    CHECK_FALSE(dmabridge::convert_to_rgba(f, small, small));
    f = {dmabridge::FrameFormat::uyvy, 3, 2, 0, 8, 0, 0};
    CHECK_FALSE(dmabridge::convert_to_rgba(f, small, small));
}

TEST_CASE("PNG files round-trip every pixel through libpng, compressed, and bad input fails clearly") {
    const std::uint32_t w = 640, h = 480;
    std::vector<std::uint8_t> rgba(std::size_t{w} * h * 4);
    // A smooth gradient with an opaque alpha: what a converted camera frame looks like.
    for (std::uint32_t y = 0; y < h; ++y)
        for (std::uint32_t x = 0; x < w; ++x) {
            std::uint8_t* p = &rgba[(std::size_t{y} * w + x) * 4];
            p[0] = static_cast<std::uint8_t>(x);
            p[1] = static_cast<std::uint8_t>(y);
            p[2] = static_cast<std::uint8_t>(x ^ y);
            p[3] = 255;
        }
    auto png = support::encode_png(w, h, rgba);
    REQUIRE(png);
    CHECK(png->compare(0, 8, std::string("\x89PNG\r\n\x1a\n", 8)) == 0);
    // Compressed: far below the 1.2 MB of stored blocks.
    CHECK(png->size() < rgba.size() / 4);
    const std::span<const std::uint8_t> bytes(reinterpret_cast<const std::uint8_t*>(png->data()), png->size());
    auto picture = support::decode_png(bytes);
    REQUIRE(picture);
    CHECK(picture->width == w);
    CHECK(picture->height == h);
    CHECK(picture->rgba == rgba);

    const std::string path = "/tmp/dmabridge-png-roundtrip-" + std::to_string(::getpid()) + ".png";
    REQUIRE(support::write_png(path, w, h, rgba));
    auto read = support::read_png(path);
    ::unlink(path.c_str());
    REQUIRE(read);
    CHECK(read->rgba == rgba);

    auto missing_dir = support::write_png("/nonexistent-dir/x.png", w, h, rgba);
    REQUIRE_FALSE(missing_dir);
    CHECK(missing_dir.error().message().find("/nonexistent-dir/x.png") != std::string::npos);
    auto mismatch = support::write_png("/tmp/never-written.png", w, h + 1, rgba);
    REQUIRE_FALSE(mismatch);
    CHECK(mismatch.error().message().find("640x481") != std::string::npos);
    CHECK_FALSE(support::decode_png(bytes.first(40)));  // truncated
    const std::vector<std::uint8_t> text{'n', 'o', 't', ' ', 'p', 'n', 'g'};
    CHECK_FALSE(support::decode_png(text));
    CHECK_FALSE(support::read_png("/nonexistent-dir/x.png"));
}

TEST_CASE("the copy path sizes each V4L2 buffer's copy from its own dma-bufs, and staging from the largest") {
    // Three buffers of NV12M (two dma-bufs each); buffer 1's are smaller than buffer 0's, buffer 2's larger.
    const std::vector<std::vector<std::uint64_t>> sizes{{307200, 153600}, {300000, 150000}, {311296, 155648}};
    const std::array<std::uint32_t, 2> size_image{307200, 153600};
    auto plan = dmabridge::camera::copy_sizes(sizes, size_image);
    REQUIRE(plan);
    REQUIRE(plan->bytes.size() == 3);
    CHECK(plan->bytes[0] == std::vector<std::uint32_t>{307200, 153600});
    CHECK(plan->bytes[1] == std::vector<std::uint32_t>{300000, 150000});  // never past its dma-buf
    CHECK(plan->bytes[2] == std::vector<std::uint32_t>{307200, 153600});  // sizeimage, not the padding
    CHECK(plan->staging == std::vector<std::uint64_t>{311296, 155648});   // fits every buffer
    auto mixed = dmabridge::camera::copy_sizes({{307200, 153600}, {460800}}, size_image);
    REQUIRE_FALSE(mixed);
    CHECK(mixed.error().message().find("V4L2 buffer 1 has 1 dma-bufs") != std::string::npos);
}
