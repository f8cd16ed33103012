// SPDX-License-Identifier: MIT
#pragma once
// Camera frame formats as the conversion shader (shaders/camera_to_rgba.comp) reads them, and
// the CPU reference of that conversion: tests compare the GPU's output with it byte for byte.

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include <dmabridge/base/result.hpp>
#include <dmabridge/format/buffer_desc.hpp>

namespace camera {

/// The formats the shader converts. The values are the shader's format codes.
enum class CameraFormat : std::uint32_t { yuyv = 0, uyvy = 1, nv12 = 2, xrgb8888 = 3 };

/// "YUYV", "UYVY", "NV12" or "XR24".
const char* to_string(CameraFormat f) noexcept;

/// Where a frame's bytes are, in the order of the shader's push constants (28 bytes). Plane 1 is
/// NV12's chroma; zero for the one-plane formats.
struct FrameLayout {
    CameraFormat format = CameraFormat::yuyv;
    std::uint32_t width = 0;
    std::uint32_t height = 0;
    std::uint32_t offset0 = 0;
    std::uint32_t stride0 = 0;
    std::uint32_t offset1 = 0;
    std::uint32_t stride1 = 0;
};
static_assert(sizeof(FrameLayout) == 28, "FrameLayout is the shader's push-constant block");

/// The layout of a frame of `layout.fourcc` (YUYV, UYVY, NV12 or XRGB8888, DRM codes, LINEAR),
/// after validate_layout(): every byte the shader reads lies inside its plane's buffer. The
/// width must be even for the 4:2:x formats, and the height too for NV12. Errors:
/// Errc::unsupported for other formats and modifiers, invalid_argument for bad numbers.
dmabridge::Result<FrameLayout> frame_layout(const dmabridge::ImageLayout& layout);

/// The same for a description (its dma-bufs' sizes are the buffer sizes).
dmabridge::Result<FrameLayout> frame_layout(const dmabridge::BufferDesc& desc);

/// BT.601 limited-range Y'CbCr to R'G'B' in 8.8 fixed point, as the shader computes it.
void yuv_to_rgb(std::uint8_t y, std::uint8_t u, std::uint8_t v, std::uint8_t rgb[3]) noexcept;

/// The CPU reference conversion: RGBA, width * height * 4 bytes. `plane0` and `plane1` are the
/// whole buffers the layout's offsets count from (the same span for one-buffer frames). The
/// caller has checked the layout against the spans' sizes (frame_layout()).
std::vector<std::uint8_t> convert_on_cpu(const FrameLayout& layout, std::span<const std::byte> plane0,
                                         std::span<const std::byte> plane1);

/// The YUYV picture shaders/draw_yuyv.comp draws for `frame`: bytes Y0 U Y1 V of the pixel pair
/// starting at column 2 * pair of row `row`.
std::array<std::uint8_t, 4> draw_yuyv_pair(std::uint32_t pair, std::uint32_t row, std::uint32_t frame) noexcept;

/// The push constants of shaders/draw_yuyv.comp.
struct DrawYuyv {
    std::uint32_t width = 0;
    std::uint32_t height = 0;
    std::uint32_t stride = 0;
    std::uint32_t frame = 0;
};

}  // namespace camera
