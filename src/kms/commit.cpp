// SPDX-License-Identifier: MIT
// kms::Commit: settings collected as (object, property name, value) and turned into one
// drmModeAtomicReq when checked or applied; the property ids come from the device's cache by
// name then, so that an error can say which property of which object the device does not have.
// Applied commits update the device's record of what each plane shows (device_state.hpp).
#include <dmabridge/kms/commit.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <utility>

#include <xf86drm.h>
#include <xf86drmMode.h>

#include <dmabridge/format/fourcc.hpp>

#include "base/sys.hpp"
#include "kms/device_state.hpp"

namespace dmabridge::kms {

namespace {

std::string n(std::uint64_t v) { return std::to_string(v); }

// Settings whose value is not the value: an index into the commit's own lists.
constexpr const char* mode_blob = "MODE_ID";
constexpr const char* in_fence = "IN_FENCE_FD";
constexpr const char* out_fence = "OUT_FENCE_PTR";
constexpr const char* writeback_fence = "WRITEBACK_OUT_FENCE_PTR";

const char* type_name(std::uint32_t type) {
    switch (type) {
    case DRM_MODE_OBJECT_CRTC: return "CRTC";
    case DRM_MODE_OBJECT_CONNECTOR: return "connector";
    case DRM_MODE_OBJECT_PLANE: return "plane";
    default: return "object";
    }
}

}  // namespace

Commit::Commit(const Device& device) : device_(device.state_) {
    if (!device_) error_ = "the kms::Device is empty (moved from)";
}

Commit& Commit::set_mode(std::uint32_t crtc, std::uint32_t connector, const Mode& mode) {
    modes_.push_back(mode);
    settings_.push_back({crtc, DRM_MODE_OBJECT_CRTC, mode_blob, modes_.size() - 1});
    settings_.push_back({crtc, DRM_MODE_OBJECT_CRTC, "ACTIVE", 1});
    settings_.push_back({connector, DRM_MODE_OBJECT_CONNECTOR, "CRTC_ID", crtc});
    named_crtcs_.push_back(crtc);
    return *this;
}

Commit& Commit::disable_crtc(std::uint32_t crtc) {
    settings_.push_back({crtc, DRM_MODE_OBJECT_CRTC, "ACTIVE", 0});
    settings_.push_back({crtc, DRM_MODE_OBJECT_CRTC, mode_blob, ~std::uint64_t{0}});  // no mode
    named_crtcs_.push_back(crtc);
    return *this;
}

Commit& Commit::detach(std::uint32_t connector) {
    settings_.push_back({connector, DRM_MODE_OBJECT_CONNECTOR, "CRTC_ID", 0});
    return *this;
}

Commit& Commit::show(std::uint32_t plane, std::uint32_t crtc, const Framebuffer& fb, Rect source, Rect destination,
                     const SyncFile* fence) {
    if (!fb.valid()) {
        error_ = "plane " + n(plane) + ": the Framebuffer is empty (moved from or removed)";
        return *this;
    }
    if (source.width == 0 || source.height == 0) source = {0, 0, fb.width(), fb.height()};
    if (destination.width == 0 || destination.height == 0) {
        destination.width = source.width;
        destination.height = source.height;
    }
    const auto set = [&](const char* name, std::uint64_t value) {
        settings_.push_back({plane, DRM_MODE_OBJECT_PLANE, name, value});
    };
    framebuffers_.push_back(fb.core_);
    plane_crtcs_.emplace_back(plane, crtc);
    plane_fbs_.push_back(fb.core_);
    named_crtcs_.push_back(crtc);
    set("FB_ID", fb.id());
    set("CRTC_ID", crtc);
    // Source coordinates are 16.16 fixed point; destination ones signed integers.
    set("SRC_X", std::uint64_t(std::uint32_t(source.x)) << 16);
    set("SRC_Y", std::uint64_t(std::uint32_t(source.y)) << 16);
    set("SRC_W", std::uint64_t{source.width} << 16);
    set("SRC_H", std::uint64_t{source.height} << 16);
    set("CRTC_X", static_cast<std::uint64_t>(static_cast<std::int64_t>(destination.x)));
    set("CRTC_Y", static_cast<std::uint64_t>(static_cast<std::int64_t>(destination.y)));
    set("CRTC_W", destination.width);
    set("CRTC_H", destination.height);
    if (fence) {
        if (!fence->valid()) {
            error_ = "plane " + n(plane) + ": the in-fence is empty (moved from or released)";
            return *this;
        }
        auto copy = fence->dup();
        if (!copy) {
            error_ = "plane " + n(plane) + ": " + copy.error().message();
            return *this;
        }
        in_fences_.push_back(std::move(*copy));
        set(in_fence, in_fences_.size() - 1);
    }
    shown_.push_back("plane " + n(plane) + ": framebuffer " + n(fb.id()) + " (" + fourcc_to_string(fb.fourcc()) + " " +
                     modifier_to_string(fb.modifier()) + " " + n(fb.width()) + "x" + n(fb.height()) + ", source " +
                     n(source.width) + "x" + n(source.height) + "+" + std::to_string(source.x) + "+" +
                     std::to_string(source.y) + ", on CRTC " + n(crtc) + " at " + std::to_string(destination.x) + "," +
                     std::to_string(destination.y) + " " + n(destination.width) + "x" + n(destination.height) + ")");
    return *this;
}

Commit& Commit::hide(std::uint32_t plane) {
    plane_crtcs_.emplace_back(plane, 0);
    plane_fbs_.push_back(nullptr);
    settings_.push_back({plane, DRM_MODE_OBJECT_PLANE, "FB_ID", 0});
    settings_.push_back({plane, DRM_MODE_OBJECT_PLANE, "CRTC_ID", 0});
    return *this;
}

Commit& Commit::want_out_fence(std::uint32_t crtc) {
    out_fence_crtc_ = crtc;
    named_crtcs_.push_back(crtc);
    return *this;
}

Commit& Commit::capture(std::uint32_t connector, std::uint32_t crtc, const Framebuffer& target) {
    if (!target.valid()) {
        error_ = "writeback connector " + n(connector) + ": the target Framebuffer is empty";
        return *this;
    }
    settings_.push_back({connector, DRM_MODE_OBJECT_CONNECTOR, "CRTC_ID", crtc});
    framebuffers_.push_back(target.core_);
    settings_.push_back({connector, DRM_MODE_OBJECT_CONNECTOR, "WRITEBACK_FB_ID", target.id()});
    writeback_connector_ = connector;
    named_crtcs_.push_back(crtc);
    shown_.push_back("writeback connector " + n(connector) + ": framebuffer " + n(target.id()) + " (" +
                     fourcc_to_string(target.fourcc()) + " " + n(target.width()) + "x" + n(target.height()) + ")");
    return *this;
}

std::string Commit::describe() const {
    std::string out;
    for (const auto& s : shown_) out += (out.empty() ? "" : "; ") + s;
    return out.empty() ? "no plane" : out;
}

Result<int> Commit::run(std::uint32_t flags, CommitFences* fences, std::uint64_t user_data) const {
    const std::string what = std::string("kms ") + ((flags & DRM_MODE_ATOMIC_TEST_ONLY) ? "test" : "commit");
    if (applied_) return Error::library(Errc::invalid_argument, what + ": the commit was applied already (build a new one)");
    if (!error_.empty()) {
        if (!device_) return Error::library(Errc::empty_object, what + ": " + error_);
        return Error::library(Errc::invalid_argument, what + ": " + error_);
    }
    const int fd = device_->fd.get();
    drmModeAtomicReqPtr req = drmModeAtomicAlloc();
    if (!req) return Error::from_errno(ENOMEM, what + ": drmModeAtomicAlloc");
    std::vector<std::uint32_t> blobs;
    // The kernel writes the out-fences as 32-bit fds (measured on vkms: s32, not s64).
    std::int32_t out_fd = -1, writeback_fd = -1;
    const auto cleanup = [&] {
        drmModeAtomicFree(req);
        for (std::uint32_t b : blobs) (void)drmModeDestroyPropertyBlob(fd, b);
    };
    const auto add = [&](std::uint32_t object, std::uint32_t type, const std::string& name,
                         std::uint64_t value) -> Status {
        const std::uint32_t prop = device_->property_id(object, type, name);
        if (prop == 0)
            return Error::library(Errc::unsupported, what + ": " + type_name(type) + " " + n(object) +
                                                         " has no property " + name + " (" + describe() + ")");
        if (drmModeAtomicAddProperty(req, object, prop, value) < 0)
            return Error::from_errno(ENOMEM, what + ": drmModeAtomicAddProperty");
        return {};
    };
    for (const Setting& s : settings_) {
        std::uint64_t value = s.value;
        if (s.property == mode_blob && value != ~std::uint64_t{0}) {
            const drmModeModeInfo info = modeinfo_of(modes_[value]);
            std::uint32_t blob = 0;
            if (drmModeCreatePropertyBlob(fd, &info, sizeof info, &blob) != 0) {
                const int err = errno;
                cleanup();
                return Error::from_errno(err, what + ": MODE_ID blob of mode " + modes_[s.value].name);
            }
            blobs.push_back(blob);
            value = blob;
        } else if (s.property == mode_blob) {
            value = 0;
        } else if (s.property == in_fence) {
            value = static_cast<std::uint64_t>(in_fences_[value].fd());
        }
        if (auto ok = add(s.object, s.object_type, s.property, value); !ok) {
            cleanup();
            return ok.error();
        }
    }
    if (!(flags & DRM_MODE_ATOMIC_TEST_ONLY)) {
        if (out_fence_crtc_)
            if (auto ok = add(*out_fence_crtc_, DRM_MODE_OBJECT_CRTC, out_fence,
                              static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(&out_fd)));
                !ok) {
                cleanup();
                return ok.error();
            }
        if (writeback_connector_)
            if (auto ok = add(*writeback_connector_, DRM_MODE_OBJECT_CONNECTOR, writeback_fence,
                              static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(&writeback_fd)));
                !ok) {
                cleanup();
                return ok.error();
            }
    }
    // The flip's id comes back in each of its events' user_data.
    const int rc = drmModeAtomicCommit(fd, req, flags, reinterpret_cast<void*>(static_cast<std::uintptr_t>(user_data)));
    const int err = errno;
    cleanup();
    if (rc != 0) {
        // EACCES: this file is not DRM master (another process, a compositor or another
        // kms::Device, holds it): the kernel refuses at once, nothing waits.
        std::string hint = err == EACCES ? " (not DRM master: another process holds the display)" : "";
        if (err == EBUSY && (flags & DRM_MODE_ATOMIC_NONBLOCK))
            hint = " (a commit is still in flight on one of its CRTCs: wait for its page-flip event)";
        if (err == EINVAL && (flags & DRM_MODE_PAGE_FLIP_EVENT))
            hint = " (a page-flip event was asked for: a CRTC that is off and stays off has none)";
        return Error::from_errno(err, what + " refused" + hint + ": " + describe());
    }
    if (fences) {
        if (out_fd >= 0) {
            auto f = SyncFile::adopt(UniqueFd(out_fd));
            if (!f) return f.error().with_context(what + ": out-fence");
            fences->out_fence = std::move(*f);
        }
        if (writeback_fd >= 0) {
            auto f = SyncFile::adopt(UniqueFd(writeback_fd));
            if (!f) return f.error().with_context(what + ": writeback fence");
            fences->writeback_fence = std::move(*f);
        }
    }
    return 0;
}

Status Commit::test(bool allow_modeset) const {
    std::uint32_t flags = DRM_MODE_ATOMIC_TEST_ONLY;
    if (allow_modeset) flags |= DRM_MODE_ATOMIC_ALLOW_MODESET;
    auto r = run(flags, nullptr);
    if (!r) return r.error();
    return {};
}

std::vector<std::uint32_t> Commit::event_crtcs() const {
    // The CRTCs the kernel puts into the commit's state, as far as this commit names them (its
    // CRTC settings, its planes' new CRTCs and the CRTCs its hidden planes were on, its
    // connectors' CRTCs): each of them sends an event. The kernel may add others; their events
    // are reported too, but completion never waits for one that might not come.
    std::vector<std::uint32_t> crtcs;
    const auto add = [&](std::uint32_t c) {
        if (c != 0 && std::find(crtcs.begin(), crtcs.end(), c) == crtcs.end()) crtcs.push_back(c);
    };
    for (std::uint32_t c : named_crtcs_) add(c);
    std::lock_guard lock(device_->display_mutex);
    for (const auto& plane_crtc : plane_crtcs_)
        if (auto it = device_->shown.find(plane_crtc.first); it != device_->shown.end()) add(it->second.second.crtc);
    return crtcs;
}

namespace {

// The plane states a commit leaves on screen, the last setting of each plane winning.
std::vector<PlaneAssignment> assignments(const std::vector<std::pair<std::uint32_t, std::uint32_t>>& planes,
                                         const std::vector<std::shared_ptr<Framebuffer::Core>>& fbs) {
    std::vector<PlaneAssignment> out;
    for (std::size_t i = 0; i < planes.size(); ++i) {
        auto same = std::find_if(out.begin(), out.end(), [&](const PlaneAssignment& a) { return a.plane == planes[i].first; });
        PlaneAssignment a{planes[i].first, planes[i].second, fbs[i]};
        if (same != out.end())
            *same = std::move(a);
        else
            out.push_back(std::move(a));
    }
    return out;
}

}  // namespace

Result<CommitFences> Commit::apply(bool allow_modeset, Timeout fence_timeout) {
    if (!applied_ && error_.empty() && device_) {
        // The kernel waits for in-fences without a limit: wait here first, bounded, so that a
        // fence that never signals fails this call instead of hanging it.
        const detail::Deadline deadline(fence_timeout);
        for (std::size_t i = 0; i < in_fences_.size(); ++i) {
            const auto left = deadline.wait_timeout();
            auto waited = in_fences_[i].wait(left ? *left : Timeout{0});
            if (!waited) return waited.error().with_context("kms commit: in-fence " + n(i));
            if (*waited == WaitStatus::timed_out)
                return Error::from_errno(ETIME, "kms commit: in-fence " + n(i) + " (of " + n(in_fences_.size()) +
                                                    ") did not signal within " +
                                                    std::to_string(fence_timeout.count()) +
                                                    " ms; nothing was committed (" + describe() + ")");
        }
    }
    CommitFences fences;
    auto r = run(allow_modeset ? DRM_MODE_ATOMIC_ALLOW_MODESET : 0u, &fences);
    if (!r) return r.error();
    applied_ = true;
    // A blocking commit returns once its state is on screen: what it replaced is done with.
    auto shown = assignments(plane_crtcs_, plane_fbs_);
    std::vector<std::shared_ptr<Framebuffer::Core>> replaced;
    {
        std::lock_guard lock(device_->display_mutex);
        device_->show_locked(++device_->last_commit, shown, replaced);
    }
    replaced.clear();  // outside the lock: removing a framebuffer takes the device's lock
    in_fences_.clear();
    framebuffers_.clear();
    plane_fbs_.clear();
    return fences;
}

Result<Flip> Commit::flip(bool allow_modeset) {
    if (applied_) return Error::library(Errc::invalid_argument, "kms flip: the commit was applied already (build a new one)");
    if (!error_.empty()) {
        if (!device_) return Error::library(Errc::empty_object, "kms flip: " + error_);
        return Error::library(Errc::invalid_argument, "kms flip: " + error_);
    }
    Flip out;
    out.crtcs = event_crtcs();
    if (out.crtcs.empty())
        return Error::library(Errc::invalid_argument,
                              "kms flip: the commit touches no CRTC, so no event would complete it (" + describe() + ")");
    std::uint64_t id = 0;
    {
        // Refused here, naming the flip in flight, before the kernel's bare EBUSY.
        std::lock_guard lock(device_->display_mutex);
        for (const auto& [pending_id, p] : device_->pending)
            for (std::uint32_t c : out.crtcs)
                if (std::find(p.crtcs_left.begin(), p.crtcs_left.end(), c) != p.crtcs_left.end())
                    return Error::from_errno(EBUSY, "kms flip: flip " + n(pending_id) + " is still in flight on CRTC " + n(c) +
                                                        " (read its page-flip event: Device::dispatch_events or wait_flip)");
        id = ++device_->last_commit;
        // Recorded before the ioctl: its events can be read by another thread before this one
        // runs again.
        PendingFlip p;
        p.crtcs_left = out.crtcs;
        p.planes = assignments(plane_crtcs_, plane_fbs_);
        p.keep = framebuffers_;
        device_->pending.emplace(id, std::move(p));
    }
    std::uint32_t flags = DRM_MODE_ATOMIC_NONBLOCK | DRM_MODE_PAGE_FLIP_EVENT;
    if (allow_modeset) flags |= DRM_MODE_ATOMIC_ALLOW_MODESET;
    auto r = run(flags, &out.fences, id);
    if (!r) {
        PendingFlip dropped;  // let go outside the lock
        {
            std::lock_guard lock(device_->display_mutex);
            if (auto it = device_->pending.find(id); it != device_->pending.end()) {
                dropped = std::move(it->second);
                device_->pending.erase(it);
            }
        }
        return r.error();
    }
    applied_ = true;
    out.id = id;
    in_fences_.clear();
    framebuffers_.clear();
    plane_fbs_.clear();
    return out;
}

}  // namespace dmabridge::kms
