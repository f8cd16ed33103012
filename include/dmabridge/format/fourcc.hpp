// SPDX-License-Identifier: MIT
#pragma once
/// @file fourcc.hpp
/// DRM format codes (fourccs) and format modifiers, with the values of the kernel's
/// drm_fourcc.h, so that users need not include libdrm to name a format.
///
/// A DRM fourcc names the bytes of a little-endian word from its most significant end:
/// XRGB8888 is B, G, R, X in memory order (Vulkan's B8G8R8A8), XBGR8888 is R, G, B, X.

#include <cstdint>
#include <string>

namespace dmabridge {

/// Builds a fourcc from its four characters, as drm_fourcc.h's fourcc_code().
constexpr std::uint32_t fourcc_code(char a, char b, char c, char d) noexcept {
    return static_cast<std::uint32_t>(static_cast<unsigned char>(a)) |
           static_cast<std::uint32_t>(static_cast<unsigned char>(b)) << 8 |
           static_cast<std::uint32_t>(static_cast<unsigned char>(c)) << 16 |
           static_cast<std::uint32_t>(static_cast<unsigned char>(d)) << 24;
}

/// Common DRM fourccs (values as in drm_fourcc.h). Each constant is DRM_FORMAT_<name>; the
/// comment gives the memory order of a little-endian word (or the planes), first byte first.
namespace fourcc {
inline constexpr std::uint32_t XRGB8888 = fourcc_code('X', 'R', '2', '4');  ///< 32 bpp B, G, R, X
inline constexpr std::uint32_t ARGB8888 = fourcc_code('A', 'R', '2', '4');  ///< 32 bpp B, G, R, A
inline constexpr std::uint32_t XBGR8888 = fourcc_code('X', 'B', '2', '4');  ///< 32 bpp R, G, B, X
inline constexpr std::uint32_t ABGR8888 = fourcc_code('A', 'B', '2', '4');  ///< 32 bpp R, G, B, A
/// 32 bpp word [31:0] x:R:G:B 2:10:10:10
inline constexpr std::uint32_t XRGB2101010 = fourcc_code('X', 'R', '3', '0');
/// 32 bpp word [31:0] A:R:G:B 2:10:10:10
inline constexpr std::uint32_t ARGB2101010 = fourcc_code('A', 'R', '3', '0');
/// 32 bpp word [31:0] x:B:G:R 2:10:10:10
inline constexpr std::uint32_t XBGR2101010 = fourcc_code('X', 'B', '3', '0');
/// 32 bpp word [31:0] A:B:G:R 2:10:10:10
inline constexpr std::uint32_t ABGR2101010 = fourcc_code('A', 'B', '3', '0');
inline constexpr std::uint32_t RGB888 = fourcc_code('R', 'G', '2', '4');    ///< 24 bpp B, G, R
inline constexpr std::uint32_t BGR888 = fourcc_code('B', 'G', '2', '4');    ///< 24 bpp R, G, B
inline constexpr std::uint32_t RGB565 = fourcc_code('R', 'G', '1', '6');    ///< 16 bpp word R:G:B 5:6:5
inline constexpr std::uint32_t R8 = fourcc_code('R', '8', ' ', ' ');        ///< one 8-bit channel
inline constexpr std::uint32_t R16 = fourcc_code('R', '1', '6', ' ');       ///< one 16-bit channel
inline constexpr std::uint32_t GR88 = fourcc_code('G', 'R', '8', '8');      ///< 16 bpp R, G
/// 2 planes: Y, then interleaved Cb, Cr at half width and half height
inline constexpr std::uint32_t NV12 = fourcc_code('N', 'V', '1', '2');
/// 2 planes: Y, then interleaved Cr, Cb at half width and half height
inline constexpr std::uint32_t NV21 = fourcc_code('N', 'V', '2', '1');
/// 2 planes: Y, then interleaved Cb, Cr at half width and full height
inline constexpr std::uint32_t NV16 = fourcc_code('N', 'V', '1', '6');
/// 2 planes like NV12 with 16-bit samples (10 bits used, in the high bits)
inline constexpr std::uint32_t P010 = fourcc_code('P', '0', '1', '0');
inline constexpr std::uint32_t YUYV = fourcc_code('Y', 'U', 'Y', 'V');  ///< packed 4:2:2 Y0, Cb, Y1, Cr
inline constexpr std::uint32_t UYVY = fourcc_code('U', 'Y', 'V', 'Y');  ///< packed 4:2:2 Cb, Y0, Cr, Y1
/// 3 planes: Y, then Cb, then Cr, each chroma plane at half width and half height
inline constexpr std::uint32_t YUV420 = fourcc_code('Y', 'U', '1', '2');
/// 3 planes: Y, then Cr, then Cb, each chroma plane at half width and half height
inline constexpr std::uint32_t YVU420 = fourcc_code('Y', 'V', '1', '2');
}  // namespace fourcc


/// Format modifiers (values as in drm_fourcc.h).
namespace modifier {
/// Plain row-major layout, the one every device understands.
inline constexpr std::uint64_t linear = 0;
/// "No explicit modifier": the layout is known only to the driver that allocated the buffer.
/// Only safe to treat as linear when the exporter guarantees it.
inline constexpr std::uint64_t invalid = 0x00ffffffffffffffull;
}  // namespace modifier

/// The fourcc as text: "XR24" for printable codes, "0x12345678" otherwise.
std::string fourcc_to_string(std::uint32_t code);

/// The modifier as text: "LINEAR", "INVALID (implicit)" or "0x0100000000000001".
std::string modifier_to_string(std::uint64_t mod);

}  // namespace dmabridge
