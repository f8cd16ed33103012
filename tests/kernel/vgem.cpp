// SPDX-License-Identifier: MIT
#include "vgem.hpp"
#include "vgem_uapi.hpp"

#include <cerrno>
#include <cstring>
#include <string>

#include <fcntl.h>
#include <xf86drm.h>

#include <doctest/doctest.h>

#include <dmabridge/kernel/devices.hpp>

namespace uapi = dmabridge::test::vgem_uapi;

namespace dmabridge::test {

Vgem::Vgem() {
    auto devices = list_drm_devices();
    REQUIRE(devices);
    for (const auto& d : *devices)
        if (d.driver == "vgem" && !d.primary_node.empty()) fd_.reset(::open(d.primary_node.c_str(), O_RDWR | O_CLOEXEC));
    REQUIRE_MESSAGE(fd_.valid(), "no vgem device: is the vgem module loaded?");
}

DmaBuf Vgem::create_buffer(std::uint32_t size) {
    drm_mode_create_dumb create{};
    create.width = size / 4;
    create.height = 1;
    create.bpp = 32;
    REQUIRE(drmIoctl(fd_.get(), DRM_IOCTL_MODE_CREATE_DUMB, &create) == 0);
    last_handle_ = create.handle;
    int prime = -1;
    REQUIRE(drmPrimeHandleToFD(fd_.get(), create.handle, DRM_CLOEXEC | DRM_RDWR, &prime) == 0);
    auto buf = DmaBuf::adopt(UniqueFd(prime));
    REQUIRE(buf);
    return std::move(*buf);
}

std::uint32_t Vgem::import_buffer(const DmaBuf& buf) {
    std::uint32_t handle = 0;
    REQUIRE(drmPrimeFDToHandle(fd_.get(), buf.fd(), &handle) == 0);
    return handle;
}

std::uint32_t Vgem::attach_fence(bool write, std::uint32_t handle) {
    uapi::fence_attach attach{};
    attach.handle = handle ? handle : last_handle_;
    attach.flags = write ? uapi::fence_write : 0;
    REQUIRE(drmIoctl(fd_.get(), uapi::ioctl_fence_attach, &attach) == 0);
    return attach.out_fence;
}

void Vgem::signal(std::uint32_t fence) {
    uapi::fence_signal sig{};
    sig.fence = fence;
    const int r = drmIoctl(fd_.get(), uapi::ioctl_fence_signal, &sig);
    REQUIRE_MESSAGE(r == 0, "vgem fence signal: " << std::strerror(errno));
}

}  // namespace dmabridge::test
