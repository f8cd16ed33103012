// SPDX-License-Identifier: MIT
#pragma once
// vgem: the kernel's virtual GEM driver, used here as a source of real dma-bufs with
// controllable dma-fences (DRM_IOCTL_VGEM_FENCE_ATTACH / _SIGNAL). vgem auto-signals a fence
// after 10 s, so tests signal theirs well before.

#include <cstdint>

#include <dmabridge/base/unique_fd.hpp>
#include <dmabridge/kernel/dmabuf.hpp>

namespace dmabridge::test {

class Vgem {
public:
    /// Opens the vgem primary node (REQUIREs that one exists).
    Vgem();

    /// A new dumb buffer of `size` bytes exported as a dma-buf; remembers its GEM handle.
    DmaBuf create_buffer(std::uint32_t size = 4096);

    /// Attaches an unsignalled fence to the buffer made last by create_buffer (or `handle`):
    /// a write fence when `write`, else a read fence. Returns the fence id for signal().
    std::uint32_t attach_fence(bool write, std::uint32_t handle = 0);
    void signal(std::uint32_t fence);

    /// Imports any dma-buf into vgem (PRIME) and returns its GEM handle: fences attached to it
    /// land on the dma-buf itself, whoever exported it.
    std::uint32_t import_buffer(const DmaBuf& buf);

    std::uint32_t last_handle() const { return last_handle_; }

private:
    UniqueFd fd_;
    std::uint32_t last_handle_ = 0;
};

}  // namespace dmabridge::test
