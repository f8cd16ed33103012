// SPDX-License-Identifier: MIT
// V4L2 against vivid: discovery, formats, negotiation, and buffer rings in both memory modes,
// with frames really written by the driver into dma-bufs.
#include <dmabridge/alloc/udmabuf.hpp>
#include <dmabridge/kernel/cpu_access.hpp>
#include <dmabridge/v4l2/buffer_ring.hpp>
#include <dmabridge/v4l2/device.hpp>

#include <algorithm>
#include <chrono>

#include <linux/videodev2.h>

#include <doctest/doctest.h>

#include "fd_count.hpp"

using namespace dmabridge;
using namespace std::chrono_literals;
using dmabridge::test::FdLeakCheck;

namespace {

v4l2::Device capture_device() {
    auto dev = v4l2::Device::find(v4l2::Direction::capture);
    REQUIRE_MESSAGE(dev, (dev ? "" : dev.error().message()));
    return std::move(*dev);
}

// The share of non-zero bytes in a frame, in percent: buffers start zeroed, and vivid's test
// pattern (colour bars, with luma and chroma offsets for YUV) is mostly non-zero.
std::size_t nonzero_percent(const DmaBuf& buf, std::size_t size) {
    auto map = Mapping::map(buf, Access::read);
    REQUIRE(map);
    auto cpu = CpuAccess::begin(buf, Access::read);
    REQUIRE(cpu);
    const std::size_t n = std::min(size, map->size());
    const auto zeros = static_cast<std::size_t>(std::count(map->data(), map->data() + n, std::byte{0}));
    return (n - zeros) * 100 / n;
}

// Streams `frames` frames through `ring` and returns the slots they arrived in.
std::vector<v4l2::Dequeued> stream(v4l2::BufferRing& ring, int frames) {
    for (std::uint32_t i = 0; i < ring.size(); ++i) REQUIRE(ring.queue(i));
    REQUIRE(ring.stream_on());
    std::vector<v4l2::Dequeued> got;
    while (static_cast<int>(got.size()) < frames) {
        auto d = ring.dequeue(5000ms);
        REQUIRE_MESSAGE(d, (d ? "" : d.error().message()));
        REQUIRE_MESSAGE(d->has_value(), "no frame within 5 s");
        got.push_back(**d);
        if (static_cast<int>(got.size()) < frames) REQUIRE(ring.queue((*d)->index));
    }
    REQUIRE(ring.stream_off());
    return got;
}

}  // namespace

TEST_SUITE_BEGIN("any_kernel");

TEST_CASE_FIXTURE(FdLeakCheck, "vivid's capture and output devices are found with their capabilities") {
    auto cap = capture_device();
    CHECK(cap.capabilities().driver == "vivid");
    CHECK(cap.capabilities().capture);
    CHECK(cap.capabilities().streaming);
    auto out = v4l2::Device::find(v4l2::Direction::output);
    REQUIRE(out);
    CHECK(out->capabilities().output);
    CHECK(out->path() != cap.path());
    auto formats = cap.formats(v4l2::Direction::capture);
    REQUIRE(formats);
    for (std::uint32_t f : {V4L2_PIX_FMT_YUYV, V4L2_PIX_FMT_XBGR32, V4L2_PIX_FMT_NV12})
        CHECK_MESSAGE(std::find(formats->begin(), formats->end(), f) != formats->end(), v4l2::fourcc_name(f));
    auto sizes = cap.frame_sizes(V4L2_PIX_FMT_YUYV);
    REQUIRE(sizes);
    CHECK(std::find(sizes->begin(), sizes->end(), v4l2::FrameSize{640, 480}) != sizes->end());
    CHECK(v4l2::drm_fourcc_for(V4L2_PIX_FMT_XBGR32) == fourcc::XRGB8888);
    CHECK(v4l2::drm_fourcc_for(V4L2_PIX_FMT_RGB565) == fourcc::RGB565);
    CHECK(v4l2::drm_fourcc_for(V4L2_PIX_FMT_NV12M) == fourcc::NV12);
}

TEST_CASE_FIXTURE(FdLeakCheck, "format negotiation gives the driver's strides and refuses what it would change") {
    auto cap = capture_device();
    auto xr24 = cap.set_format(v4l2::Direction::capture, 640, 480, V4L2_PIX_FMT_XBGR32);
    REQUIRE_MESSAGE(xr24, (xr24 ? "" : xr24.error().message()));
    CHECK(xr24->drm_fourcc == fourcc::XRGB8888);
    REQUIRE(xr24->planes.size() == 1);
    CHECK(xr24->planes[0].bytes_per_line == 2560);
    CHECK(xr24->planes[0].size_image == 1228800);
    auto odd = cap.set_format(v4l2::Direction::capture, 641, 479, V4L2_PIX_FMT_YUYV);
    REQUIRE_FALSE(odd);
    CHECK(odd.error().is(Errc::unsupported));
    CHECK(odd.error().message().find("the driver offers") != std::string::npos);
    auto bogus = cap.set_format(v4l2::Direction::capture, 640, 480, v4l2_fourcc('Z', 'Z', 'Z', 'Z'));
    REQUIRE_FALSE(bogus);
    CHECK(bogus.error().message().find("ZZZZ") != std::string::npos);
    auto no_output = cap.set_format(v4l2::Direction::output, 640, 480, V4L2_PIX_FMT_YUYV);
    REQUIRE_FALSE(no_output);
    CHECK(no_output.error().message().find("has no output queue") != std::string::npos);
}

TEST_CASE_FIXTURE(FdLeakCheck, "an MMAP ring exports every buffer, and the driver's frames arrive in them") {
    auto cap = capture_device();
    REQUIRE(cap.set_format(v4l2::Direction::capture, 640, 480, V4L2_PIX_FMT_YUYV));
    auto ring = v4l2::BufferRing::create_exported(cap, v4l2::Direction::capture, 4);
    REQUIRE_MESSAGE(ring, (ring ? "" : ring.error().message()));
    REQUIRE(ring->size() >= 2);
    for (std::uint32_t i = 0; i < ring->size(); ++i) {
        const auto& desc = ring->buffer(i);
        CHECK(desc.validate());
        CHECK(desc.fourcc == fourcc::YUYV);
        CHECK(desc.planes[0].stride == 1280);
        CHECK(desc.planes[0].buffer.size() >= 614400);
    }
    const auto frames = stream(*ring, 6);
    // In capture order: vivid derives the sequence from the time since stream-on, so on a heavily
    // loaded (emulated) machine two buffers can carry the same number; never a smaller one.
    for (std::size_t i = 1; i < frames.size(); ++i) CHECK(frames[i].sequence >= frames[i - 1].sequence);
    CHECK(frames.back().sequence > frames.front().sequence);
    CHECK(frames.back().bytes_used == 614400);
    CHECK_FALSE(frames.back().error);
    CHECK(nonzero_percent(ring->buffer(frames.back().index).planes[0].buffer, 614400) > 50);
}

TEST_CASE_FIXTURE(FdLeakCheck, "NV12 in one V4L2 buffer is described as two planes of one dma-buf") {
    auto cap = capture_device();
    REQUIRE(cap.set_format(v4l2::Direction::capture, 320, 180, V4L2_PIX_FMT_NV12));
    auto ring = v4l2::BufferRing::create_exported(cap, v4l2::Direction::capture, 2);
    REQUIRE_MESSAGE(ring, (ring ? "" : ring.error().message()));
    const auto& desc = ring->buffer(0);
    REQUIRE(desc.planes.size() == 2);
    CHECK(desc.planes[1].buffer.id() == desc.planes[0].buffer.id());
    CHECK(desc.planes[1].offset == 320u * 180u);
    CHECK(desc.planes[1].stride == 320);
}

TEST_CASE_FIXTURE(FdLeakCheck, "a moved-from Device and BufferRing fail every call with empty_object, before any ioctl") {
    auto cap = capture_device();
    REQUIRE(cap.set_format(v4l2::Direction::capture, 320, 180, V4L2_PIX_FMT_YUYV));
    auto ring = v4l2::BufferRing::create_exported(cap, v4l2::Direction::capture, 2);
    REQUIRE_MESSAGE(ring, (ring ? "" : ring.error().message()));
    const auto empty = [](const Error& e) {
        CAPTURE(e.message());
        CHECK(e.is(Errc::empty_object));
        CHECK(e.message().find("moved from") != std::string::npos);
    };

    v4l2::BufferRing ring_to = std::move(*ring);
    CHECK(ring->size() == 0);
    empty(ring->queue(0).error());
    empty(ring->dequeue(std::chrono::milliseconds(50)).error());
    empty(ring->stream_on().error());
    empty(ring->stream_off().error());
    REQUIRE(ring_to.queue(0));  // the moved-to ring is whole
    REQUIRE(ring_to.stream_on());
    REQUIRE(ring_to.stream_off());

    v4l2::Device moved_to = std::move(cap);
    CHECK(cap.fd() == -1);
    empty(cap.formats(v4l2::Direction::capture).error());
    empty(cap.frame_sizes(V4L2_PIX_FMT_YUYV).error());
    empty(cap.set_format(v4l2::Direction::capture, 320, 180, V4L2_PIX_FMT_YUYV).error());
    empty(cap.format(v4l2::Direction::capture).error());
    empty(cap.memory_support(v4l2::Direction::capture).error());
    empty(cap.set_frame_interval(v4l2::Direction::capture, {1, 30}).error());
    empty(cap.frame_intervals(V4L2_PIX_FMT_YUYV, 320, 180).error());
    empty(cap.select_input(0).error());
    empty(cap.select_output(0).error());
    empty(cap.control_id("Brightness").error());
    empty(cap.menu_value(1, "x").error());
    empty(cap.set_control(1, 0).error());
    empty(cap.buffer_type(v4l2::Direction::capture).error());
    empty(v4l2::BufferRing::create_exported(cap, v4l2::Direction::capture, 2).error());
    empty(v4l2::BufferRing::create_imported(cap, v4l2::Direction::capture, {}).error());
    CHECK(moved_to.format(v4l2::Direction::capture));  // the moved-to device is whole
}

TEST_SUITE_END();

TEST_CASE_FIXTURE(FdLeakCheck, "a DMABUF ring captures into udmabuf buffers dmabridge allocated") {
    auto cap = capture_device();
    auto fmt = cap.set_format(v4l2::Direction::capture, 640, 480, V4L2_PIX_FMT_XBGR32);
    REQUIRE(fmt);
    auto udmabuf = UdmabufAllocator::open();
    REQUIRE(udmabuf);
    std::vector<BufferDesc> buffers;
    for (int i = 0; i < 3; ++i) {
        ImageRequest r;
        r.width = 640;
        r.height = 480;
        r.fourcc = fourcc::XRGB8888;
        auto desc = udmabuf->allocate(r);  // stride 2560, as the driver's bytesperline
        REQUIRE(desc);
        buffers.push_back(std::move(*desc));
    }
    std::vector<BufferId> ids;
    for (const auto& b : buffers) ids.push_back(b.planes[0].buffer.id());
    auto ring = v4l2::BufferRing::create_imported(cap, v4l2::Direction::capture, std::move(buffers));
    REQUIRE_MESSAGE(ring, (ring ? "" : ring.error().message()));
    CHECK(ring->memory() == v4l2::BufferRing::Memory::dmabuf);
    const auto frames = stream(*ring, 4);
    const auto& filled = ring->buffer(frames.back().index).planes[0].buffer;
    CHECK(std::find(ids.begin(), ids.end(), filled.id()) != ids.end());  // our buffer, no copy
    CHECK(nonzero_percent(filled, 1228800) > 25);
}

TEST_CASE_FIXTURE(FdLeakCheck, "bad V4L2 inputs give clear errors and leave the device usable") {
    auto missing = v4l2::Device::open("/dev/video99");
    REQUIRE_FALSE(missing);
    CHECK(missing.error().is_errno(ENOENT));
    auto not_video = v4l2::Device::open("/dev/udmabuf");
    REQUIRE_FALSE(not_video);
    CHECK(not_video.error().message().find("is not a V4L2 device") != std::string::npos);

    auto cap = capture_device();
    REQUIRE(cap.set_format(v4l2::Direction::capture, 640, 480, V4L2_PIX_FMT_XBGR32));
    // A buffer with the wrong stride is refused before the driver sees it.
    auto udmabuf = UdmabufAllocator::open("/dev/udmabuf", {.stride_alignment = 4096, .plane_alignment = 256});
    REQUIRE(udmabuf);
    ImageRequest r;
    r.width = 640;
    r.height = 480;
    r.fourcc = fourcc::XRGB8888;
    auto padded = udmabuf->allocate(r);
    REQUIRE(padded);
    std::vector<BufferDesc> one;
    one.push_back(std::move(*padded));
    auto refused = v4l2::BufferRing::create_imported(cap, v4l2::Direction::capture, std::move(one));
    REQUIRE_FALSE(refused);
    CHECK(refused.error().message().find("stride 4096 != the driver's bytesperline 2560") != std::string::npos);

    // A second file cannot take the buffers while the first one has them...
    {
        auto ring = v4l2::BufferRing::create_exported(cap, v4l2::Direction::capture, 2);
        REQUIRE(ring);
        auto other = v4l2::Device::open(cap.path());
        REQUIRE(other);
        auto busy = v4l2::BufferRing::create_exported(*other, v4l2::Direction::capture, 2);
        REQUIRE_FALSE(busy);
        CHECK(busy.error().is_errno(EBUSY));
        CHECK(busy.error().message().find("another file is using the device's buffers") != std::string::npos);
    }
    // ...and once the ring is gone, the device streams again, from another file too.
    auto other = v4l2::Device::open(cap.path());
    REQUIRE(other);
    auto again = v4l2::BufferRing::create_exported(*other, v4l2::Direction::capture, 2);
    REQUIRE(again);
    CHECK(stream(*again, 2).size() == 2);
}
