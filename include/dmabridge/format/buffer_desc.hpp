// SPDX-License-Identifier: MIT
#pragma once
/// @file buffer_desc.hpp
/// BufferDesc: one image shared as dma-bufs. Every allocator returns one, every importer takes
/// one: width, height, DRM fourcc, modifier, and per plane the dma-buf, offset and stride.

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <dmabridge/base/result.hpp>
#include <dmabridge/format/fourcc.hpp>
#include <dmabridge/kernel/dmabuf.hpp>

namespace dmabridge {

/// One plane: which dma-buf holds it, where it starts, and the bytes from one row to the next.
/// Several planes may hold references to the same buffer (one dma-buf, several planes).
struct PlaneDesc {
    DmaBuf buffer;             ///< the dma-buf holding the plane (owned reference)
    std::uint64_t offset = 0;  ///< bytes from the start of `buffer`
    std::uint64_t stride = 0;  ///< bytes between rows (pitch)
};

/// The numbers of one plane, without the buffer: what validate_layout() checks.
struct PlaneLayout {
    std::uint64_t offset = 0;       ///< bytes from the start of the plane's buffer
    std::uint64_t stride = 0;       ///< bytes between rows
    std::uint64_t buffer_size = 0;  ///< size of the dma-buf (or planned buffer) holding the plane
};

/// An image's layout as numbers only: what a description claims before any import.
struct ImageLayout {
    std::uint32_t width = 0;                    ///< pixels
    std::uint32_t height = 0;                   ///< pixels
    std::uint32_t fourcc = 0;                   ///< a DRM fourcc
    std::uint64_t modifier = modifier::linear;  ///< a DRM format modifier
    std::vector<PlaneLayout> planes;            ///< one entry per plane, in plane order
};

/// Checks an image layout with overflow-safe 64-bit arithmetic:
/// - width and height non-zero; the fourcc known (Errc::unknown_format otherwise);
/// - the plane count equals the format's for linear and implicit modifiers (other modifiers
///   may add auxiliary planes, up to max_planes);
/// - offsets and strides fit in 32 bits (what DRM, V4L2 and Vulkan drivers accept);
/// - every colour plane's stride is at least its row size, and its last byte
///   (offset + stride x (rows - 1) + row size) lies inside its buffer;
/// - every auxiliary plane (a modifier's compression or metadata plane, whose size only the
///   modifier knows) has a non-zero stride and at least one row (offset + stride) inside its
///   buffer;
/// - with `plane_buffers` (one number per plane; planes with the same number share one dma-buf):
///   planes in one buffer do not overlap: no colour plane's bytes [offset, last byte] meet
///   another's, and no plane starts inside another plane's bytes or at another plane's offset.
///   Without it (the one-argument form) every plane is taken to have a buffer of its own.
/// Costs no syscall. The error (Errc::invalid_argument) names the plane and the numbers.
Status validate_layout(const ImageLayout& layout);
/// validate_layout() with the planes' buffers known: `plane_buffers[i]` numbers plane i's buffer
/// (its size must be at least the plane count, else Errc::invalid_argument).
Status validate_layout(const ImageLayout& layout, std::span<const std::uint32_t> plane_buffers);

/// A shared image. Owns its planes' dma-buf references. Move-only; `dup()` copies.
/// Thread safety: a plain value; const members may be called concurrently.
struct BufferDesc {
    std::uint32_t width = 0;                      ///< pixels
    std::uint32_t height = 0;                     ///< pixels
    std::uint32_t fourcc = 0;                     ///< a DRM fourcc (see fourcc.hpp)
    std::uint64_t modifier = modifier::linear;    ///< a DRM format modifier
    std::vector<PlaneDesc> planes;                ///< 1 to max_planes planes

    /// Checks that every plane has a dma-buf and that the layout fits them (validate_layout()
    /// with each plane's dma-buf size, planes of one dma-buf (same BufferId) must not overlap)
    /// before anything imports the description. Costs no syscall: buffer sizes and identities
    /// were read when the DmaBufs were made.
    Status validate() const;

    /// The check every operation on a description makes first: at least one plane and at most
    /// max_planes (else Errc::invalid_argument), and every plane holding a dma-buf (a plane whose
    /// DmaBuf was moved from or released: Errc::empty_object, naming the plane). `operation` starts the
    /// message. Costs no syscall. validate() checks this and the layout.
    Status check_planes(std::string_view operation) const;

    /// The description's numbers (each plane's buffer_size is its dma-buf's size).
    ImageLayout layout() const;

    /// A copy holding new references: one dup (one fd, one syscall) per plane, even for planes
    /// that share a dma-buf. Errors: the first plane's dup that fails (Errc::empty_object for a
    /// plane without a dma-buf, EMFILE...), named by plane.

    Result<BufferDesc> dup() const;

    /// The distinct dma-bufs of the planes, in plane order: planes that share one buffer (same
    /// BufferId, even through different fds: NV12 in one V4L2 buffer) appear once. The pointers
    /// point into `planes` and stay valid while the description is neither changed nor moved.
    /// Costs no syscall. What fences, imports and transports act on once per buffer.
    std::vector<const DmaBuf*> distinct_buffers() const;
    /// For each plane, the index of its dma-buf in distinct_buffers().
    std::vector<std::size_t> plane_buffer_indices() const;

    /// "640x480 XR24 LINEAR, plane 0: offset 0 stride 2560 (buffer 1228800 bytes)", for logs.
    std::string describe() const;
};

}  // namespace dmabridge
