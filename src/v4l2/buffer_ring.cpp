// SPDX-License-Identifier: MIT
#include <dmabridge/v4l2/buffer_ring.hpp>

#include <algorithm>
#include <cstring>
#include <limits>
#include <utility>

#include <fcntl.h>
#include <linux/videodev2.h>
#include <poll.h>
#include <sys/ioctl.h>

#include <dmabridge/format/format.hpp>

#include "base/checked_math.hpp"
#include "base/sys.hpp"
#include "v4l2/ioctl.hpp"

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
    if (detail::v4l2_ioctl(fd, VIDIOC_REQBUFS, &req) != 0) {
        if (errno == EBUSY)
            return Error::from_errno(EBUSY, what + ": VIDIOC_REQBUFS (another file is using the device's buffers)");
        return detail::last_error(what + ": VIDIOC_REQBUFS " + n(count) + " buffers");
    }
    if (count > 0 && req.count == 0)
        return Error::library(Errc::unsupported, what + ": the driver gave no buffers");
    return req.count;
}

}  // namespace

Result<BufferRing::Placement> BufferRing::placement(const Format& format, const std::string& what) {
    const FormatInfo* info = find_format(format.drm_fourcc);
    if (!info) return Error::library(Errc::unknown_format, what + ": no DRM format for " + fourcc_name(format.pixel_format));
    Placement out;
    const std::size_t buffers = format.planes.size();
    if (buffers == 0 || buffers > max_buffer_planes)
        return Error::library(Errc::unsupported, what + ": the driver reports " + n(buffers) + " buffer planes");
    out.needed.assign(buffers, 0);
    if (buffers == info->plane_count) {
        // One buffer per colour plane (NV12M, YUV420M, or any one-plane format).
        for (std::uint32_t p = 0; p < buffers; ++p) {
            const std::uint64_t stride = format.planes[p].bytes_per_line;
            out.colour.push_back({p, 0, stride});
            out.needed[p] = stride * info->plane_rows(p, format.height);
        }
        return out;
    }
    if (buffers != 1)
        return Error::library(Errc::unsupported, what + ": " + n(buffers) + " buffer planes for the " +
                                                     n(info->plane_count) + " colour planes of " +
                                                     fourcc_name(format.pixel_format));
    // One buffer holding several colour planes (NV12, YUV420 of the single-plane API): V4L2
    // packs the planes one after the other, each with the luma stride scaled to its samples.
    // The driver fixes these positions: nobody can move a chroma plane elsewhere.
    const std::uint64_t luma_stride = format.planes[0].bytes_per_line;
    std::uint64_t offset = 0;
    for (std::uint32_t p = 0; p < info->plane_count; ++p) {
        const auto& pf = info->planes[p];
        const std::uint64_t stride =
            p == 0 ? luma_stride : luma_stride * pf.bytes_per_block / (info->planes[0].bytes_per_block * pf.hsub);
        out.colour.push_back({0, offset, stride});
        offset += stride * info->plane_rows(p, format.height);
    }
    out.needed[0] = offset;
    return out;
}

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
    auto place = placement(*format, what);
    if (!place) return place.error();
    BufferRing ring;
    ring.fd_ = device.fd();
    ring.device_ = device.path();
    ring.type_ = *type;
    ring.memory_ = Memory::mmap;
    ring.format_ = *format;
    ring.placement_ = *place;
    auto made = request_buffers(ring.fd_, ring.type_, V4L2_MEMORY_MMAP, count, what);
    if (!made) return made.error();
    const std::uint32_t planes = static_cast<std::uint32_t>(format->planes.size());
    for (std::uint32_t i = 0; i < *made; ++i) {
        BufferDesc desc;
        desc.width = format->width;
        desc.height = format->height;
        desc.fourcc = format->drm_fourcc;
        desc.modifier = modifier::linear;
        std::vector<DmaBuf> exported;
        for (std::uint32_t p = 0; p < planes; ++p) {
            v4l2_exportbuffer exp{};
            exp.type = ring.type_;
            exp.index = i;
            exp.plane = p;
            exp.flags = O_CLOEXEC | O_RDWR;
            if (detail::v4l2_ioctl(ring.fd_, VIDIOC_EXPBUF, &exp) != 0)
                return detail::last_error(what + ": VIDIOC_EXPBUF buffer " + n(i) + " plane " + n(p) +
                                          " (the driver cannot export; use create_imported)");
            auto buf = DmaBuf::adopt(UniqueFd(exp.fd));
            if (!buf) return buf.error().with_context(what);
            exported.push_back(std::move(*buf));
        }
        for (const auto& c : place->colour) {
            auto ref = exported[c.buffer_plane].dup();
            if (!ref) return ref.error().with_context(what);
            desc.planes.push_back({std::move(*ref), c.offset, c.stride});
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
    if (format->drm_fourcc == 0)
        return Error::library(Errc::unknown_format, what + ": no DRM format for " + fourcc_name(format->pixel_format));
    auto place = placement(*format, what);
    if (!place) return place.error();
    const bool mplane = is_mplane(*type);
    const bool output = is_output(*type);
    // Check every description against what the driver will do with it before it sees any.
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
        if (d.planes.size() != place->colour.size())
            return Error::library(Errc::invalid_argument, slot + ": " + n(d.planes.size()) + " planes; " +
                                                              fourcc_name(format->pixel_format) + " has " +
                                                              n(place->colour.size()));
        std::vector<std::size_t> first(format->planes.size(), SIZE_MAX);  // colour plane starting each buffer plane
        for (std::size_t c = 0; c < place->colour.size(); ++c) {
            const auto& where = place->colour[c];
            const auto& plane = d.planes[c];
            const std::string pn = "plane " + n(c);
            if (first[where.buffer_plane] == SIZE_MAX) {
                first[where.buffer_plane] = c;
                const auto& want = format->planes[where.buffer_plane];
                if (plane.stride != want.bytes_per_line)
                    return Error::library(Errc::invalid_argument, slot + ": " + pn + " stride " + n(plane.stride) +
                                                                      " != the driver's bytesperline " +
                                                                      n(want.bytes_per_line));
                if (plane.offset != 0 && !mplane)
                    return Error::library(Errc::unsupported,
                                          slot + ": " + pn + " starts at byte " + n(plane.offset) +
                                              " of its dma-buf, but the single-plane V4L2 API has no offset: the "
                                              "driver reads and writes the buffer from byte 0");
                if (plane.offset != 0 && !output)
                    return Error::library(Errc::unsupported,
                                          slot + ": " + pn + " starts at byte " + n(plane.offset) +
                                              " of its dma-buf, but videobuf2 ignores data_offset on capture "
                                              "queues: the driver writes every buffer plane from byte 0");
                // On output queues bytesused counts the offset too, in 32 bits.
                const std::uint64_t end = plane.offset + want.size_image;
                const std::uint64_t usable = output ? detail::v4l2_length(plane.buffer.size()) : plane.buffer.size();
                if (end > usable)
                    return Error::library(Errc::invalid_argument,
                                          slot + ": " + pn + " offset " + n(plane.offset) + " + sizeimage " +
                                              n(want.size_image) + " = " + n(end) + " > " +
                                              (usable < plane.buffer.size() ? "the 32-bit V4L2 length " + n(usable)
                                                                            : "dma-buf size " + n(usable)));
                continue;
            }
            // A colour plane the driver packs into the same buffer as an earlier one.
            const auto& base = d.planes[first[where.buffer_plane]];
            if (plane.buffer.id() != base.buffer.id())
                return Error::library(Errc::unsupported,
                                      slot + ": " + pn + " is in another dma-buf than plane " +
                                          n(first[where.buffer_plane]) + ", but " + fourcc_name(format->pixel_format) +
                                          " is one V4L2 buffer: the driver puts " + pn + " in the same one");
            if (plane.offset != base.offset + where.offset || plane.stride != where.stride)
                return Error::library(Errc::unsupported,
                                      slot + ": " + pn + " at offset " + n(plane.offset) + " stride " +
                                          n(plane.stride) + ", but the driver puts it at offset " +
                                          n(base.offset + where.offset) + " stride " + n(where.stride) +
                                          " (V4L2 fixes the planes of a " + fourcc_name(format->pixel_format) +
                                          " buffer one after the other)");
        }
        // Buffer planes sharing one dma-buf: capture writes each from byte 0 (refused above unless
        // all offsets are 0, so they would overwrite each other); output ranges must not overlap.
        for (std::size_t b = 0; b < first.size(); ++b)
            for (std::size_t c = b + 1; c < first.size(); ++c) {
                const auto& pb = d.planes[first[b]];
                const auto& pc = d.planes[first[c]];
                if (pb.buffer.id() != pc.buffer.id()) continue;
                const std::uint64_t b_end = pb.offset + format->planes[b].size_image;
                const std::uint64_t c_end = pc.offset + format->planes[c].size_image;
                if (pb.offset < c_end && pc.offset < b_end)
                    return Error::library(Errc::invalid_argument,
                                          slot + ": buffer planes " + n(b) + " and " + n(c) +
                                              " share one dma-buf and overlap (bytes " + n(pb.offset) + "-" + n(b_end) +
                                              " and " + n(pc.offset) + "-" + n(c_end) + ")" +
                                              (output ? "" : ": the driver would write both from byte 0"));
            }
    }
    BufferRing ring;
    ring.fd_ = device.fd();
    ring.device_ = device.path();
    ring.type_ = *type;
    ring.memory_ = Memory::dmabuf;
    ring.format_ = *format;
    ring.placement_ = *place;
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
      format_(std::move(o.format_)), placement_(std::move(o.placement_)), buffers_(std::move(o.buffers_)), streaming_(std::exchange(o.streaming_, false)) {}

BufferRing& BufferRing::operator=(BufferRing&& o) noexcept {
    if (this != &o) {
        release();
        fd_ = std::exchange(o.fd_, -1);
        device_ = std::move(o.device_);
        type_ = o.type_;
        memory_ = o.memory_;
        format_ = std::move(o.format_);
        placement_ = std::move(o.placement_);
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
    detail::v4l2_ioctl(fd_, VIDIOC_REQBUFS, &req);
    fd_ = -1;
}

Status BufferRing::queue(std::uint32_t index, std::uint32_t bytes_used) {
    if (format_.planes.size() > 1 && bytes_used != 0)
        return Error::library(Errc::invalid_argument,
                              device_ + ": queue buffer " + n(index) + " with a payload of " + n(bytes_used) +
                                  " bytes: its format has " + n(format_.planes.size()) +
                                  " buffer planes, give one payload per plane");
    if (bytes_used == 0) return queue(index, std::span<const std::uint32_t>{});
    return queue(index, std::span<const std::uint32_t>(&bytes_used, 1));
}

Status BufferRing::queue(std::uint32_t index, std::span<const std::uint32_t> bytes_used) {
    const std::string what = device_ + ": queue buffer " + n(index);
    if (fd_ < 0) return Error::library(Errc::empty_object, what + ": the ring was moved from");
    if (index >= buffers_.size()) return Error::library(Errc::invalid_argument, what + " of " + n(buffers_.size()));
    const std::size_t count = format_.planes.size();
    if (!bytes_used.empty() && bytes_used.size() != count)
        return Error::library(Errc::invalid_argument, what + ": " + n(bytes_used.size()) + " payloads for " + n(count) +
                                                          " buffer planes");
    v4l2_buffer b{};
    v4l2_plane planes[VIDEO_MAX_PLANES]{};
    b.type = type_;
    b.index = index;
    b.memory = memory_ == Memory::mmap ? V4L2_MEMORY_MMAP : V4L2_MEMORY_DMABUF;
    const auto& desc = buffers_[index];
    const bool output = is_output(type_);
    for (std::size_t p = 0; p < count; ++p) {
        // The colour plane that starts buffer plane p, and where it is.
        std::size_t c = 0;
        while (placement_.colour[c].buffer_plane != p) ++c;
        const auto& plane = desc.planes[c];
        const std::uint64_t length = detail::v4l2_length(plane.buffer.size());
        // Capture: videobuf2 ignores data_offset (checked at creation: the offsets are 0).
        const std::uint64_t data_offset = memory_ == Memory::dmabuf && output ? plane.offset : 0;
        const std::uint64_t payload = !bytes_used.empty() && bytes_used[p] ? bytes_used[p] : format_.planes[p].size_image;
        // For output queues, bytesused counts from the start of the plane: offset included.
        const std::uint64_t used = data_offset + payload;
        if (output && memory_ == Memory::dmabuf && used > length)
            return Error::library(Errc::invalid_argument, what + ": buffer plane " + n(p) + " data offset " +
                                                              n(data_offset) + " + payload " + n(payload) + " = " +
                                                              n(used) + " > its V4L2 length " + n(length));
        if (is_mplane(type_)) {
            if (memory_ == Memory::dmabuf) {
                planes[p].m.fd = plane.buffer.fd();
                planes[p].length = static_cast<std::uint32_t>(length);
                planes[p].data_offset = static_cast<std::uint32_t>(data_offset);
            }
            if (output) planes[p].bytesused = static_cast<std::uint32_t>(used);
        } else {
            if (memory_ == Memory::dmabuf) {
                b.m.fd = plane.buffer.fd();
                b.length = static_cast<std::uint32_t>(length);
            }
            if (output) b.bytesused = static_cast<std::uint32_t>(used);
        }
    }
    if (is_mplane(type_)) {
        b.m.planes = planes;
        b.length = static_cast<std::uint32_t>(count);
    }
    if (detail::v4l2_ioctl(fd_, VIDIOC_QBUF, &b) != 0) return detail::last_error(what + " (VIDIOC_QBUF)");
    return {};
}

Result<std::optional<Dequeued>> BufferRing::try_dequeue() {
    if (fd_ < 0) return Error::library(Errc::empty_object, "v4l2 buffer ring: dequeue: the ring was moved from");
    v4l2_buffer b{};
    v4l2_plane planes[VIDEO_MAX_PLANES]{};
    b.type = type_;
    b.memory = memory_ == Memory::mmap ? V4L2_MEMORY_MMAP : V4L2_MEMORY_DMABUF;
    const bool mplane = is_mplane(type_);
    if (mplane) {
        b.m.planes = planes;
        b.length = VIDEO_MAX_PLANES;
    }
    if (detail::v4l2_ioctl(fd_, VIDIOC_DQBUF, &b) != 0) {
        if (errno == EAGAIN) return std::optional<Dequeued>{};  // the fd is non-blocking: nothing yet
        return detail::last_error(device_ + ": VIDIOC_DQBUF");
    }
    Dequeued d;
    d.index = b.index;
    d.sequence = b.sequence;
    d.error = (b.flags & V4L2_BUF_FLAG_ERROR) != 0;
    d.plane_count = static_cast<std::uint32_t>(std::min(format_.planes.size(), max_buffer_planes));
    for (std::uint32_t p = 0; p < d.plane_count; ++p) {
        d.plane_bytes_used[p] = mplane ? planes[p].bytesused : b.bytesused;
        d.plane_data_offset[p] = mplane ? planes[p].data_offset : 0;
        // Capture: the descriptions say every buffer plane's data starts at byte 0 and covers
        // `needed` bytes; a frame the driver filled less, or elsewhere, has stale bytes there.
        if (!is_output(type_) &&
            detail::plane_incomplete(placement_.needed[p], d.plane_bytes_used[p], d.plane_data_offset[p]))
            d.incomplete = true;
    }
    d.bytes_used = d.plane_bytes_used[0];
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
    if (fd_ < 0) return Error::library(Errc::empty_object, "v4l2 buffer ring: stream on: the ring was moved from");
    int type = static_cast<int>(type_);
    if (detail::v4l2_ioctl(fd_, VIDIOC_STREAMON, &type) != 0) return detail::last_error(device_ + ": VIDIOC_STREAMON");
    streaming_ = true;
    return {};
}

Status BufferRing::stream_off() {
    if (fd_ < 0) return Error::library(Errc::empty_object, "v4l2 buffer ring: stream off: the ring was moved from");
    int type = static_cast<int>(type_);
    streaming_ = false;
    if (detail::v4l2_ioctl(fd_, VIDIOC_STREAMOFF, &type) != 0) return detail::last_error(device_ + ": VIDIOC_STREAMOFF");
    return {};
}

}  // namespace dmabridge::v4l2
