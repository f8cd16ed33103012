// SPDX-License-Identifier: MIT
#pragma once
// An independent check of what validate_layout() promises when it accepts a layout, computed
// with 128-bit arithmetic that cannot overflow for 32- and 64-bit inputs: every colour plane's
// rows lie inside its buffer. Shared by the description and the V4L2 format targets.

#include <dmabridge/format/buffer_desc.hpp>
#include <dmabridge/format/format.hpp>

#include "fuzz_input.hpp"

namespace fuzz {

using u128 = unsigned __int128;

inline u128 ceil_div(u128 a, u128 b) { return (a + b - 1) / b; }

/// Aborts unless an accepted `layout` really fits its buffers.
inline void check_accepted_layout_fits(const dmabridge::ImageLayout& layout) {
    using namespace dmabridge;
    FUZZ_CHECK(layout.width > 0 && layout.height > 0);
    const FormatInfo* info = find_format(layout.fourcc);
    FUZZ_CHECK(info != nullptr);
    const std::size_t count = layout.planes.size();
    const bool plain = layout.modifier == modifier::linear || layout.modifier == modifier::invalid;
    if (plain) FUZZ_CHECK(count == info->plane_count);
    FUZZ_CHECK(count >= info->plane_count && count <= max_planes);
    for (std::size_t i = 0; i < count; ++i) {
        const PlaneLayout& p = layout.planes[i];
        FUZZ_CHECK(p.offset <= 0xffffffffu && p.stride <= 0xffffffffu);
        FUZZ_CHECK(p.offset < p.buffer_size);
        if (i >= info->plane_count) continue;
        const PlaneFormat& f = info->planes[i];
        FUZZ_CHECK(f.bytes_per_block > 0 && f.block_width > 0 && f.hsub > 0 && f.vsub > 0);
        const u128 row = ceil_div(ceil_div(layout.width, f.hsub), f.block_width) * f.bytes_per_block;
        const u128 rows = ceil_div(layout.height, f.vsub);
        FUZZ_CHECK(rows > 0);
        FUZZ_CHECK(u128{p.stride} >= row);
        const u128 end = u128{p.offset} + u128{p.stride} * (rows - 1) + row;
        FUZZ_CHECK(end <= u128{p.buffer_size});
    }
}

}  // namespace fuzz
