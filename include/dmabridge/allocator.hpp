// SPDX-License-Identifier: MIT
#pragma once
/// @file allocator.hpp
/// The interface every exporter that allocates images implements: udmabuf, dma-heaps and GBM
/// here; Vulkan and V4L2 in their adapters.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <dmabridge/buffer_desc.hpp>
#include <dmabridge/result.hpp>

namespace dmabridge {

/// What to allocate. The zero value of the optional fields is a sane default.
struct ImageRequest {
    std::uint32_t width = 0;
    std::uint32_t height = 0;
    std::uint32_t fourcc = 0;
    /// Acceptable modifiers, in order of preference; empty means linear only.
    std::vector<std::uint64_t> modifiers;
    /// Name given to every dma-buf of the image (DMA_BUF_SET_NAME); empty for the allocator's
    /// default ("dmabridge"). At most max_dmabuf_name_length bytes.
    std::string name;
};

/// Allocates images as dma-bufs. Implementations are not thread-safe unless they say so.
class Allocator {
public:
    virtual ~Allocator() = default;
    /// A short name of the backend, e.g. "udmabuf", "dma-heap:system", "gbm:/dev/dri/card0".
    virtual std::string backend_name() const = 0;
    /// Allocates an image and returns its validated description, every dma-buf named.
    virtual Result<BufferDesc> allocate(const ImageRequest& request) = 0;
};

}  // namespace dmabridge
