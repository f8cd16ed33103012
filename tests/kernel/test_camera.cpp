// SPDX-License-Identifier: MIT
// Camera -> GPU through the zero-copy pipeline of samples/camera_zero_copy, on vivid and the
// validating Vulkan device: every converted frame is checked against a CPU conversion of the
// same captured bytes, cache and re-queue behaviour is counted, and bad inputs fail clearly.
#include <dmabridge/kernel/cpu_access.hpp>
#include <dmabridge/v4l2/buffer_ring.hpp>
#include <dmabridge/v4l2/device.hpp>

#include <algorithm>
#include <map>
#include <set>
#include <stdexcept>

#include <linux/videodev2.h>

#include <doctest/doctest.h>

#include "camera_check.hpp"
#include <dmabridge/bridge/camera_pipeline.hpp>
#include <dmabridge/bridge/capture_source.hpp>
#include "vgem.hpp"
#include "vivid_nodes.hpp"
#include "vk_fixture.hpp"

using namespace dmabridge;
using namespace dmabridge::test;
using namespace std::chrono_literals;

namespace {

// The first capture node of vivid's multi-planar instance (ci/vm loads two: multiplanar=1,2).
std::string multiplanar_capture_node() {
    auto dev = find_vivid_node(
        [](const v4l2::Device& d) { return d.capabilities().capture && d.capabilities().multiplanar; });
    return dev ? dev->path() : std::string{};
}

}  // namespace

TEST_CASE_FIXTURE(VkTest, "30 camera frames cross into the GPU without a CPU copy, matching a CPU conversion") {
    for (std::uint32_t format : {V4L2_PIX_FMT_YUYV, V4L2_PIX_FMT_NV12, V4L2_PIX_FMT_XBGR32}) {
        CAPTURE(v4l2::fourcc_name(format));
        auto pipeline = dmabridge::camera::CameraPipeline::create(device_b().context(), options_for(format));
        REQUIRE_MESSAGE(pipeline, (pipeline ? "" : pipeline.error().message()));
        const Run r = run_and_check(*pipeline, 30);
        CHECK(r.frames_checked == 30);
        CHECK(r.stats.frames == 30);
        CHECK(r.worst <= 1);
        CHECK(r.stats.bytes_copied_by_cpu == 0);
        // Each ring slot is imported once; every later frame is a cache hit.
        CHECK(r.stats.cache_misses == r.stats.ring_size);
        CHECK(r.stats.cache_hits == 30 - r.stats.ring_size);
        CHECK(r.slots.size() == r.stats.ring_size);
        // No slot went back to the driver with the GPU's fence still pending.
        CHECK(r.busy_at_release == 0);
        CHECK(r.stats.released_before_gpu_done == 0);
        // Acquires through sync_files; releases wait for the submit on lavapipe, which has no
        // kernel fence to export (SyncBridge, ReleaseMode::automatic).
        CHECK(r.stats.sync_mode == "sync_file, releases wait_for_submit");
        MESSAGE(v4l2::fourcc_name(format), ": ", r.stats.fps, " fps, max in flight ", r.stats.max_in_flight);
    }
}

TEST_CASE_FIXTURE(VkTest, "NV12M from a multi-planar device: one dma-buf per plane, both imported and converted") {
    const std::string node = multiplanar_capture_node();
    REQUIRE_MESSAGE(!node.empty(), "no multi-planar vivid capture node (ci/vm loads vivid with multiplanar=1,2)");
    auto pipeline = dmabridge::camera::CameraPipeline::create(device_b().context(), options_for(V4L2_PIX_FMT_NV12M, node));
    REQUIRE_MESSAGE(pipeline, (pipeline ? "" : pipeline.error().message()));
    CHECK(pipeline->layout().format == dmabridge::FrameFormat::nv12);
    const Run r = run_and_check(*pipeline, 8);
    CHECK(r.stats.frames == 8);
    CHECK(r.worst <= 1);
    // Two dma-bufs per slot: two imports per slot, then hits.
    CHECK(r.stats.cache_misses == 2 * r.stats.ring_size);
    CHECK(r.stats.cache_hits == 2 * (8 - r.stats.ring_size));
}

TEST_CASE_FIXTURE(VkTest, "the camera's buffers go back to the driver only once released and the release fence signalled") {
    // The queue does the pipelines' ring bookkeeping: this is what keeps the driver from writing
    // a buffer the GPU still reads. A vgem fence stands for the GPU's read.
    auto source = dmabridge::v4l2::CaptureSource::open(dmabridge::camera::capture_options(options_for(V4L2_PIX_FMT_YUYV)), "camera");
    REQUIRE_MESSAGE(source, (source ? "" : source.error().message()));
    std::vector<queue::BufferIndex> returned;
    source->on_returned([&](queue::BufferIndex i) {
        returned.push_back(i);
        return Status{};
    });
    auto consumer = source->start_local();
    REQUIRE_MESSAGE(consumer, (consumer ? "" : consumer.error().message()));
    CHECK(returned.size() == source->size());  // every buffer went to the driver at the start
    CHECK(source->with_driver() == source->size());
    returned.clear();
    // Takes frames until one is queued; acquires it.
    const auto next_frame = [&] {
        for (;;) {
            auto pumped = source->pump(5s);
            REQUIRE_MESSAGE(pumped, (pumped ? "" : pumped.error().message()));
            if (pumped->frames_queued) break;
        }
        auto f = consumer->acquire(0ms);
        REQUIRE_MESSAGE(f, (f ? "" : f.error().message()));
        return std::move(*f);
    };
    auto held = next_frame();
    const DmaBuf& buf = held.desc->planes[0].buffer;
    Vgem vgem;
    const std::uint32_t gpu_read = vgem.attach_fence(false, vgem.import_buffer(buf));
    auto release_fence = buf.export_sync_file(Access::write);
    REQUIRE(release_fence);
    REQUIRE(consumer->release(held.buffer, std::move(*release_fence)));
    // Frames go on (each released at once, with no fence) while the held buffer stays out.
    for (int frames = 0; frames < 6; ++frames) {
        auto f = next_frame();
        CHECK(f.buffer != held.buffer);
        REQUIRE(consumer->release(f.buffer));
    }
    CHECK(std::count(returned.begin(), returned.end(), held.buffer) == 0);
    CHECK(source->with_driver() < source->size());
    vgem.signal(gpu_read);
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (std::count(returned.begin(), returned.end(), held.buffer) == 0) {
        REQUIRE(std::chrono::steady_clock::now() < deadline);
        auto pumped = source->pump(1s);
        REQUIRE_MESSAGE(pumped, (pumped ? "" : pumped.error().message()));
        for (std::size_t i = 0; i < pumped->frames_queued; ++i) {
            auto f = consumer->acquire(0ms);
            REQUIRE(f);
            REQUIRE(consumer->release(f->buffer));
        }
    }
    CHECK(source->stats().frames_queued >= 7);  // the held frame and the six after it
    CHECK(source->stop());
}

TEST_CASE_FIXTURE(VkTest, "an on_frame that throws leaves nothing streaming: the next run streams again") {
    auto pipeline = dmabridge::camera::CameraPipeline::create(device_b().context(), options_for(V4L2_PIX_FMT_YUYV));
    REQUIRE_MESSAGE(pipeline, (pipeline ? "" : pipeline.error().message()));
    CHECK_THROWS_AS(pipeline->run(5,
                                  [](const dmabridge::camera::FrameInfo& f) {
                                      if (f.number == 1) throw std::runtime_error("the application gave up");
                                  }),
                    std::runtime_error);
    // Had the throw left the camera streaming (or the queue's consumer alive), this would fail.
    auto again = pipeline->run(3);
    REQUIRE_MESSAGE(again, (again ? "" : again.error().message()));
    CHECK(again->frames == 3);
}

TEST_CASE_FIXTURE(VkTest, "the copy baseline converts the same way and counts every byte it copied") {
    auto options = options_for(V4L2_PIX_FMT_YUYV);
    options.path = dmabridge::camera::Path::copy;
    auto pipeline = dmabridge::camera::CameraPipeline::create(device_b().context(), options);
    REQUIRE_MESSAGE(pipeline, (pipeline ? "" : pipeline.error().message()));
    const Run r = run_and_check(*pipeline, 10);
    CHECK(r.stats.frames == 10);
    CHECK(r.worst <= 1);
    CHECK(r.stats.bytes_copied_by_cpu == 10u * 640 * 480 * 2);
    CHECK(r.stats.cache_hits + r.stats.cache_misses == 0);
}

TEST_CASE_FIXTURE(VkTest, "camera pipelines refuse bad devices, formats and sizes, and leave the device usable") {
    const auto& ctx = device_b().context();
    SUBCASE("a missing device") {
        auto p = dmabridge::camera::CameraPipeline::create(ctx, options_for(V4L2_PIX_FMT_YUYV, "/dev/video-missing"));
        REQUIRE_FALSE(p);
        CHECK(p.error().message().find("/dev/video-missing") != std::string::npos);
        CHECK(p.error().code() == ENOENT);
    }
    SUBCASE("a device that cannot capture") {
        auto out = v4l2::Device::find(v4l2::Direction::output);
        REQUIRE(out);
        auto p = dmabridge::camera::CameraPipeline::create(ctx, options_for(V4L2_PIX_FMT_YUYV, out->path()));
        REQUIRE_FALSE(p);
        CHECK(p.error().message().find("cannot stream video capture") != std::string::npos);
    }
    SUBCASE("a format the driver does not offer") {
        auto p = dmabridge::camera::CameraPipeline::create(ctx, options_for(V4L2_PIX_FMT_H264));
        REQUIRE_FALSE(p);
        CHECK(p.error().message().find("instead") != std::string::npos);
    }
    SUBCASE("a format the driver offers but the shader cannot read") {
        auto p = dmabridge::camera::CameraPipeline::create(ctx, options_for(V4L2_PIX_FMT_RGB565));
        REQUIRE_FALSE(p);
        CHECK(p.error().message().find("YUYV, UYVY, NV12 and XR24") != std::string::npos);
    }
    SUBCASE("a size the driver does not offer") {
        auto o = options_for(V4L2_PIX_FMT_YUYV);
        o.width = 400;  // no vivid offers it (7.x's added 320x240, 1280x960 and 1600x1200)
        o.height = 300;
        auto p = dmabridge::camera::CameraPipeline::create(ctx, o);
        REQUIRE_FALSE(p);
        // The error names the size asked for and the one the driver would give instead (the
        // nearest of its sizes, which differ between kernels).
        CHECK(p.error().message().find("format 400x300") != std::string::npos);
        CHECK(p.error().message().find("the driver offers ") != std::string::npos);
        CHECK(p.error().message().find(" instead") != std::string::npos);
    }
    SUBCASE("a device another file is streaming") {
        auto other = v4l2::Device::find(v4l2::Direction::capture);
        REQUIRE(other);
        REQUIRE(other->set_format(v4l2::Direction::capture, 640, 480, V4L2_PIX_FMT_YUYV));
        auto ring = v4l2::BufferRing::create_exported(*other, v4l2::Direction::capture, 2);
        REQUIRE(ring);
        for (std::uint32_t i = 0; i < ring->size(); ++i) REQUIRE(ring->queue(i));
        REQUIRE(ring->stream_on());
        auto p = dmabridge::camera::CameraPipeline::create(ctx, options_for(V4L2_PIX_FMT_YUYV, other->path()));
        REQUIRE_FALSE(p);
        CHECK(p.error().code() == EBUSY);
    }
    // Whatever failed above, the device streams again.
    auto p = dmabridge::camera::CameraPipeline::create(ctx, options_for(V4L2_PIX_FMT_YUYV));
    REQUIRE_MESSAGE(p, (p ? "" : p.error().message()));
    auto stats = p->run(3);
    REQUIRE_MESSAGE(stats, (stats ? "" : stats.error().message()));
    CHECK(stats->frames == 3);
}

TEST_CASE_FIXTURE(VkTest, "each slot converts into its own image, handed to on_frame; a moved-from pipeline refuses to run") {
    auto pipeline = dmabridge::camera::CameraPipeline::create(device_b().context(), options_for(V4L2_PIX_FMT_YUYV));
    REQUIRE_MESSAGE(pipeline, (pipeline ? "" : pipeline.error().message()));
    // Frames in flight at once are written at once: one image per V4L2 buffer, never shared.
    std::map<std::uint32_t, VkImage> image_of_slot;
    std::set<VkImage> images;
    auto stats = pipeline->run(12, [&](const dmabridge::camera::FrameInfo& f) {
        REQUIRE(f.image != VK_NULL_HANDLE);
        CHECK(f.gl_texture == 0);
        const auto [it, inserted] = image_of_slot.emplace(f.slot, f.image);
        CHECK(it->second == f.image);  // a slot keeps its image
        images.insert(f.image);
    });
    REQUIRE_MESSAGE(stats, (stats ? "" : stats.error().message()));
    CHECK(images.size() == image_of_slot.size());
    CHECK(image_of_slot.size() >= 2);

    auto moved = std::move(*pipeline);
    auto refused = pipeline->run(1);
    REQUIRE_FALSE(refused);
    CHECK(refused.error().is(dmabridge::Errc::empty_object));
    CHECK(pipeline->device_path().empty());
    auto again = moved.run(2);
    REQUIRE_MESSAGE(again, (again ? "" : again.error().message()));
    CHECK(again->frames == 2);
}
