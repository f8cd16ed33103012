// SPDX-License-Identifier: MIT
#include <dmabridge/format/buffer_desc.hpp>
#include <dmabridge/format/format.hpp>

#include <cstdint>
#include <string>

#include <doctest/doctest.h>

using namespace dmabridge;

namespace {

ImageLayout xrgb(std::uint64_t stride, std::uint64_t size, std::uint64_t offset = 0) {
    return {640, 480, fourcc::XRGB8888, modifier::linear, {{offset, stride, size}}};
}

ImageLayout nv12(std::uint64_t size) {
    return {640, 480, fourcc::NV12, modifier::linear, {{0, 640, size}, {640 * 480, 640, size}}};
}

bool mentions(const Status& s, const std::string& text) {
    return !s && s.error().message().find(text) != std::string::npos;
}

}  // namespace

TEST_CASE("a layout that fits its buffer exactly is valid") {
    CHECK(validate_layout(xrgb(2560, 1228800)));
    CHECK(validate_layout(nv12(640 * 480 * 3 / 2)));
    // The last row needs only its row size, not a whole stride.
    CHECK(validate_layout(xrgb(4096, 4096 * 479 + 2560)));
}

TEST_CASE("one byte short of the last row is refused with the numbers") {
    auto s = validate_layout(xrgb(2560, 1228799));
    REQUIRE_FALSE(s);
    CHECK(s.error().is(Errc::invalid_argument));
    CHECK(mentions(s, "plane 0"));
    CHECK(mentions(s, "1228800 > buffer size 1228799"));
    CHECK(mentions(validate_layout(nv12(640 * 480 * 3 / 2 - 1)), "plane 1"));
}

TEST_CASE("a stride smaller than a row is refused") {
    auto s = validate_layout(xrgb(2556, 1 << 24));
    CHECK(mentions(s, "stride 2556 < row size 2560"));
}

TEST_CASE("offsets and strides that would wrap are refused") {
    // offset + stride x rows wraps 64 bits if computed naively.
    CHECK(mentions(validate_layout(xrgb(0xffffffffu, 1 << 20)), "buffer size"));
    CHECK(mentions(validate_layout(xrgb(0x100000000ull, UINT64_MAX)), "does not fit in 32 bits"));
    CHECK(mentions(validate_layout(xrgb(2560, UINT64_MAX, 0x100000000ull)), "does not fit in 32 bits"));
    CHECK(mentions(validate_layout(xrgb(2560, 1228800, 0xffffff00u)), "offset"));
    // A 32-bit product would wrap: 0xffffffff x 0xffffffff must not look small.
    ImageLayout tall{0xffffffffu / 4, 0xffffffffu, fourcc::XRGB8888, modifier::linear, {{0, 0xfffffffcu, UINT64_MAX}}};
    CHECK(validate_layout(tall));  // fits 64 bits exactly, so only size matters
    tall.planes[0].buffer_size = 1ull << 40;
    CHECK(mentions(validate_layout(tall), "buffer size"));
}

TEST_CASE("plane counts must match the format") {
    auto one = nv12(1 << 20);
    one.planes.pop_back();
    CHECK(mentions(validate_layout(one), "1 planes, the format has 2"));
    auto three = nv12(1 << 20);
    three.planes.push_back({0, 640, 1 << 20});
    CHECK(mentions(validate_layout(three), "3 planes, the format has 2"));
    ImageLayout none{640, 480, fourcc::XRGB8888, modifier::linear, {}};
    CHECK(mentions(validate_layout(none), "no planes"));
    CHECK(validate_layout(none).error().is(Errc::empty_object));
    // A vendor modifier may add auxiliary planes, but never more than four.
    auto aux = xrgb(2560, 1 << 22);
    aux.modifier = 0x0100000000000002ull;
    aux.planes.push_back({1 << 21, 64, 1 << 22});
    CHECK(validate_layout(aux));
    for (int i = 0; i < 3; ++i) aux.planes.push_back({0, 64, 1 << 22});
    CHECK(mentions(validate_layout(aux), "5 planes"));
}

TEST_CASE("unknown fourccs and empty extents are refused") {
    ImageLayout l = xrgb(2560, 1228800);
    l.fourcc = fourcc_code('Q', 'Q', 'Q', 'Q');
    auto s = validate_layout(l);
    REQUIRE_FALSE(s);
    CHECK(s.error().is(Errc::unknown_format));
    CHECK(mentions(s, "QQQQ"));
    l = xrgb(2560, 1228800);
    l.width = 0;
    CHECK(mentions(validate_layout(l), "extent is empty"));
    l = xrgb(2560, 1228800);
    l.height = 0;
    CHECK(mentions(validate_layout(l), "extent is empty"));
}

TEST_CASE("planes that overlap in one buffer are refused, naming both planes and the bytes") {
    const std::uint32_t shared[] = {0, 0};
    const std::uint32_t separate[] = {0, 1};
    const std::uint64_t size = 640 * 480 * 2;
    // NV12 with its chroma starting inside the luma plane.
    ImageLayout l{640, 480, fourcc::NV12, modifier::linear, {{0, 640, size}, {640 * 479, 640, size}}};
    auto s = validate_layout(l, shared);
    REQUIRE_FALSE(s);
    CHECK(s.error().is(Errc::invalid_argument));
    CHECK(mentions(s, "planes 0 and 1 overlap in buffer 0"));
    CHECK(mentions(s, "plane 0 uses bytes 0 to 307199, plane 1 bytes 306560 to"));
    // The same numbers in two buffers are fine, and so is chroma right after luma.
    CHECK(validate_layout(l, separate));
    l.planes[1].offset = 640 * 480;
    CHECK(validate_layout(l, shared));
    // Both planes at the same offset.
    l.planes[1].offset = 0;
    CHECK(mentions(validate_layout(l, shared), "overlap"));
    // Fewer buffer numbers than planes is a caller's error, not a pass.
    CHECK(mentions(validate_layout(l, std::span<const std::uint32_t>(shared, 1)), "1 buffer numbers for 2 planes"));
}

TEST_CASE("auxiliary planes of a modifier need a stride, a row inside the buffer and a place of their own") {
    const std::uint64_t tiled = 0x0100000000000002ull;
    const std::uint32_t shared[] = {0, 0};
    ImageLayout l{640, 480, fourcc::XRGB8888, tiled, {{0, 2560, 1 << 22}, {1 << 21, 64, 1 << 22}}};
    CHECK(validate_layout(l, shared));
    l.planes[1].stride = 0;
    CHECK(mentions(validate_layout(l), "plane 1 (auxiliary): stride 0"));
    l.planes[1] = {(1 << 22) - 32, 64, 1 << 22};
    CHECK(mentions(validate_layout(l), "(auxiliary): offset 4194272 + stride 64 = 4194336 > buffer size 4194304"));
    // An auxiliary plane starting inside the colour plane of its buffer.
    l.planes[1] = {4096, 64, 1 << 22};
    CHECK(mentions(validate_layout(l, shared), "planes 0 and 1 overlap"));
    CHECK(validate_layout(l));  // in a buffer of its own it is fine
}
