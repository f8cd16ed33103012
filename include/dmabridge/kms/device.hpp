// SPDX-License-Identifier: MIT
#pragma once
/// @file kms/device.hpp
/// kms::Device: a DRM device with modesetting (a primary node, /dev/dri/cardN), its connectors,
/// CRTCs and planes, and framebuffers made from BufferDescs.
///
/// Every plane's formats come from its IN_FORMATS blob as a FormatSet with modifiers (the plain
/// format list with LINEAR where the driver has no blob), so a plane takes part in the same
/// negotiation as Vulkan, GBM, EGL and V4L2 (FormatSet::intersect).
///
/// GEM handles: drmPrimeFDToHandle gives the same handle for every import of one buffer on one
/// DRM file, and a GEM handle has no reference count: one GEM_CLOSE frees it for every user.
/// The device therefore imports on a DRM file of its own (the same device opened again, never
/// the application's fd, whose handles the application may close), counts the users of each
/// handle (every plane of every framebuffer), and closes a handle when its last user goes.
/// Two framebuffers of one buffer, two planes in one dma-buf, a buffer arriving again as a new
/// fd: all share the handle safely, in any order of removal.
///
/// Page flips: Commit::flip() queues a non-blocking commit whose completion arrives as one
/// FlipEvent per CRTC on fd(). The application polls fd() (POLLIN) in its own loop and calls
/// dispatch_events(), or, without an event loop, waits for one flip with wait_flip() (bounded).
///
/// What is on screen is kept: the device holds every framebuffer a plane shows, or will show
/// once a pending flip completes, until a later commit replaced it on that plane and completed
/// (a blocking apply() returned, or the flip's events arrived). Dropping a Framebuffer, or a
/// FramebufferCache evicting one, never removes a framebuffer the display may still scan out.
///
/// Thread safety: add_framebuffer(), gem_handles() and Framebuffers may be used from several
/// threads; connectors(), crtcs() and planes() return references that refresh() replaces, so
/// refresh() must not run while another thread reads them. A Framebuffer may outlive its Device
/// (it keeps what it needs).
/// fork(): a child shares the device's DRM files and handle numbers; Framebuffers destroyed in a
/// process other than the one that opened the Device leave the framebuffer and its handles
/// alone (they are the parent's). A child that displays opens a Device of its own.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <dmabridge/base/access.hpp>
#include <dmabridge/base/result.hpp>
#include <dmabridge/base/unique_fd.hpp>
#include <dmabridge/format/buffer_desc.hpp>
#include <dmabridge/format/format_set.hpp>

namespace dmabridge::kms {

/// A display mode, as the kernel's drm_mode_modeinfo (the fields an atomic MODE_ID blob holds).
struct Mode {
    std::uint32_t clock = 0;  ///< pixel clock in kHz
    /// Horizontal timings in pixels: visible width, sync start and end, total line; skew.
    std::uint16_t hdisplay = 0, hsync_start = 0, hsync_end = 0, htotal = 0, hskew = 0;
    /// Vertical timings in lines: visible height, sync start and end, total frame; scan count.
    std::uint16_t vdisplay = 0, vsync_start = 0, vsync_end = 0, vtotal = 0, vscan = 0;
    std::uint32_t vrefresh = 0;  ///< Hz, as the kernel reports it
    std::uint32_t flags = 0;     ///< DRM_MODE_FLAG_* (sync polarity, interlace, doublescan, ...)
    std::uint32_t type = 0;      ///< DRM_MODE_TYPE_* (preferred, driver, userdef, ...)
    std::string name;        ///< e.g. "1024x768"
    bool preferred = false;  ///< DRM_MODE_TYPE_PREFERRED
    /// The refresh rate in mHz computed from the timings (more exact than vrefresh), doubled
    /// for interlaced and halved for doublescan modes.
    std::uint32_t refresh_mhz() const noexcept;
};

/// A connector: an output (HDMI-A-1, Virtual-1) or a writeback connector.
struct Connector {
    std::uint32_t id = 0;    ///< the KMS object id
    std::string name;        ///< type and index, e.g. "Virtual-1", "Writeback-1"
    bool connected = false;  ///< DRM_MODE_CONNECTED
    bool writeback = false;  ///< a writeback connector (visible with the writeback client cap)
    std::vector<Mode> modes;  ///< the modes the connector reports, in the kernel's order
    std::uint32_t possible_crtcs = 0;  ///< bit i: CRTC index i can drive it (through its encoders)
};

/// A CRTC: composes planes into one picture for its connectors.
struct Crtc {
    std::uint32_t id = 0;     ///< the KMS object id
    std::uint32_t index = 0;  ///< its index, as possible_crtcs bits count
    bool active = false;      ///< a mode is set (it shows something now)
};

/// A plane's "type" property (DRM_PLANE_TYPE_OVERLAY, _PRIMARY, _CURSOR).
enum class PlaneType : std::uint8_t { overlay, primary, cursor };
/// "overlay", "primary" or "cursor" ("unknown" for a value outside the enum), for messages.
const char* to_string(PlaneType type) noexcept;

/// A plane: scans out one framebuffer into a CRTC's picture.
struct Plane {
    std::uint32_t id = 0;                 ///< the KMS object id
    PlaneType type = PlaneType::overlay;  ///< its "type" property
    std::uint32_t possible_crtcs = 0;  ///< bit i: CRTC index i
    /// (fourcc, modifier) pairs the plane scans out: its IN_FORMATS blob, or its format list
    /// with LINEAR where the driver has no blob.
    FormatSet formats;
    std::optional<std::uint64_t> zpos;  ///< where the driver exposes zpos
    bool rotation = false;              ///< has a "rotation" property
    bool scaling = false;               ///< has "SCALING_FILTER" (scales where the driver allows)
};

class Framebuffer;

/// One page-flip completion event (DRM_EVENT_FLIP_COMPLETE), read from the device's fd.
struct FlipEvent {
    std::uint64_t flip = 0;      ///< the id Commit::flip() returned
    std::uint32_t crtc = 0;      ///< the CRTC whose new state is now on screen
    std::uint32_t sequence = 0;  ///< the CRTC's vblank counter at the flip
    std::chrono::nanoseconds timestamp{0};  ///< the vblank's time (CLOCK_MONOTONIC)
};

/// A DRM device with modesetting. Move-only; a moved-from Device fails every call with
/// Errc::empty_object.
class Device {
public:
    /// Opens `path` (a primary node, "/dev/dri/card1"), or when empty the first primary node
    /// whose driver does atomic modesetting. Sets the client caps universal planes, atomic and
    /// writeback connectors, and reads the connectors, CRTCs and planes. Errors: the open's
    /// errno; Errc::unsupported for a node without modesetting or atomic (naming the driver);
    /// Errc::not_found when no node qualifies (naming each one tried and why).
    static Result<Device> open(const std::string& path = "");
    /// The same on an fd the application has (borrowed: the device keeps a dup for its atomic
    /// commits; the caller may close its own). The client caps are set on that file.
    static Result<Device> attach(int fd);

    /// Moves: the DRM files, framebuffers shown and flips in flight go with the new object.
    /// Assignment first lets go of the target's display state, as the destructor does.
    Device(Device&&) noexcept;
    Device& operator=(Device&&) noexcept;
    Device(const Device&) = delete;
    Device& operator=(const Device&) = delete;
    /// Lets go of what the display shows (framebuffers still on a plane stay there with CLOSEFB,
    /// Linux 6.8+; older kernels turn such planes off) and of the flips in flight (the kernel
    /// keeps what they scan out). Framebuffers the application holds stay valid.
    ~Device();

    /// False once moved from.
    bool valid() const noexcept { return state_ != nullptr; }
    /// The fd commits go through (this device's dup of the node or of the attached fd); -1 when
    /// moved from. Poll it for page-flip events.
    int fd() const noexcept;
    /// The kernel driver's name ("vkms", "i915", ...); empty when moved from.
    const std::string& driver() const noexcept;
    /// The device node ("/dev/dri/card1"): the one opened, or the attached fd's; empty when
    /// moved from.
    const std::string& path() const noexcept;
    /// The connectors, CRTCs and planes as read at open or by the last refresh() (no ioctl
    /// here); empty lists when moved from. The references are replaced by refresh().
    const std::vector<Connector>& connectors() const noexcept;
    const std::vector<Crtc>& crtcs() const noexcept;
    const std::vector<Plane>& planes() const noexcept;
    /// Re-reads connectors, CRTCs and planes (after a hotplug). Errc::empty_object when moved
    /// from; the ioctls' errno.
    Status refresh();

    /// A framebuffer of `desc` (validated first, before any ioctl that could take its fds):
    /// each distinct dma-buf imported once (PRIME) on the device's own import file, then
    /// DRM_IOCTL_MODE_ADDFB2 with the description's modifier (passed only when it is not
    /// DRM_FORMAT_MOD_INVALID). Errors: the description's; Errc::limit_exceeded for a size past
    /// the device's limits (naming both); the ioctls' errno with the planes' numbers.
    Result<Framebuffer> add_framebuffer(const BufferDesc& desc) const;

    /// GEM handles this device holds on its import file now (for tests and leak checks).
    std::size_t gem_handles() const;

    /// Reads the page-flip events waiting on fd() without blocking (a poll with zero timeout,
    /// then reads; no syscall beyond the poll when nothing waits) and returns them, after any
    /// that wait_flip() read meanwhile, oldest first. A flip completes when every CRTC it
    /// touched reported: the framebuffers it replaced are let go then. Events are parsed with
    /// bounds checks; events of other kinds are skipped. Errors: the read's errno;
    /// Errc::empty_object when moved from. One thread at a time reads (others wait for it).
    Result<std::vector<FlipEvent>> dispatch_events();
    /// Waits until flip `flip` completed, at most `timeout` (zero polls once), reading events
    /// meanwhile (kept for the next dispatch_events(): at most 256, the oldest dropped after
    /// that). Ready at once for a flip that already completed or that this device never made.
    Result<WaitStatus> wait_flip(std::uint64_t flip, Timeout timeout);
    /// Whether a flip on `crtc` is still in flight (a new non-blocking commit on it would get
    /// EBUSY).
    bool flip_pending(std::uint32_t crtc) const;

    struct State;

private:
    friend class Commit;
    friend class FramebufferCache;
    explicit Device(std::shared_ptr<State> state) noexcept : state_(std::move(state)) {}
    static Result<Framebuffer> make_framebuffer(const std::shared_ptr<State>& state, const BufferDesc& desc);
    std::shared_ptr<State> state_;
};

/// A framebuffer made by Device::add_framebuffer. Move-only. Destroying it removes the
/// framebuffer (DRM_IOCTL_MODE_CLOSEFB where the kernel has it, Linux 6.8: a framebuffer still
/// on a plane stays on screen until a commit replaces it; RMFB before, which turns such a plane
/// off) and then releases its GEM handles (closed when no other framebuffer uses them). A Commit
/// that shows it keeps it until the Commit is applied or destroyed: a framebuffer id is reused
/// by the kernel at once, so a removed one could otherwise name another client's framebuffer.
class Framebuffer {
public:
    /// An empty framebuffer (valid() false, id() 0).
    Framebuffer() = default;
    /// Moves: the framebuffer goes with the new object; the moved-from one is empty (its
    /// width(), height(), fourcc() and modifier() keep their values). Assignment lets go of the
    /// framebuffer held before, as the destructor does.
    Framebuffer(Framebuffer&& other) noexcept = default;
    Framebuffer& operator=(Framebuffer&& other) noexcept = default;
    Framebuffer(const Framebuffer&) = delete;
    Framebuffer& operator=(const Framebuffer&) = delete;
    /// Lets go of the framebuffer (see the class comment: removed once no Commit, cache or
    /// display state holds it).
    ~Framebuffer() = default;

    /// The framebuffer's id (FB_ID of a plane); 0 when empty.
    std::uint32_t id() const noexcept;
    /// The description's size in pixels, DRM fourcc and modifier, as given to add_framebuffer().
    std::uint32_t width() const noexcept { return width_; }
    std::uint32_t height() const noexcept { return height_; }
    std::uint32_t fourcc() const noexcept { return fourcc_; }
    std::uint64_t modifier() const noexcept { return modifier_; }
    /// True while it holds a framebuffer (false when default-made, moved from or reset()).
    bool valid() const noexcept { return core_ != nullptr; }

    /// Lets go of the framebuffer now, as the destructor does; harmless when empty.
    void reset() noexcept { core_.reset(); }

    struct Core;

private:
    friend class Device;
    friend class Commit;
    friend class FramebufferCache;
    std::shared_ptr<Core> core_;  // removes the framebuffer when its last owner goes
    std::uint32_t width_ = 0, height_ = 0, fourcc_ = 0;
    std::uint64_t modifier_ = 0;
};

}  // namespace dmabridge::kms
