// SPDX-License-Identifier: MIT
#pragma once
/// @file egl/frame_converter.hpp
/// egl::FrameConverter: camera frames (YUYV, UYVY, NV12, XRGB8888) converted to RGBA by an
/// OpenGL ES 3.1 compute shader, with the same integer arithmetic as vulkan::FrameConverter and
/// the CPU reference (dmabridge::convert_to_rgba), so all three give identical bytes. One
/// invocation converts a pixel pair (a YUYV pair's one texel and one chroma sample are fetched
/// once for both pixels). camera::GlCameraPipeline is built on it.
///
/// The shader reads the frame's bytes through plain 8-bit textures, never through the driver's
/// YUV sampling: a YUYV or UYVY frame W pixels wide is read as RGBA8 texels W/2 wide (each texel
/// one pixel pair's four bytes), XRGB8888 as RGBA8 (bytes B G R X), NV12 as R8 luma plus RG8
/// chroma at half size: the library's texel views (dmabridge/format/texel_view.hpp), which a
/// zero-copy path imports into EGL (egl::ImportCache) and a copy path uploads (upload_and_convert).
///
/// Every member issues GL calls: the context must be current on the calling thread. A
/// moved-from converter holds no GL objects: convert(), upload_and_convert() and read_back() fail
/// with Errc::empty_object, target() gives 0.

#include <cstdint>
#include <span>
#include <vector>

#include <dmabridge/base/result.hpp>
#include <dmabridge/format/buffer_desc.hpp>
#include <dmabridge/format/frame_layout.hpp>
#include <dmabridge/format/texel_view.hpp>


namespace dmabridge::egl {

/// The program, one RGBA target per slot, and (for the copy path) upload textures. Move-only.
class FrameConverter {
public:
    /// A converter for frames of `frame`'s format, size and layout, with `slots` RGBA targets
    /// (one per frame in flight) and, with `uploads`, textures the copy path fills from host
    /// memory. Errors: `slots` outside 1..64 (Errc::invalid_argument), dmabridge::frame_layout()'s
    /// and texel_planes()'s, a context below OpenGL ES 3.1,
    /// shader compilation or linking (with the driver's log), an incomplete framebuffer, GL
    /// errors (named).
    static dmabridge::Result<FrameConverter> create(const dmabridge::ImageLayout& frame, std::uint32_t slots, bool uploads);
    FrameConverter(FrameConverter&&) noexcept;
    FrameConverter& operator=(FrameConverter&&) noexcept;
    FrameConverter(const FrameConverter&) = delete;
    FrameConverter& operator=(const FrameConverter&) = delete;
    /// Deletes the program, framebuffers and textures (the context must be current).
    ~FrameConverter();

    /// Converts the frame whose texel views are bound as `plane0` and `plane1` (GL_TEXTURE_2D
    /// names; plane1 is 0 for one-plane formats) into slot `slot`'s target: one compute dispatch
    /// and a memory barrier for what reads the target next. Queues the work only. Leaves the
    /// program, texture units 0 and 1 and image unit 0 unbound (0), whatever was bound before:
    /// nothing keeps an imported texture referenced between frames. Errors: a slot out of range
    /// (Errc::invalid_argument), GL errors (named).
    dmabridge::Status convert(std::uint32_t slot, unsigned int plane0, unsigned int plane1);

    /// Copy path: uploads the frame's bytes from host memory (`plane0`, `plane1`: the whole
    /// buffers the layout's offsets count from) into slot `slot`'s own textures and converts
    /// them. Returns the bytes uploaded.
    dmabridge::Result<std::uint64_t> upload_and_convert(std::uint32_t slot, std::span<const std::byte> plane0,
                                                     std::span<const std::byte> plane1);

    /// Reads slot `slot`'s converted frame into `rgba` (width * height * 4 bytes, top row first).
    /// Blocks until the slot's conversion completed.
    dmabridge::Status read_back(std::uint32_t slot, std::vector<std::uint8_t>& rgba) const;

    /// The RGBA texture of slot `slot` (what a renderer would sample next).
    unsigned int target(std::uint32_t slot) const noexcept;

private:
    FrameConverter() = default;
    void release() noexcept;

    dmabridge::FrameLayout layout_{};
    std::vector<dmabridge::TexelPlane> views_;
    unsigned int program_ = 0;
    std::vector<unsigned int> targets_;       // RGBA8 textures, one per slot
    std::vector<unsigned int> framebuffers_;  // one per slot
    std::vector<unsigned int> uploads_;       // copy path: views_.size() per slot
};

}  // namespace dmabridge::egl
