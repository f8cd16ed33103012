// SPDX-License-Identifier: MIT
#include <dmabridge/devices.hpp>

#include <algorithm>
#include <filesystem>
#include <vector>

#include <fcntl.h>
#include <unistd.h>
#include <xf86drm.h>

#include <dmabridge/unique_fd.hpp>

#include "sys.hpp"

namespace dmabridge {
namespace {

// The kernel driver behind a node (drmGetVersion), or empty when it cannot be opened.
std::string driver_name(const std::string& node) {
    int fd = ::open(node.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) return {};
    UniqueFd owner(fd);
    drmVersionPtr v = drmGetVersion(fd);
    if (!v) return {};
    std::string name(v->name ? v->name : "");
    drmFreeVersion(v);
    return name;
}

}  // namespace

Result<std::vector<DrmDevice>> list_drm_devices() {
    int count = drmGetDevices2(0, nullptr, 0);
    if (count == -ENODEV || count == 0) return std::vector<DrmDevice>{};
    if (count < 0) return Error::from_errno(-count, "list DRM devices (drmGetDevices2)");
    std::vector<drmDevicePtr> raw(static_cast<std::size_t>(count));
    count = drmGetDevices2(0, raw.data(), count);
    if (count < 0) return Error::from_errno(-count, "list DRM devices (drmGetDevices2)");
    std::vector<DrmDevice> out;
    for (int i = 0; i < count; ++i) {
        DrmDevice d;
        if (raw[i]->available_nodes & (1 << DRM_NODE_PRIMARY)) d.primary_node = raw[i]->nodes[DRM_NODE_PRIMARY];
        if (raw[i]->available_nodes & (1 << DRM_NODE_RENDER)) d.render_node = raw[i]->nodes[DRM_NODE_RENDER];
        d.driver = driver_name(d.render_node.empty() ? d.primary_node : d.render_node);
        out.push_back(std::move(d));
    }
    drmFreeDevices(raw.data(), count);
    std::sort(out.begin(), out.end(),
              [](const DrmDevice& a, const DrmDevice& b) { return a.primary_node < b.primary_node; });
    return out;
}

std::vector<std::string> list_dma_heaps() {
    std::vector<std::string> heaps;
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator("/dev/dma_heap", ec))
        heaps.push_back(entry.path().filename().string());
    std::sort(heaps.begin(), heaps.end());
    return heaps;
}

bool udmabuf_available() {
    int fd = ::open("/dev/udmabuf", O_RDWR | O_CLOEXEC);
    if (fd < 0) return false;
    ::close(fd);
    return true;
}

}  // namespace dmabridge
