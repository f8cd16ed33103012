// SPDX-License-Identifier: MIT
#pragma once
// The picture shaders/draw_yuyv.comp draws into a V4L2 output buffer, so that a test can check
// the bytes that came back through the capture side.

#include <array>
#include <cstdint>

namespace dmabridge::test {

/// The YUYV bytes Y0 U Y1 V draw_yuyv.comp writes for `frame` at the pixel pair starting at
/// column 2 * pair of row `row`.
inline std::array<std::uint8_t, 4> draw_yuyv_pair(std::uint32_t pair, std::uint32_t row, std::uint32_t frame) noexcept {
    return {static_cast<std::uint8_t>(16 + (pair * 2 + row + frame) % 220),
            static_cast<std::uint8_t>(16 + (pair * 3 + frame) % 225),
            static_cast<std::uint8_t>(16 + (pair * 2 + 1 + row + frame) % 220),
            static_cast<std::uint8_t>(16 + (row * 5 + frame) % 225)};
}

/// The push constants of draw_yuyv.comp.
struct DrawYuyv {
    std::uint32_t width = 0;
    std::uint32_t height = 0;
    std::uint32_t stride = 0;
    std::uint32_t frame = 0;
};

}  // namespace dmabridge::test
