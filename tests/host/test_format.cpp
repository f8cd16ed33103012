// SPDX-License-Identifier: MIT
#include <dmabridge/format/format.hpp>
#include <dmabridge/format/fourcc.hpp>
#include <dmabridge/format/texel_view.hpp>

#include <doctest/doctest.h>

using namespace dmabridge;

TEST_CASE("fourcc codes have the values of drm_fourcc.h") {
    CHECK(fourcc::XRGB8888 == 0x34325258u);
    CHECK(fourcc::ABGR8888 == 0x34324241u);
    CHECK(fourcc::NV12 == 0x3231564eu);
    CHECK(fourcc::YUV420 == 0x32315559u);
    CHECK(fourcc::R8 == 0x20203852u);
    CHECK(fourcc_to_string(fourcc::XRGB8888) == "XR24");
    CHECK(fourcc_to_string(0x01020304u) == "0x01020304");
    CHECK(modifier_to_string(modifier::linear) == "LINEAR");
    CHECK(modifier_to_string(modifier::invalid) == "INVALID (implicit)");
    CHECK(modifier_to_string(0x0100000000000001ull) == "0x0100000000000001");
}

TEST_CASE("the format table knows the common RGB and YUV formats") {
    struct Row {
        std::uint32_t code;
        std::uint32_t planes;
        std::uint64_t row0_640;  // bytes in one row of plane 0 at width 640
    };
    const Row rows[] = {
        {fourcc::XRGB8888, 1, 2560}, {fourcc::ARGB8888, 1, 2560}, {fourcc::XBGR8888, 1, 2560},
        {fourcc::ABGR8888, 1, 2560}, {fourcc::RGB565, 1, 1280},   {fourcc::R8, 1, 640},
        {fourcc::GR88, 1, 1280},     {fourcc::NV12, 2, 640},      {fourcc::NV21, 2, 640},
        {fourcc::P010, 2, 1280},     {fourcc::YUYV, 1, 1280},     {fourcc::UYVY, 1, 1280},
        {fourcc::YUV420, 3, 640},
    };
    for (const Row& r : rows) {
        CAPTURE(fourcc_to_string(r.code));
        const FormatInfo* f = find_format(r.code);
        REQUIRE(f != nullptr);
        CHECK(f->plane_count == r.planes);
        CHECK(f->row_bytes(0, 640) == r.row0_640);
        CHECK(f->plane_rows(0, 480) == 480);
    }
    CHECK(find_format(fourcc::ARGB8888)->has_alpha);
    CHECK_FALSE(find_format(fourcc::XRGB8888)->has_alpha);
    CHECK(find_format(fourcc::NV12)->is_yuv);
}

TEST_CASE("subsampled planes round odd sizes up") {
    const FormatInfo* nv12 = find_format(fourcc::NV12);
    CHECK(nv12->row_bytes(1, 641) == 642);  // 321 CbCr pairs of 2 bytes
    CHECK(nv12->plane_rows(1, 481) == 241);
    const FormatInfo* p010 = find_format(fourcc::P010);
    CHECK(p010->row_bytes(1, 640) == 1280);
    const FormatInfo* yuyv = find_format(fourcc::YUYV);
    CHECK(yuyv->row_bytes(0, 641) == 1284);  // 321 blocks of 2 pixels in 4 bytes
    const FormatInfo* i420 = find_format(fourcc::YUV420);
    CHECK(i420->row_bytes(2, 640) == 320);
    CHECK(i420->plane_rows(2, 480) == 240);
    CHECK_FALSE(i420->row_bytes(3, 640).has_value());
}

TEST_CASE("an unknown fourcc is an error that names it") {
    CHECK(find_format(fourcc_code('Z', 'Z', 'Z', 'Z')) == nullptr);
    auto r = format_info(fourcc_code('Z', 'Z', 'Z', 'Z'));
    REQUIRE_FALSE(r);
    CHECK(r.error().is(Errc::unknown_format));
    CHECK(r.error().message().find("ZZZZ") != std::string::npos);
}

TEST_CASE("linear layout of NV12 puts aligned planes one after the other") {
    auto l = linear_layout(fourcc::NV12, 640, 480);
    REQUIRE(l);
    CHECK(l->plane_count == 2);
    CHECK(l->strides[0] == 768);  // 640 rounded up to 256
    CHECK(l->offsets[0] == 0);
    CHECK(l->offsets[1] == 768 * 480);
    CHECK(l->strides[1] == 768);
    CHECK(l->size == 768 * 480 + 768 * 240);

    auto packed = linear_layout(fourcc::XRGB8888, 640, 480, {.stride_alignment = 1, .plane_alignment = 1});
    REQUIRE(packed);
    CHECK(packed->strides[0] == 2560);
    CHECK(packed->size == 1228800);
}

TEST_CASE("linear layout refuses empty, overflowing and misaligned requests") {
    CHECK_FALSE(linear_layout(fourcc::XRGB8888, 0, 480));
    CHECK_FALSE(linear_layout(fourcc::XRGB8888, 640, 0));
    CHECK_FALSE(linear_layout(fourcc_code('Z', 'Z', 'Z', 'Z'), 640, 480));
    CHECK_FALSE(linear_layout(fourcc::XRGB8888, 640, 480, {.stride_alignment = 100, .plane_alignment = 256}));
    // 0xffffffff pixels of 4 bytes: the stride alone does not fit in 32 bits.
    auto huge = linear_layout(fourcc::XRGB8888, 0xffffffffu, 2);
    REQUIRE_FALSE(huge);
    CHECK(huge.error().message().find("too large") != std::string::npos);
}

TEST_CASE("texel views read packed and semi-planar YUV as plain 8-bit texels") {
    using dmabridge::ImageLayout;
    using dmabridge::texel_planes;
    namespace fourcc = dmabridge::fourcc;
    // YUYV 640x480, stride 1280: one ABGR8888 texel per pixel pair.
    auto yuyv = texel_planes(ImageLayout{640, 480, fourcc::YUYV, 0, {{0, 1280, 1280 * 480}}});
    REQUIRE(yuyv);
    REQUIRE(yuyv->size() == 1);
    CHECK((*yuyv)[0].fourcc == fourcc::ABGR8888);
    CHECK((*yuyv)[0].width == 320);
    CHECK((*yuyv)[0].height == 480);
    CHECK((*yuyv)[0].bytes_per_texel == 4);
    CHECK((*yuyv)[0].stride == 1280);
    // NV12 in one buffer: R8 luma, GR88 chroma at half size, offsets and strides kept.
    auto nv12 = texel_planes(ImageLayout{64, 32, fourcc::NV12, 0, {{0, 64, 4096}, {2048, 64, 4096}}});
    REQUIRE_MESSAGE(nv12, (nv12 ? "" : nv12.error().message()));
    REQUIRE(nv12->size() == 2);
    CHECK((*nv12)[0].fourcc == fourcc::R8);
    CHECK((*nv12)[1].fourcc == fourcc::GR88);
    CHECK((*nv12)[1].plane == 1);
    CHECK((*nv12)[1].width == 32);
    CHECK((*nv12)[1].height == 16);
    CHECK((*nv12)[1].offset == 2048);
    // Refusals: an odd width of a 4:2:x format, a tiled modifier, a format with no view, a plane
    // past its buffer.
    auto odd = texel_planes(ImageLayout{63, 32, fourcc::NV12, 0, {{0, 64, 4096}, {2048, 64, 4096}}});
    REQUIRE_FALSE(odd);
    CHECK(odd.error().message().find("63x32") != std::string::npos);
    auto tiled = texel_planes(ImageLayout{640, 480, fourcc::YUYV, 0x0100000000000001ull, {{0, 1280, 1280 * 480}}});
    REQUIRE_FALSE(tiled);
    CHECK(tiled.error().is(dmabridge::Errc::unsupported));
    CHECK_FALSE(texel_planes(ImageLayout{64, 64, fourcc::P010, 0, {{0, 128, 16384}, {8192, 128, 16384}}}));
    auto short_buffer = texel_planes(ImageLayout{640, 480, fourcc::YUYV, 0, {{0, 1280, 1280 * 479}}});
    REQUIRE_FALSE(short_buffer);
    CHECK(short_buffer.error().is(dmabridge::Errc::invalid_argument));
}
