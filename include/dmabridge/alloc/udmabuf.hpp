// SPDX-License-Identifier: MIT
#pragma once
/// @file udmabuf.hpp
/// UdmabufAllocator: dma-bufs backed by ordinary memory, through /dev/udmabuf (CONFIG_UDMABUF).
/// Each buffer is a sealed memfd turned into a dma-buf; always linear.

#include <cstdint>
#include <string>
#include <string_view>

#include <dmabridge/alloc/allocator.hpp>
#include <dmabridge/base/result.hpp>
#include <dmabridge/base/unique_fd.hpp>
#include <dmabridge/format/format.hpp>
#include <dmabridge/kernel/dmabuf.hpp>

namespace dmabridge {

/// Allocates dma-bufs from system memory through udmabuf. Thread-safe.
class UdmabufAllocator final : public MemoryAllocator {
public:
    /// Opens `device` (one open, an fstat and a read of the node's sysfs uevent). Fails with
    /// ENOENT where the kernel has no udmabuf, EACCES without permission, and
    /// Errc::invalid_argument when the node is not udmabuf (a regular file, /dev/null, a V4L2 or
    /// DRM node, ...), saying what it is.
    static Result<UdmabufAllocator> open(std::string_view device = "/dev/udmabuf",
                                         LinearLayoutOptions layout = {});

    /// A dma-buf backed by a sealed memfd (memfd_create, ftruncate, F_SEAL_SHRINK and the
    /// UDMABUF_CREATE ioctl; the kernel pins the memory at creation). Refused before any syscall
    /// that allocates, with Errc::limit_exceeded naming the limit: above the udmabuf module's
    /// size_limit_mb, above MemAvailable (the kernel would wake the OOM killer rather than
    /// fail). A failing DMA_BUF_SET_NAME is logged as a warning; the buffer is returned unnamed.
    /// On a moved-from allocator: Errc::empty_object at once.
    Result<DmaBuf> allocate_bytes(std::uint64_t size, std::string_view name = {}) override;

    /// A dma-buf over `size` bytes at `offset` of an existing memfd, without a copy: what turns
    /// shared memory a peer sent (PipeWire's MemFd buffers, for instance) into a dma-buf the
    /// importers take. The kernel pins those pages and keeps its own reference to the memfd; the
    /// caller keeps `memfd`. One UDMABUF_CREATE ioctl and an F_GET_SEALS. Refused before the
    /// ioctl, naming the numbers: `offset` or `size` not page-aligned or size 0
    /// (Errc::invalid_argument), a memfd without F_SEAL_SHRINK (its pages could vanish under a
    /// device) or with F_SEAL_WRITE (the kernel refuses it) (Errc::unsupported, naming the
    /// seals), above size_limit() (Errc::limit_exceeded). Not a memfd: the kernel's EINVAL or
    /// EBADF. On a moved-from allocator: Errc::empty_object at once.
    Result<DmaBuf> wrap_memfd(int memfd, std::uint64_t offset, std::uint64_t size) const;
    /// "udmabuf".
    std::string backend_name() const override { return "udmabuf"; }


    /// The udmabuf module's size_limit_mb in bytes, or 0 when it cannot be read.
    std::uint64_t size_limit() const noexcept { return size_limit_; }

private:
    UdmabufAllocator(UniqueFd dev, LinearLayoutOptions layout, std::uint64_t limit) noexcept
        : MemoryAllocator(layout), dev_(std::move(dev)), size_limit_(limit) {}
    UniqueFd dev_;
    std::uint64_t size_limit_ = 0;
};

}  // namespace dmabridge
