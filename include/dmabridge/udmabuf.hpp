// SPDX-License-Identifier: MIT
#pragma once
/// @file udmabuf.hpp
/// UdmabufAllocator: dma-bufs backed by ordinary memory, through /dev/udmabuf (CONFIG_UDMABUF).
/// Each buffer is a sealed memfd turned into a dma-buf; always linear.

#include <cstdint>
#include <string>
#include <string_view>

#include <dmabridge/allocator.hpp>
#include <dmabridge/dmabuf.hpp>
#include <dmabridge/format.hpp>
#include <dmabridge/result.hpp>
#include <dmabridge/unique_fd.hpp>

namespace dmabridge {

/// Allocates dma-bufs from system memory through udmabuf. Thread-safe.
class UdmabufAllocator final : public Allocator {
public:
    /// Opens `device` (one open). Fails with ENOENT where the kernel has no udmabuf, EACCES
    /// without permission.
    static Result<UdmabufAllocator> open(std::string_view device = "/dev/udmabuf",
                                         LinearLayoutOptions layout = {});

    /// A dma-buf of `size` bytes rounded up to whole pages, named `name`. Costs a memfd, a
    /// truncate, a seal and the UDMABUF_CREATE ioctl; the memory is allocated by the kernel on
    /// first touch. Errors: size 0 (Errc::invalid_argument); above the udmabuf module's
    /// size_limit_mb (Errc::limit_exceeded, naming the limit); the kernel's errno otherwise.
    Result<DmaBuf> allocate_bytes(std::uint64_t size, std::string_view name = "dmabridge");

    /// A linear image in one dma-buf (see linear_layout()). The request's modifier list must be
    /// empty or contain modifier::linear (Errc::unsupported otherwise).
    Result<BufferDesc> allocate(const ImageRequest& request) override;

    std::string backend_name() const override { return "udmabuf"; }

    /// The udmabuf module's size_limit_mb in bytes, or 0 when it cannot be read.
    std::uint64_t size_limit() const noexcept { return size_limit_; }

private:
    UdmabufAllocator(UniqueFd dev, LinearLayoutOptions layout, std::uint64_t limit) noexcept
        : dev_(std::move(dev)), layout_(layout), size_limit_(limit) {}
    UniqueFd dev_;
    LinearLayoutOptions layout_;
    std::uint64_t size_limit_ = 0;
};

}  // namespace dmabridge
