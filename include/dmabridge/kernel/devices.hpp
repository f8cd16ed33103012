// SPDX-License-Identifier: MIT
#pragma once
/// @file devices.hpp
/// Discovery of the kernel devices dmabridge can allocate from: DRM nodes, dma-heaps, udmabuf.

#include <string>
#include <vector>

#include <dmabridge/base/result.hpp>

namespace dmabridge {

/// One DRM device and its nodes (either path may be empty when the device has no such node).
struct DrmDevice {
    std::string primary_node;  ///< e.g. "/dev/dri/card0"
    std::string render_node;   ///< e.g. "/dev/dri/renderD128"
    std::string driver;        ///< the kernel driver's name, e.g. "vgem", "amdgpu"; may be empty
    /// DRM_CAP_SYNCOBJ: binary syncobjs (sync_file import/export through the device).
    bool syncobj = false;
    /// DRM_CAP_SYNCOBJ_TIMELINE: the device can hold a Timeline (timeline.hpp). vgem and vkms
    /// have none; virtio_gpu, amdgpu, i915/xe, nouveau, msm and panfrost do.
    bool syncobj_timeline = false;
    /// This kernel signals eventfds for timeline points (DRM_IOCTL_SYNCOBJ_EVENTFD, Linux 6.6):
    /// FenceWatcher waits for points nothing submitted yet (Timeline::eventfd_supported()).
    bool syncobj_eventfd = false;
};

/// The DRM devices of this machine, whatever bus they sit on: the cardN and renderDN nodes the
/// kernel lists in /sys/class/drm, grouped into one device per sysfs parent device, keeping the
/// nodes that exist as character devices under /dev/dri; nodes under /dev/dri that sysfs does not
/// list (no /sys mounted) are listed one node per device. Sorted by node number, devices with a
/// primary node first. libdrm's drmGetDevices2 is not used: it leaves out devices on buses it
/// does not know, such as vgem on the faux bus (measured on Linux 7.3 with libdrm 2.4.123).
/// Cost: a scan of /sys/class/drm and /dev/dri, and per device one open(), DRM_IOCTL_VERSION
/// (the driver name; empty when the node cannot be opened, e.g. without permission), two
/// DRM_IOCTL_GET_CAP and, with timelines, one DRM_IOCTL_SYNCOBJ_EVENTFD probe (the syncobj
/// fields stay false when the node cannot be opened).
/// No devices (or no /dev/dri) is an empty list, not an error; the error is the errno of reading
/// /dev/dri when it exists but cannot be read.
Result<std::vector<DrmDevice>> list_drm_devices();

/// The names of the dma-heaps under /dev/dma_heap (e.g. "system"), sorted; empty when there are
/// none or the kernel has no dma-heaps.
std::vector<std::string> list_dma_heaps();

/// True when /dev/udmabuf exists and can be opened for reading and writing.
bool udmabuf_available();

}  // namespace dmabridge
