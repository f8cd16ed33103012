// SPDX-License-Identifier: MIT
#pragma once
/// @file v4l2/buffer_ring.hpp
/// BufferRing: a V4L2 queue's buffers as dma-bufs, in either memory mode:
/// - MMAP: the driver allocates and exports each buffer (VIDIOC_EXPBUF); not every driver can;
/// - DMABUF: the driver uses dma-bufs dmabridge allocated (Vulkan, GBM, udmabuf, a heap).
/// Life cycle: create ... queue every buffer ... stream_on ... dequeue / queue ... stream_off ...
/// destruction (which stops streaming and frees the driver's buffers).

#include <chrono>
#include <cstdint>
#include <optional>
#include <vector>

#include <dmabridge/access.hpp>
#include <dmabridge/buffer_desc.hpp>
#include <dmabridge/result.hpp>
#include <dmabridge/v4l2/device.hpp>

namespace dmabridge::v4l2 {

/// A buffer the driver handed back.
struct Dequeued {
    std::uint32_t index = 0;
    std::uint32_t bytes_used = 0;  ///< of plane 0
    std::uint32_t sequence = 0;    ///< the driver's frame counter
    bool error = false;            ///< V4L2_BUF_FLAG_ERROR: the data may be corrupt
};

/// The buffers of one queue. Move-only. The Device must outlive the ring.
class BufferRing {
public:
    enum class Memory : std::uint8_t { mmap, dmabuf };

    /// Asks the driver for `count` buffers (it may give more or fewer; size() tells) in MMAP mode
    /// for the queue's current format, and exports each as dma-bufs with VIDIOC_EXPBUF: the
    /// descriptions are ready to import anywhere. Errors name the ioctl, the device and the
    /// numbers; EBUSY when another file streams on the device.
    static Result<BufferRing> create_exported(Device& device, Direction direction, std::uint32_t count);

    /// Gives the driver dma-bufs of our own (V4L2_MEMORY_DMABUF), one ring slot per description.
    /// Each description must match the queue's current format: its planes (one per V4L2 buffer
    /// plane) must hold at least sizeimage bytes from their offset, and their strides must equal
    /// the driver's bytesperline (V4L2 has no per-buffer stride). Checked before the driver sees
    /// anything.
    static Result<BufferRing> create_imported(Device& device, Direction direction, std::vector<BufferDesc> buffers);

    BufferRing(BufferRing&&) noexcept;
    BufferRing& operator=(BufferRing&&) noexcept;
    BufferRing(const BufferRing&) = delete;
    BufferRing& operator=(const BufferRing&) = delete;
    /// Stops streaming and releases the driver's buffers (VIDIOC_STREAMOFF, VIDIOC_REQBUFS 0).
    ~BufferRing();

    Memory memory() const noexcept { return memory_; }
    std::size_t size() const noexcept { return buffers_.size(); }
    /// Slot `index`'s buffer as dma-bufs (for MMAP rings: the exported buffer).
    const BufferDesc& buffer(std::uint32_t index) const { return buffers_.at(index); }
    const Format& format() const noexcept { return format_; }

    /// Gives slot `index` to the driver (VIDIOC_QBUF). For output queues `bytes_used` is the
    /// payload (0: the whole sizeimage).
    Status queue(std::uint32_t index, std::uint32_t bytes_used = 0);
    /// Waits up to `timeout` for the driver to hand back a buffer: VIDIOC_DQBUF at once, and
    /// when nothing is ready, poll() for up to `timeout` and VIDIOC_DQBUF again. Returns nothing
    /// on timeout (Timeout{0} never blocks).
    Result<std::optional<Dequeued>> dequeue(Timeout timeout);
    Status stream_on();
    Status stream_off();

private:
    BufferRing() = default;
    Result<std::optional<Dequeued>> try_dequeue();  // one non-blocking VIDIOC_DQBUF
    void release() noexcept;

    int fd_ = -1;  // borrowed from the Device
    std::string device_;
    std::uint32_t type_ = 0;
    Memory memory_ = Memory::mmap;
    Format format_;
    std::vector<BufferDesc> buffers_;
    bool streaming_ = false;
};

}  // namespace dmabridge::v4l2
