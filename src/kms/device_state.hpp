// SPDX-License-Identifier: MIT
#pragma once
// What a kms::Device shares with its Framebuffers, Commits and caches: the DRM files, the
// resources, GEM handle counts, the property ids, and what the display shows or is about to.
#include <dmabridge/kms/device.hpp>

#include <atomic>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <unistd.h>
#include <xf86drmMode.h>

namespace dmabridge::kms {

// The kernel's mode record and ours, both ways (device.cpp reads modes, commit.cpp makes blobs).
Mode mode_of(const drmModeModeInfo& info);
drmModeModeInfo modeinfo_of(const Mode& mode);

// A plane's framebuffer in a state the display shows or will show: the Core keeps the
// framebuffer (and its GEM handles) from being removed while it may be scanned out.
struct PlaneAssignment {
    std::uint32_t plane = 0;
    std::uint32_t crtc = 0;                       // 0: the plane is turned off
    std::shared_ptr<Framebuffer::Core> framebuffer;  // null when off
};

// A non-blocking commit whose page-flip events have not all arrived.
struct PendingFlip {
    std::vector<std::uint32_t> crtcs_left;  // CRTCs whose event is still due
    std::vector<PlaneAssignment> planes;    // what is on screen once it completed
    std::vector<std::shared_ptr<Framebuffer::Core>> keep;  // writeback targets
};

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

    // Property ids by object and name, read once per object (ids never change while the device
    // exists; refresh() clears them with the resources).
    std::mutex property_mutex;
    std::map<std::uint32_t, std::map<std::string, std::uint32_t>> property_ids;

    // The display: what each plane shows (a plane's framebuffer is kept until a later commit
    // replaced it and that commit completed), the non-blocking flips still in flight, and
    // events read while waiting for one flip, kept for the next dispatch_events().
    std::mutex display_mutex;
    std::uint64_t last_commit = 0;                            // ids of applied commits, from 1
    std::map<std::uint32_t, std::pair<std::uint64_t, PlaneAssignment>> shown;  // plane -> (commit, state)
    std::map<std::uint64_t, PendingFlip> pending;             // flip id -> what it brings
    std::deque<FlipEvent> undelivered;
    std::mutex event_mutex;                                   // one reader of the fd at a time

    Status read_resources();
    void release_handles(const std::vector<std::uint32_t>& handles) noexcept;
    void remove_framebuffer(std::uint32_t id) noexcept;
    // The id of property `name` of `object` (of `type`), 0 when it has none.
    std::uint32_t property_id(std::uint32_t object, std::uint32_t type, const std::string& name);
    // Records `planes` as shown by commit `commit` (newer than whatever a plane shows); the
    // framebuffers they replace are moved to `replaced`, to be let go outside the lock.
    void show_locked(std::uint64_t commit, std::vector<PlaneAssignment>& planes,
                     std::vector<std::shared_ptr<Framebuffer::Core>>& replaced);
};

// A framebuffer and its GEM handles, shared by the Framebuffer, the Commits that show it and the
// device's record of what is on screen.
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
