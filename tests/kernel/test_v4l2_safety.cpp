// SPDX-License-Identifier: MIT
// The V4L2 adapter against what a driver really does, on vivid (single-plane and multi-planar
// instances): layouts the driver cannot honour are refused before it sees them, output offsets
// reach it as data_offset, probes leave a live ring alone, nodes of the wrong kind fail at
// open, and EAGAIN from the non-blocking nodes is an answer, never a loop.
#include <dmabridge/alloc/udmabuf.hpp>
#include <dmabridge/v4l2/buffer_ring.hpp>
#include <dmabridge/v4l2/device.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>

#include <fcntl.h>
#include <linux/videodev2.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include "v4l2/ioctl.hpp"
#include "fd_count.hpp"
#include "report.hpp"
#include "vivid_nodes.hpp"

using namespace dmabridge;
using namespace dmabridge::test;
using namespace std::chrono_literals;

namespace {

template <typename T>
T need(Result<T> r) {
    REQUIRE_MESSAGE(r, (r ? "" : r.error().message()));
    return std::move(*r);
}
void need(Status s) { REQUIRE_MESSAGE(s, (s ? "" : s.error().message())); }

bool mentions(const Error& e, std::string_view text) {
    const bool found = e.message().find(text) != std::string::npos;
    if (!found) MESSAGE("error was: ", e.message());
    return found;
}

v4l2::Device vivid(bool capture, bool multiplanar) {
    auto dev = find_vivid_node([&](const v4l2::Device& d) {
        const auto& c = d.capabilities();
        return (capture ? c.capture : c.output) && c.multiplanar == multiplanar;
    });
    REQUIRE_MESSAGE(dev, "no vivid " << (capture ? "capture" : "output") << (multiplanar ? " multi-planar" : "")
                                     << " node (ci/vm loads vivid n_devs=2 multiplanar=1,2)");
    return std::move(*dev);
}

UdmabufAllocator udmabuf() { return need(UdmabufAllocator::open()); }

// A description of `fourcc` at `width` x `height` from (buffer, offset, stride) triples.
BufferDesc describe(std::uint32_t width, std::uint32_t height, std::uint32_t fourcc,
                    std::vector<std::tuple<const DmaBuf*, std::uint64_t, std::uint64_t>> planes) {
    BufferDesc d;
    d.width = width;
    d.height = height;
    d.fourcc = fourcc;
    for (auto& [buf, offset, stride] : planes) d.planes.push_back({need(buf->dup()), offset, stride});
    return d;
}

std::vector<BufferDesc> one(BufferDesc d) {
    std::vector<BufferDesc> v;
    v.push_back(std::move(d));
    return v;
}

// Streams `frames` frames, re-queueing each; returns them.
std::vector<v4l2::Dequeued> keep_streaming(v4l2::BufferRing& ring, int frames) {
    std::vector<v4l2::Dequeued> got;
    for (int i = 0; i < frames; ++i) {
        auto d = need(ring.dequeue(5s));
        REQUIRE_MESSAGE(d.has_value(), "the live ring delivered no frame within 5 s");
        got.push_back(*d);
        need(ring.queue(d->index));
    }
    return got;
}

}  // namespace

TEST_CASE_FIXTURE(FdLeakCheck, "single-plane capture rings refuse offsets and chroma planes the driver places itself") {
    auto cap = vivid(true, false);
    auto alloc = udmabuf();
    SUBCASE("XR24 at an offset: the single-plane API has none") {
        need(cap.set_format(v4l2::Direction::capture, 640, 480, V4L2_PIX_FMT_XBGR32));
        auto buf = need(alloc.allocate_bytes(1228800 + 4096));
        auto r = v4l2::BufferRing::create_imported(
            cap, v4l2::Direction::capture, one(describe(640, 480, fourcc::XRGB8888, {{&buf, 4096, 2560}})));
        REQUIRE_FALSE(r);
        CHECK(r.error().is(Errc::unsupported));
        CHECK(mentions(r.error(), "single-plane V4L2 API has no offset"));
    }
    SUBCASE("NV12 with its chroma elsewhere: the driver writes it after the luma") {
        need(cap.set_format(v4l2::Direction::capture, 640, 480, V4L2_PIX_FMT_NV12));
        auto buf = need(alloc.allocate_bytes(640 * 480 * 2));
        auto other = need(alloc.allocate_bytes(640 * 240));
        auto moved = v4l2::BufferRing::create_imported(
            cap, v4l2::Direction::capture,
            one(describe(640, 480, fourcc::NV12, {{&buf, 0, 640}, {&buf, 640 * 480 + 4096, 640}})));
        REQUIRE_FALSE(moved);
        CHECK(mentions(moved.error(), "the driver puts it at offset 307200 stride 640"));
        auto split = v4l2::BufferRing::create_imported(
            cap, v4l2::Direction::capture, one(describe(640, 480, fourcc::NV12, {{&buf, 0, 640}, {&other, 0, 640}})));
        REQUIRE_FALSE(split);
        CHECK(mentions(split.error(), "is in another dma-buf than plane 0"));
        // Where the driver puts it: accepted, and the frames fill the layout.
        auto ring = need(v4l2::BufferRing::create_imported(
            cap, v4l2::Direction::capture, one(describe(640, 480, fourcc::NV12, {{&buf, 0, 640}, {&buf, 640 * 480, 640}}))));
        need(ring.queue(0));
        need(ring.stream_on());
        auto d = need(ring.dequeue(5s));
        REQUIRE(d.has_value());
        CHECK(d->bytes_used == 640 * 480 * 3 / 2);
        CHECK_FALSE(d->incomplete);
        need(ring.stream_off());
    }
}

TEST_CASE_FIXTURE(FdLeakCheck, "multi-planar capture rings refuse NV12M planes sharing a dma-buf: capture ignores data_offset") {
    auto cap = vivid(true, true);
    need(cap.set_format(v4l2::Direction::capture, 640, 480, V4L2_PIX_FMT_NV12M));
    auto alloc = udmabuf();
    auto shared = need(alloc.allocate_bytes(640 * 480 * 2));
    auto r = v4l2::BufferRing::create_imported(
        cap, v4l2::Direction::capture,
        one(describe(640, 480, fourcc::NV12, {{&shared, 0, 640}, {&shared, 640 * 480, 640}})));
    REQUIRE_FALSE(r);
    CHECK(r.error().is(Errc::unsupported));
    CHECK(mentions(r.error(), "videobuf2 ignores data_offset on capture queues"));
    // Both at byte 0 of one dma-buf: the driver would write one over the other.
    auto overlap = v4l2::BufferRing::create_imported(
        cap, v4l2::Direction::capture, one(describe(640, 480, fourcc::NV12, {{&shared, 0, 640}, {&shared, 0, 640}})));
    REQUIRE_FALSE(overlap);
    // Refused by the description's own check (planes overlapping in one dma-buf) before the ring's.
    CHECK(mentions(overlap.error(), "overlap"));
    // One dma-buf per plane, each from byte 0: accepted, and frames arrive whole.
    auto y = need(alloc.allocate_bytes(640 * 480));
    auto uv = need(alloc.allocate_bytes(640 * 240));
    auto ring = need(v4l2::BufferRing::create_imported(
        cap, v4l2::Direction::capture, one(describe(640, 480, fourcc::NV12, {{&y, 0, 640}, {&uv, 0, 640}}))));
    need(ring.queue(0));
    need(ring.stream_on());
    auto d = need(ring.dequeue(5s));
    REQUIRE(d.has_value());
    CHECK(d->plane_count == 2);
    CHECK(d->plane_bytes_used[0] == 640 * 480);
    CHECK(d->plane_bytes_used[1] == 640 * 240);
    CHECK_FALSE(d->incomplete);
    need(ring.stream_off());
}

TEST_CASE_FIXTURE(FdLeakCheck, "multi-planar output rings send plane offsets as data_offset, with bytesused per plane") {
    auto out = vivid(false, true);
    const auto fmt = need(out.set_format(v4l2::Direction::output, 640, 480, V4L2_PIX_FMT_NV12M));
    REQUIRE(fmt.planes.size() == 2);
    const std::uint32_t y_size = fmt.planes[0].size_image, uv_size = fmt.planes[1].size_image;
    auto alloc = udmabuf();
    // NV12M in one dma-buf: luma at 4096, chroma after it; two such buffers.
    const std::uint64_t uv_at = 4096 + ((y_size + 4095) / 4096) * 4096;
    std::vector<DmaBuf> bufs;
    std::vector<BufferDesc> descs;
    for (int i = 0; i < 2; ++i) {
        bufs.push_back(need(alloc.allocate_bytes(uv_at + ((uv_size + 4095) / 4096) * 4096)));
        descs.push_back(describe(640, 480, fourcc::NV12, {{&bufs.back(), 4096, 640}, {&bufs.back(), uv_at, 640}}));
    }
    auto ring = need(v4l2::BufferRing::create_imported(out, v4l2::Direction::output, std::move(descs)));
    // One payload for two planes is ambiguous: refused, naming the plane count.
    auto ambiguous = ring.queue(0, y_size);
    REQUIRE_FALSE(ambiguous);
    CHECK(mentions(ambiguous.error(), "give one payload per plane"));
    const std::array<std::uint32_t, 2> payloads{y_size, uv_size};
    need(ring.queue(0, payloads));  // vivid checks bytesused >= data_offset + the plane's size
    need(ring.queue(1));            // every plane full
    const std::array<std::uint32_t, 1> too_few{y_size};
    CHECK_FALSE(ring.queue(0, too_few));
    need(ring.stream_on());
    auto d = need(ring.dequeue(5s));
    REQUIRE(d.has_value());
    CHECK(d->plane_count == 2);
    CHECK(d->plane_data_offset[0] == 4096);
    CHECK(d->plane_data_offset[1] == uv_at);
    CHECK(d->plane_bytes_used[0] == 4096 + y_size);
    CHECK(d->plane_bytes_used[1] == uv_at + uv_size);
    need(ring.stream_off());
}

TEST_CASE_FIXTURE(FdLeakCheck, "output rings refuse offsets V4L2 cannot express: single-plane, and past the 32-bit length") {
    SUBCASE("single-plane output at an offset") {
        auto out = vivid(false, false);
        need(out.set_format(v4l2::Direction::output, 640, 480, V4L2_PIX_FMT_YUYV));
        auto buf = need(udmabuf().allocate_bytes(614400 + 4096));
        auto r = v4l2::BufferRing::create_imported(out, v4l2::Direction::output,
                                                   one(describe(640, 480, fourcc::YUYV, {{&buf, 4096, 1280}})));
        REQUIRE_FALSE(r);
        CHECK(mentions(r.error(), "single-plane V4L2 API has no offset"));
    }
    // A plane ending past 4 GiB needs a dma-buf larger than 4 GiB: none can be made here
    // without backing it (DRM dumb buffers stop below 4 GiB; udmabuf and heaps allocate), so the
    // 32-bit clamp is proved on the function the ring uses (below).
}

TEST_CASE("V4L2 lengths of dma-bufs of 4 GiB or more are clamped, never truncated") {
    CHECK(detail::v4l2_length(614400) == 614400u);
    CHECK(detail::v4l2_length(0xffffffffull) == 0xffffffffu);
    CHECK(detail::v4l2_length(1ull << 32) == 0xffffffffu);  // truncation would give 0
    CHECK(detail::v4l2_length((1ull << 32) + 65536) == 0xffffffffu);  // truncation: 65536
}

TEST_CASE("a captured plane is incomplete when it holds fewer bytes than its layout, or holds them elsewhere") {
    CHECK_FALSE(detail::plane_incomplete(614400, 614400, 0));
    CHECK_FALSE(detail::plane_incomplete(614400, 614528, 0));  // padding after the frame
    CHECK(detail::plane_incomplete(614400, 614399, 0));        // a short frame
    CHECK(detail::plane_incomplete(614400, 0, 0));
    CHECK(detail::plane_incomplete(614400, 614528, 128));      // whole, but 128 bytes in
}

TEST_CASE_FIXTURE(FdLeakCheck, "frames vivid fills whole are complete, per buffer plane") {
    for (bool multiplanar : {false, true}) {
        CAPTURE(multiplanar);
        auto cap = vivid(true, multiplanar);
        need(cap.set_format(v4l2::Direction::capture, 640, 480, multiplanar ? V4L2_PIX_FMT_NV12M : V4L2_PIX_FMT_NV12));
        auto ring = need(v4l2::BufferRing::create_exported(cap, v4l2::Direction::capture, 2));
        for (std::uint32_t i = 0; i < ring.size(); ++i) need(ring.queue(i));
        need(ring.stream_on());
        for (const auto& d : keep_streaming(ring, 3)) {
            CHECK_FALSE(d.incomplete);
            CHECK(d.plane_count == (multiplanar ? 2u : 1u));
            CHECK(d.plane_bytes_used[0] == (multiplanar ? 640u * 480 : 640u * 480 * 3 / 2));
            if (multiplanar) CHECK(d.plane_bytes_used[1] == 640u * 240);
        }
        need(ring.stream_off());
    }
}

TEST_CASE_FIXTURE(FdLeakCheck, "a live ring keeps streaming while its device is probed, from its own file and others") {
    auto cap = vivid(true, false);
    need(cap.set_format(v4l2::Direction::capture, 640, 480, V4L2_PIX_FMT_YUYV));
    SUBCASE("an MMAP ring not streaming yet keeps its buffers") {
        auto ring = need(v4l2::BufferRing::create_exported(cap, v4l2::Direction::capture, 3));
        auto probe = need(cap.memory_support(v4l2::Direction::capture));  // same file
        CHECK(probe.in_use);
        CHECK(probe.exports);
        CHECK(probe.mmap);
        CHECK(probe.dmabuf);
        for (std::uint32_t i = 0; i < ring.size(); ++i) need(ring.queue(i));
        need(ring.stream_on());
        CHECK(keep_streaming(ring, 3).size() == 3);
        need(ring.stream_off());
    }
    SUBCASE("a streaming MMAP ring, probed by its own Device, another file, and dmabridge-info") {
        auto ring = need(v4l2::BufferRing::create_exported(cap, v4l2::Direction::capture, 3));
        for (std::uint32_t i = 0; i < ring.size(); ++i) need(ring.queue(i));
        need(ring.stream_on());
        keep_streaming(ring, 2);
        auto own = need(cap.memory_support(v4l2::Direction::capture));
        CHECK(own.in_use);
        CHECK(own.exports);
        keep_streaming(ring, 2);
        auto other = need(v4l2::Device::open(cap.path()));
        auto theirs = need(other.memory_support(v4l2::Direction::capture));
        CHECK(theirs.in_use);  // and exports unproven: videobuf2 refuses EXPBUF to other files
        CHECK(theirs.mmap);
        CHECK(theirs.dmabuf);
        CHECK(need(other.format(v4l2::Direction::capture)).pixel_format == V4L2_PIX_FMT_YUYV);
        keep_streaming(ring, 2);
        info::Filters only_this;
        only_this.device = cap.path();
        const auto report = info::gather(only_this);
        bool listed = false;
        for (const auto& v : report.v4l2)
            if (v.path == cap.path()) {
                listed = true;
                CHECK_MESSAGE(v.error.empty(), v.error);
                CHECK(v.capture_memory.in_use);
                CHECK(v.capture_memory.mmap);
            }
        CHECK(listed);
        const auto after = keep_streaming(ring, 3);
        for (std::size_t i = 1; i < after.size(); ++i) CHECK(after[i].sequence > after[i - 1].sequence);
        need(ring.stream_off());
    }
    SUBCASE("a DMABUF ring: the probe cannot export its buffers, and says the queue is in use") {
        auto alloc = udmabuf();
        std::vector<DmaBuf> bufs;
        std::vector<BufferDesc> descs;
        for (int i = 0; i < 2; ++i) {
            bufs.push_back(need(alloc.allocate_bytes(614400)));
            descs.push_back(describe(640, 480, fourcc::YUYV, {{&bufs.back(), 0, 1280}}));
        }
        auto ring = need(v4l2::BufferRing::create_imported(cap, v4l2::Direction::capture, std::move(descs)));
        for (std::uint32_t i = 0; i < ring.size(); ++i) need(ring.queue(i));
        need(ring.stream_on());
        auto probe = need(cap.memory_support(v4l2::Direction::capture));
        CHECK(probe.in_use);
        CHECK_FALSE(probe.exports);
        CHECK(keep_streaming(ring, 3).size() == 3);
        need(ring.stream_off());
    }
    // With no ring, the probe allocates its one buffer and reports the queue free.
    auto free_probe = need(cap.memory_support(v4l2::Direction::capture));
    CHECK_FALSE(free_probe.in_use);
    CHECK(free_probe.exports);
}

TEST_CASE_FIXTURE(FdLeakCheck, "opening a node that is not a V4L2 device of the kind asked fails at open, saying why") {
    auto null = v4l2::Device::open("/dev/null");
    REQUIRE_FALSE(null);
    CHECK(mentions(null.error(), "/dev/null is not a V4L2 device"));
    char file[] = "/tmp/dmabridge-v4l2-XXXXXX";
    const int fd = ::mkstemp(file);
    REQUIRE(fd >= 0);
    ::close(fd);
    auto regular = v4l2::Device::open(file);
    ::unlink(file);
    REQUIRE_FALSE(regular);
    CHECK(mentions(regular.error(), "a regular file"));
    // DRM ignores the ioctl type byte: VIDIOC_QUERYCAP would run as DRM_IOCTL_VERSION.
    auto drm = v4l2::Device::open("/dev/dri/card0");
    REQUIRE_FALSE(drm);
    CHECK(mentions(drm.error(), "a DRM node"));
    auto cap = vivid(true, false);
    auto out = vivid(false, false);
    auto cap_as_output = v4l2::Device::open(cap.path(), v4l2::Direction::output);
    REQUIRE_FALSE(cap_as_output);
    CHECK(mentions(cap_as_output.error(), "cannot stream video output"));
    auto out_as_capture = v4l2::Device::open(out.path(), v4l2::Direction::capture);
    REQUIRE_FALSE(out_as_capture);
    CHECK(mentions(out_as_capture.error(), "cannot stream video capture"));
    CHECK(v4l2::Device::open(cap.path(), v4l2::Direction::capture));
    CHECK(v4l2::Device::open(out.path(), v4l2::Direction::output));
    // vivid's other nodes (VBI, SDR, touch) are V4L2 nodes but stream no video.
    for (const auto& entry : std::filesystem::directory_iterator("/dev")) {
        const auto name = entry.path().filename().string();
        if (name.rfind("vbi", 0) != 0 && name.rfind("swradio", 0) != 0) continue;
        auto dev = v4l2::Device::open(entry.path().string(), v4l2::Direction::capture);
        REQUIRE_FALSE(dev);
        CHECK(mentions(dev.error(), "cannot stream video capture"));
    }
}

TEST_CASE_FIXTURE(FdLeakCheck, "EAGAIN from a non-blocking V4L2 node comes back at once, never spun on") {
    auto cap = vivid(true, false);
    need(cap.set_format(v4l2::Direction::capture, 640, 480, V4L2_PIX_FMT_YUYV));
    auto ring = need(v4l2::BufferRing::create_exported(cap, v4l2::Direction::capture, 2));
    need(ring.stream_on());  // streaming with nothing queued: VIDIOC_DQBUF answers EAGAIN
    // The adapter's ioctl on a dup of the node's fd (the same open file), in a thread: if it
    // spins on EAGAIN, closing the dup ends it with EBADF so the test can report and finish.
    UniqueFd dup(::fcntl(cap.fd(), F_DUPFD_CLOEXEC, 0));
    REQUIRE(dup);
    std::atomic<int> result{1}, error{0};
    std::thread t([&] {
        v4l2_buffer b{};
        b.type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
        b.memory = V4L2_MEMORY_MMAP;
        result = detail::v4l2_ioctl(dup.get(), VIDIOC_DQBUF, &b);
        error = errno;
    });
    const auto deadline = std::chrono::steady_clock::now() + 3s;
    while (result == 1 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(1ms);
    const bool returned = result != 1;
    if (!returned) dup.reset();  // the spinning ioctl now fails with EBADF
    t.join();
    CHECK_MESSAGE(returned, "VIDIOC_DQBUF was still being retried after 3 s");
    CHECK(result == -1);
    CHECK(error == EAGAIN);
    // The ring's own dequeue (the same ioctl path; it would spin too) says "nothing yet".
    if (returned) CHECK_FALSE(need(ring.dequeue(Timeout{0})).has_value());
    need(ring.stream_off());
}
