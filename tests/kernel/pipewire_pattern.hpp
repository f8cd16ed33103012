// SPDX-License-Identifier: MIT
#pragma once
// The picture the pipewire tests send: XRGB8888 (B, G, R, X in memory) where every pixel depends
// on its position and on the frame number, and pixel (0, 0)'s red byte is the frame number (mod
// 256), so that a reader can tell which frame it holds and check every other pixel against it.

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace dmabridge::test {

inline std::uint32_t pattern_pixel(std::uint32_t x, std::uint32_t y, std::uint32_t frame) {
    const std::uint32_t b = x == 0 && y == 0 ? 0x5a : (x * 3 + frame) & 0xff;
    const std::uint32_t g = (y * 5 + frame * 7) & 0xff;
    const std::uint32_t r = frame & 0xff;
    return 0xff000000u | r << 16 | g << 8 | b;
}

/// Writes frame `frame` into `base` (rows `stride` bytes apart).
inline void fill_pattern(std::byte* base, std::size_t stride, std::uint32_t width, std::uint32_t height,
                         std::uint32_t frame) {
    for (std::uint32_t y = 0; y < height; ++y)
        for (std::uint32_t x = 0; x < width; ++x) {
            const std::uint32_t v = pattern_pixel(x, y, frame);
            std::memcpy(base + y * stride + x * 4, &v, 4);
        }
}

/// The frame number a picture claims (pixel (0, 0)'s red byte), and how many of its pixels differ
/// from that frame's pattern (the X byte is not compared: converters may set it).
struct PatternCheck {
    std::uint32_t frame = 0;
    std::size_t wrong = 0;
};
inline PatternCheck check_pattern(const std::byte* base, std::size_t stride, std::uint32_t width, std::uint32_t height) {
    PatternCheck c;
    c.frame = static_cast<std::uint32_t>(base[2]);
    for (std::uint32_t y = 0; y < height; ++y)
        for (std::uint32_t x = 0; x < width; ++x) {
            std::uint32_t v = 0;
            std::memcpy(&v, base + y * stride + x * 4, 4);
            if ((v & 0xffffff) != (pattern_pixel(x, y, c.frame) & 0xffffff)) ++c.wrong;
        }
    return c;
}

}  // namespace dmabridge::test
