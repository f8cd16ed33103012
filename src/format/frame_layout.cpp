// SPDX-License-Identifier: MIT
#include <dmabridge/format/frame_layout.hpp>

#include <algorithm>
#include <limits>
#include <string>

#include <dmabridge/format/fourcc.hpp>

namespace dmabridge {

namespace {

// The last byte (exclusive) a conversion reads of a plane: offset + stride * (rows - 1) +
// row_bytes, in 64 bits (every factor is below 2^32, so nothing overflows).
std::uint64_t plane_end(std::uint32_t offset, std::uint32_t stride, std::uint32_t rows, std::uint64_t row_bytes) {
    return std::uint64_t{offset} + std::uint64_t{stride} * (rows - 1) + row_bytes;
}

Status check_plane(int plane, std::uint32_t offset, std::uint32_t stride, std::uint32_t rows, std::uint64_t row_bytes,
                   std::uint64_t size) {
    if (stride < row_bytes)
        return Error::library(Errc::invalid_argument, "plane " + std::to_string(plane) + ": stride " +
                                                          std::to_string(stride) + " < " + std::to_string(row_bytes) +
                                                          " bytes per row");
    const std::uint64_t end = plane_end(offset, stride, rows, row_bytes);
    if (end > size)
        return Error::library(Errc::invalid_argument,
                              "plane " + std::to_string(plane) + ": offset " + std::to_string(offset) + " + stride " +
                                  std::to_string(stride) + " x " + std::to_string(rows) + " rows = " +
                                  std::to_string(end) + " > " + std::to_string(size) + " bytes");
    return {};
}

}  // namespace

const char* to_string(FrameFormat format) noexcept {
    switch (format) {
    case FrameFormat::yuyv: return "YUYV";
    case FrameFormat::uyvy: return "UYVY";
    case FrameFormat::nv12: return "NV12";
    case FrameFormat::xrgb8888: return "XR24";
    }
    return "?";
}

Result<FrameLayout> frame_layout(const ImageLayout& layout) {
    FrameLayout f;
    std::size_t planes = 1;
    switch (layout.fourcc) {
    case fourcc::YUYV: f.format = FrameFormat::yuyv; break;
    case fourcc::UYVY: f.format = FrameFormat::uyvy; break;
    case fourcc::NV12:
        f.format = FrameFormat::nv12;
        planes = 2;
        break;
    case fourcc::XRGB8888: f.format = FrameFormat::xrgb8888; break;
    default:
        return Error::library(Errc::unsupported, "camera frame: the converters read YUYV, UYVY, NV12 and XR24, not " +
                                                     fourcc_to_string(layout.fourcc));
    }
    if (layout.modifier != modifier::linear)
        return Error::library(Errc::unsupported,
                              "camera frame: the converters read LINEAR frames only, not " +
                                  modifier_to_string(layout.modifier));
    // Offsets, strides and sizes, inside each plane's buffer, checked without overflow.
    if (auto ok = validate_layout(layout); !ok) return ok.error().with_context("camera frame");
    if (layout.planes.size() != planes)
        return Error::library(Errc::invalid_argument, "camera frame: " + std::to_string(layout.planes.size()) +
                                                          " planes for " + to_string(f.format));
    if (f.format != FrameFormat::xrgb8888 && layout.width % 2 != 0)
        return Error::library(Errc::invalid_argument, "camera frame: odd width " + std::to_string(layout.width) +
                                                          " for a 4:2:x format");
    if (f.format == FrameFormat::nv12 && layout.height % 2 != 0)
        return Error::library(Errc::invalid_argument,
                              "camera frame: odd height " + std::to_string(layout.height) + " for NV12");
    // The shader computes byte addresses in 32 bits: the buffers must be addressable that way.
    for (std::size_t i = 0; i < layout.planes.size(); ++i)
        if (layout.planes[i].buffer_size > std::numeric_limits<std::uint32_t>::max())
            return Error::library(Errc::invalid_argument, "camera frame: plane " + std::to_string(i) + "'s " +
                                                              std::to_string(layout.planes[i].buffer_size) +
                                                              "-byte buffer is too large");
    f.width = layout.width;
    f.height = layout.height;
    // validate_layout() checked that offsets and strides fit in 32 bits.
    f.offset0 = static_cast<std::uint32_t>(layout.planes[0].offset);
    f.stride0 = static_cast<std::uint32_t>(layout.planes[0].stride);
    if (planes == 2) {
        f.offset1 = static_cast<std::uint32_t>(layout.planes[1].offset);
        f.stride1 = static_cast<std::uint32_t>(layout.planes[1].stride);
    }
    return f;
}

Result<FrameLayout> frame_layout(const BufferDesc& desc) {
    if (auto ok = desc.validate(); !ok) return ok.error().with_context("camera frame");
    return frame_layout(desc.layout());
}

void yuv_to_rgb(std::uint8_t y, std::uint8_t u, std::uint8_t v, std::uint8_t rgb[3]) noexcept {
    const int c = y - 16;
    const int d = u - 128;
    const int e = v - 128;
    // >> of a negative int is arithmetic in C++20, as in GLSL.
    const int r = (298 * c + 409 * e + 128) >> 8;
    const int g = (298 * c - 100 * d - 208 * e + 128) >> 8;
    const int b = (298 * c + 516 * d + 128) >> 8;
    rgb[0] = static_cast<std::uint8_t>(std::clamp(r, 0, 255));
    rgb[1] = static_cast<std::uint8_t>(std::clamp(g, 0, 255));
    rgb[2] = static_cast<std::uint8_t>(std::clamp(b, 0, 255));
}

Status check_frame_fits(const FrameLayout& f, std::uint64_t plane0_size, std::uint64_t plane1_size) {
    if (f.width == 0 || f.height == 0)
        return Error::library(Errc::invalid_argument,
                              "empty frame " + std::to_string(f.width) + "x" + std::to_string(f.height));
    if (f.format > FrameFormat::xrgb8888)
        return Error::library(Errc::invalid_argument,
                              "format code " + std::to_string(static_cast<std::uint32_t>(f.format)));
    const bool packed = f.format == FrameFormat::yuyv || f.format == FrameFormat::uyvy;
    const std::uint64_t row0 = std::uint64_t{f.width} * (f.format == FrameFormat::nv12 ? 1 : packed ? 2 : 4);
    if (f.format != FrameFormat::xrgb8888 && f.width % 2 != 0)
        return Error::library(Errc::invalid_argument,
                              "odd width " + std::to_string(f.width) + " for " + to_string(f.format));
    if (auto ok = check_plane(0, f.offset0, f.stride0, f.height, row0, plane0_size); !ok) return ok;
    if (f.format == FrameFormat::nv12) {
        if (f.height % 2 != 0)
            return Error::library(Errc::invalid_argument, "odd height " + std::to_string(f.height) + " for NV12");
        if (auto ok = check_plane(1, f.offset1, f.stride1, f.height / 2, f.width, plane1_size); !ok) return ok;
    }
    return {};
}

Result<std::vector<std::uint8_t>> convert_to_rgba(const FrameLayout& f, std::span<const std::byte> plane0,
                                                  std::span<const std::byte> plane1) {
    // The layout is untrusted here (it may be hand-made): every row read must fit its span.
    if (auto ok = check_frame_fits(f, plane0.size(), plane1.size()); !ok)
        return ok.error().with_context("convert to RGBA");
    std::vector<std::uint8_t> out(std::size_t{f.width} * f.height * 4);
    const auto at0 = [&](std::size_t i) { return static_cast<std::uint8_t>(plane0[i]); };
    const auto at1 = [&](std::size_t i) { return static_cast<std::uint8_t>(plane1[i]); };
    for (std::uint32_t y = 0; y < f.height; ++y) {
        for (std::uint32_t x = 0; x < f.width; ++x) {
            std::uint8_t* px = &out[(std::size_t{y} * f.width + x) * 4];
            px[3] = 255;
            const std::size_t row = f.offset0 + std::size_t{y} * f.stride0;
            switch (f.format) {
            case FrameFormat::yuyv:
            case FrameFormat::uyvy: {
                const std::size_t pair = row + std::size_t{x & ~1u} * 2;
                const bool yuyv = f.format == FrameFormat::yuyv;
                yuv_to_rgb(at0(pair + (yuyv ? 0 : 1) + (x & 1u) * 2), at0(pair + (yuyv ? 1 : 0)),
                           at0(pair + (yuyv ? 3 : 2)), px);
                break;
            }
            case FrameFormat::nv12: {
                const std::size_t uv = f.offset1 + std::size_t{y / 2} * f.stride1 + (x & ~1u);
                yuv_to_rgb(at0(row + x), at1(uv), at1(uv + 1), px);
                break;
            }
            case FrameFormat::xrgb8888: {
                const std::size_t t = row + std::size_t{x} * 4;
                px[0] = at0(t + 2);
                px[1] = at0(t + 1);
                px[2] = at0(t);
                break;
            }
            }
        }
    }
    return out;
}

}  // namespace dmabridge
