// SPDX-License-Identifier: MIT
#pragma once
/// @file format.hpp
/// The layout of DRM formats: planes, bytes per block, chroma subsampling; and the linear
/// layout dmabridge's own allocators use. All arithmetic here is overflow-checked.

#include <array>
#include <cstdint>
#include <optional>
#include <string_view>

#include <dmabridge/base/result.hpp>

namespace dmabridge {

/// The largest plane count of any DRM format or modifier (as in the kernel and wlroots).
inline constexpr std::uint32_t max_planes = 4;

/// How one plane of a format samples the image.
struct PlaneFormat {
    std::uint32_t bytes_per_block = 0;  ///< bytes of one block of this plane
    std::uint32_t block_width = 1;      ///< pixels (in this plane's own resolution) per block
    std::uint32_t hsub = 1;             ///< horizontal subsampling against the image width
    std::uint32_t vsub = 1;             ///< vertical subsampling against the image height
};

/// The layout description of one DRM fourcc.
struct FormatInfo {
    std::uint32_t fourcc = 0;         ///< the DRM fourcc described
    std::string_view name;            ///< the drm_fourcc.h name without DRM_FORMAT_, e.g. "NV12"
    std::uint32_t plane_count = 0;    ///< colour planes (a modifier may add more planes)
    std::array<PlaneFormat, max_planes> planes{};  ///< the first plane_count entries are used
    bool has_alpha = false;           ///< the format carries an alpha channel (ARGB8888, not XRGB8888)
    bool is_yuv = false;              ///< the format is Y'CbCr (NV12, YUYV, ...), not RGB

    /// Bytes of one row of `plane` for an image `width` pixels wide (unpadded): the plane's
    /// samples (width / hsub, rounded up) in whole blocks, times bytes_per_block.
    /// Returns nothing when it does not fit in 64 bits or the plane does not exist.
    std::optional<std::uint64_t> row_bytes(std::uint32_t plane, std::uint32_t width) const noexcept;
    /// Rows of `plane` for an image `height` pixels high (height / vsub, rounded up); 0 for a
    /// plane the format does not have.
    std::uint32_t plane_rows(std::uint32_t plane, std::uint32_t height) const noexcept;
};

/// The layout of `fourcc`, or nullptr for a fourcc dmabridge does not know.
const FormatInfo* find_format(std::uint32_t fourcc) noexcept;

/// The layout of `fourcc`, or Errc::unknown_format naming the fourcc.
Result<const FormatInfo*> format_info(std::uint32_t fourcc);

/// Options for linear_layout(). The defaults suit GPUs, V4L2 and display controllers alike.
struct LinearLayoutOptions {
    std::uint32_t stride_alignment = 256;  ///< each stride is a multiple of this (a power of two)
    std::uint32_t plane_alignment = 256;   ///< each plane offset is a multiple of this
};

/// Where each plane of a linear image lives inside one buffer.
struct LinearLayout {
    std::uint32_t plane_count = 0;                    ///< the format's plane count
    std::array<std::uint64_t, max_planes> offsets{};  ///< bytes from the buffer's start, per plane
    std::array<std::uint64_t, max_planes> strides{};  ///< bytes between rows, per plane

    std::uint64_t size = 0;  ///< bytes needed for all planes (not page-rounded)
};

/// The linear layout of a `width` x `height` image of `fourcc` in a single buffer: planes one
/// after the other, strides and offsets aligned as asked. Errors: an unknown fourcc
/// (Errc::unknown_format); a zero extent, an alignment that is not a power of two, a size that
/// overflows 64 bits, or a stride or plane offset above 32 bits (Errc::invalid_argument).

Result<LinearLayout> linear_layout(std::uint32_t fourcc, std::uint32_t width,
                                   std::uint32_t height, const LinearLayoutOptions& options = {});

}  // namespace dmabridge
