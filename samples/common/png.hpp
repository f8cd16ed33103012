// SPDX-License-Identifier: MIT
#pragma once
// A minimal PNG writer for 8-bit RGBA pictures, so the samples can show their frames without an
// image library. The pixels are stored uncompressed (deflate "stored" blocks): larger files, no
// dependency, and any PNG reader opens them.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include <dmabridge/result.hpp>

namespace sample {

/// Writes `rgba` (width * height * 4 bytes, rows top to bottom, no padding) to `path` as an
/// 8-bit RGBA PNG. Fails with invalid_argument when the sizes disagree, and with the errno of
/// the failing file operation.
dmabridge::Status write_png(const std::string& path, std::uint32_t width, std::uint32_t height,
                            std::span<const std::uint8_t> rgba);

/// The PNG file itself, as bytes (what write_png writes).
std::string encode_png(std::uint32_t width, std::uint32_t height, std::span<const std::uint8_t> rgba);

}  // namespace sample
