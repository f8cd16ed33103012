// SPDX-License-Identifier: MIT
#pragma once
/// @file timeline.hpp
/// Timeline: a DRM syncobj timeline, the kernel object behind explicit sync in today's graphics
/// stack (Vulkan timeline semaphores, wp_linux_drm_syncobj_v1, KMS). A timeline holds a 64-bit
/// counter whose points are reached in order: a point is *submitted* once some fence stands for
/// it (a GPU job, an imported sync_file, a transfer), and *signalled* once that fence signals
/// (or once signal() reached it directly).
///
/// A timeline lives on one DRM device (a render node whose driver has DRM_CAP_SYNCOBJ_TIMELINE:
/// amdgpu, i915/xe, nouveau, msm, panfrost, virtio_gpu, ...; vgem and vkms have none) and is
/// shared as an fd (DRM_IOCTL_SYNCOBJ_HANDLE_TO_FD), which any process imports on any DRM device
/// with syncobjs. Every call below is one or two ioctls on the device fd the timeline keeps.
///
/// Bridges to implicit and sync_file sync: import_sync_file() makes a sync_file the fence of a
/// point; export_sync_file() turns a submitted point into a sync_file (for a dma-buf's
/// IMPORT_SYNC_FILE, a KMS IN_FENCE_FD, a Vulkan SYNC_FD semaphore, an EGL native fence).
/// FenceWatcher::watch(const Timeline&, ...) waits for points on an event loop.
///
/// Thread safety: the calls are ioctls and may run from several threads at once; moving or
/// destroying a Timeline while another thread uses it is the caller's to prevent.
/// fork(): a child shares the parent's DRM file, and its handle numbers with it. A Timeline
/// destroyed in a process other than the one that made it leaves the handle alone (the parent's
/// may be in use); a child that needs the timeline imports it on a device it opens itself.

#include <cstdint>
#include <string>

#include <dmabridge/base/result.hpp>
#include <dmabridge/base/unique_fd.hpp>
#include <dmabridge/kernel/dmabuf.hpp>
#include <dmabridge/kernel/sync_file.hpp>

namespace dmabridge {

/// What a wait for a point waits for.
enum class PointState {
    signalled,  ///< the point's fence signalled (the work is done)
    submitted,  ///< a fence stands for the point (the work is queued; it may still run)
};

/// A DRM syncobj timeline. Move-only; a moved-from Timeline fails every call at once with
/// Errc::empty_object.
class Timeline {
public:
    /// Whether the DRM device `drm_fd` has syncobj timelines (DRM_CAP_SYNCOBJ_TIMELINE); the
    /// error says why not (Errc::unsupported naming the driver, or the ioctl's errno).
    static Status supported(int drm_fd);
    /// Whether the kernel can signal an eventfd when a point of a timeline on `drm_fd` arrives
    /// (DRM_IOCTL_SYNCOBJ_EVENTFD, Linux 6.6): what FenceWatcher::watch(const Timeline&, ...)
    /// needs to wait for a point nothing submitted yet. Probed by calling the ioctl with handle 0,
    /// which no syncobj has: ENOENT means the ioctl exists; EINVAL or ENOTTY (an older kernel)
    /// and EOPNOTSUPP (a driver without timelines) fail with Errc::unsupported saying which.
    /// One ioctl; creates nothing.
    static Status eventfd_supported(int drm_fd);
    /// Opens the first DRM render node whose driver has syncobj timelines, for create() and
    /// import(). Errors: Errc::not_found naming every node tried and why it was not taken.
    static Result<UniqueFd> open_device();

    /// A new timeline on `drm_fd` (borrowed: the timeline keeps its own dup, so the caller may
    /// close its fd). It starts with no fence: last_signalled() is 0, and point 0 counts as not
    /// submitted (a wait for it waits for a submit; the first point to use is 1).
    /// Errors: supported()'s; the ioctl's errno.
    static Result<Timeline> create(int drm_fd);
    /// Imports a timeline shared as `fd` (from export_fd(), here or in another process) on
    /// `drm_fd` (borrowed, dup'd). `fd` is checked to be a syncobj by the kernel: any other
    /// file fails with EINVAL. The fd is not consumed: close it after.
    static Result<Timeline> import(int drm_fd, int fd);

    Timeline(Timeline&& other) noexcept;
    Timeline& operator=(Timeline&& other) noexcept;
    Timeline(const Timeline&) = delete;
    Timeline& operator=(const Timeline&) = delete;
    /// Destroys this process's handle of the syncobj. Fences already submitted still signal,
    /// and other handles and fds of the timeline (other processes') stay valid.
    ~Timeline();

    /// False once moved from.
    bool valid() const noexcept { return handle_ != 0; }
    /// The DRM device fd the timeline's handle belongs to (this timeline's own dup); -1 when
    /// moved from. For ioctls the library does not wrap (a driver's submit with syncobjs).
    int device_fd() const noexcept { return device_.get(); }
    /// The syncobj handle on device_fd(); 0 when moved from.
    std::uint32_t handle() const noexcept { return handle_; }

    /// A new fd for the whole timeline, to share with another process (SCM_RIGHTS) or a
    /// compositor (wp_linux_drm_syncobj_manager_v1.import_timeline). FD_CLOEXEC is set.
    Result<UniqueFd> export_fd() const;

    /// Signals `point` from the CPU (DRM_IOCTL_SYNCOBJ_TIMELINE_SIGNAL). Points are reached in
    /// order: a point at or below the last one submitted (signalled or not) would break the
    /// order (the kernel only logs it), so it is refused first with Errc::invalid_argument naming
    /// both points (DRM_SYNCOBJ_QUERY_FLAGS_LAST_SUBMITTED; racy only with other submitters to
    /// the same timeline, which must agree on who takes which point anyway).
    Status signal(std::uint64_t point);

    /// The highest point signalled so far (DRM_IOCTL_SYNCOBJ_QUERY).
    Result<std::uint64_t> last_signalled() const;
    /// The highest point anything was submitted for, signalled or not
    /// (DRM_SYNCOBJ_QUERY_FLAGS_LAST_SUBMITTED): new points must go above it.
    Result<std::uint64_t> last_submitted() const;

    /// Waits until `point` reached `state`, or `timeout` passes (WaitStatus::timed_out). A point
    /// that nothing submitted yet is waited for too (DRM_SYNCOBJ_WAIT_FLAGS_WAIT_FOR_SUBMIT):
    /// with a timeline, the submit usually comes later. Timeout{0} polls. There is no default:
    /// a point that is never submitted is a hang, so say how long.
    Result<WaitStatus> wait(std::uint64_t point, Timeout timeout, PointState state = PointState::signalled) const;

    /// Makes `fence` the fence of `point` (a temporary binary syncobj, then a point transfer):
    /// the point signals when the sync_file does. Errors: Errc::empty_object for an empty
    /// SyncFile; Errc::invalid_argument for a point not above the last one submitted.
    Status import_sync_file(std::uint64_t point, const SyncFile& fence);

    /// The fence of `point` as a sync_file, for APIs that take one. The point must be submitted
    /// (a fence stands for it): this call does not wait for a submit (wait(point, timeout,
    /// PointState::submitted) does), and a point nothing submitted yet fails with
    /// Errc::not_found. A signalled point gives a signalled sync_file.
    Result<SyncFile> export_sync_file(std::uint64_t point) const;

    /// Makes the fences of `point` the dma-buf's implicit fences (export_sync_file(), then
    /// DMA_BUF_IOCTL_IMPORT_SYNC_FILE with `access`: Access::write for a writer's point, that
    /// readers and writers wait for; Access::read for a reader's, that only writers wait for).
    /// Errors: export_sync_file()'s; Errc::unsupported on kernels before 6.0.
    Status attach_to(const DmaBuf& buf, std::uint64_t point, Access access) const;
    /// Makes `point` stand for the dma-buf's implicit fences (DMA_BUF_IOCTL_EXPORT_SYNC_FILE with
    /// `access`, then import_sync_file()): the point signals once the fences `access` would wait
    /// for did. Errors: import_sync_file()'s; Errc::unsupported on kernels before 6.0.
    Status import_from(const DmaBuf& buf, Access access, std::uint64_t point);

private:
    Timeline(UniqueFd device, std::uint32_t handle) noexcept;
    void destroy() noexcept;
    UniqueFd device_;
    std::uint32_t handle_ = 0;
    int owner_ = 0;  // the process that made the handle (see fork() above)
};

}  // namespace dmabridge
