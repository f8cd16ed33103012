// SPDX-License-Identifier: MIT
#include "conversion.hpp"

#include <algorithm>
#include <limits>
#include <string>

#include <dmabridge/format/fourcc.hpp>

namespace camera {

using dmabridge::Errc;
using dmabridge::Error;

const char* to_string(CameraFormat f) noexcept {
    switch (f) {
    case CameraFormat::yuyv: return "YUYV";
    case CameraFormat::uyvy: return "UYVY";
    case CameraFormat::nv12: return "NV12";
    case CameraFormat::xrgb8888: return "XR24";
    }
    return "?";
}

dmabridge::Result<FrameLayout> frame_layout(const dmabridge::ImageLayout& layout) {
    FrameLayout f;
    std::size_t planes = 1;
    switch (layout.fourcc) {
    case dmabridge::fourcc::YUYV: f.format = CameraFormat::yuyv; break;
    case dmabridge::fourcc::UYVY: f.format = CameraFormat::uyvy; break;
    case dmabridge::fourcc::NV12: f.format = CameraFormat::nv12; planes = 2; break;
    case dmabridge::fourcc::XRGB8888: f.format = CameraFormat::xrgb8888; break;
    default:
        return Error::library(Errc::unsupported, "the conversion shader reads YUYV, UYVY, NV12 and XR24, not " +
                                                     dmabridge::fourcc_to_string(layout.fourcc));
    }
    if (layout.modifier != dmabridge::modifier::linear)
        return Error::library(Errc::unsupported, "the conversion shader reads LINEAR frames only");
    // Offsets, strides and sizes, inside each plane's buffer, checked without overflow.
    if (auto ok = dmabridge::validate_layout(layout); !ok) return ok.error().with_context("camera frame");
    if (layout.planes.size() != planes)
        return Error::library(Errc::invalid_argument, "camera frame: " + std::to_string(layout.planes.size()) +
                                                          " planes for " + to_string(f.format));
    if (f.format != CameraFormat::xrgb8888 && layout.width % 2 != 0)
        return Error::library(Errc::invalid_argument, "camera frame: odd width " + std::to_string(layout.width) +
                                                          " for a 4:2:x format");
    if (f.format == CameraFormat::nv12 && layout.height % 2 != 0)
        return Error::library(Errc::invalid_argument, "camera frame: odd height " + std::to_string(layout.height) +
                                                          " for NV12");
    // The shader computes byte addresses in 32 bits: the buffers must be addressable that way.
    for (const auto& p : layout.planes)
        if (p.buffer_size > std::numeric_limits<std::uint32_t>::max())
            return Error::library(Errc::invalid_argument,
                                  "camera frame: a " + std::to_string(p.buffer_size) + "-byte buffer is too large");
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

dmabridge::Result<FrameLayout> frame_layout(const dmabridge::BufferDesc& desc) {
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

std::vector<std::uint8_t> convert_on_cpu(const FrameLayout& f, std::span<const std::byte> plane0,
                                         std::span<const std::byte> plane1) {
    std::vector<std::uint8_t> out(std::size_t{f.width} * f.height * 4);
    const auto at0 = [&](std::size_t i) { return static_cast<std::uint8_t>(plane0[i]); };
    const auto at1 = [&](std::size_t i) { return static_cast<std::uint8_t>(plane1[i]); };
    for (std::uint32_t y = 0; y < f.height; ++y) {
        for (std::uint32_t x = 0; x < f.width; ++x) {
            std::uint8_t* px = &out[(std::size_t{y} * f.width + x) * 4];
            px[3] = 255;
            const std::size_t row0 = f.offset0 + std::size_t{y} * f.stride0;
            switch (f.format) {
            case CameraFormat::yuyv:
            case CameraFormat::uyvy: {
                const std::size_t pair = row0 + std::size_t{x & ~1u} * 2;
                const bool yuyv = f.format == CameraFormat::yuyv;
                yuv_to_rgb(at0(pair + (yuyv ? 0 : 1) + (x & 1u) * 2), at0(pair + (yuyv ? 1 : 0)),
                           at0(pair + (yuyv ? 3 : 2)), px);
                break;
            }
            case CameraFormat::nv12: {
                const std::size_t uv = f.offset1 + std::size_t{y / 2} * f.stride1 + (x & ~1u);
                yuv_to_rgb(at0(row0 + x), at1(uv), at1(uv + 1), px);
                break;
            }
            case CameraFormat::xrgb8888: {
                const std::size_t t = row0 + std::size_t{x} * 4;
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

std::array<std::uint8_t, 4> draw_yuyv_pair(std::uint32_t pair, std::uint32_t row, std::uint32_t frame) noexcept {
    return {static_cast<std::uint8_t>(16 + (pair * 2 + row + frame) % 220),
            static_cast<std::uint8_t>(16 + (pair * 3 + frame) % 225),
            static_cast<std::uint8_t>(16 + (pair * 2 + 1 + row + frame) % 220),
            static_cast<std::uint8_t>(16 + (row * 5 + frame) % 225)};
}

}  // namespace camera
