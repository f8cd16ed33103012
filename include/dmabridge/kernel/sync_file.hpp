// SPDX-License-Identifier: MIT
#pragma once
/// @file sync_file.hpp
/// SyncFile: an explicit fence as the kernel's sync_file fd (CONFIG_SYNC_FILE), the form in which
/// fences travel between processes, dma-bufs (DMA_BUF_IOCTL_EXPORT/IMPORT_SYNC_FILE) and Vulkan
/// (VK_EXTERNAL_SEMAPHORE_HANDLE_TYPE_SYNC_FD_BIT).

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <dmabridge/base/access.hpp>
#include <dmabridge/base/result.hpp>
#include <dmabridge/base/unique_fd.hpp>

namespace dmabridge {

/// Whether a sync_file's fences have signalled (SYNC_IOC_FILE_INFO's status).
enum class FenceStatus : std::uint8_t {
    active,    ///< at least one fence has not signalled yet
    signaled,  ///< every fence signalled without error
    error,     ///< every fence signalled and at least one with an error
};

/// One fence inside a sync_file: who made it and its state.
struct FenceInfo {
    std::string driver;    ///< the fence's driver name, e.g. "vgem" or "llvmpipe"
    std::string timeline;  ///< the fence's timeline name
    FenceStatus status;    ///< this fence's state
};

/// Owns one sync_file fd. Move-only; `dup()` makes a second owner of the same fences.
/// An object that was moved from or released holds no fd: every operation on it (and a merge
/// with it) fails at once with Errc::empty_object, none blocks or succeeds.
/// Thread safety: const members may be called concurrently.
class SyncFile final {
public:
    /// Takes ownership of `fd` after checking that it is a sync_file, safe on any fd a peer may
    /// send: readlink of /proc/self/fd/N must give "anon_inode:sync_file" before the fd is
    /// asked anything (an ioctl on a file served by a FUSE daemon waits for that daemon, which
    /// never has to answer), then SYNC_IOC_FILE_INFO confirms it. Two syscalls. Needs /proc
    /// mounted: without it every fd is refused with Errc::unsupported. Fails with
    /// Errc::not_a_sync_file (naming what the fd is) otherwise; EBADF for a closed fd. The fd is
    /// closed on error, a file of a file system on a thread of its own, waited for at most 100 ms
    /// (its close flushes to a file system that may never answer).
    static Result<SyncFile> adopt(UniqueFd fd);

    /// Merges two sync_files into a new one that signals when both have (SYNC_IOC_MERGE).
    /// `name` names the merged fence for debugging; bytes past the 31st are cut off, not
    /// refused. Errors: either input empty (Errc::empty_object, naming which), the ioctl's errno.

    static Result<SyncFile> merge(const SyncFile& a, const SyncFile& b,
                                  std::string_view name = "dmabridge-merge");

    /// Blocks until every fence has signalled or the timeout passes (poll(POLLIN); EINTR is
    /// retried with the remaining time). Returns WaitStatus::timed_out on timeout. The caller
    /// always says how long (no default: a peer's fence may never signal); `forever`, any
    /// negative timeout, Timeout::max() or any timeout too large for the clock waits without limit.
    Result<WaitStatus> wait(Timeout timeout) const;

    /// The aggregate status of the fences (one ioctl; never blocks).
    Result<FenceStatus> status() const;

    /// Per-fence driver, timeline and status (two ioctls).
    Result<std::vector<FenceInfo>> fences() const;

    /// A second owner of the same fences (a new fd).
    Result<SyncFile> dup() const;

    /// The fd, still owned by this object; -1 once moved from or released.
    int fd() const noexcept { return fd_.get(); }
    /// True while this object holds a fd.
    bool valid() const noexcept { return fd_.valid(); }
    /// Gives up ownership of the fd, e.g. to hand it to vkImportSemaphoreFdKHR.
    [[nodiscard]] UniqueFd release() noexcept { return std::move(fd_); }

private:
    explicit SyncFile(UniqueFd fd) noexcept : fd_(std::move(fd)) {}
    UniqueFd fd_;
};

}  // namespace dmabridge
