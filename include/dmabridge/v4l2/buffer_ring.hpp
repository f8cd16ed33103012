// SPDX-License-Identifier: MIT
#pragma once
/// @file v4l2/buffer_ring.hpp
/// BufferRing: a V4L2 queue's buffers as dma-bufs, in either memory mode:
/// - MMAP: the driver allocates and exports each buffer (VIDIOC_EXPBUF); not every driver can;
/// - DMABUF: the driver uses dma-bufs dmabridge allocated (Vulkan, GBM, udmabuf, a heap).
/// Life cycle: create ... queue every buffer ... stream_on ... dequeue / queue ... stream_off ...
/// destruction (which stops streaming and frees the driver's buffers).

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <dmabridge/base/access.hpp>
#include <dmabridge/base/result.hpp>
#include <dmabridge/format/buffer_desc.hpp>
#include <dmabridge/v4l2/device.hpp>

namespace dmabridge::v4l2 {

/// The most V4L2 buffer planes a ring handles (one per colour plane of a DRM format).
inline constexpr std::size_t max_buffer_planes = 4;

/// A buffer the driver handed back.
struct Dequeued {
    std::uint32_t index = 0;       ///< the ring slot; queue() it again once done with it
    std::uint32_t bytes_used = 0;  ///< bytesused of buffer plane 0 (plane_bytes_used[0])
    std::uint32_t sequence = 0;    ///< the driver's frame counter
    bool error = false;            ///< V4L2_BUF_FLAG_ERROR: the data may be corrupt
    /// Capture: the driver filled less than the ring's description covers (a plane's
    /// bytesused is short of the bytes its colour planes span), or put the data elsewhere
    /// (data_offset != 0, where every description starts at byte 0). The rest of the buffer
    /// holds a previous frame's bytes: skip the frame (queue it again) rather than read it.
    bool incomplete = false;
    std::uint32_t plane_count = 0;  ///< V4L2 buffer planes (1 for the single-plane API)
    /// Per buffer plane, as the driver reported them: bytesused (counted from the start of the
    /// plane, data_offset included) and data_offset.
    std::array<std::uint32_t, max_buffer_planes> plane_bytes_used{};   ///< bytesused per buffer plane
    std::array<std::uint32_t, max_buffer_planes> plane_data_offset{};  ///< data_offset per buffer plane
};

/// The buffers of one queue. Move-only. The Device must outlive the ring.
class BufferRing {
public:
    /// Who allocated the buffers: the driver (V4L2_MEMORY_MMAP, exported with VIDIOC_EXPBUF) or
    /// the application (V4L2_MEMORY_DMABUF).
    enum class Memory : std::uint8_t { mmap, dmabuf };

    /// Asks the driver for `count` buffers (it may give more or fewer; size() tells) in MMAP mode
    /// for the queue's current format, and exports each as dma-bufs with VIDIOC_EXPBUF: the
    /// descriptions are ready to import anywhere. Errors name the ioctl, the device and the
    /// numbers; EBUSY when another file streams on the device.
    static Result<BufferRing> create_exported(Device& device, Direction direction, std::uint32_t count);

    /// Gives the driver dma-bufs of our own (V4L2_MEMORY_DMABUF), one ring slot per description.
    /// Each description must be a layout the driver can honour, checked before the driver sees
    /// anything (Errc::invalid_argument or unsupported, saying which rule and the numbers):
    /// - the queue's current format: size, fourcc, LINEAR, one plane per colour plane;
    /// - each V4L2 buffer plane's first colour plane has the driver's bytesperline as stride
    ///   and holds sizeimage bytes from its offset (output: offset + sizeimage also within the
    ///   32-bit V4L2 length, as bytesused counts the offset);
    /// - offsets: the single-plane API has none, so every plane 0 starts at byte 0; capture
    ///   queues of the multi-plane API ignore data_offset (videobuf2 copies it only on output),
    ///   so each buffer plane starts at byte 0 of its dma-buf, and two buffer planes cannot share
    ///   one dma-buf; output queues honour offsets (sent as data_offset), and buffer planes may
    ///   share a dma-buf if they do not overlap;
    /// - formats that put several colour planes in one V4L2 buffer (NV12 of the single-plane
    ///   API): the chroma planes are in the same dma-buf, exactly where the driver puts them
    ///   (one after the other, strides derived from bytesperline).
    /// Costs VIDIOC_G_FMT and VIDIOC_REQBUFS.
    static Result<BufferRing> create_imported(Device& device, Direction direction, std::vector<BufferDesc> buffers);

    /// Moves: the driver's buffers and the streaming state go with the new object. Assignment
    /// first stops and releases the target's own ring, as the destructor does. A moved-from
    /// ring has size() 0; queue(), dequeue(), stream_on() and stream_off() on it fail with
    /// Errc::empty_object before any ioctl.
    BufferRing(BufferRing&&) noexcept;
    BufferRing& operator=(BufferRing&&) noexcept;
    BufferRing(const BufferRing&) = delete;
    BufferRing& operator=(const BufferRing&) = delete;
    /// Stops streaming and releases the driver's buffers (VIDIOC_STREAMOFF, VIDIOC_REQBUFS 0).
    ~BufferRing();

    /// The ring's memory mode.
    Memory memory() const noexcept { return memory_; }
    /// The number of slots (what the driver granted; may differ from the count asked for).
    std::size_t size() const noexcept { return buffers_.size(); }
    /// Slot `index`'s buffer as dma-bufs (for MMAP rings: the exported buffer). `index` must be
    /// below size(): an index out of range throws std::out_of_range (std::vector::at), the one
    /// exception in the API.
    const BufferDesc& buffer(std::uint32_t index) const { return buffers_.at(index); }
    /// The queue's format as read when the ring was made.
    const Format& format() const noexcept { return format_; }

    /// Gives slot `index` to the driver (VIDIOC_QBUF). For output queues `bytes_used` is the
    /// payload of buffer plane 0, counted from the plane's offset (0: the whole sizeimage); the
    /// ring sends bytesused = offset + payload with data_offset = offset. A ring whose format
    /// has several buffer planes takes only 0 here (every plane full): give one payload per
    /// plane with the span overload. Errors: invalid_argument for a bad index or a payload that
    /// does not fit the plane; the errno of VIDIOC_QBUF (EAGAIN is returned, never retried).
    Status queue(std::uint32_t index, std::uint32_t bytes_used = 0);
    /// The same with one payload per V4L2 buffer plane (`bytes_used` empty: all full;
    /// otherwise exactly format().planes.size() entries, 0 meaning that plane's sizeimage).
    Status queue(std::uint32_t index, std::span<const std::uint32_t> bytes_used);
    /// Waits up to `timeout` for the driver to hand back a buffer: VIDIOC_DQBUF at once, and
    /// when nothing is ready, poll() for up to `timeout` and VIDIOC_DQBUF again. Returns nothing
    /// on timeout (Timeout{0} never blocks). Check Dequeued::error and Dequeued::incomplete
    /// before reading a captured frame.
    Result<std::optional<Dequeued>> dequeue(Timeout timeout);
    /// Starts the queue (VIDIOC_STREAMON). A capture driver may need some buffers queued first.
    /// Errors: the ioctl's errno, named with the device.
    Status stream_on();
    /// Stops the queue (VIDIOC_STREAMOFF): the driver gives back every queued buffer without
    /// dequeuing them; queue them again before the next stream_on(). Errors: the ioctl's errno.
    Status stream_off();


private:
    // Where each colour plane of the format lives in the V4L2 buffer planes, as the driver
    // fixes it, and the bytes (from the plane's start) a captured frame must fill.
    struct ColourPlace {
        std::uint32_t buffer_plane = 0;
        std::uint64_t offset = 0;  // from the start of the buffer plane's data
        std::uint64_t stride = 0;
    };
    struct Placement {
        std::vector<ColourPlace> colour;   // per colour plane
        std::vector<std::uint64_t> needed;  // per buffer plane
    };
    static Result<Placement> placement(const Format& format, const std::string& what);

    BufferRing() = default;
    Result<std::optional<Dequeued>> try_dequeue();  // one non-blocking VIDIOC_DQBUF
    void release() noexcept;

    int fd_ = -1;  // borrowed from the Device
    std::string device_;
    std::uint32_t type_ = 0;
    Memory memory_ = Memory::mmap;
    Format format_;
    Placement placement_;
    std::vector<BufferDesc> buffers_;
    bool streaming_ = false;
};

}  // namespace dmabridge::v4l2
