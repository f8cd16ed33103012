// SPDX-License-Identifier: MIT
#pragma once
/// @file cpu_access.hpp
/// CPU access to a dma-buf: a mapping (mmap of the dma-buf fd) and a scoped bracket
/// (DMA_BUF_IOCTL_SYNC START ... END) that keeps caches coherent with devices.
///
/// Order of calls: `wait()` for the fences the access needs (the bracket does not wait for
/// devices), `Mapping::map`, `CpuAccess::begin`, read or write through the mapping, end the
/// bracket (destructor or `end()`), unmap. A mapping may outlive many brackets.

#include <cstddef>
#include <cstdint>
#include <span>

#include <dmabridge/base/access.hpp>
#include <dmabridge/base/result.hpp>
#include <dmabridge/kernel/dmabuf.hpp>

namespace dmabridge {

/// An mmap of a dma-buf. Move-only; unmapped on destruction. The mapping keeps the buffer alive
/// even after every fd is closed. Thread safety: the bytes may be read from several threads;
/// writers must coordinate among themselves, as for any shared memory.
class Mapping final {
public:
    /// Maps `length` bytes from `offset` (page-aligned) of the buffer, shared, with PROT_READ for
    /// Access::read and PROT_READ|PROT_WRITE otherwise. length 0 maps to the end of the buffer.
    /// Fails with Errc::invalid_argument when the range is not inside the buffer, and with the
    /// errno of mmap (for example ENODEV for an exporter that cannot be mapped).
    static Result<Mapping> map(const DmaBuf& buf, Access access, std::uint64_t offset = 0,
                               std::uint64_t length = 0);

    /// Moves: the mapping goes with the new object; the moved-from one maps nothing (data()
    /// nullptr, size() 0). Assignment unmaps what the target mapped before.
    Mapping(Mapping&& other) noexcept;
    Mapping& operator=(Mapping&& other) noexcept;
    Mapping(const Mapping&) = delete;
    Mapping& operator=(const Mapping&) = delete;
    /// Unmaps (munmap). Does not end a CpuAccess bracket: end that first.
    ~Mapping();

    /// The mapped bytes. Writable only when mapped with write access.
    std::span<std::byte> bytes() const noexcept { return {static_cast<std::byte*>(addr_), length_}; }
    /// The first mapped byte (the buffer's byte at the mapped offset); nullptr when moved from.
    std::byte* data() const noexcept { return static_cast<std::byte*>(addr_); }
    /// Mapped bytes (not rounded to pages); 0 when moved from.
    std::size_t size() const noexcept { return length_; }

private:
    Mapping(void* addr, std::size_t length) noexcept : addr_(addr), length_(length) {}
    void* addr_ = nullptr;
    std::size_t length_ = 0;
};

/// A CPU access bracket: DMA_BUF_IOCTL_SYNC with START at begin and END (same direction) at
/// end(), or in the destructor when end() was not called. The ioctl is retried on EINTR and
/// EAGAIN, as the kernel documentation asks. Move-only. The DmaBuf must outlive the bracket.
/// Thread safety: one bracket belongs to one thread; brackets on one buffer from several threads
/// are allowed by the kernel (each START needs its own END).
class CpuAccess final {
public:
    /// Starts CPU access in direction `access` (one ioctl; may flush or invalidate caches).
    /// Errors: an empty DmaBuf (Errc::empty_object), an access value outside the enum
    /// (Errc::invalid_argument), the ioctl's errno.
    static Result<CpuAccess> begin(const DmaBuf& buf, Access access);

    /// Moves: the open bracket goes with the new object. Assignment first ends the bracket the
    /// target held (its error is lost). A moved-from bracket is ended: end() on it fails with
    /// Errc::invalid_argument ("already ended"), its destructor does nothing.
    CpuAccess(CpuAccess&& other) noexcept;
    CpuAccess& operator=(CpuAccess&& other) noexcept;
    CpuAccess(const CpuAccess&) = delete;
    CpuAccess& operator=(const CpuAccess&) = delete;
    /// Ends the access if end() was not called; an error there is lost (call end() to see it).
    ~CpuAccess();

    /// Ends the access now and reports the ioctl's result. Calling it twice is an error
    /// (Errc::invalid_argument, "the access already ended"); the bracket counts as ended even
    /// when the ioctl failed.
    Status end();

    /// The direction the bracket was begun with.
    Access access() const noexcept { return access_; }


private:
    CpuAccess(int fd, Access access) noexcept : fd_(fd), access_(access) {}
    int fd_ = -1;  // borrowed from the DmaBuf
    Access access_ = Access::read;
};

}  // namespace dmabridge
