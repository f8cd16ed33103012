// SPDX-License-Identifier: MIT
#include <dmabridge/kernel/devices.hpp>

#include <algorithm>
#include <cstdint>
#include <string_view>
#include <filesystem>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xf86drm.h>

#include <dmabridge/base/unique_fd.hpp>
#include <dmabridge/kernel/timeline.hpp>

#include "base/sys.hpp"

namespace dmabridge {
namespace {

// The kernel driver behind a node (drmGetVersion) and its syncobj support; nothing when the node
// cannot be opened.
void probe(const std::string& node, DrmDevice& device) {
    int fd = ::open(node.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) return;
    UniqueFd owner(fd);
    if (drmVersionPtr v = drmGetVersion(fd)) {
        device.driver = v->name ? v->name : "";
        drmFreeVersion(v);
    }
    std::uint64_t value = 0;
    device.syncobj = drmGetCap(fd, DRM_CAP_SYNCOBJ, &value) == 0 && value != 0;
    value = 0;
    device.syncobj_timeline = drmGetCap(fd, DRM_CAP_SYNCOBJ_TIMELINE, &value) == 0 && value != 0;
    device.syncobj_eventfd = device.syncobj_timeline && static_cast<bool>(Timeline::eventfd_supported(fd));
}

}  // namespace

Result<std::vector<DrmDevice>> list_drm_devices() {
    namespace fs = std::filesystem;
    // Nodes are grouped into devices by the sysfs device they belong to (card0 and renderD128 of
    // vgem both point at the same parent). libdrm's drmGetDevices2 is not used: it skips devices
    // on buses it does not know, and vgem sits on the faux bus (measured on Linux 7.3).
    struct Group {
        std::string key;  // the sysfs parent device, or the node itself when there is none
        DrmDevice device;
    };
    std::vector<Group> groups;
    auto add = [&groups](const std::string& key, const std::string& name) {
        const std::string node = "/dev/dri/" + name;
        struct stat st {};
        if (::stat(node.c_str(), &st) != 0 || !S_ISCHR(st.st_mode)) return;  // no node to open
        auto it = std::find_if(groups.begin(), groups.end(), [&](const Group& g) { return g.key == key; });
        if (it == groups.end()) it = groups.insert(groups.end(), Group{key, {}});
        (name.starts_with("card") ? it->device.primary_node : it->device.render_node) = node;
    };
    auto is_node_name = [](const std::string& name) {
        for (std::string_view prefix : {"card", "renderD"}) {
            if (!name.starts_with(prefix) || name.size() == prefix.size()) continue;
            if (std::all_of(name.begin() + static_cast<std::ptrdiff_t>(prefix.size()), name.end(),
                            [](char c) { return c >= '0' && c <= '9'; }))
                return true;
        }
        return false;  // connectors (card0-HDMI-A-1), control nodes, "version"
    };

    std::error_code ec;
    std::vector<std::string> seen;
    for (const auto& entry : fs::directory_iterator("/sys/class/drm", ec)) {
        const std::string name = entry.path().filename().string();
        if (!is_node_name(name)) continue;
        std::error_code link_ec;
        fs::path parent = fs::canonical(entry.path() / "device", link_ec);
        add(link_ec ? "node:" + name : parent.string(), name);
        seen.push_back(name);
    }
    // Without sysfs (a container that mounts /dev but not /sys), each node is its own device.
    std::error_code dev_ec;
    for (const auto& entry : fs::directory_iterator("/dev/dri", dev_ec)) {
        const std::string name = entry.path().filename().string();
        if (is_node_name(name) && std::find(seen.begin(), seen.end(), name) == seen.end())
            add("node:" + name, name);
    }
    if (dev_ec && dev_ec != std::errc::no_such_file_or_directory)
        return Error::from_errno(dev_ec.value(), "list DRM devices: read /dev/dri");

    std::vector<DrmDevice> out;
    for (auto& g : groups) {
        probe(g.device.render_node.empty() ? g.device.primary_node : g.device.render_node, g.device);
        out.push_back(std::move(g.device));
    }
    // card2 before card10: by node number, devices with a primary node first.
    auto number = [](const std::string& node) {
        const auto digits = node.find_last_not_of("0123456789") + 1;
        return digits < node.size() ? std::stoul(node.substr(digits)) : 0ul;
    };
    std::sort(out.begin(), out.end(), [&](const DrmDevice& a, const DrmDevice& b) {
        const bool ap = !a.primary_node.empty(), bp = !b.primary_node.empty();
        if (ap != bp) return ap;
        return number(ap ? a.primary_node : a.render_node) < number(bp ? b.primary_node : b.render_node);
    });
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
