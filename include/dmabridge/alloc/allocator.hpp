// SPDX-License-Identifier: MIT
#pragma once
/// @file allocator.hpp
/// The interface every exporter that allocates images implements: udmabuf, dma-heaps and GBM
/// here; Vulkan and V4L2 in their adapters.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <dmabridge/base/result.hpp>
#include <dmabridge/format/buffer_desc.hpp>
#include <dmabridge/format/format.hpp>
#include <dmabridge/kernel/dmabuf.hpp>

namespace dmabridge {

/// What to allocate. The zero value of the optional fields is a sane default.
struct ImageRequest {
    std::uint32_t width = 0;   ///< pixels; must be non-zero
    std::uint32_t height = 0;  ///< pixels; must be non-zero
    std::uint32_t fourcc = 0;  ///< a DRM fourcc dmabridge knows (see format.hpp)
    /// Acceptable modifiers, in order of preference; empty means linear only.
    std::vector<std::uint64_t> modifiers;
    /// Name given to every dma-buf of the image (DMA_BUF_SET_NAME); empty for the allocator's
    /// default ("dmabridge"). At most max_dmabuf_name_length bytes.
    std::string name;
};

/// Allocates images as dma-bufs. Implementations are not thread-safe unless they say so.
class Allocator {
public:
    /// Destroying an allocator does not affect the images it made: their dma-bufs own the memory.
    virtual ~Allocator() = default;
    /// A short name of the backend, e.g. "udmabuf", "dma-heap:system", "gbm:/dev/dri/card0".
    virtual std::string backend_name() const = 0;
    /// Allocates an image and returns its validated description, every dma-buf named.
    virtual Result<BufferDesc> allocate(const ImageRequest& request) = 0;
};

/// An allocator of plain memory (udmabuf, dma-heaps): any number of bytes as one dma-buf, and
/// images in the linear layout of linear_layout(), all planes in one dma-buf.
class MemoryAllocator : public Allocator {
public:
    /// A dma-buf of `size` bytes, rounded up to whole pages, named `name` (empty: "dmabridge").
    /// Errors: size 0 or a name longer than max_dmabuf_name_length (Errc::invalid_argument);
    /// the backend's limits and the kernel's errno.
    virtual Result<DmaBuf> allocate_bytes(std::uint64_t size, std::string_view name = {}) = 0;

    /// A linear image in one dma-buf from allocate_bytes(). The request's modifier list must be
    /// empty or contain modifier::linear (Errc::unsupported otherwise).
    Result<BufferDesc> allocate(const ImageRequest& request) final;

    /// The stride and plane alignment this allocator lays images out with.
    const LinearLayoutOptions& layout_options() const noexcept { return layout_; }

protected:
    /// For implementations: images are laid out with `layout`.
    explicit MemoryAllocator(LinearLayoutOptions layout) noexcept : layout_(layout) {}


private:
    LinearLayoutOptions layout_;
};

}  // namespace dmabridge
