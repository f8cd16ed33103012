// SPDX-License-Identifier: MIT
#pragma once
/// @file dmabuf.hpp
/// DmaBuf: one reference to a kernel dma-buf, held as an fd.
///
/// Life cycle: an exporter (udmabuf, a dma-heap, GBM, Vulkan, V4L2) hands out a fd; DmaBuf::adopt
/// takes it and checks that it really is a dma-buf. Every fd of one buffer (dup, re-export, a fd
/// received over a socket) has the same identity (BufferId): that is what import caches key on.
/// The buffer lives as long as any fd, mapping or device import refers to it.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>

#include <sys/types.h>

#include <dmabridge/base/access.hpp>
#include <dmabridge/base/result.hpp>
#include <dmabridge/base/unique_fd.hpp>
#include <dmabridge/kernel/sync_file.hpp>

namespace dmabridge {

/// The identity of a dma-buf: the inode of its file (the same for every fd of one buffer,
/// different between buffers). Holding a DmaBuf keeps the buffer, and so its inode number,
/// alive: a key that holds a reference can never be confused with a later buffer.
struct BufferId {
    dev_t device = 0;  ///< st_dev of the dma-buf's file
    ino_t inode = 0;   ///< st_ino of the dma-buf's file
    /// Same buffer when both numbers are equal.
    friend bool operator==(const BufferId&, const BufferId&) = default;
};

/// The longest name DMA_BUF_SET_NAME accepts, without the terminating NUL.
inline constexpr std::size_t max_dmabuf_name_length = 31;

/// Checks a name for DMA_BUF_SET_NAME before anything is allocated or named: at most
/// max_dmabuf_name_length bytes and no NUL byte (the kernel would silently cut the name at it).
/// Errc::invalid_argument naming `what` and the problem. Costs no syscall.
Status check_dmabuf_name(std::string_view name, std::string_view what);

/// Owns one fd of a dma-buf. Move-only; `dup()` makes a second reference.
/// An object that was moved from or released holds no fd: every operation on it fails at once
/// with Errc::empty_object ("holds no fd"), none blocks or succeeds.
/// Thread safety: const members may be called concurrently on one object.
class DmaBuf final {
public:
    /// Takes ownership of `fd` after checking it is a dma-buf, safe on any fd a peer may send:
    /// the fd's kind is read from /proc (readlink of /proc/self/fd/N must give "/dmabuf:..." or,
    /// before Linux 5.3, "anon_inode:dmabuf", and /proc/self/fdinfo/N must have the dma-buf
    /// core's exp_name line) before anything calls into the file, so that a file served by a
    /// FUSE daemon that never answers cannot block the caller; only then fstat (identity, and
    /// the size: the buffer's offset, shared with the peer, is never moved). Costs about six
    /// syscalls. Needs /proc mounted: without it every fd is refused with Errc::unsupported
    /// (no fallback to fstat, which is what could block). Errors: EBADF for a closed fd,
    /// Errc::not_a_dmabuf naming what the fd is instead (memfd, pipe, socket, sync_file, a
    /// file of a file system, ...), Errc::unsupported without /proc. On error the fd is closed; a file of a file system
    /// is closed on a thread of its own, waited for at most 100 ms (closing it flushes to its file
    /// system, which a FUSE daemon may never answer).
    static Result<DmaBuf> adopt(UniqueFd fd);

    /// Like adopt, on a duplicate of `fd`: the caller keeps its own fd.
    static Result<DmaBuf> import_fd(int fd);

    /// Moving leaves the source empty: fd -1, size 0, identity {0, 0}.
    DmaBuf(DmaBuf&& other) noexcept
        : fd_(std::move(other.fd_)), size_(std::exchange(other.size_, 0)), id_(std::exchange(other.id_, {})) {}
    /// Move assignment: closes the fd held before, then as the move constructor.
    DmaBuf& operator=(DmaBuf&& other) noexcept {
        if (this != &other) {
            fd_ = std::move(other.fd_);
            size_ = std::exchange(other.size_, 0);
            id_ = std::exchange(other.id_, {});
        }
        return *this;
    }
    DmaBuf(const DmaBuf&) = delete;
    DmaBuf& operator=(const DmaBuf&) = delete;

    /// The fd, still owned by this object; -1 once moved from or released.
    int fd() const noexcept { return fd_.get(); }
    /// The buffer's size in bytes (fixed for the buffer's life; read once at adopt); 0 once
    /// moved from or released.
    std::uint64_t size() const noexcept { return size_; }
    /// The buffer's identity, the same for every fd of it; {0, 0} (no buffer's) once moved from
    /// or released, so that an empty object can never be mistaken for the buffer it held.
    BufferId id() const noexcept { return id_; }
    /// True while this object holds a fd (false once moved from or released).
    bool valid() const noexcept { return fd_.valid(); }

    /// The exporter's name ("udmabuf", "system" for the system heap, "drm" for GEM PRIME exports,
    /// ...), from /proc/self/fdinfo. One read of a small proc file.
    Result<std::string> exporter_name() const;
    /// The name set with set_name (or by the exporter); empty when none. From /proc/self/fdinfo.
    Result<std::string> name() const;
    /// Names the buffer for debugging (DMA_BUF_SET_NAME; visible in fdinfo and debugfs).
    /// At most max_dmabuf_name_length bytes and no NUL byte (check_dmabuf_name()); other names
    /// fail with Errc::invalid_argument before the ioctl.
    Status set_name(std::string_view name) const;

    /// A second reference to the same buffer (a new fd, F_DUPFD_CLOEXEC).
    Result<DmaBuf> dup() const;

    /// Waits for the buffer's implicit fences by poll() on the fd: Access::read waits for the
    /// writers (POLLIN), write and read_write for every fence (POLLOUT). EINTR is retried with
    /// the remaining time; the timeout gives WaitStatus::timed_out, not an error. The caller
    /// always says how long (no default: a peer's fence may never signal); `forever`, any
    /// negative timeout, Timeout::max() or any timeout too large for the clock waits without limit.
    Result<WaitStatus> wait(Access access, Timeout timeout) const;

    /// A snapshot of the fences that `access` must wait for, as a sync_file
    /// (DMA_BUF_IOCTL_EXPORT_SYNC_FILE): read gives the writers, write every fence. An idle
    /// buffer gives an already-signalled sync_file. Fences added later are not in it.
    /// Needs Linux 6.0: older kernels give Errc::unsupported ("not supported by this kernel").
    Result<SyncFile> export_sync_file(Access access) const;

    /// Adds the sync_file's fences to the buffer's implicit fences
    /// (DMA_BUF_IOCTL_IMPORT_SYNC_FILE): Access::write as a write fence (everyone waits),
    /// Access::read as a read fence (only writers wait). The sync_file stays the caller's.
    /// Needs Linux 6.0: older kernels give Errc::unsupported.
    Status import_sync_file(const SyncFile& fence, Access access) const;

    /// Gives up ownership of the fd; the object is then empty (as moved from).
    [[nodiscard]] UniqueFd release() noexcept {
        size_ = 0;
        id_ = {};
        return std::move(fd_);
    }

private:
    DmaBuf(UniqueFd fd, std::uint64_t size, BufferId id) noexcept
        : fd_(std::move(fd)), size_(size), id_(id) {}
    UniqueFd fd_;
    std::uint64_t size_ = 0;
    BufferId id_;
};

}  // namespace dmabridge

/// Hashes a BufferId (inode and device), so that it can key std::unordered_map.
template <>
struct std::hash<dmabridge::BufferId> {

    std::size_t operator()(const dmabridge::BufferId& id) const noexcept {
        return std::hash<std::uint64_t>{}(static_cast<std::uint64_t>(id.inode) * 0x9E3779B97F4A7C15ull ^
                                          static_cast<std::uint64_t>(id.device));
    }
};
