// SPDX-License-Identifier: MIT
#include <dmabridge/kernel/sync_file.hpp>

#include <cstring>
#include <vector>

#include <linux/sync_file.h>
#include <poll.h>

#include "kernel/sync_file_info.hpp"
#include "base/sys.hpp"

namespace dmabridge {
namespace {

FenceStatus to_status(std::int32_t s) {
    if (s > 0) return FenceStatus::signaled;
    if (s == 0) return FenceStatus::active;
    return FenceStatus::error;
}

Error no_fd(const std::string& operation) {
    return Error::library(Errc::empty_object, operation + ": the sync_file holds no fd (moved from or released)");
}

}  // namespace

Result<SyncFile> SyncFile::adopt(UniqueFd fd) {
    sync_file_info info{};
    if (!fd.valid()) return Error::from_errno(EBADF, "adopt sync_file");
    const std::string what = "fd " + std::to_string(fd.get());
    // First what the fd is, from /proc alone: an ioctl on a peer's FUSE file would wait for its
    // daemon, which never has to answer. Every sync_file is an anonymous inode of this name.
    auto link = detail::fd_link(fd.get(), what + " is not a sync_file");
    if (!link) return link.error();
    if (*link != "anon_inode:sync_file") {
        detail::close_untrusted(std::move(fd), *link);
        return Error::library(Errc::not_a_sync_file, what + " is not a sync_file: it is " + *link);
    }
    if (::ioctl(fd.get(), SYNC_IOC_FILE_INFO, &info) != 0) {
        // Any file that is not a sync_file answers ENOTTY (or EINVAL for other ioctl owners).
        return Error::library(Errc::not_a_sync_file,
                              "fd " + std::to_string(fd.get()) + " is not a sync_file (SYNC_IOC_FILE_INFO: " +
                                  std::strerror(errno) + ")");
    }
    return SyncFile(std::move(fd));
}

Result<SyncFile> SyncFile::merge(const SyncFile& a, const SyncFile& b, std::string_view name) {
    if (!a.valid() || !b.valid()) return no_fd(std::string("merge sync_files (") + (a.valid() ? "second" : "first") + ")");
    sync_merge_data data{};
    std::size_t n = std::min(name.size(), sizeof data.name - 1);
    std::memcpy(data.name, name.data(), n);
    data.fd2 = b.fd();
    if (::ioctl(a.fd(), SYNC_IOC_MERGE, &data) != 0) return detail::last_error("merge sync_files (SYNC_IOC_MERGE)");
    return SyncFile(UniqueFd(data.fence));
}

Result<WaitStatus> SyncFile::wait(Timeout timeout) const {
    if (!valid()) return no_fd("wait for sync_file");
    return detail::poll_fd(fd(), POLLIN, timeout, "wait for sync_file");
}

Result<FenceStatus> SyncFile::status() const {
    if (!valid()) return no_fd("sync_file status");
    sync_file_info info{};
    if (::ioctl(fd(), SYNC_IOC_FILE_INFO, &info) != 0) return detail::last_error("sync_file status (SYNC_IOC_FILE_INFO)");
    return to_status(info.status);
}

Result<std::vector<FenceInfo>> SyncFile::fences() const {
    if (!valid()) return no_fd("sync_file fences");
    sync_file_info info{};
    if (::ioctl(fd(), SYNC_IOC_FILE_INFO, &info) != 0) return detail::last_error("sync_file fences (SYNC_IOC_FILE_INFO)");
    std::vector<sync_fence_info> raw(info.num_fences);
    if (!raw.empty()) {
        sync_file_info again{};
        again.num_fences = info.num_fences;
        again.sync_fence_info = reinterpret_cast<std::uintptr_t>(raw.data());
        if (::ioctl(fd(), SYNC_IOC_FILE_INFO, &again) != 0)
            return detail::last_error("sync_file fences (SYNC_IOC_FILE_INFO)");
        // A merge elsewhere cannot change this sync_file: its fence count is fixed.
        raw.resize(std::min<std::size_t>(raw.size(), again.num_fences));
    }
    return detail::parse_fence_infos(raw, static_cast<std::uint32_t>(raw.size()));
}

Result<SyncFile> SyncFile::dup() const {
    if (!valid()) return no_fd("dup sync_file");
    auto copy = fd_.dup();
    if (!copy) return copy.error().with_context("dup sync_file");
    return SyncFile(std::move(*copy));
}

}  // namespace dmabridge
