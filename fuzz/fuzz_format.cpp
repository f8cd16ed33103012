// SPDX-License-Identifier: MIT
// Fuzzes the format tables for every u32 fourcc and extent: find_format()/format_info(),
// row_bytes(), plane_rows(), linear_layout() with any alignments, fourcc_to_string(),
// modifier_to_string(), and the fourcc maps of the V4L2 and Vulkan adapters. The layout facts
// are checked against a table written here from drm_fourcc.h, independently of src/format/format.cpp,
// and every size is recomputed with 128-bit arithmetic.
//
// Input: u32 fourcc, u32 width, u32 height, u8 stride-alignment selector, u32 raw stride
// alignment, u8 plane-alignment selector, u32 raw plane alignment, u32 plane, u64 modifier,
// u32 V4L2 fourcc, u32 VkFormat (its low 31 bits). A selector below 0x80 picks the power of two 1 << (sel % 32),
// otherwise the raw value is used.

#include <dmabridge/format/buffer_desc.hpp>
#include <dmabridge/format/format.hpp>
#include <dmabridge/format/fourcc.hpp>
#include <dmabridge/v4l2/device.hpp>
#include <dmabridge/vulkan/format.hpp>

#include <array>
#include <iterator>

#include "fuzz_input.hpp"
#include "layout_oracle.hpp"

using namespace dmabridge;
using fuzz::u128;

namespace {

struct Expected {
    std::uint32_t fourcc;
    std::uint32_t planes;
    std::array<std::array<std::uint32_t, 4>, 3> plane;  // bytes per block, block width, hsub, vsub
};

// From drm_fourcc.h and the kernel's drm_format_info table. Packed 4:2:2 (YUYV, UYVY) is a
// 4-byte block of two pixels: an odd last pixel still takes a whole block.
constexpr Expected expected[] = {
    {fourcc::XRGB8888, 1, {{{4, 1, 1, 1}}}},    {fourcc::ARGB8888, 1, {{{4, 1, 1, 1}}}},
    {fourcc::XBGR8888, 1, {{{4, 1, 1, 1}}}},    {fourcc::ABGR8888, 1, {{{4, 1, 1, 1}}}},
    {fourcc::XRGB2101010, 1, {{{4, 1, 1, 1}}}}, {fourcc::ARGB2101010, 1, {{{4, 1, 1, 1}}}},
    {fourcc::XBGR2101010, 1, {{{4, 1, 1, 1}}}}, {fourcc::ABGR2101010, 1, {{{4, 1, 1, 1}}}},
    {fourcc::RGB888, 1, {{{3, 1, 1, 1}}}},      {fourcc::BGR888, 1, {{{3, 1, 1, 1}}}},
    {fourcc::RGB565, 1, {{{2, 1, 1, 1}}}},      {fourcc::R8, 1, {{{1, 1, 1, 1}}}},
    {fourcc::R16, 1, {{{2, 1, 1, 1}}}},         {fourcc::GR88, 1, {{{2, 1, 1, 1}}}},
    {fourcc::NV12, 2, {{{1, 1, 1, 1}, {2, 1, 2, 2}}}},
    {fourcc::NV21, 2, {{{1, 1, 1, 1}, {2, 1, 2, 2}}}},
    {fourcc::NV16, 2, {{{1, 1, 1, 1}, {2, 1, 2, 1}}}},
    {fourcc::P010, 2, {{{2, 1, 1, 1}, {4, 1, 2, 2}}}},
    {fourcc::YUYV, 1, {{{4, 2, 1, 1}}}},        {fourcc::UYVY, 1, {{{4, 2, 1, 1}}}},
    {fourcc::YUV420, 3, {{{1, 1, 1, 1}, {1, 1, 2, 2}, {1, 1, 2, 2}}}},
    {fourcc::YVU420, 3, {{{1, 1, 1, 1}, {1, 1, 2, 2}, {1, 1, 2, 2}}}},
};

const Expected* expected_for(std::uint32_t code) {
    for (const auto& e : expected)
        if (e.fourcc == code) return &e;
    return nullptr;
}

bool is_power_of_two(std::uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }
u128 align_up(u128 v, u128 a) { return (v + a - 1) / a * a; }

std::uint32_t alignment(fuzz::Input& in) {
    const auto sel = in.take<std::uint8_t>();
    const auto raw = in.take<std::uint32_t>();
    return sel < 0x80 ? 1u << (sel % 32) : raw;
}

void check_linear_layout(std::uint32_t code, std::uint32_t width, std::uint32_t height, std::uint32_t sa,
                         std::uint32_t pa) {
    const auto got = linear_layout(code, width, height, {sa, pa});
    const FormatInfo* info = find_format(code);
    if (!info) {
        FUZZ_CHECK(!got && got.error().is(Errc::unknown_format));
        return;
    }
    if (width == 0 || height == 0 || !is_power_of_two(sa) || !is_power_of_two(pa)) {
        FUZZ_CHECK(!got && got.error().is(Errc::invalid_argument));
        return;
    }
    // The layout recomputed without any possible overflow.
    std::array<u128, max_planes> offsets{}, strides{};
    u128 end = 0;
    bool fits = true;
    for (std::uint32_t p = 0; p < info->plane_count; ++p) {
        const auto& f = info->planes[p];
        const u128 row = fuzz::ceil_div(fuzz::ceil_div(width, f.hsub), f.block_width) * f.bytes_per_block;
        offsets[p] = align_up(end, pa);
        strides[p] = align_up(row, sa);
        end = offsets[p] + strides[p] * fuzz::ceil_div(height, f.vsub);
        if (offsets[p] > 0xffffffffu || strides[p] > 0xffffffffu || end > ~std::uint64_t{0}) fits = false;
        if (!fits) break;
    }
    FUZZ_CHECK(static_cast<bool>(got) == fits);
    if (!got) {
        FUZZ_CHECK(got.error().is(Errc::invalid_argument));
        return;
    }
    FUZZ_CHECK(got->plane_count == info->plane_count);
    for (std::uint32_t p = 0; p < got->plane_count; ++p) {
        FUZZ_CHECK(got->offsets[p] == offsets[p]);
        FUZZ_CHECK(got->strides[p] == strides[p]);
        FUZZ_CHECK(got->offsets[p] % pa == 0 && got->strides[p] % sa == 0);
    }
    FUZZ_CHECK(got->size == end);
    // What linear_layout() produces, validate_layout() accepts: the allocators rely on it.
    ImageLayout layout{width, height, code, modifier::linear, {}};
    for (std::uint32_t p = 0; p < got->plane_count; ++p) layout.planes.push_back({got->offsets[p], got->strides[p], got->size});
    const Status valid = validate_layout(layout);
    if (!valid) std::fprintf(stderr, "%s\n", valid.error().message().c_str());
    FUZZ_CHECK(valid);
    fuzz::check_accepted_layout_fits(layout);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    fuzz::Input in(data, size);
    const auto code = in.take<std::uint32_t>();
    const auto width = in.take<std::uint32_t>();
    const auto height = in.take<std::uint32_t>();
    const auto sa = alignment(in);
    const auto pa = alignment(in);
    const auto plane = in.take<std::uint32_t>();
    const auto mod = in.take<std::uint64_t>();
    const auto v4l2_code = in.take<std::uint32_t>();
    // VkFormat's values are 0 to VK_FORMAT_MAX_ENUM (0x7fffffff): others are no VkFormat at all.
    const auto vk = static_cast<VkFormat>(in.take<std::uint32_t>() & 0x7fffffffu);

    // The table: known fourccs match the independent table, unknown ones are refused alike.
    const FormatInfo* info = find_format(code);
    const Expected* want = expected_for(code);
    FUZZ_CHECK((info != nullptr) == (want != nullptr));
    const auto looked_up = format_info(code);
    FUZZ_CHECK(static_cast<bool>(looked_up) == (info != nullptr));
    if (!looked_up) FUZZ_CHECK(looked_up.error().is(Errc::unknown_format) && !looked_up.error().message().empty());
    if (info) {
        FUZZ_CHECK(*looked_up == info);
        FUZZ_CHECK(info->fourcc == code && !info->name.empty());
        FUZZ_CHECK(info->plane_count == want->planes && info->plane_count <= max_planes);
        for (std::uint32_t p = 0; p < max_planes; ++p) {
            const PlaneFormat& f = info->planes[p];
            if (p < info->plane_count) {
                const auto& w = want->plane[p];
                FUZZ_CHECK(f.bytes_per_block == w[0] && f.block_width == w[1] && f.hsub == w[2] && f.vsub == w[3]);
            } else {
                FUZZ_CHECK(f.bytes_per_block == 0);
            }
        }
        // row_bytes and plane_rows, for any plane index and extent.
        const auto row = info->row_bytes(plane, width);
        const auto rows = info->plane_rows(plane, height);
        if (plane >= info->plane_count) {
            FUZZ_CHECK(!row && rows == 0);
        } else {
            const auto& f = info->planes[plane];
            const u128 exact = fuzz::ceil_div(fuzz::ceil_div(width, f.hsub), f.block_width) * f.bytes_per_block;
            FUZZ_CHECK(row && u128{*row} == exact);
            FUZZ_CHECK(u128{rows} == fuzz::ceil_div(height, f.vsub));
        }
    } else {
        FUZZ_CHECK(vulkan::to_vk_format(code) == VK_FORMAT_UNDEFINED);
    }
    check_linear_layout(code, width, height, sa, pa);

    // Names: four printable characters or 0x%08x; modifiers never print empty.
    const std::string name = fourcc_to_string(code);
    if (name.size() == 4) {
        FUZZ_CHECK(fourcc_code(name[0], name[1], name[2], name[3]) == code);
    } else {
        FUZZ_CHECK(name.size() == 10 && name.compare(0, 2, "0x") == 0);
        FUZZ_CHECK(std::strtoul(name.c_str(), nullptr, 16) == code);
    }
    const std::string mod_name = modifier_to_string(mod);
    FUZZ_CHECK(!mod_name.empty());
    if (mod != modifier::linear && mod != modifier::invalid)
        FUZZ_CHECK(std::strtoull(mod_name.c_str(), nullptr, 16) == mod);

    // The adapters' maps lead only to fourccs that have a layout, and round-trip.
    const std::uint32_t from_v4l2 = v4l2::drm_fourcc_for(v4l2_code);
    if (from_v4l2 != 0) FUZZ_CHECK(find_format(from_v4l2) != nullptr);
    const VkFormat to_vk = vulkan::to_vk_format(code);
    if (to_vk != VK_FORMAT_UNDEFINED) {
        const std::uint32_t back = vulkan::to_fourcc(to_vk);
        FUZZ_CHECK(back != 0 && vulkan::to_vk_format(back) == to_vk);
        // The Vulkan format has the fourcc's planes.
        FUZZ_CHECK(find_format(back)->plane_count == info->plane_count);
    }
    const std::uint32_t from_vk = vulkan::to_fourcc(vk);
    if (from_vk != 0) FUZZ_CHECK(find_format(from_vk) != nullptr && vulkan::to_vk_format(from_vk) == vk);
    return 0;
}
