// SPDX-License-Identifier: MIT
#pragma once
/// @file gbm_allocator.hpp
/// GbmAllocator: images from a DRM device through Mesa's GBM, exported as dma-bufs.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include <dmabridge/alloc/allocator.hpp>
#include <dmabridge/base/result.hpp>

namespace dmabridge {

/// Allocates images with libgbm on one DRM device. Not thread-safe (GBM devices are not).
///
/// Modifiers: with a modifier list, gbm_bo_create_with_modifiers2 picks one and the
/// description carries it. Drivers without modifier support ignore the list and answer
/// DRM_FORMAT_MOD_INVALID ("implicit", a layout only that driver knows). dmabridge never passes
/// that off as something else: when the list holds modifier::linear it allocates again with
/// GBM_BO_USE_LINEAR, whose layout is known to be linear (the description says
/// modifier::linear); when the list holds modifier::invalid, the implicit buffer is accepted
/// and the description says modifier::invalid; otherwise the allocation fails with
/// Errc::unsupported, naming the modifier GBM chose.
class GbmAllocator final : public Allocator {
public:
    /// Opens a DRM device node and a GBM device on it. An empty `node` picks the first DRM
    /// device that can allocate: its render node when buffers can be made there, else its
    /// primary node (drivers such as vgem allocate dumb buffers, which render nodes refuse).
    /// Every node is checked at open: a node that is not a DRM device (a regular file,
    /// /dev/null, a V4L2 node) fails with Errc::invalid_argument saying what it is; a DRM node
    /// where GBM cannot make a device or a 64x64 linear XRGB8888 buffer (vgem's render node)
    /// fails with Errc::unsupported and the driver's name. Costs an open, a version ioctl and
    /// one small test allocation per node tried.
    /// Errors: Errc::not_found when no DRM device exists; the errno of open; the above.
    static Result<GbmAllocator> open(std::string_view node = {});

    /// Moves: the GBM device and its node fd go with the new object; the moved-from allocator
    /// is empty (allocate() gives Errc::empty_object).
    GbmAllocator(GbmAllocator&&) noexcept;
    GbmAllocator& operator=(GbmAllocator&&) noexcept;
    /// Destroys the GBM device and closes the node. Images already allocated stay valid: their
    /// dma-bufs own the memory.
    ~GbmAllocator() override;

    /// Allocates an image (a GBM buffer object), exports every plane as a named dma-buf with its
    /// offset and stride, and releases the buffer object (the dma-bufs keep the memory).
    /// An image whose smallest possible (linear, unpadded) size exceeds the machine's memory
    /// (MemTotal) is refused before GBM sees it, with Errc::limit_exceeded. A failing
    /// DMA_BUF_SET_NAME is logged as a warning; the planes stay unnamed. Errors carry the
    /// request and GBM's errno. On a moved-from allocator: Errc::empty_object at once (backend_name() and
    /// node() then name no node).
    Result<BufferDesc> allocate(const ImageRequest& request) override;

    /// "gbm:<node>", e.g. "gbm:/dev/dri/renderD128"; "gbm:" on a moved-from allocator.
    std::string backend_name() const override;
    /// The DRM node buffers are allocated on, e.g. "/dev/dri/card0"; empty on a moved-from
    /// allocator.
    const std::string& node() const noexcept;
    /// GBM's backend name (gbm_device_get_backend_name), e.g. "drm"; empty on a moved-from
    /// allocator.

    std::string gbm_backend() const;

private:
    struct State;
    static Result<std::unique_ptr<State>> open_node(const std::string& node);
    explicit GbmAllocator(std::unique_ptr<State> state) noexcept;
    std::unique_ptr<State> state_;
};

}  // namespace dmabridge
