// SPDX-License-Identifier: MIT
#pragma once
/// @file kms/commit.hpp
/// kms::Commit: one atomic request (a mode set, plane states, fences, writeback) built up and
/// then checked (TEST_ONLY) or applied. Atomic only: the device was opened with the atomic cap.
///
/// Fences: a plane given an in-fence (a SyncFile) is shown only once it signalled
/// (IN_FENCE_FD); without one the kernel waits for the framebuffer's dma-buf fences (implicit
/// sync). A CRTC's out-fence (OUT_FENCE_PTR) signals when the commit is on screen; a writeback
/// fence (WRITEBACK_OUT_FENCE_PTR) when the capture is written.
///
/// Lifetimes: the kernel keeps a reference to every framebuffer a plane shows, so removing a
/// Framebuffer that is on screen never frees memory the display reads (with CLOSEFB it even
/// stays on screen; see Framebuffer). A Commit borrows the Framebuffers it is given until it
/// is applied.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <dmabridge/base/result.hpp>
#include <dmabridge/kernel/sync_file.hpp>
#include <dmabridge/kms/device.hpp>

namespace dmabridge::kms {

/// A rectangle in pixels. A zero width or height means "the whole framebuffer" for a source and
/// "the source's size" for a destination.
struct Rect {
    std::int32_t x = 0, y = 0;            ///< top-left corner, pixels (whole pixels for a source)
    std::uint32_t width = 0, height = 0;  ///< size, pixels
};

/// What applying a commit gave back.
struct CommitFences {
    std::optional<SyncFile> out_fence;        ///< per want_out_fence(): signals once shown
    std::optional<SyncFile> writeback_fence;  ///< per capture(): signals once the capture is written
};

/// A non-blocking commit in flight (Commit::flip()).
struct Flip {
    std::uint64_t id = 0;  ///< FlipEvent::flip of its events; Device::wait_flip() takes it
    /// The CRTCs whose event completes it (those the commit named: its planes', connectors' and
    /// its own CRTC settings').
    std::vector<std::uint32_t> crtcs;
    CommitFences fences;  ///< the fences asked for (want_out_fence(), capture())
};

/// One atomic request. Not thread-safe; cheap to build, one per frame.
class Commit {
public:
    /// An empty request on `device` (shares its state; the Device may be moved meanwhile).
    /// On an empty Device, test(), apply() and flip() fail with Errc::empty_object.
    /// The builders below never fail themselves: a setting that cannot be built (an empty
    /// Framebuffer or in-fence, an in-fence that cannot be dup'd) is reported by test(), apply()
    /// and flip() as Errc::invalid_argument naming the plane (the last such setting only).
    explicit Commit(const Device& device);


    /// Drives `connector` from `crtc` with `mode` (a MODE_ID blob, ACTIVE = 1, the connector's
    /// CRTC_ID). Needs apply(allow_modeset = true).
    Commit& set_mode(std::uint32_t crtc, std::uint32_t connector, const Mode& mode);
    /// Turns `crtc` off (ACTIVE = 0, no mode). Its connectors must be detached in the same
    /// commit (the kernel refuses a disabled CRTC with connectors). Needs allow_modeset.
    Commit& disable_crtc(std::uint32_t crtc);
    /// Detaches `connector` (an output or a writeback connector) from its CRTC (CRTC_ID 0).
    Commit& detach(std::uint32_t connector);
    /// Shows `fb` on `plane` in `crtc`: its `source` part (whole framebuffer when empty) at
    /// `destination` (the source's size at its position when empty). `in_fence` (dup'd) holds the
    /// flip until it signals; none means implicit sync.
    Commit& show(std::uint32_t plane, std::uint32_t crtc, const Framebuffer& fb, Rect source = {},
                 Rect destination = {}, const SyncFile* in_fence = nullptr);
    /// Turns `plane` off (FB_ID and CRTC_ID 0).
    Commit& hide(std::uint32_t plane);
    /// Asks for `crtc`'s out-fence.
    Commit& want_out_fence(std::uint32_t crtc);
    /// Captures what `crtc` composes into `target` through the writeback connector `connector`
    /// (its CRTC_ID, WRITEBACK_FB_ID, WRITEBACK_OUT_FENCE_PTR). `target` must have the CRTC's
    /// mode size and a format of the connector's WRITEBACK_PIXEL_FORMATS.
    Commit& capture(std::uint32_t connector, std::uint32_t crtc, const Framebuffer& target);

    /// TEST_ONLY: whether the device would take the commit. The error names every plane's
    /// framebuffer (format, modifier, size) and the first property that could not be set.
    Status test(bool allow_modeset = false) const;
    /// Applies the commit and waits until it is (a blocking commit: the in-fences signalled and
    /// the new state is on screen); the framebuffers it replaced are let go. Returns the fences
    /// asked for. A Commit applies once (apply() or flip(); its in-fences and framebuffers are
    /// let go then); test(), apply() and flip() on an applied one fail with
    /// Errc::invalid_argument.
    /// Bounds: the in-fences are waited for here first, at most `fence_timeout` all together;
    /// one that has not signalled by then fails the call with ETIME, nothing committed. What
    /// remains unbounded is the kernel's own wait inside the ioctl for implicit fences (the
    /// framebuffers' dma-buf fences, when no in-fence was given) and for a previous commit on
    /// the same CRTCs (the kernel gives up after 10 s): a caller that must never block uses
    /// flip().
    Result<CommitFences> apply(bool allow_modeset = false, Timeout fence_timeout = std::chrono::seconds(10));
    /// Queues the commit without waiting (DRM_MODE_ATOMIC_NONBLOCK | DRM_MODE_PAGE_FLIP_EVENT):
    /// returns at once with the flip's id, and each CRTC it touches sends a FlipEvent once its
    /// new state is on screen (Device::dispatch_events(), Device::wait_flip()). The framebuffers
    /// it shows are kept until a later commit replaced them and completed; those it replaces are
    /// let go when its events arrived. Errors: EBUSY when a flip is still in flight on one of its
    /// CRTCs (named, with that flip's id: read its events first); EINVAL when a CRTC it touches
    /// is off and stays off (the kernel sends no event for it); otherwise as apply().
    Result<Flip> flip(bool allow_modeset = false);

private:
    struct Setting {
        std::uint32_t object;
        std::uint32_t object_type;
        std::string property;
        std::uint64_t value;
    };
    Result<int> run(std::uint32_t flags, CommitFences* fences, std::uint64_t user_data = 0) const;
    std::vector<std::uint32_t> event_crtcs() const;
    std::string describe() const;
    std::shared_ptr<Device::State> device_;
    std::vector<Setting> settings_;
    std::vector<Mode> modes_;          // owned copies for set_mode's blobs
    std::vector<SyncFile> in_fences_;  // dups, alive until apply
    std::vector<std::shared_ptr<Framebuffer::Core>> framebuffers_;  // shown: kept until applied
    std::vector<std::pair<std::uint32_t, std::uint32_t>> plane_crtcs_;  // (plane, crtc) per show/hide, in order
    std::vector<std::shared_ptr<Framebuffer::Core>> plane_fbs_;         // the framebuffer of each, null for hide
    std::vector<std::uint32_t> named_crtcs_;                            // CRTCs set, captured or driven
    bool applied_ = false;
    std::vector<std::string> shown_;   // "plane P: FB (fourcc modifier WxH)" for errors
    std::optional<std::uint32_t> out_fence_crtc_;
    std::optional<std::uint32_t> writeback_connector_;
    std::string error_;  // a setting that could not even be built
};

}  // namespace dmabridge::kms
