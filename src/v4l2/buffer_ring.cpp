// SPDX-License-Identifier: MIT
#include <dmabridge/v4l2/buffer_ring.hpp>

#include <cstring>
#include <utility>

#include <fcntl.h>
#include <linux/videodev2.h>
#include <poll.h>
#include <sys/ioctl.h>

#include <dmabridge/format.hpp>

#include "../checked_math.hpp"
#include "../sys.hpp"

namespace dmabridge::v4l2 {
namespace {

bool is_mplane(std::uint32_t type) {
    return type == V4L2_BUF_TYPE_VIDEO_CAPTURE_MPLANE || type == V4L2_BUF_TYPE_VIDEO_OUTPUT_MPLANE;
}

bool is_output(std::uint32_t type) {
    return type == V4L2_BUF_TYPE_VIDEO_OUTPUT || type == V4L2_BUF_TYPE_VIDEO_OUTPUT_MPLANE;
}

std::string n(std::uint64_t v) { return std::to_string(v); }

// REQBUFS: asks for `count` buffers of `memory`, returns how many the driver made.
Result<std::uint32_t> request_buffers(int fd, std::uint32_t type, std::uint32_t memory, std::uint32_t count,
                                      const std::string& what) {
    v4l2_requestbuffers req{};
    req.count = count;
    req.type = type;
    req.memory = memory;
    if (detail::ioctl_retry(fd, VIDIOC_REQBUFS, &req) != 0) {
        if (errno == EBUSY)
            return Error::from_errno(EBUSY, what + ": VIDIOC_REQBUFS (another file is using the device's buffers)");
        return detail::last_error(what + ": VIDIOC_REQBUFS " + n(count) + " buffers");
    }
    if (count > 0 && req.count == 0)
        return Error::library(Errc::unsupported, what + ": the driver gave no buffers");
    return req.count;
}

}  // namespace

Result<BufferRing> BufferRing::create_exported(Device& device, Direction direction, std::uint32_t count) {
    const std::string what = device.path() + ": MMAP buffer ring";
    auto type = device.buffer_type(direction);
    if (!type) return type.error().with_context(what);
    if (!device.capabilities().streaming)
        return Error::library(Errc::unsupported, what + ": the device does not support streaming I/O");
    auto format = device.format(direction);
    if (!format) return format.error();
    if (format->drm_fourcc == 0)
        return Error::library(Errc::unknown_format, what + ": no DRM format for " + fourcc_name(format->pixel_format));
    BufferRing ring;
    ring.fd_ = device.fd();
    ring.device_ = device.path();
    ring.type_ = *type;
    ring.memory_ = Memory::mmap;
    ring.format_ = *format;
    auto made = request_buffers(ring.fd_, ring.type_, V4L2_MEMORY_MMAP, count, what);
    if (!made) return made.error();
    const std::uint32_t planes = static_cast<std::uint32_t>(format->planes.size());
    for (std::uint32_t i = 0; i < *made; ++i) {
        BufferDesc desc;
        desc.width = format->width;
        desc.height = format->height;
        desc.fourcc = format->drm_fourcc;
        desc.modifier = modifier::linear;
        for (std::uint32_t p = 0; p < planes; ++p) {
            v4l2_exportbuffer exp{};
            exp.type = ring.type_;
            exp.index = i;
            exp.plane = p;
            exp.flags = O_CLOEXEC | O_RDWR;
            if (detail::ioctl_retry(ring.fd_, VIDIOC_EXPBUF, &exp) != 0)
                return detail::last_error(what + ": VIDIOC_EXPBUF buffer " + n(i) + " plane " + n(p) +
                                          " (the driver cannot export; use create_imported)");
            auto buf = DmaBuf::adopt(UniqueFd(exp.fd));
            if (!buf) return buf.error().with_context(what);
            desc.planes.push_back({std::move(*buf), 0, format->planes[p].bytes_per_line});
        }
        // One buffer holding several colour planes (NV12, YUV420 of the single-plane API): V4L2
        // packs the planes one after the other, each with the luma stride scaled to its samples.
        const FormatInfo* info = find_format(desc.fourcc);
        if (info && planes == 1 && info->plane_count > 1) {
            const std::uint64_t luma_stride = format->planes[0].bytes_per_line;
            std::uint64_t offset = luma_stride * info->plane_rows(0, desc.height);
            for (std::uint32_t p = 1; p < info->plane_count; ++p) {
                const auto& pf = info->planes[p];
                const std::uint64_t stride = luma_stride * pf.bytes_per_block / (info->planes[0].bytes_per_block * pf.hsub);
                auto ref = desc.planes[0].buffer.dup();
                if (!ref) return ref.error().with_context(what);
                desc.planes.push_back({std::move(*ref), offset, stride});
                offset += stride * info->plane_rows(p, desc.height);
            }
        }
        if (auto ok = desc.validate(); !ok) return ok.error().with_context(what + ": buffer " + n(i));
        ring.buffers_.push_back(std::move(desc));
    }
    return ring;
}

Result<BufferRing> BufferRing::create_imported(Device& device, Direction direction, std::vector<BufferDesc> buffers) {
    const std::string what = device.path() + ": DMABUF buffer ring";
    auto type = device.buffer_type(direction);
    if (!type) return type.error().with_context(what);
    if (buffers.empty()) return Error::library(Errc::invalid_argument, what + ": no buffers given");
    auto format = device.format(direction);
    if (!format) return format.error();
    // V4L2 takes one dma-buf per buffer plane with the format's stride and no offset but the
    // plane's data_offset; check every description against that before the driver sees it.
    for (std::size_t i = 0; i < buffers.size(); ++i) {
        const auto& d = buffers[i];
        const std::string slot = what + ": buffer " + n(i) + " (" + d.describe() + ")";
        if (auto ok = d.validate(); !ok) return ok.error().with_context(slot);
        if (d.width != format->width || d.height != format->height || d.fourcc != format->drm_fourcc)
            return Error::library(Errc::invalid_argument, slot + ": the queue's format is " + n(format->width) + "x" +
                                                              n(format->height) + " " +
                                                              fourcc_name(format->pixel_format));
        if (d.modifier != modifier::linear)
            return Error::library(Errc::unsupported, slot + ": V4L2 takes LINEAR buffers only");
        for (std::size_t p = 0; p < format->planes.size(); ++p) {
            if (p >= d.planes.size())
                return Error::library(Errc::invalid_argument, slot + ": the format has " + n(format->planes.size()) +
                                                                  " buffer planes");
            const auto& plane = d.planes[p];
            const auto& want = format->planes[p];
            auto end = detail::add(plane.offset, want.size_image);
            if (plane.stride != want.bytes_per_line)
                return Error::library(Errc::invalid_argument, slot + ": plane " + n(p) + " stride " +
                                                                  n(plane.stride) + " != the driver's bytesperline " +
                                                                  n(want.bytes_per_line));
            if (!end || *end > plane.buffer.size())
                return Error::library(Errc::invalid_argument, slot + ": plane " + n(p) + " offset " + n(plane.offset) +
                                                                  " + sizeimage " + n(want.size_image) +
                                                                  " > dma-buf size " + n(plane.buffer.size()));
        }
    }
    BufferRing ring;
    ring.fd_ = device.fd();
    ring.device_ = device.path();
    ring.type_ = *type;
    ring.memory_ = Memory::dmabuf;
    ring.format_ = *format;
    auto made = request_buffers(ring.fd_, ring.type_, V4L2_MEMORY_DMABUF, static_cast<std::uint32_t>(buffers.size()), what);
    if (!made) return made.error();
    if (*made < buffers.size()) {
        ring.release();
        return Error::library(Errc::limit_exceeded, what + ": the driver takes " + n(*made) + " buffers, " +
                                                        n(buffers.size()) + " were given");
    }
    ring.buffers_ = std::move(buffers);
    return ring;
}

BufferRing::BufferRing(BufferRing&& o) noexcept
    : fd_(std::exchange(o.fd_, -1)), device_(std::move(o.device_)), type_(o.type_), memory_(o.memory_),
      format_(std::move(o.format_)), buffers_(std::move(o.buffers_)), streaming_(std::exchange(o.streaming_, false)) {}

BufferRing& BufferRing::operator=(BufferRing&& o) noexcept {
    if (this != &o) {
        release();
        fd_ = std::exchange(o.fd_, -1);
        device_ = std::move(o.device_);
        type_ = o.type_;
        memory_ = o.memory_;
        format_ = std::move(o.format_);
        buffers_ = std::move(o.buffers_);
        streaming_ = std::exchange(o.streaming_, false);
    }
    return *this;
}

BufferRing::~BufferRing() { release(); }

void BufferRing::release() noexcept {
    if (fd_ < 0) return;
    if (streaming_) (void)stream_off();
    // Our dma-bufs stay ours (MMAP rings keep their exported buffers alive until the
    // descriptions go); the driver forgets its slots.
    v4l2_requestbuffers req{};
    req.type = type_;
    req.memory = memory_ == Memory::mmap ? V4L2_MEMORY_MMAP : V4L2_MEMORY_DMABUF;
    detail::ioctl_retry(fd_, VIDIOC_REQBUFS, &req);
    fd_ = -1;
}

Status BufferRing::queue(std::uint32_t index, std::uint32_t bytes_used) {
    if (index >= buffers_.size())
        return Error::library(Errc::invalid_argument, device_ + ": queue buffer " + n(index) + " of " + n(buffers_.size()));
    v4l2_buffer b{};
    v4l2_plane planes[VIDEO_MAX_PLANES]{};
    b.type = type_;
    b.index = index;
    b.memory = memory_ == Memory::mmap ? V4L2_MEMORY_MMAP : V4L2_MEMORY_DMABUF;
    const auto& desc = buffers_[index];
    const std::size_t count = format_.planes.size();
    if (is_mplane(type_)) {
        b.m.planes = planes;
        b.length = static_cast<std::uint32_t>(count);
        for (std::size_t p = 0; p < count; ++p) {
            if (memory_ == Memory::dmabuf) {
                planes[p].m.fd = desc.planes[p].buffer.fd();
                planes[p].length = static_cast<std::uint32_t>(desc.planes[p].buffer.size());
                planes[p].data_offset = static_cast<std::uint32_t>(desc.planes[p].offset);
            }
            if (is_output(type_))
                planes[p].bytesused = bytes_used ? bytes_used : format_.planes[p].size_image;
        }
    } else {
        if (memory_ == Memory::dmabuf) {
            b.m.fd = desc.planes[0].buffer.fd();
            // 0 lets videobuf2 take the dma-buf's own size.
            b.length = 0;
        }
        if (is_output(type_)) b.bytesused = bytes_used ? bytes_used : format_.planes[0].size_image;
    }
    if (detail::ioctl_retry(fd_, VIDIOC_QBUF, &b) != 0)
        return detail::last_error(device_ + ": VIDIOC_QBUF buffer " + n(index));
    return {};
}

Result<std::optional<Dequeued>> BufferRing::try_dequeue() {
    v4l2_buffer b{};
    v4l2_plane planes[VIDEO_MAX_PLANES]{};
    b.type = type_;
    b.memory = memory_ == Memory::mmap ? V4L2_MEMORY_MMAP : V4L2_MEMORY_DMABUF;
    if (is_mplane(type_)) {
        b.m.planes = planes;
        b.length = VIDEO_MAX_PLANES;
    }
    int r = 0;
    do r = ::ioctl(fd_, VIDIOC_DQBUF, &b);
    while (r != 0 && errno == EINTR);
    if (r != 0) {
        if (errno == EAGAIN) return std::optional<Dequeued>{};  // the fd is non-blocking: nothing yet
        return detail::last_error(device_ + ": VIDIOC_DQBUF");
    }
    Dequeued d;
    d.index = b.index;
    d.bytes_used = is_mplane(type_) ? planes[0].bytesused : b.bytesused;
    d.sequence = b.sequence;
    d.error = (b.flags & V4L2_BUF_FLAG_ERROR) != 0;
    return std::optional<Dequeued>{d};
}

Result<std::optional<Dequeued>> BufferRing::dequeue(Timeout timeout) {
    // Try first: when a frame is waiting (the common case in a frame loop that polls the fd
    // itself) that is one syscall, not a poll() and then the ioctl.
    auto first = try_dequeue();
    if (!first || first->has_value() || timeout == Timeout{0}) return first;
    auto ready = detail::poll_fd(fd_, is_output(type_) ? POLLOUT : POLLIN, timeout, "V4L2 dequeue");
    if (!ready) return ready.error().with_context(device_);
    if (*ready == WaitStatus::timed_out) return std::optional<Dequeued>{};
    return try_dequeue();
}

Status BufferRing::stream_on() {
    int type = static_cast<int>(type_);
    if (detail::ioctl_retry(fd_, VIDIOC_STREAMON, &type) != 0) return detail::last_error(device_ + ": VIDIOC_STREAMON");
    streaming_ = true;
    return {};
}

Status BufferRing::stream_off() {
    int type = static_cast<int>(type_);
    streaming_ = false;
    if (detail::ioctl_retry(fd_, VIDIOC_STREAMOFF, &type) != 0) return detail::last_error(device_ + ": VIDIOC_STREAMOFF");
    return {};
}

}  // namespace dmabridge::v4l2
