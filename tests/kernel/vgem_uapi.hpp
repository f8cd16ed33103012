// SPDX-License-Identifier: MIT
#pragma once
// The vgem uapi (include/uapi/drm/vgem_drm.h), which libdrm does not ship: controllable
// dma-fences for tests and benchmarks. vgem signals a fence by itself after 10 s.

#include <cstdint>

#include <xf86drm.h>

namespace dmabridge::test::vgem_uapi {

struct fence_attach {
    std::uint32_t handle;
    std::uint32_t flags;
    std::uint32_t out_fence;
    std::uint32_t pad;
};
struct fence_signal {
    std::uint32_t fence;
    std::uint32_t flags;
};
inline constexpr std::uint32_t fence_write = 0x1;
inline constexpr unsigned long ioctl_fence_attach = DRM_IOWR(DRM_COMMAND_BASE + 0x1, fence_attach);
inline constexpr unsigned long ioctl_fence_signal = DRM_IOW(DRM_COMMAND_BASE + 0x2, fence_signal);

}  // namespace dmabridge::test::vgem_uapi
