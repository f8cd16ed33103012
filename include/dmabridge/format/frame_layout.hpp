// SPDX-License-Identifier: MIT
#pragma once
/// @file frame_layout.hpp
/// Camera frames as a converter to RGBA reads them: the formats cameras deliver (YUYV, UYVY,
/// NV12 with its planes in one or two dma-bufs, XRGB8888), their layout reduced to the numbers
/// a conversion shader takes, checked once against the buffers so that no read can leave them,
/// and the conversion itself on the CPU (BT.601 limited range, 8.8 fixed point), byte for byte
/// what the library's GPU converters compute.
///
///     auto layout = dmabridge::frame_layout(frame.desc);   // validated: fits every buffer
///     if (!layout) return layout.error();                  // names the plane and the numbers
///     auto rgba = dmabridge::convert_to_rgba(*layout, map0.bytes(), map1.bytes());

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include <dmabridge/base/result.hpp>
#include <dmabridge/format/buffer_desc.hpp>

namespace dmabridge {

/// The camera formats the converters read. The values are the conversion shader's format codes
/// (shaders/camera_to_rgba.comp) and stay stable.
enum class FrameFormat : std::uint32_t { yuyv = 0, uyvy = 1, nv12 = 2, xrgb8888 = 3 };

/// "YUYV", "UYVY", "NV12" or "XR24" (the DRM fourcc's characters).
const char* to_string(FrameFormat format) noexcept;

/// Where a frame's bytes are, in the order of the conversion shader's push constants (28
/// bytes). Plane 1 is NV12's chroma (zero for the one-plane formats); its offset counts from the
/// start of the buffer holding plane 1, which is plane 0's buffer when one dma-buf holds both.
/// Obtain it from frame_layout(), which proves that every byte a conversion reads lies inside
/// its plane's buffer; a hand-made FrameLayout carries no such proof.
struct FrameLayout {
    FrameFormat format = FrameFormat::yuyv;
    std::uint32_t width = 0;    ///< in pixels
    std::uint32_t height = 0;   ///< in rows
    std::uint32_t offset0 = 0;  ///< bytes from the start of plane 0's buffer
    std::uint32_t stride0 = 0;  ///< bytes per row of plane 0
    std::uint32_t offset1 = 0;  ///< bytes from the start of plane 1's buffer (NV12)
    std::uint32_t stride1 = 0;  ///< bytes per row of plane 1 (NV12)
};
static_assert(sizeof(FrameLayout) == 28, "FrameLayout is the conversion shader's push-constant block");

/// The frame layout of `layout` (YUYV, UYVY, NV12 or XRGB8888; LINEAR), after
/// validate_layout(): offsets, strides and rows inside each plane's buffer_size, checked without
/// overflow. Costs no syscall. Errors: Errc::unsupported for another fourcc or a modifier other
/// than LINEAR; Errc::invalid_argument for validate_layout()'s failures (naming the plane and
/// its numbers), a plane count that does not match the format, an odd width (4:2:x) or height
/// (NV12), or a buffer larger than 4 GiB - 1 (the shader addresses bytes in 32 bits).
Result<FrameLayout> frame_layout(const ImageLayout& layout);

/// The same for a description: desc.validate() first, so its dma-bufs' sizes are the buffer
/// sizes. Costs no syscall. Errors: validate()'s, then the above.
Result<FrameLayout> frame_layout(const BufferDesc& desc);

/// Checks that every byte a conversion of `layout` reads lies inside buffers of `plane0_size`
/// and `plane1_size` bytes (pass plane 0's size twice when one buffer holds both planes; plane 1
/// is ignored for one-plane formats), without overflow. For layouts that come from elsewhere (a
/// hand-made FrameLayout, one checked against other buffers). Costs no syscall.
/// Errors: Errc::invalid_argument naming the plane and its numbers ("plane 1: offset 4096 +
/// stride 640 x 240 rows = 157696 > 150000 bytes"), an empty frame, an unknown format code, an
/// odd width (4:2:x) or an odd height (NV12).
Status check_frame_fits(const FrameLayout& layout, std::uint64_t plane0_size, std::uint64_t plane1_size);

/// BT.601 limited-range Y'CbCr to R'G'B' in 8.8 fixed point, as the converters compute it.
void yuv_to_rgb(std::uint8_t y, std::uint8_t u, std::uint8_t v, std::uint8_t rgb[3]) noexcept;

/// Converts a frame to RGBA on the CPU (R, G, B, A = 255 bytes; width * height * 4 bytes, rows
/// packed): for snapshots, for a CPU fallback, and as the reference the GPU converters are
/// tested against. `plane0` and `plane1` are the whole buffers the layout's offsets count from
/// (pass plane0 twice when one buffer holds both planes; plane1 is ignored for one-plane
/// formats). Costs one allocation and a pass over the pixels, no syscall.
/// Errors: Errc::invalid_argument when a row the layout reads does not fit its span ("plane 1:
/// offset 4096 + stride 640 x 240 rows = 157696 > 150000 bytes"), or width or height is zero.
Result<std::vector<std::uint8_t>> convert_to_rgba(const FrameLayout& layout, std::span<const std::byte> plane0,
                                                  std::span<const std::byte> plane1);

}  // namespace dmabridge
