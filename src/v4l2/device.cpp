// SPDX-License-Identifier: MIT
#include <dmabridge/format/fourcc.hpp>
#include <dmabridge/v4l2/device.hpp>
#include "v4l2/format_parser.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <linux/videodev2.h>
#include <sys/ioctl.h>

#include "base/sys.hpp"
#include "v4l2/ioctl.hpp"

namespace dmabridge::v4l2 {
namespace {

struct FourccPair {
    std::uint32_t v4l2;
    std::uint32_t drm;
};

// V4L2 and DRM codes for the same memory layout; most are the same four characters.
constexpr FourccPair fourcc_pairs[] = {
    {V4L2_PIX_FMT_YUYV, fourcc::YUYV},      {V4L2_PIX_FMT_UYVY, fourcc::UYVY},
    {V4L2_PIX_FMT_NV12, fourcc::NV12},      {V4L2_PIX_FMT_NV21, fourcc::NV21},
    {V4L2_PIX_FMT_NV16, fourcc::NV16},      {V4L2_PIX_FMT_NV12M, fourcc::NV12},
    {V4L2_PIX_FMT_YUV420, fourcc::YUV420},  {V4L2_PIX_FMT_YUV420M, fourcc::YUV420},
    {V4L2_PIX_FMT_YVU420, fourcc::YVU420},  {V4L2_PIX_FMT_XBGR32, fourcc::XRGB8888},  // memory B, G, R, X
    {V4L2_PIX_FMT_ABGR32, fourcc::ARGB8888}, {V4L2_PIX_FMT_RGBX32, fourcc::XBGR8888},  // memory R, G, B, X
    {V4L2_PIX_FMT_RGBA32, fourcc::ABGR8888}, {V4L2_PIX_FMT_RGB565, fourcc::RGB565},
    {V4L2_PIX_FMT_GREY, fourcc::R8},        {V4L2_PIX_FMT_P010, fourcc::P010},
};

std::uint32_t type_for(Direction d, bool mplane) {
    if (d == Direction::capture) return mplane ? V4L2_BUF_TYPE_VIDEO_CAPTURE_MPLANE : V4L2_BUF_TYPE_VIDEO_CAPTURE;
    return mplane ? V4L2_BUF_TYPE_VIDEO_OUTPUT_MPLANE : V4L2_BUF_TYPE_VIDEO_OUTPUT;
}

const char* name_of(Direction d) { return d == Direction::capture ? "capture" : "output"; }

}  // namespace

std::uint32_t drm_fourcc_for(std::uint32_t v4l2) noexcept {
    for (const auto& p : fourcc_pairs)
        if (p.v4l2 == v4l2) return p.drm;
    return 0;
}

std::string fourcc_name(std::uint32_t code) { return fourcc_to_string(code); }

namespace {

// Every V4L2 node (video, vbi, radio, sdr, touch) is a character device of this major
// (VIDEO_MAJOR in the kernel's v4l2-dev.c).
constexpr unsigned video_major = 81;

std::string hex(std::uint32_t v) {
    char b[16];
    std::snprintf(b, sizeof b, "0x%08x", v);
    return b;
}

// Why `st` is not a V4L2 node, or "" when it may be one.
std::string not_a_video_node(const struct stat& st) {
    if (S_ISREG(st.st_mode)) return "a regular file";
    if (S_ISDIR(st.st_mode)) return "a directory";
    if (S_ISFIFO(st.st_mode)) return "a FIFO";
    if (S_ISSOCK(st.st_mode)) return "a socket";
    if (S_ISBLK(st.st_mode)) return "a block device";
    if (!S_ISCHR(st.st_mode)) return "not a character device";
    const unsigned major = ::major(st.st_rdev);
    if (major == video_major) return "";
    const std::string numbers = "character device " + std::to_string(major) + ":" + std::to_string(::minor(st.st_rdev));
    if (major == 226) return "a DRM node (" + numbers + ")";
    if (major == 1) return "a memory device such as /dev/null (" + numbers + ")";
    return "a " + numbers + " (V4L2 nodes have major " + std::to_string(video_major) + ")";
}

// Every call on a moved-from Device fails here, before any ioctl: with Errc::empty_object, not
// the EBADF that fd -1 would give.
Error moved_from(std::string_view what) {
    return Error::library(Errc::empty_object,
                          "v4l2 device: " + std::string(what) + ": the Device is empty (moved from)");
}

}  // namespace

Result<Device> Device::open(std::string_view path) {
    const std::string p(path);
    // Checked before open(): opening a FIFO or another driver's node can have effects of its
    // own, and ioctl numbers of other subsystems overlap V4L2's (DRM ignores the ioctl type
    // byte, so VIDIOC_QUERYCAP on a DRM node runs DRM_IOCTL_VERSION and succeeds).
    struct stat before{};
    if (::stat(p.c_str(), &before) != 0) return detail::last_error("open V4L2 device " + p);
    if (auto why = not_a_video_node(before); !why.empty())
        return Error::library(Errc::unsupported, p + " is not a V4L2 device: it is " + why);
    UniqueFd fd(::open(p.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC));
    if (!fd) return detail::last_error("open V4L2 device " + p);
    struct stat opened{};
    if (::fstat(fd.get(), &opened) != 0) return detail::last_error("open V4L2 device " + p + ": fstat");
    if (opened.st_rdev != before.st_rdev || (opened.st_mode & S_IFMT) != (before.st_mode & S_IFMT))
        return Error::library(Errc::unsupported, p + " changed between stat() and open()");
    v4l2_capability cap{};
    if (detail::v4l2_ioctl(fd.get(), VIDIOC_QUERYCAP, &cap) != 0)
        return Error::library(Errc::unsupported, p + " is not a V4L2 device (VIDIOC_QUERYCAP: " +
                                                     std::strerror(errno) + ")");
    const std::uint32_t caps = (cap.capabilities & V4L2_CAP_DEVICE_CAPS) ? cap.device_caps : cap.capabilities;
    if (caps == 0 || cap.driver[0] == 0)
        return Error::library(Errc::unsupported, p + " is not a usable V4L2 device: VIDIOC_QUERYCAP reports no " +
                                                     (caps == 0 ? "capabilities" : "driver name"));
    Capabilities c;
    // The strings are fixed-size arrays that need not be terminated when full.
    const auto text = [](const std::uint8_t* s, std::size_t n) {
        const auto* b = reinterpret_cast<const char*>(s);
        return std::string(b, strnlen(b, n));
    };
    c.driver = text(cap.driver, sizeof cap.driver);
    c.card = text(cap.card, sizeof cap.card);
    c.bus = text(cap.bus_info, sizeof cap.bus_info);
    c.device_caps = caps;
    c.capture = caps & (V4L2_CAP_VIDEO_CAPTURE | V4L2_CAP_VIDEO_CAPTURE_MPLANE);
    c.output = caps & (V4L2_CAP_VIDEO_OUTPUT | V4L2_CAP_VIDEO_OUTPUT_MPLANE);
    c.multiplanar = caps & (V4L2_CAP_VIDEO_CAPTURE_MPLANE | V4L2_CAP_VIDEO_OUTPUT_MPLANE);
    c.streaming = caps & V4L2_CAP_STREAMING;
    return Device(std::move(fd), p, std::move(c));
}

Result<Device> Device::open(std::string_view path, Direction direction) {
    auto dev = open(path);
    if (!dev) return dev;
    const auto& c = dev->capabilities();
    const bool has = direction == Direction::capture ? c.capture : c.output;
    if (has && c.streaming) return dev;
    std::string why = !has ? std::string("it has no video ") + name_of(direction) + " queue"
                           : std::string("it does not support streaming I/O");
    return Error::library(Errc::unsupported, dev->path() + " (" + c.driver + ", " + c.card + ") cannot stream video " +
                                                 name_of(direction) + ": " + why + " (device caps " +
                                                 hex(c.device_caps) + ")");
}

Result<Device> Device::find(Direction direction) {
    std::vector<std::string> nodes;
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator("/dev", ec)) {
        const auto name = entry.path().filename().string();
        if (name.rfind("video", 0) == 0) nodes.push_back(entry.path().string());
    }
    // /dev/video2 before /dev/video10.
    std::sort(nodes.begin(), nodes.end(), [](const std::string& a, const std::string& b) {
        return a.size() != b.size() ? a.size() < b.size() : a < b;
    });
    std::string looked;
    for (const auto& node : nodes) {
        auto dev = open(node, direction);
        if (dev) return dev;
        looked += (looked.empty() ? "" : ", ") + node;
    }
    return Error::library(Errc::not_found, std::string("no V4L2 ") + name_of(direction) + " device that streams" +
                                               (looked.empty() ? " (no /dev/video* nodes)" : " among " + looked));
}

Result<std::uint32_t> Device::buffer_type(Direction direction) const {
    if (!fd_) return moved_from("buffer_type");
    const bool can = direction == Direction::capture ? caps_.capture : caps_.output;
    if (!can)
        return Error::library(Errc::unsupported, path_ + " (" + caps_.card + ") has no " + name_of(direction) +
                                                     " queue");
    return type_for(direction, caps_.multiplanar);
}

namespace {

// What VIDIOC_CREATE_BUFS with count 0 reports: it allocates nothing and frees nothing,
// whichever file owns the queue (videobuf2 answers it even while another file streams).
struct QueueReport {
    std::uint32_t capabilities = 0;  // V4L2_BUF_CAP_*
    std::uint32_t buffers = 0;       // buffers allocated on the queue, by any file
};

// Nothing when the driver has no VIDIOC_CREATE_BUFS (drivers without videobuf2).
std::optional<QueueReport> report_queue(int fd, std::uint32_t type) {
    for (std::uint32_t memory : {V4L2_MEMORY_MMAP, V4L2_MEMORY_DMABUF}) {
        v4l2_create_buffers create{};
        create.count = 0;
        create.memory = memory;
        create.format.type = type;
        if (detail::v4l2_ioctl(fd, VIDIOC_CREATE_BUFS, &create) == 0) return QueueReport{create.capabilities, create.index};
        // EINVAL: that memory is not supported (videobuf2), or no CREATE_BUFS; ENOTTY: none.
    }
    return std::nullopt;
}

// Whether the `type` queue has buffers (VIDIOC_QUERYBUF of index 0), for drivers without
// CREATE_BUFS. Only reads.
bool has_buffers(int fd, std::uint32_t type) {
    v4l2_buffer b{};
    v4l2_plane planes[VIDEO_MAX_PLANES]{};
    b.type = type;
    b.index = 0;
    if (type == V4L2_BUF_TYPE_VIDEO_CAPTURE_MPLANE || type == V4L2_BUF_TYPE_VIDEO_OUTPUT_MPLANE) {
        b.m.planes = planes;
        b.length = VIDEO_MAX_PLANES;
    }
    return detail::v4l2_ioctl(fd, VIDIOC_QUERYBUF, &b) == 0;
}

// VIDIOC_EXPBUF of buffer 0, plane 0 of the queue as it is; the dma-buf is closed at once.
bool try_export(int fd, std::uint32_t type) {
    v4l2_exportbuffer exp{};
    exp.type = type;
    exp.index = 0;
    exp.plane = 0;
    exp.flags = O_CLOEXEC;
    if (detail::v4l2_ioctl(fd, VIDIOC_EXPBUF, &exp) != 0) return false;
    UniqueFd closes(exp.fd);
    return true;
}

}  // namespace

Result<MemorySupport> Device::memory_support(Direction direction) const {
    if (!fd_) return moved_from("memory_support");
    auto type = buffer_type(direction);
    if (!type) return type.error();
    const std::string what = path_ + ": " + name_of(direction) + " memory support";
    MemorySupport out;
    // Never VIDIOC_REQBUFS on a queue that has buffers: count 0 frees them (on this file, even
    // those of a ring that is not streaming), any other count replaces them.
    if (auto report = report_queue(fd(), *type)) {
        out.mmap = report->capabilities & V4L2_BUF_CAP_SUPPORTS_MMAP;
        out.dmabuf = report->capabilities & V4L2_BUF_CAP_SUPPORTS_DMABUF;
        out.in_use = report->buffers > 0;
    } else {
        out.in_use = has_buffers(fd(), *type);
        if (!out.in_use) {
            // No buffers anywhere: REQBUFS 0 has nothing to free and reports the capabilities.
            v4l2_requestbuffers req{};
            req.type = *type;
            req.memory = V4L2_MEMORY_MMAP;
            req.count = 0;
            if (detail::v4l2_ioctl(fd(), VIDIOC_REQBUFS, &req) != 0) {
                if (errno != EBUSY) return detail::last_error(what + ": VIDIOC_REQBUFS 0");
                out.in_use = true;  // another file took the queue meanwhile
            } else {
                out.mmap = req.capabilities & V4L2_BUF_CAP_SUPPORTS_MMAP;
                out.dmabuf = req.capabilities & V4L2_BUF_CAP_SUPPORTS_DMABUF;
            }
        }
    }
    if (out.in_use) {
        // Whoever holds the buffers keeps them: exporting one of them (when they are MMAP
        // buffers) is the only probe that leaves them as they are.
        out.exports = try_export(fd(), *type);
        return out;
    }
    if (!out.mmap) return out;
    // The queue is free: one MMAP buffer for a moment, exported and freed again.
    v4l2_requestbuffers req{};
    req.type = *type;
    req.memory = V4L2_MEMORY_MMAP;
    req.count = 1;
    if (detail::v4l2_ioctl(fd(), VIDIOC_REQBUFS, &req) != 0) {
        if (errno != EBUSY) return detail::last_error(what + ": VIDIOC_REQBUFS 1 (probing VIDIOC_EXPBUF)");
        out.in_use = true;  // another file took the queue since the report: leave it alone
        out.exports = try_export(fd(), *type);
        return out;
    }
    if (req.count > 0) out.exports = try_export(fd(), *type);
    req.count = 0;
    detail::v4l2_ioctl(fd(), VIDIOC_REQBUFS, &req);  // frees only the buffer made just above
    return out;
}

Result<std::vector<std::uint32_t>> Device::formats(Direction direction) const {
    if (!fd_) return moved_from("formats");
    auto type = buffer_type(direction);
    if (!type) return type.error();
    std::vector<std::uint32_t> out;
    for (std::uint32_t i = 0;; ++i) {
        v4l2_fmtdesc desc{};
        desc.index = i;
        desc.type = *type;
        if (detail::v4l2_ioctl(fd(), VIDIOC_ENUM_FMT, &desc) != 0) {
            if (errno == EINVAL) break;  // the end of the list
            return detail::last_error(path_ + ": VIDIOC_ENUM_FMT");
        }
        out.push_back(desc.pixelformat);
    }
    return out;
}

Result<std::vector<FrameSize>> Device::frame_sizes(std::uint32_t pixel_format) const {
    if (!fd_) return moved_from("frame_sizes");
    std::vector<FrameSize> out;
    for (std::uint32_t i = 0;; ++i) {
        v4l2_frmsizeenum size{};
        size.index = i;
        size.pixel_format = pixel_format;
        if (detail::v4l2_ioctl(fd(), VIDIOC_ENUM_FRAMESIZES, &size) != 0) {
            if (errno == EINVAL) break;
            return detail::last_error(path_ + ": VIDIOC_ENUM_FRAMESIZES " + fourcc_name(pixel_format));
        }
        if (size.type != V4L2_FRMSIZE_TYPE_DISCRETE) break;
        out.push_back({size.discrete.width, size.discrete.height});
    }
    return out;
}

Result<Format> Device::format(Direction direction) const {
    if (!fd_) return moved_from("format");
    auto type = buffer_type(direction);
    if (!type) return type.error();
    v4l2_format f{};
    f.type = *type;
    if (detail::v4l2_ioctl(fd(), VIDIOC_G_FMT, &f) != 0) return detail::last_error(path_ + ": VIDIOC_G_FMT");
    return detail::format_from_v4l2(f, caps_.multiplanar);
}

Result<Format> Device::set_format(Direction direction, std::uint32_t width, std::uint32_t height,
                                  std::uint32_t pixel_format) {
    if (!fd_) return moved_from("set_format");
    auto type = buffer_type(direction);
    if (!type) return type.error();
    const std::string what = path_ + ": set " + name_of(direction) + " format " + std::to_string(width) + "x" +
                             std::to_string(height) + " " + fourcc_name(pixel_format);
    v4l2_format f{};
    f.type = *type;
    if (caps_.multiplanar) {
        f.fmt.pix_mp.width = width;
        f.fmt.pix_mp.height = height;
        f.fmt.pix_mp.pixelformat = pixel_format;
        f.fmt.pix_mp.field = V4L2_FIELD_NONE;
    } else {
        f.fmt.pix.width = width;
        f.fmt.pix.height = height;
        f.fmt.pix.pixelformat = pixel_format;
        f.fmt.pix.field = V4L2_FIELD_NONE;
    }
    if (detail::v4l2_ioctl(fd(), VIDIOC_S_FMT, &f) != 0) return detail::last_error(what + " (VIDIOC_S_FMT)");
    Format got = detail::format_from_v4l2(f, caps_.multiplanar);
    // Drivers adjust what they cannot do instead of failing: say so rather than stream
    // something else than was asked for.
    if (got.pixel_format != pixel_format || got.width != width || got.height != height)
        return Error::library(Errc::unsupported, what + ": the driver offers " + std::to_string(got.width) + "x" +
                                                     std::to_string(got.height) + " " + fourcc_name(got.pixel_format) +
                                                     " instead");
    return got;
}

Result<FrameInterval> Device::set_frame_interval(Direction direction, FrameInterval interval) {
    if (!fd_) return moved_from("set_frame_interval");
    auto type = buffer_type(direction);
    if (!type) return type.error();
    const std::string what = path_ + ": set the frame interval to " + std::to_string(interval.numerator) + "/" +
                             std::to_string(interval.denominator) + " s";
    if (interval.numerator == 0 || interval.denominator == 0)
        return Error::library(Errc::invalid_argument, what + ": zero in the fraction");
    v4l2_streamparm parm{};
    parm.type = *type;  // vivid refuses the single-plane type on a multi-planar device
    if (direction == Direction::capture) {
        parm.parm.capture.timeperframe = {interval.numerator, interval.denominator};
    } else {
        parm.parm.output.timeperframe = {interval.numerator, interval.denominator};
    }
    if (detail::v4l2_ioctl(fd(), VIDIOC_S_PARM, &parm) != 0) return detail::last_error(what + " (VIDIOC_S_PARM)");
    const auto& cap = parm.parm.capture;
    const auto& out = parm.parm.output;
    const bool supported = direction == Direction::capture ? (cap.capability & V4L2_CAP_TIMEPERFRAME) != 0
                                                           : (out.capability & V4L2_CAP_TIMEPERFRAME) != 0;
    if (!supported) return Error::library(Errc::unsupported, what + ": the driver has no frame-interval control");
    const auto& got = direction == Direction::capture ? cap.timeperframe : out.timeperframe;
    return FrameInterval{got.numerator, got.denominator};
}

Result<std::vector<FrameInterval>> Device::frame_intervals(std::uint32_t pixel_format, std::uint32_t width,
                                                           std::uint32_t height) const {
    if (!fd_) return moved_from("frame_intervals");
    std::vector<FrameInterval> out;
    for (std::uint32_t i = 0;; ++i) {
        v4l2_frmivalenum ival{};
        ival.index = i;
        ival.pixel_format = pixel_format;
        ival.width = width;
        ival.height = height;
        if (detail::v4l2_ioctl(fd(), VIDIOC_ENUM_FRAMEINTERVALS, &ival) != 0) {
            if (errno == EINVAL) break;
            return detail::last_error(path_ + ": VIDIOC_ENUM_FRAMEINTERVALS " + fourcc_name(pixel_format));
        }
        if (ival.type != V4L2_FRMIVAL_TYPE_DISCRETE) break;
        out.push_back({ival.discrete.numerator, ival.discrete.denominator});
    }
    return out;
}

Status Device::select_input(std::uint32_t index) {
    if (!fd_) return moved_from("select_input");
    int i = static_cast<int>(index);
    if (detail::v4l2_ioctl(fd(), VIDIOC_S_INPUT, &i) != 0)
        return detail::last_error(path_ + ": select input " + std::to_string(index) + " (VIDIOC_S_INPUT)");
    return {};
}

Status Device::select_output(std::uint32_t index) {
    if (!fd_) return moved_from("select_output");
    int i = static_cast<int>(index);
    if (detail::v4l2_ioctl(fd(), VIDIOC_S_OUTPUT, &i) != 0)
        return detail::last_error(path_ + ": select output " + std::to_string(index) + " (VIDIOC_S_OUTPUT)");
    return {};
}

namespace {

bool same_name(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               const auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
               return lower(x) == lower(y);
           });
}

}  // namespace

Result<std::uint32_t> Device::control_id(std::string_view name) const {
    if (!fd_) return moved_from("control_id");
    v4l2_query_ext_ctrl q{};
    q.id = V4L2_CTRL_FLAG_NEXT_CTRL | V4L2_CTRL_FLAG_NEXT_COMPOUND;
    while (detail::v4l2_ioctl(fd(), VIDIOC_QUERY_EXT_CTRL, &q) == 0) {
        if (same_name(q.name, name)) return q.id;
        q.id |= V4L2_CTRL_FLAG_NEXT_CTRL | V4L2_CTRL_FLAG_NEXT_COMPOUND;
    }
    return Error::library(Errc::not_found, path_ + " (" + caps_.card + ") has no control named \"" +
                                               std::string(name) + "\"");
}

Result<std::int64_t> Device::menu_value(std::uint32_t id, std::string_view item) const {
    if (!fd_) return moved_from("menu_value");
    v4l2_query_ext_ctrl q{};
    q.id = id;
    if (detail::v4l2_ioctl(fd(), VIDIOC_QUERY_EXT_CTRL, &q) != 0)
        return detail::last_error(path_ + ": VIDIOC_QUERY_EXT_CTRL " + std::to_string(id));
    if (q.type != V4L2_CTRL_TYPE_MENU)
        return Error::library(Errc::invalid_argument, path_ + ": control \"" + q.name + "\" is not a menu");
    for (std::int64_t i = q.minimum; i <= q.maximum; ++i) {
        v4l2_querymenu m{};
        m.id = id;
        m.index = static_cast<std::uint32_t>(i);
        if (detail::v4l2_ioctl(fd(), VIDIOC_QUERYMENU, &m) != 0) continue;  // a gap in the menu
        if (same_name(reinterpret_cast<const char*>(m.name), item)) return i;
    }
    return Error::library(Errc::not_found, path_ + ": control \"" + q.name + "\" has no item \"" +
                                               std::string(item) + "\"");
}

Status Device::set_control(std::uint32_t id, std::int64_t value) {
    if (!fd_) return moved_from("set_control");
    v4l2_ext_control c{};
    c.id = id;
    c.value64 = value;
    v4l2_query_ext_ctrl q{};
    q.id = id;
    if (detail::v4l2_ioctl(fd(), VIDIOC_QUERY_EXT_CTRL, &q) != 0)
        return detail::last_error(path_ + ": VIDIOC_QUERY_EXT_CTRL " + std::to_string(id));
    if (q.type != V4L2_CTRL_TYPE_INTEGER64) c.value = static_cast<std::int32_t>(value);
    v4l2_ext_controls cs{};
    cs.which = V4L2_CTRL_WHICH_CUR_VAL;
    cs.count = 1;
    cs.controls = &c;
    if (detail::v4l2_ioctl(fd(), VIDIOC_S_EXT_CTRLS, &cs) != 0)
        return detail::last_error(path_ + ": set control \"" + std::string(q.name) + "\" to " +
                                  std::to_string(value) + " (VIDIOC_S_EXT_CTRLS)");
    return {};
}

}  // namespace dmabridge::v4l2
