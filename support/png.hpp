// SPDX-License-Identifier: MIT
#pragma once
// PNG files for the samples' and tests' frames, through libpng's simplified API (png_image): compressed
// 8-bit RGBA, and a reader that tests use to check what a sample or a compositor wrote.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <dmabridge/base/result.hpp>

namespace support {

/// Writes `rgba` (width * height * 4 bytes, rows top to bottom, no padding) to `path` as an
/// 8-bit RGBA PNG. Fails with invalid_argument when the sizes disagree, and with libpng's message
/// (which names the file operation that failed) otherwise.
dmabridge::Status write_png(const std::string& path, std::uint32_t width, std::uint32_t height,
                            std::span<const std::uint8_t> rgba);

/// The PNG file itself, as bytes (what write_png writes). Same errors as write_png.
dmabridge::Result<std::string> encode_png(std::uint32_t width, std::uint32_t height,
                                          std::span<const std::uint8_t> rgba);

/// A decoded picture: 8-bit RGBA, rows top to bottom, no padding.
struct Picture {
    std::uint32_t width = 0;
    std::uint32_t height = 0;
    std::vector<std::uint8_t> rgba;
};

/// Decodes a PNG of any colour type and depth into 8-bit RGBA. Fails with invalid_argument and
/// libpng's message for what is not a PNG or is damaged; refuses pictures over 16384x16384.
dmabridge::Result<Picture> decode_png(std::span<const std::uint8_t> png);

/// Reads and decodes the PNG file at `path` (decode_png's errors, and the errno of the read).
dmabridge::Result<Picture> read_png(const std::string& path);

}  // namespace support
