// SPDX-License-Identifier: MIT
// Camera -> OpenGL ES: the GL path of samples/camera_zero_copy (camera_zero_copy --api gl) on
// vivid and Mesa's EGL (llvmpipe). Every converted frame is read back and compared with the CPU
// conversion of the same captured bytes; the zero-copy path must import each ring buffer once,
// copy nothing, hand buffers back only once GL's fence on them signalled, and leak no fd, EGLImage
// or texture (EglTest).
#include <dmabridge/egl/frame_converter.hpp>
#include <dmabridge/format/fourcc.hpp>
#include <dmabridge/v4l2/device.hpp>

#include <set>
#include <vector>

#include <linux/videodev2.h>

#include <doctest/doctest.h>

#include "camera_check.hpp"
#include "egl_harness.hpp"
#include <dmabridge/bridge/gl_camera_pipeline.hpp>

using namespace dmabridge;
using namespace dmabridge::test;

TEST_SUITE("camera_gl") {

TEST_CASE_FIXTURE(EglTest, "camera frames cross into GL without a CPU copy, identical to the CPU conversion") {
    for (std::uint32_t format : {V4L2_PIX_FMT_YUYV, V4L2_PIX_FMT_NV12, V4L2_PIX_FMT_XBGR32}) {
        CAPTURE(v4l2::fourcc_name(format));
        auto pipeline = dmabridge::camera::GlCameraPipeline::create(egl_context(), options_for(format));
        REQUIRE_MESSAGE(pipeline, (pipeline ? "" : pipeline.error().message()));
        const std::uint64_t frames = 8;
        const Run r = run_and_check(*pipeline, frames);
        egl_note_sampled();
        CHECK(r.frames_checked == frames);
        // The fragment shader does the CPU reference's integer arithmetic: the same bytes.
        CHECK(r.worst == 0);
        CHECK(r.stats.bytes_copied_by_cpu == 0);
        // One import per texel view of each ring buffer (NV12: luma and chroma), then hits.
        const std::uint64_t views = format == V4L2_PIX_FMT_NV12 ? 2 : 1;
        CHECK(r.stats.cache_misses == views * r.stats.ring_size);
        CHECK(r.stats.cache_hits == views * (frames - r.stats.ring_size));
        // GL's fence was on every buffer (native fences), and had signalled when it went back.
        CHECK(r.busy_at_release == 0);
        CHECK(r.stats.sync_mode == "EGL native_fence");
        MESSAGE(v4l2::fourcc_name(format), ": ", r.stats.fps, " fps");
    }
}

TEST_CASE_FIXTURE(EglTest, "the GL copy baseline converts the same way and counts every byte it copied") {
    auto options = options_for(V4L2_PIX_FMT_YUYV);
    options.path = dmabridge::camera::Path::copy;
    auto pipeline = dmabridge::camera::GlCameraPipeline::create(egl_context(), options);
    REQUIRE_MESSAGE(pipeline, (pipeline ? "" : pipeline.error().message()));
    const Run r = run_and_check(*pipeline, 6);
    egl_note_sampled();
    CHECK(r.stats.frames == 6);
    CHECK(r.worst == 0);
    CHECK(r.stats.bytes_copied_by_cpu == 6u * 640 * 480 * 2);
    CHECK(r.stats.cache_hits + r.stats.cache_misses == 0);
}

TEST_CASE_FIXTURE(EglTest, "the GL pipeline reads back only the frames asked for") {
    auto options = options_for(V4L2_PIX_FMT_YUYV);
    options.read_back = [](std::uint64_t n) { return n == 1 || n == 4; };
    auto pipeline = dmabridge::camera::GlCameraPipeline::create(egl_context(), options);
    REQUIRE_MESSAGE(pipeline, (pipeline ? "" : pipeline.error().message()));
    std::vector<std::uint64_t> with_pixels;
    std::uint64_t called = 0;
    auto stats = pipeline->run(6, [&](const dmabridge::camera::FrameInfo& f) {
        ++called;
        if (!f.rgba.empty()) with_pixels.push_back(f.number);
    });
    egl_note_sampled();
    REQUIRE_MESSAGE(stats, (stats ? "" : stats.error().message()));
    CHECK(called == 6);
    CHECK(with_pixels == std::vector<std::uint64_t>{1, 4});
}

TEST_CASE_FIXTURE(EglTest, "the GL pipeline refuses a context that is not current and a format the shader cannot read") {
    auto bad = dmabridge::camera::GlCameraPipeline::create(egl_context(), options_for(V4L2_PIX_FMT_RGB565));
    REQUIRE_FALSE(bad);
    CHECK(bad.error().message().find("YUYV, UYVY, NV12 and XR24") != std::string::npos);
    egl::Context empty;
    auto not_current = dmabridge::camera::GlCameraPipeline::create(empty, options_for(V4L2_PIX_FMT_YUYV));
    REQUIRE_FALSE(not_current);
    CHECK(not_current.error().message().find("not current") != std::string::npos);
}

TEST_CASE_FIXTURE(EglTest, "the GL pipeline names each slot's RGBA texture; moved-from pipelines and converters refuse") {
    auto pipeline = dmabridge::camera::GlCameraPipeline::create(egl_context(), options_for(V4L2_PIX_FMT_YUYV));
    REQUIRE_MESSAGE(pipeline, (pipeline ? "" : pipeline.error().message()));
    std::set<unsigned int> textures;
    auto stats = pipeline->run(6, [&](const dmabridge::camera::FrameInfo& f) {
        CHECK(f.image == VK_NULL_HANDLE);
        CHECK(f.gl_texture != 0);
        textures.insert(f.gl_texture);
    });
    REQUIRE_MESSAGE(stats, (stats ? "" : stats.error().message()));
    egl_note_sampled();
    CHECK(textures.size() >= 2);
    auto moved = std::move(*pipeline);
    auto refused = pipeline->run(1);
    REQUIRE_FALSE(refused);
    CHECK(refused.error().is(dmabridge::Errc::empty_object));

    dmabridge::ImageLayout frame{640, 480, dmabridge::fourcc::YUYV, dmabridge::modifier::linear, {{0, 640 * 2, 640 * 480 * 2}}};
    auto converter = egl::FrameConverter::create(frame, 2, true);
    REQUIRE_MESSAGE(converter, (converter ? "" : converter.error().message()));
    auto kept = std::move(*converter);
    auto convert = converter->convert(0, kept.target(0), 0);
    REQUIRE_FALSE(convert);
    CHECK(convert.error().is(dmabridge::Errc::empty_object));
    std::vector<std::uint8_t> rgba;
    auto read = converter->read_back(0, rgba);
    REQUIRE_FALSE(read);
    CHECK(read.error().is(dmabridge::Errc::empty_object));
    auto bad_slot = kept.convert(2, kept.target(0), 0);
    REQUIRE_FALSE(bad_slot);
    CHECK(bad_slot.error().is(dmabridge::Errc::invalid_argument));
}

}  // TEST_SUITE
