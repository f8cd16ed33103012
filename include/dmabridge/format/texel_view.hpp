// SPDX-License-Identifier: MIT
#pragma once
/// @file texel_view.hpp
/// Texel views: the planes of a YUV (or RGB) image reinterpreted as plain images of 8-bit
/// channels, so that a shader reads the bytes itself instead of relying on the driver's YUV
/// sampling (which GL and Vulkan drivers offer for few formats, modifiers and colour spaces).
/// A texel's channel i is byte i of the texel in memory: a YUYV pixel pair (Y0 U Y1 V) is one
/// ABGR8888 texel whose R, G, B, A are Y0, U, Y1, V; an NV12 chroma sample (U V) is one GR88
/// texel whose R, G are U, V.
///
///     | image                         | views (DRM fourcc, size in texels)                 |
///     | YUYV, UYVY (packed 4:2:2)     | ABGR8888, width/2 x height                          |
///     | NV12, NV21 (semi-planar 4:2:0)| R8, width x height; GR88, width/2 x height/2        |
///     | NV16 (semi-planar 4:2:2)      | R8, width x height; GR88, width/2 x height          |
///     | XRGB8888, ARGB8888, XBGR8888, ABGR8888 | ABGR8888, width x height                   |
///
/// Only LINEAR images can be reinterpreted: a tiled or compressed layout's bytes are not rows.

#include <cstdint>
#include <vector>

#include <dmabridge/base/result.hpp>
#include <dmabridge/format/buffer_desc.hpp>

namespace dmabridge {

/// One texel view as numbers: which plane of the image, and that plane as an image of its own.
struct TexelPlane {
    std::uint32_t plane = 0;            ///< the image's plane the view covers
    std::uint32_t fourcc = 0;           ///< ABGR8888, R8 or GR88
    std::uint32_t width = 0;            ///< in texels
    std::uint32_t height = 0;           ///< in texels (rows)
    std::uint32_t bytes_per_texel = 0;  ///< 4, 1 or 2
    std::uint64_t offset = 0;           ///< the plane's, unchanged
    std::uint64_t stride = 0;           ///< the plane's, unchanged
};

/// The texel views of `layout`, one per plane, per the table above. Costs no syscall.
/// Errors: Errc::unsupported for a format not in the table or a modifier other than LINEAR;
/// Errc::invalid_argument when the layout fails validate_layout(), or when its width (4:2:x) or
/// height (4:2:0) is odd, so that chroma texels would not cover whole pixel pairs.
Result<std::vector<TexelPlane>> texel_planes(const ImageLayout& layout);

/// `desc`'s texel views as descriptions of their own (LINEAR, one plane each), each holding a
/// new reference to its plane's dma-buf: what an importer (EGL, Vulkan) takes. The layout is
/// checked with desc.validate() first. Costs one dup() per view. Errors: texel_planes()'s,
/// validate()'s, dup()'s.
///
/// Where the library relies on the driver: the views of planes that share one dma-buf (NV12 in
/// one V4L2 buffer) are separate images of one buffer, so importing them on one device (two
/// EGLImages, two VkImages) imports that dma-buf twice. That is safe on drivers that keep one
/// buffer object per dma-buf and reference-count its imports (every Mesa driver does: a DRM fd
/// has one GEM handle per buffer and the winsys shares it), not on a driver that would free the
/// buffer object when the first import goes. A multi-plane import of the image itself (one
/// vulkan::Device::import_image, one EGLImage of all planes) imports each dma-buf once.
Result<std::vector<BufferDesc>> texel_views(const BufferDesc& desc);

}  // namespace dmabridge
