// SPDX-License-Identifier: MIT
#pragma once
/// @file dma_heap.hpp
/// DmaHeapAllocator: dma-bufs from a kernel dma-heap (/dev/dma_heap/<name>, CONFIG_DMABUF_HEAPS),
/// "system" by default; "linux,cma" or vendor heaps where a platform has them. Always linear.

#include <cstdint>
#include <string>
#include <string_view>

#include <dmabridge/alloc/allocator.hpp>
#include <dmabridge/base/result.hpp>
#include <dmabridge/base/unique_fd.hpp>
#include <dmabridge/format/format.hpp>
#include <dmabridge/kernel/dmabuf.hpp>

namespace dmabridge {

/// Allocates dma-bufs from one dma-heap. Thread-safe.
class DmaHeapAllocator final : public MemoryAllocator {
public:
    /// Opens /dev/dma_heap/`heap` (one open, an fstat and a read of the node's sysfs uevent). A
    /// heap name with '/' or an empty one is refused (Errc::invalid_argument); a missing heap
    /// gives Errc::not_found listing the heaps there are; a node there that is not a dma-heap
    /// gives Errc::invalid_argument saying what it is.
    static Result<DmaHeapAllocator> open(std::string_view heap = "system",
                                         LinearLayoutOptions layout = {});

    /// A dma-buf from the heap (DMA_HEAP_IOCTL_ALLOC; the kernel allocates and zeroes the
    /// memory now). More than the machine's memory (MemTotal) or than what is available
    /// (MemAvailable) is refused before the ioctl with Errc::limit_exceeded: the kernel would
    /// wake the OOM killer rather than fail. A failing DMA_BUF_SET_NAME is logged as a warning;
    /// the buffer is returned unnamed. On a moved-from allocator: Errc::empty_object at once.
    Result<DmaBuf> allocate_bytes(std::uint64_t size, std::string_view name = {}) override;

    /// "dma-heap:<heap>", e.g. "dma-heap:system".
    std::string backend_name() const override { return "dma-heap:" + heap_; }


private:
    DmaHeapAllocator(UniqueFd dev, std::string heap, LinearLayoutOptions layout) noexcept
        : MemoryAllocator(layout), dev_(std::move(dev)), heap_(std::move(heap)) {}
    UniqueFd dev_;
    std::string heap_;
};

}  // namespace dmabridge
