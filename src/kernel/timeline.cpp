// SPDX-License-Identifier: MIT
// DRM syncobj timelines through libdrm's wrappers of the syncobj ioctls. Points move between a
// timeline and sync_files through a temporary binary syncobj: the kernel has no ioctl that
// imports a sync_file into a timeline point, or exports one from it, directly.
#include <dmabridge/kernel/timeline.hpp>

#include <cerrno>
#include <climits>
#include <cstring>
#include <ctime>
#include <string>
#include <utility>

#include <fcntl.h>
#include <unistd.h>
#include <xf86drm.h>

#include "base/sys.hpp"

namespace dmabridge {
namespace {

std::string n(std::uint64_t v) { return std::to_string(v); }

Error empty(const std::string& what) {
    return Error::library(Errc::empty_object, what + ": the Timeline is empty (moved from)");
}

// libdrm's syncobj wrappers return -1 with errno set (drmIoctl).
Error drm_error(const std::string& what) { return Error::from_errno(errno, what); }

std::string driver_of(int fd) {
    drmVersionPtr v = drmGetVersion(fd);
    if (!v) return "an unknown driver";
    std::string name = v->name ? v->name : "";
    drmFreeVersion(v);
    return name.empty() ? "an unnamed driver" : "\"" + name + "\"";
}

// A binary syncobj that lives for one transfer.
class TempSyncobj {
public:
    explicit TempSyncobj(int fd) : fd_(fd) {
        if (drmSyncobjCreate(fd, 0, &handle_) != 0) handle_ = 0;
    }
    ~TempSyncobj() {
        if (handle_) (void)drmSyncobjDestroy(fd_, handle_);
    }
    TempSyncobj(const TempSyncobj&) = delete;
    TempSyncobj& operator=(const TempSyncobj&) = delete;
    std::uint32_t handle() const { return handle_; }

private:
    int fd_;
    std::uint32_t handle_ = 0;
};

// CLOCK_MONOTONIC nanoseconds `timeout` from now, saturated: the syncobj waits take an absolute
// deadline (a signed 64-bit value).
std::int64_t absolute_deadline(Timeout timeout) {
    if (timeout.count() < 0) return INT64_MAX;
    timespec now{};
    clock_gettime(CLOCK_MONOTONIC, &now);
    const std::int64_t now_ns = static_cast<std::int64_t>(now.tv_sec) * 1000000000 + now.tv_nsec;
    const std::int64_t ms = timeout.count();
    if (ms > (INT64_MAX - now_ns) / 1000000) return INT64_MAX;
    return now_ns + ms * 1000000;
}

Result<UniqueFd> dup_device(int drm_fd, const std::string& what) {
    if (drm_fd < 0) return Error::library(Errc::empty_object, what + ": no DRM device fd (-1)");
    auto dup = UniqueFd::dup_of(drm_fd);
    if (!dup) return dup.error().with_context(what);
    return dup;
}

}  // namespace

// The highest point anything was submitted for (signalled or not): where new points must go above.
static Result<std::uint64_t> query_last_submitted(int fd, std::uint32_t handle, const std::string& what) {
    std::uint64_t point = 0;
    if (drmSyncobjQuery2(fd, &handle, &point, 1, DRM_SYNCOBJ_QUERY_FLAGS_LAST_SUBMITTED) != 0)
        return drm_error(what + ": DRM_IOCTL_SYNCOBJ_QUERY (LAST_SUBMITTED)");
    return point;
}

Status Timeline::supported(int drm_fd) {
    const std::string what = "syncobj timelines";
    if (drm_fd < 0) return Error::library(Errc::empty_object, what + ": no DRM device fd (-1)");
    std::uint64_t value = 0;
    if (drmGetCap(drm_fd, DRM_CAP_SYNCOBJ_TIMELINE, &value) != 0) {
        // EINVAL/ENOTTY: not a DRM device, or one that predates the cap (before 5.5).
        const int err = errno;
        if (err == EINVAL || err == ENOTTY || err == EOPNOTSUPP)
            return Error::library(Errc::unsupported, what + ": the fd is no DRM device that reports "
                                                              "DRM_CAP_SYNCOBJ_TIMELINE (errno " + n(static_cast<std::uint64_t>(err)) + ")");
        return Error::from_errno(err, what + ": DRM_CAP_SYNCOBJ_TIMELINE");
    }
    if (value == 0)
        return Error::library(Errc::unsupported, what + ": the DRM device's driver (" + driver_of(drm_fd) +
                                                     ") has no syncobj timelines");
    return {};
}

Status Timeline::eventfd_supported(int drm_fd) {
    const std::string what = "syncobj eventfd waits";
    if (drm_fd < 0) return Error::library(Errc::empty_object, what + ": no DRM device fd (-1)");
    // Handle 0 is never a syncobj: a kernel with the ioctl checks the driver's feature and the
    // flags first, then fails the lookup with ENOENT before it looks at the eventfd (-1).
    if (drmSyncobjEventfd(drm_fd, 0, 0, -1, 0) == 0) return {};  // cannot happen; nothing was made
    const int err = errno;
    if (err == ENOENT) return {};
    if (err == EINVAL || err == ENOTTY)
        return Error::library(Errc::unsupported, what + ": the kernel has no DRM_IOCTL_SYNCOBJ_EVENTFD (Linux 6.6; errno " +
                                                     n(static_cast<std::uint64_t>(err)) + ")");
    if (err == EOPNOTSUPP)
        return Error::library(Errc::unsupported, what + ": the DRM device's driver (" + driver_of(drm_fd) +
                                                     ") has no syncobj timelines");
    return Error::from_errno(err, what + ": DRM_IOCTL_SYNCOBJ_EVENTFD");
}

Result<UniqueFd> Timeline::open_device() {
    drmDevicePtr devices[64];
    const int count = drmGetDevices2(0, devices, 64);
    if (count < 0) return Error::from_errno(-count, "find a DRM device with syncobj timelines: drmGetDevices2");
    std::string tried;
    Result<UniqueFd> found = Error::library(Errc::not_found, "");
    bool have = false;
    for (int i = 0; i < count && !have; ++i) {
        if (!(devices[i]->available_nodes & (1 << DRM_NODE_RENDER))) continue;
        const std::string node = devices[i]->nodes[DRM_NODE_RENDER];
        UniqueFd fd(::open(node.c_str(), O_RDWR | O_CLOEXEC));
        if (!fd) {
            tried += (tried.empty() ? "" : "; ") + node + ": cannot open (" + std::strerror(errno) + ")";
            continue;
        }
        if (auto ok = supported(fd.get()); !ok) {
            tried += (tried.empty() ? "" : "; ") + node + ": " + ok.error().message();
            continue;
        }
        found = std::move(fd);
        have = true;
    }
    drmFreeDevices(devices, count);
    if (have) return found;
    return Error::library(Errc::not_found, "find a DRM device with syncobj timelines: " +
                                               (tried.empty() ? std::string("no DRM render node") : tried));
}

Result<Timeline> Timeline::create(int drm_fd) {
    const std::string what = "create a syncobj timeline";
    if (auto ok = supported(drm_fd); !ok) return ok.error().with_context(what);
    auto device = dup_device(drm_fd, what);
    if (!device) return device.error();
    std::uint32_t handle = 0;
    if (drmSyncobjCreate(device->get(), 0, &handle) != 0) return drm_error(what + ": DRM_IOCTL_SYNCOBJ_CREATE");
    return Timeline(std::move(*device), handle);
}

Result<Timeline> Timeline::import(int drm_fd, int fd) {
    const std::string what = "import a syncobj timeline";
    if (fd < 0) return Error::library(Errc::empty_object, what + ": no fd (-1)");
    if (auto ok = supported(drm_fd); !ok) return ok.error().with_context(what);
    auto device = dup_device(drm_fd, what);
    if (!device) return device.error();
    std::uint32_t handle = 0;
    // The kernel checks the file is a syncobj (EINVAL otherwise) before it makes a handle.
    if (drmSyncobjFDToHandle(device->get(), fd, &handle) != 0)
        return drm_error(what + ": DRM_IOCTL_SYNCOBJ_FD_TO_HANDLE");
    return Timeline(std::move(*device), handle);
}

Timeline::Timeline(UniqueFd device, std::uint32_t handle) noexcept
    : device_(std::move(device)), handle_(handle), owner_(static_cast<int>(::getpid())) {}

Timeline::Timeline(Timeline&& other) noexcept
    : device_(std::move(other.device_)), handle_(std::exchange(other.handle_, 0)), owner_(other.owner_) {}

Timeline& Timeline::operator=(Timeline&& other) noexcept {
    if (this != &other) {
        destroy();
        device_ = std::move(other.device_);
        handle_ = std::exchange(other.handle_, 0);
        owner_ = other.owner_;
    }
    return *this;
}

Timeline::~Timeline() { destroy(); }

void Timeline::destroy() noexcept {
    // A forked child shares the DRM file: its destroy would free the parent's handle.
    if (handle_ && owner_ == static_cast<int>(::getpid())) (void)drmSyncobjDestroy(device_.get(), handle_);
    handle_ = 0;
    device_.reset();
}

Result<std::uint64_t> Timeline::last_submitted() const {
    const std::string what = "query a syncobj timeline";
    if (!valid()) return empty(what);
    return query_last_submitted(device_.get(), handle_, what);
}

Result<UniqueFd> Timeline::export_fd() const {
    const std::string what = "export a syncobj timeline";
    if (!valid()) return empty(what);
    int fd = -1;
    // The kernel makes the fd with O_CLOEXEC (drm_syncobj_handle_to_fd); checked regardless,
    // as every fd the library hands out must be close-on-exec.
    if (drmSyncobjHandleToFD(device_.get(), handle_, &fd) != 0) return drm_error(what + ": DRM_IOCTL_SYNCOBJ_HANDLE_TO_FD");
    UniqueFd out(fd);
    const int flags = ::fcntl(out.get(), F_GETFD);
    if (flags < 0 || ::fcntl(out.get(), F_SETFD, flags | FD_CLOEXEC) != 0) return detail::last_error(what + ": FD_CLOEXEC");
    return out;
}

Result<std::uint64_t> Timeline::last_signalled() const {
    const std::string what = "query a syncobj timeline";
    if (!valid()) return empty(what);
    std::uint32_t handle = handle_;
    std::uint64_t point = 0;
    if (drmSyncobjQuery(device_.get(), &handle, &point, 1) != 0) return drm_error(what + ": DRM_IOCTL_SYNCOBJ_QUERY");
    return point;
}

Status Timeline::signal(std::uint64_t point) {
    const std::string what = "signal point " + n(point) + " of a syncobj timeline";
    if (!valid()) return empty(what);
    auto last = query_last_submitted(device_.get(), handle_, what);
    if (!last) return last.error();
    if (point <= *last)
        return Error::library(Errc::invalid_argument, what + ": point " + n(*last) +
                                                          " is submitted already; points are reached in order");
    std::uint32_t handle = handle_;
    if (drmSyncobjTimelineSignal(device_.get(), &handle, &point, 1) != 0)
        return drm_error(what + ": DRM_IOCTL_SYNCOBJ_TIMELINE_SIGNAL");
    return {};
}

Result<WaitStatus> Timeline::wait(std::uint64_t point, Timeout timeout, PointState state) const {
    const std::string what = "wait for point " + n(point) + " of a syncobj timeline";
    if (!valid()) return empty(what);
    std::uint32_t handle = handle_;
    std::uint32_t flags = DRM_SYNCOBJ_WAIT_FLAGS_WAIT_FOR_SUBMIT;
    if (state == PointState::submitted) flags |= DRM_SYNCOBJ_WAIT_FLAGS_WAIT_AVAILABLE;
    const std::int64_t deadline = absolute_deadline(timeout);
    for (;;) {
        if (drmSyncobjTimelineWait(device_.get(), &handle, &point, 1, deadline, flags, nullptr) == 0)
            return WaitStatus::ready;
        if (errno == ETIME || errno == ETIMEDOUT) return WaitStatus::timed_out;
        if (errno != EINTR && errno != EAGAIN) return drm_error(what + ": DRM_IOCTL_SYNCOBJ_TIMELINE_WAIT");
        // Interrupted: the deadline is absolute, the retry waits only what is left.
    }
}

Status Timeline::import_sync_file(std::uint64_t point, const SyncFile& fence) {
    const std::string what = "import a sync_file into point " + n(point) + " of a syncobj timeline";
    if (!valid()) return empty(what);
    if (!fence.valid()) return Error::library(Errc::empty_object, what + ": the sync_file holds no fd (moved from or released)");
    auto last = query_last_submitted(device_.get(), handle_, what);
    if (!last) return last.error();
    if (point <= *last)
        return Error::library(Errc::invalid_argument, what + ": point " + n(*last) +
                                                          " is submitted already; points are reached in order");
    TempSyncobj temp(device_.get());
    if (!temp.handle()) return drm_error(what + ": DRM_IOCTL_SYNCOBJ_CREATE");
    if (drmSyncobjImportSyncFile(device_.get(), temp.handle(), fence.fd()) != 0)
        return drm_error(what + ": DRM_IOCTL_SYNCOBJ_FD_TO_HANDLE (IMPORT_SYNC_FILE)");
    if (drmSyncobjTransfer(device_.get(), handle_, point, temp.handle(), 0, 0) != 0)
        return drm_error(what + ": DRM_IOCTL_SYNCOBJ_TRANSFER");
    return {};
}

Result<SyncFile> Timeline::export_sync_file(std::uint64_t point) const {
    const std::string what = "export point " + n(point) + " of a syncobj timeline as a sync_file";
    if (!valid()) return empty(what);
    TempSyncobj temp(device_.get());
    if (!temp.handle()) return drm_error(what + ": DRM_IOCTL_SYNCOBJ_CREATE");
    // Without WAIT_FOR_SUBMIT the transfer fails at once (EINVAL) when no fence stands for the
    // point yet: this call never waits for a submit, wait(..., PointState::submitted) does.
    if (drmSyncobjTransfer(device_.get(), temp.handle(), 0, handle_, point, 0) != 0) {
        const int err = errno;
        if (err == EINVAL) {
            auto available = wait(point, Timeout{0}, PointState::submitted);
            if (available && *available == WaitStatus::timed_out)
                return Error::library(Errc::not_found, what + ": nothing was submitted for the point yet (wait for "
                                                              "PointState::submitted first)");
        }
        errno = err;
        return drm_error(what + ": DRM_IOCTL_SYNCOBJ_TRANSFER");
    }
    int fd = -1;
    if (drmSyncobjExportSyncFile(device_.get(), temp.handle(), &fd) != 0)
        return drm_error(what + ": DRM_IOCTL_SYNCOBJ_HANDLE_TO_FD (EXPORT_SYNC_FILE)");
    auto out = SyncFile::adopt(UniqueFd(fd));
    if (!out) return out.error().with_context(what);
    return out;
}

Status Timeline::attach_to(const DmaBuf& buf, std::uint64_t point, Access access) const {
    const std::string what = "attach point " + n(point) + " of a syncobj timeline to a dma-buf";
    if (!valid()) return empty(what);
    auto fence = export_sync_file(point);
    if (!fence) return fence.error();
    if (auto ok = buf.import_sync_file(*fence, access); !ok) return ok.error().with_context(what);
    return {};
}

Status Timeline::import_from(const DmaBuf& buf, Access access, std::uint64_t point) {
    const std::string what = "make point " + n(point) + " of a syncobj timeline stand for a dma-buf's fences";
    if (!valid()) return empty(what);
    auto fence = buf.export_sync_file(access);
    if (!fence) return fence.error().with_context(what);
    return import_sync_file(point, *fence);
}

}  // namespace dmabridge
