// SPDX-License-Identifier: MIT
#pragma once
// What a kms::Device shares with its Framebuffers and Commits.
#include <dmabridge/kms/device.hpp>

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <unistd.h>

namespace dmabridge::kms {

struct Device::State {
    UniqueFd fd;         // commits and events (the node opened, or a dup of the attached fd)
    UniqueFd import_fd;  // the device opened again: GEM handles nobody else can close
    std::string path;
    std::string driver;
    std::uint32_t min_width = 0, max_width = 0, min_height = 0, max_height = 0;
    std::vector<Connector> connectors;
    std::vector<Crtc> crtcs;
    std::vector<Plane> planes;
    mutable std::mutex mutex;
    std::map<std::uint32_t, std::uint32_t> handle_users;  // GEM handle -> framebuffers using it
    int owner = 0;  // the process that opened the import file: a forked child must not close its handles
    std::atomic<int> closefb{-1};                         // DRM_IOCTL_MODE_CLOSEFB: -1 unknown, 0 no, 1 yes

    Status read_resources();
    void release_handles(const std::vector<std::uint32_t>& handles) noexcept;
    void remove_framebuffer(std::uint32_t id) noexcept;
};

// A framebuffer and its GEM handles, shared by the Framebuffer and the Commits that show it.
struct Framebuffer::Core {
    std::shared_ptr<Device::State> device;
    std::uint32_t id = 0;
    std::vector<std::uint32_t> handles;  // one per distinct dma-buf, each counted once
    Core() = default;
    Core(const Core&) = delete;
    Core& operator=(const Core&) = delete;
    ~Core() {
        // A forked child shares the import file: removing would take the parent's framebuffer.
        if (!device || device->owner != static_cast<int>(::getpid())) return;
        if (id) device->remove_framebuffer(id);
        device->release_handles(handles);
    }
};

}  // namespace dmabridge::kms
