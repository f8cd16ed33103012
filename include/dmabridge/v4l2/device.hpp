// SPDX-License-Identifier: MIT
#pragma once
/// @file v4l2/device.hpp
/// A V4L2 video device (camera, capture card, codec or output): capabilities, formats, frame
/// sizes and format negotiation, through the single-plane and the multi-plane API alike.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <dmabridge/base/result.hpp>
#include <dmabridge/base/unique_fd.hpp>

namespace dmabridge::v4l2 {

/// Which queue of a device: frames coming from it, or going to it.
enum class Direction : std::uint8_t { capture, output };

/// What VIDIOC_QUERYCAP says about a device.
struct Capabilities {
    std::string driver;          ///< e.g. "vivid", "uvcvideo"
    std::string card;            ///< the device's name
    std::string bus;             ///< e.g. "platform:vivid-000"
    std::uint32_t device_caps = 0;  ///< V4L2_CAP_* of this node
    bool capture = false;        ///< has a video capture queue
    bool output = false;         ///< has a video output queue
    bool multiplanar = false;    ///< its queues use the *_MPLANE API
    bool streaming = false;      ///< supports streaming I/O (needed for buffer rings)
};

/// One plane of a negotiated format.
struct PlaneFormat {
    std::uint32_t bytes_per_line = 0;  ///< the stride
    std::uint32_t size_image = 0;      ///< the minimum buffer size for this plane
};

/// A negotiated format (what the driver chose in VIDIOC_S_FMT).
struct Format {
    std::uint32_t width = 0;         ///< pixels
    std::uint32_t height = 0;        ///< pixels
    std::uint32_t pixel_format = 0;  ///< the V4L2 fourcc
    std::uint32_t drm_fourcc = 0;    ///< the DRM fourcc with the same memory layout, 0 if none
    bool multiplanar = false;        ///< negotiated through the *_MPLANE API
    std::vector<PlaneFormat> planes;  ///< one per buffer (several only for the M formats)
};

/// A discrete frame size.
struct FrameSize {
    std::uint32_t width = 0;   ///< pixels
    std::uint32_t height = 0;  ///< pixels
    /// Equal when both numbers are.
    friend bool operator==(const FrameSize&, const FrameSize&) = default;
};

/// A frame interval (seconds per frame, as a fraction): 1/30 is 30 frames per second.
struct FrameInterval {
    std::uint32_t numerator = 0;    ///< seconds, numerator
    std::uint32_t denominator = 0;  ///< seconds, denominator
    /// Equal when both numbers are (1/30 and 2/60 differ).
    friend bool operator==(const FrameInterval&, const FrameInterval&) = default;
};

/// Which buffer memory a queue supports (VIDIOC_REQBUFS capabilities, and an EXPBUF probe).
struct MemorySupport {
    bool mmap = false;     ///< the driver allocates (V4L2_MEMORY_MMAP)
    bool dmabuf = false;   ///< the driver takes dma-bufs (V4L2_MEMORY_DMABUF): it imports
    bool exports = false;  ///< VIDIOC_EXPBUF worked on an MMAP buffer: it exports
    /// The queue had buffers (a ring of this or another file): nothing was allocated to probe,
    /// and `exports` is true only if one of those buffers could be exported (MMAP buffers of
    /// this file's ring; videobuf2 refuses VIDIOC_EXPBUF to other files), false when unproven.
    bool in_use = false;
};

/// The DRM fourcc with the memory layout of V4L2 fourcc `v4l2` (0 when there is none). Most are
/// the same code (YUYV, NV12, XR24 ...); RGBP is RG16, and the M variants (NM12, YM12) map to
/// their single-buffer DRM formats with one buffer per plane.
std::uint32_t drm_fourcc_for(std::uint32_t v4l2) noexcept;

/// "YUYV", or "0x..." for unprintable codes.
std::string fourcc_name(std::uint32_t code);

/// An open V4L2 device node. Move-only. Thread safety: one thread at a time.
class Device {
public:
    /// Opens `path` (O_RDWR | O_NONBLOCK | O_CLOEXEC) and queries its capabilities: a stat(),
    /// an open() and VIDIOC_QUERYCAP. Errors: the errno of stat or open (ENOENT, EACCES, ...);
    /// Errc::unsupported, saying what the node is, for anything that is not a V4L2 node: a
    /// regular file, /dev/null, a DRM node (checked by its device number before open(): DRM
    /// would answer VIDIOC_QUERYCAP as DRM_IOCTL_VERSION), or a node whose VIDIOC_QUERYCAP
    /// fails or reports no capabilities. Any V4L2 node qualifies (video, vbi, radio, ...): use
    /// the overload with a Direction to require a video queue.
    static Result<Device> open(std::string_view path);
    /// The same, and the node must stream video in `direction` (V4L2_CAP_VIDEO_CAPTURE or
    /// _OUTPUT, single- or multi-planar, and V4L2_CAP_STREAMING): otherwise Errc::unsupported
    /// "cannot stream video capture/output", naming the node, its driver and its caps.
    static Result<Device> open(std::string_view path, Direction direction);
    /// Opens the first /dev/videoN that can stream in `direction`. Errc::not_found names the
    /// nodes that were looked at.
    static Result<Device> find(Direction direction);

    /// An empty Device, as a moved-from one: fd() is -1, path() is empty and every call fails
    /// with Errc::empty_object.
    Device() noexcept = default;

    /// The node's path as opened, e.g. "/dev/video0".
    const std::string& path() const noexcept { return path_; }
    /// VIDIOC_QUERYCAP's answer, read at open.
    const Capabilities& capabilities() const noexcept { return caps_; }
    /// The node's fd (non-blocking), still owned by the Device; -1 once moved from. Every call
    /// on a moved-from Device (and BufferRing::create_* with one) fails with Errc::empty_object
    /// before any ioctl.
    int fd() const noexcept { return fd_.get(); }

    /// The V4L2 fourccs the `direction` queue offers (VIDIOC_ENUM_FMT).
    Result<std::vector<std::uint32_t>> formats(Direction direction) const;
    /// The discrete frame sizes of `pixel_format` (VIDIOC_ENUM_FRAMESIZES); empty when the
    /// driver gives a continuous or stepwise range instead.
    Result<std::vector<FrameSize>> frame_sizes(std::uint32_t pixel_format) const;

    /// Sets the format of the `direction` queue (VIDIOC_S_FMT). Fails with Errc::unsupported,
    /// naming what the driver would do instead, when the driver changes the pixel format or the
    /// size (the driver has then applied its own choice: format() tells); also when the device
    /// has no queue in that direction. Fails with EBUSY while buffers are allocated.
    Result<Format> set_format(Direction direction, std::uint32_t width, std::uint32_t height,
                              std::uint32_t pixel_format);
    /// The current format of the `direction` queue (VIDIOC_G_FMT).
    Result<Format> format(Direction direction) const;

    /// Which memory the `direction` queue supports. Never disturbs buffers the queue already has
    /// (a live BufferRing of this Device or of another file on the same node): it asks with
    /// VIDIOC_CREATE_BUFS of count 0, which allocates and frees nothing, and only when the queue
    /// has no buffers allocates one MMAP buffer for a moment to try VIDIOC_EXPBUF; when it has
    /// some, it tries VIDIOC_EXPBUF on them instead (MemorySupport::in_use). A few ioctls;
    /// the probe buffer costs one frame of driver memory for the moment it exists.
    Result<MemorySupport> memory_support(Direction direction) const;

    /// Asks for frames every `interval` on the `direction` queue (VIDIOC_S_PARM) and returns the
    /// interval the driver chose, which may differ (drivers round to what they can do).
    /// Errc::unsupported when the driver has no frame-interval control.
    Result<FrameInterval> set_frame_interval(Direction direction, FrameInterval interval);
    /// The discrete frame intervals the driver offers for a format and size, fastest last as
    /// the driver lists them (VIDIOC_ENUM_FRAMEINTERVALS); empty for continuous ranges.
    Result<std::vector<FrameInterval>> frame_intervals(std::uint32_t pixel_format, std::uint32_t width,
                                                       std::uint32_t height) const;

    /// Selects input `index` of a capture device (VIDIOC_S_INPUT) or output `index` of an
    /// output device (VIDIOC_S_OUTPUT). Fails with EBUSY while streaming, EINVAL for an index
    /// the device does not have.
    Status select_input(std::uint32_t index);

    Status select_output(std::uint32_t index);

    /// The id of the control named `name` (as VIDIOC_QUERY_EXT_CTRL reports it, e.g.
    /// "HDMI 000-0 Is Connected To"; ASCII case ignored). Errc::not_found names the device.
    Result<std::uint32_t> control_id(std::string_view name) const;
    /// The value of menu item `item` of menu control `id` (VIDIOC_QUERYMENU).
    Result<std::int64_t> menu_value(std::uint32_t id, std::string_view item) const;
    /// Sets control `id` (VIDIOC_S_EXT_CTRLS). Errors name the control and the value.
    Status set_control(std::uint32_t id, std::int64_t value);

    /// The buffer type (V4L2_BUF_TYPE_*) of the `direction` queue, or an error if the device has
    /// none.
    Result<std::uint32_t> buffer_type(Direction direction) const;

private:
    Device(UniqueFd fd, std::string path, Capabilities caps) noexcept
        : fd_(std::move(fd)), path_(std::move(path)), caps_(std::move(caps)) {}
    UniqueFd fd_;
    std::string path_;
    Capabilities caps_;
};

}  // namespace dmabridge::v4l2
