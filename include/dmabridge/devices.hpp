// SPDX-License-Identifier: MIT
#pragma once
/// @file devices.hpp
/// Discovery of the kernel devices dmabridge can allocate from: DRM nodes, dma-heaps, udmabuf.

#include <string>
#include <vector>

#include <dmabridge/result.hpp>

namespace dmabridge {

/// One DRM device and its nodes (either path may be empty when the device has no such node).
struct DrmDevice {
    std::string primary_node;  ///< e.g. "/dev/dri/card0"
    std::string render_node;   ///< e.g. "/dev/dri/renderD128"
    std::string driver;        ///< the kernel driver's name, e.g. "vgem", "amdgpu"; may be empty
};

/// The DRM devices of this machine (libdrm's drmGetDevices2). No devices is an empty list, not
/// an error; errors are the errno of drmGetDevices2.
Result<std::vector<DrmDevice>> list_drm_devices();

/// The names of the dma-heaps under /dev/dma_heap (e.g. "system"), sorted; empty when there are
/// none or the kernel has no dma-heaps.
std::vector<std::string> list_dma_heaps();

/// True when /dev/udmabuf exists and can be opened for reading and writing.
bool udmabuf_available();

}  // namespace dmabridge
