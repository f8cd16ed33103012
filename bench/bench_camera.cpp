// SPDX-License-Identifier: MIT
// The camera pipeline (samples/camera_zero_copy) on vivid and lavapipe, inside the VM.
//
// lavapipe runs shaders on the CPU, under emulation here, so the GPU work itself is slow; these
// ratios isolate what dmabridge adds. Both come from measurements taken in this one run.
//
//   metric camera_copy_over_zero_copy R   (goal >= 12)
//     CPU time per frame of the application's thread from dequeue to submit
//     (CLOCK_THREAD_CPUTIME_ID, so the GPU's own execution and blocking waits are excluded), of
//     the copy baseline over the zero-copy path, at 1920x1080 YUYV; median of interleaved rounds,
//     steady state (every ring slot already imported), with the camera at 30 frames per second;
//     per path and round, the median over its frames (the mean is printed too).
//   metric camera_syscalls_zero_copy_over_copy R   (goal <= 1)
//     system calls per frame of the whole process's threads (the application's and lavapipe's;
//     counted, not timed: every call trapped by a seccomp user-notification filter that the
//     Vulkan context, the pipeline and their threads are created under), zero-copy path over
//     copy path, 640x480 YUYV at the camera's own rate, steady state; the per-call breakdown of
//     each path is printed as comment lines, the application's thread apart from the other
//     threads (the Vulkan driver's), clock_gettime by clock, with the guest's clocksource.
//   metric camera_fps_over_limit R        (goal >= 0.9)
//     frames per second of the whole zero-copy pipeline over the lower of two ceilings: vivid's
//     raw capture rate with no consumer, and the conversion shader run back to back on one
//     already-imported frame; at 640x480 YUYV; median of three rounds.
//   metric camera_gl_fps_over_limit R     (goal >= 0.9)
//     the same for the OpenGL ES path (camera_zero_copy --api gl): the GL pipeline's frame rate
//     over the lower of vivid's raw rate and the GL conversion shader dispatched back to back on
//     one already-imported frame (each dispatch flushed, glFinish at the end); median of three rounds.
#include <dmabridge/egl/context.hpp>
#include <dmabridge/egl/import_cache.hpp>
#include <dmabridge/v4l2/buffer_ring.hpp>
#include <dmabridge/v4l2/device.hpp>
#include <dmabridge/vulkan/context.hpp>
#include <dmabridge/vulkan/import_cache.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <linux/videodev2.h>
#include <sys/syscall.h>
#include <time.h>

#include <GLES3/gl3.h>

#include <dmabridge/vulkan/frame_converter.hpp>
#include <dmabridge/vulkan/storage_image.hpp>

#include "bench_util.hpp"
#include <dmabridge/bridge/camera_pipeline.hpp>
#include <dmabridge/egl/frame_converter.hpp>
#include <dmabridge/bridge/gl_camera_pipeline.hpp>
#include "syscall_tap.hpp"
#include "vulkan_compute.hpp"

using namespace dmabridge;
using clock_type = std::chrono::steady_clock;

namespace {

template <typename T>
T ok(Result<T> r, const char* what) {
    if (!r) {
        std::fprintf(stderr, "bench_camera: %s: %s\n", what, r.error().message().c_str());
        std::exit(1);
    }
    return std::move(*r);
}

void ok(Status s, const char* what) {
    if (!s) {
        std::fprintf(stderr, "bench_camera: %s: %s\n", what, s.error().message().c_str());
        std::exit(1);
    }
}

double seconds_since(clock_type::time_point t) { return std::chrono::duration<double>(clock_type::now() - t).count(); }

using dmabridge::bench::median;

dmabridge::camera::PipelineOptions options(std::uint32_t width, std::uint32_t height, dmabridge::camera::Path path, std::uint32_t fps) {
    dmabridge::camera::PipelineOptions o;
    o.pixel_format = V4L2_PIX_FMT_YUYV;
    o.width = width;
    o.height = height;
    o.path = path;
    o.fps = fps;
    o.ring_size = 4;
    // A frame under the syscall tap on a busy machine took longer than the default 10 s (the copy
    // path's warm-up failed so): still a bounded wait, one that a loaded shared host meets.
    o.timeout = std::chrono::seconds(60);
    return o;
}

// Steady-state statistics of `frames` frames: a first run imports every ring slot (and warms the
// driver and the shader), the second is measured.
template <typename Pipeline = dmabridge::camera::CameraPipeline, typename Context>
dmabridge::camera::PipelineStats steady_run(const Context& ctx, const dmabridge::camera::PipelineOptions& o, std::uint64_t frames) {
    auto pipeline = ok(Pipeline::create(ctx, o), "create pipeline");
    ok(pipeline.run(o.ring_size * 2), "warm-up run");
    return ok(pipeline.run(frames), "measured run");
}

// The fastest frame rate the driver lists for YUYV at width x height.
std::uint32_t fastest_fps(std::uint32_t width, std::uint32_t height) {
    auto dev = ok(v4l2::Device::find(v4l2::Direction::capture), "find camera");
    auto intervals = ok(dev.frame_intervals(V4L2_PIX_FMT_YUYV, width, height), "frame intervals");
    double best = 0;
    for (const auto& i : intervals)
        if (i.numerator) best = std::max(best, static_cast<double>(i.denominator) / i.numerator);
    return best > 0 ? static_cast<std::uint32_t>(best) : 30;
}

// vivid's capture rate with nobody converting: dequeue and re-queue at once.
double raw_capture_fps(std::uint32_t width, std::uint32_t height, std::uint32_t fps, int frames) {
    auto dev = ok(v4l2::Device::find(v4l2::Direction::capture), "find camera");
    ok(dev.set_format(v4l2::Direction::capture, width, height, V4L2_PIX_FMT_YUYV), "set format");
    ok(dev.set_frame_interval(v4l2::Direction::capture, {1, fps}), "set frame rate");
    auto ring = ok(v4l2::BufferRing::create_exported(dev, v4l2::Direction::capture, 4), "ring");
    for (std::uint32_t i = 0; i < ring.size(); ++i) ok(ring.queue(i), "queue");
    ok(ring.stream_on(), "stream on");
    clock_type::time_point start;
    const int warm = 5;
    for (int n = 0; n < frames + warm; ++n) {
        auto d = ok(ring.dequeue(std::chrono::seconds(10)), "dequeue");
        if (!d) {
            std::fprintf(stderr, "bench_camera: no frame within 10 s\n");
            std::exit(1);
        }
        if (n == warm) start = clock_type::now();  // frames after the first `warm` are timed
        ok(ring.queue(d->index), "queue");
    }
    const double rate = frames / seconds_since(start);
    ok(ring.stream_off(), "stream off");
    return rate;
}

// The conversion shader alone: `frames` submits back to back on one imported V4L2 buffer.
double shader_fps(const vulkan::Context& ctx, std::uint32_t width, std::uint32_t height, int frames) {
    auto dev = ok(v4l2::Device::find(v4l2::Direction::capture), "find camera");
    ok(dev.set_format(v4l2::Direction::capture, width, height, V4L2_PIX_FMT_YUYV), "set format");
    auto ring = ok(v4l2::BufferRing::create_exported(dev, v4l2::Direction::capture, 1), "ring");
    const auto& desc = ring.buffer(0);
    const auto layout = ok(dmabridge::frame_layout(desc), "layout");
    vulkan::ImportCache cache(ctx.device());
    auto buffer = ok(cache.import_buffer(desc.planes[0].buffer, VK_BUFFER_USAGE_STORAGE_BUFFER_BIT), "import");
    auto converter = ok(vulkan::FrameConverter::create(ctx.device(), {.frames_in_flight = 1}), "converter");
    auto image = ok(vulkan::StorageImage::create(ctx.device(), VK_FORMAT_R8G8B8A8_UNORM, width, height,
                                                 vulkan::FrameConverter::target_usage),
                    "RGBA image");
    (void)ok(converter.bind(0, vulkan::FrameSource::of(buffer), vulkan::FrameSource::of(buffer),
                            {image.handle(), image.view(), {width, height}}),
             "bind");
    const auto submit = [&] {
        Status recorded;
        auto work = ok(ctx.submit_async([&](VkCommandBuffer cmd) { recorded = converter.record(cmd, 0, layout); }),
                       "submit");
        if (!recorded) {
            std::fprintf(stderr, "bench_camera: record: %s\n", recorded.error().message().c_str());
            std::exit(1);
        }
        ok(converter.set_last_use(0, work), "set_last_use");
        return work;
    };
    (void)ok(submit().wait(std::chrono::seconds(60)), "warm-up");
    std::vector<vulkan::Submission> in_flight;
    const auto start = clock_type::now();
    for (int i = 0; i < frames; ++i) in_flight.push_back(submit());
    for (auto& s : in_flight) (void)ok(s.wait(std::chrono::seconds(60)), "wait");
    return frames / seconds_since(start);
}

// The GL conversion shader alone: `frames` dispatches back to back from one imported V4L2 buffer,
// each flushed on its own (glFlush: GL's unit of submitted work, as shader_fps submits each frame
// to Vulkan separately), then one glFinish.
double gl_shader_fps(const egl::Context& ctx, std::uint32_t width, std::uint32_t height, int frames) {
    auto dev = ok(v4l2::Device::find(v4l2::Direction::capture), "find camera");
    ok(dev.set_format(v4l2::Direction::capture, width, height, V4L2_PIX_FMT_YUYV), "set format");
    auto ring = ok(v4l2::BufferRing::create_exported(dev, v4l2::Direction::capture, 1), "ring");
    auto views = ok(dmabridge::texel_views(ring.buffer(0)), "views");
    egl::ImportCache cache(ctx);
    auto image = ok(cache.import(views.at(0), egl::ImportOptions{.target = egl::texture_2d}), "import");
    auto converter = ok(egl::FrameConverter::create(ring.buffer(0).layout(), 1, false), "GL converter");
    ok(converter.convert(0, image->texture(), 0), "warm-up dispatch");
    glFinish();
    const auto start = clock_type::now();
    for (int i = 0; i < frames; ++i) {
        ok(converter.convert(0, image->texture(), 0), "dispatch");
        glFlush();
    }
    glFinish();
    return frames / seconds_since(start);
}

// A clock's name for the breakdown: CLOCK_MONOTONIC is read through the vDSO where the
// clocksource allows it (a trapped one means it did not), CLOCK_THREAD_CPUTIME_ID always enters
// the kernel.
std::string clock_name(std::uint64_t id) {
    switch (id) {
        case CLOCK_REALTIME: return "clock_gettime(REALTIME)";
        case CLOCK_MONOTONIC: return "clock_gettime(MONOTONIC)";
        case CLOCK_PROCESS_CPUTIME_ID: return "clock_gettime(PROCESS_CPUTIME)";
        case CLOCK_THREAD_CPUTIME_ID: return "clock_gettime(THREAD_CPUTIME)";
        case CLOCK_MONOTONIC_RAW: return "clock_gettime(MONOTONIC_RAW)";
        case CLOCK_MONOTONIC_COARSE: return "clock_gettime(MONOTONIC_COARSE)";
        case CLOCK_BOOTTIME: return "clock_gettime(BOOTTIME)";
        default: return "clock_gettime(" + std::to_string(id) + ")";
    }
}

// The guest kernel's clocksource now. With tsc, CLOCK_MONOTONIC (steady_clock) is read in the
// vDSO and never trapped; a guest whose watchdog marked the emulated TSC unstable falls back to
// hpet or acpi_pm, and then every steady_clock::now() of every thread is a system call.
std::string clocksource() {
    std::string name = "unknown";
    if (std::FILE* f = std::fopen("/sys/devices/system/clocksource/clocksource0/current_clocksource", "r")) {
        char buf[64] = {};
        if (std::fgets(buf, sizeof buf, f)) name = std::string(buf, std::strcspn(buf, "\n"));
        std::fclose(f);
    }
    return name;
}

// System calls per steady-state frame of `path`, every thread of the process counted: the
// context, the pipeline and lavapipe's threads are all made under the tap. Prints which calls,
// split into the application's thread (the pipeline: dmabridge and the Vulkan driver's entry
// points called from it) and every other thread (the Vulkan driver's own: lavapipe's queue and
// rasterizer threads; dmabridge starts none on this path).
double syscalls_per_frame(dmabridge::camera::Path path, std::uint32_t fps, const char* name) {
    test::SyscallTap tap;
    std::uint64_t begin = 0, middle = 0, end = 0, short_frames = 0, long_frames = 0;
    std::map<std::uint64_t, std::uint64_t> clock_of_call;  // call index -> clock id
    const auto note_clocks = [&](const test::SyscallTap::Call& c) {
        if (c.nr == SYS_clock_gettime) clock_of_call[c.index] = c.args[0];
        return 0;
    };
    const bool ran = tap.run(
        [&](test::SyscallTap& t) {
            auto ctx = ok(vulkan::Context::create(), "Vulkan context");
            const auto o = options(640, 480, path, fps);
            auto pipeline = ok(dmabridge::camera::CameraPipeline::create(ctx, o), "create pipeline");
            ok(pipeline.run(o.ring_size * 2), "warm-up run");
            // Each run's start and end (stream on and off, a consumer made) are in both counts: the
            // difference of a short and a long run is what the frames between them cost.
            begin = t.count();
            short_frames = ok(pipeline.run(10), "short run").frames;
            middle = t.count();
            long_frames = ok(pipeline.run(40), "long run").frames;
            end = t.count();
        },
        note_clocks);
    if (!ran) {
        std::fprintf(stderr, "bench_camera: syscall tap: %s\n", tap.error().c_str());
        std::exit(1);
    }
    const double frames = static_cast<double>(long_frames - short_frames);
    const double per_frame = (static_cast<double>(end - middle) - static_cast<double>(middle - begin)) / frames;
    // The breakdown: the long run's calls less the short run's, by thread and name.
    std::map<std::string, double> app, others;
    const auto& calls = tap.calls();
    const auto& callers = tap.callers();
    for (std::uint64_t i = begin; i < end && i < calls.size(); ++i) {
        const auto clock = clock_of_call.find(i);
        const std::string call = clock != clock_of_call.end() ? clock_name(clock->second) : test::syscall_name(calls[i]);
        auto& by_name = i < callers.size() && callers[i] == tap.main_thread() ? app : others;
        by_name[call] += i >= middle ? 1.0 : -1.0;
    }
    const auto print = [&](const char* who, const std::map<std::string, double>& by_name) {
        double sum = 0;
        for (const auto& [call, count] : by_name) sum += count;
        std::printf("# %s, %s: %.1f per frame:", name, who, sum / frames);
        for (const auto& [call, count] : by_name)
            if (count / frames >= 0.05 || count / frames <= -0.05) std::printf(" %s %.1f", call.c_str(), count / frames);
        std::printf("\n");
    };
    std::printf("# %s: %.1f system calls per frame (clocksource %s)\n", name, per_frame, clocksource().c_str());
    print("the application's thread", app);
    print("other threads (the Vulkan driver's)", others);
    return per_frame;
}

}  // namespace

// `bench_camera gl` runs only the GL path's metric; `bench_camera syscalls` only the count;
// `bench_camera cpu` the count and the CPU per frame (the two metrics of the zero-copy path).
int main(int argc, char** argv) {
    const bool gl_only = argc > 1 && std::string_view(argv[1]) == "gl";
    const bool syscalls_only = argc > 1 && std::string_view(argv[1]) == "syscalls";
    const bool cpu_only = argc > 1 && std::string_view(argv[1]) == "cpu";
    // One line at a time: ci/bench streams the output of a run that takes minutes.
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    const std::uint32_t fps = fastest_fps(640, 480);
    if (!gl_only) {
        // Counted first: the tap's filter applies to threads made under it, not to this one.
        const double zero = syscalls_per_frame(dmabridge::camera::Path::zero_copy, fps, "zero-copy");
        const double copy = syscalls_per_frame(dmabridge::camera::Path::copy, fps, "copy");
        std::printf("metric camera_syscalls_zero_copy_over_copy %.2f\n", zero / copy);
        if (syscalls_only) return 0;
    }
    const double raw = cpu_only ? 0 : raw_capture_fps(640, 480, fps, 60);
    if (!gl_only) {
        auto ctx = ok(vulkan::Context::create(), "Vulkan context");
        std::printf("bench_camera: %s\n", ctx.device().name().c_str());

        // --- CPU per frame, copy over zero-copy, 1920x1080 YUYV ---
        std::vector<double> ratios;
        for (int round = 0; round < 7; ++round) {
            const auto zero = steady_run(ctx, options(1920, 1080, dmabridge::camera::Path::zero_copy, 30), 12);
            const auto copy = steady_run(ctx, options(1920, 1080, dmabridge::camera::Path::copy, 30), 12);
            std::printf("  1080p round %d: CPU per frame dequeue->submit, median (mean): zero-copy %.0f us (%.0f), "
                        "copy %.0f us (%.0f); zero-copy also %.0f us outside it; %llu cache hits; %.2f MB copied per "
                        "frame\n",
                        round, zero.cpu_us_dequeue_to_submit_median, zero.cpu_us_dequeue_to_submit,
                        copy.cpu_us_dequeue_to_submit_median, copy.cpu_us_dequeue_to_submit, zero.cpu_us_after_submit,
                        static_cast<unsigned long long>(zero.cache_hits),
                        static_cast<double>(copy.bytes_copied_by_cpu) / static_cast<double>(copy.frames) / 1e6);
            ratios.push_back(copy.cpu_us_dequeue_to_submit_median / zero.cpu_us_dequeue_to_submit_median);
        }
        std::printf("metric camera_copy_over_zero_copy %.2f\n", median(ratios));
        if (cpu_only) return 0;

        // --- Pipeline fps over the lower ceiling, 640x480 YUYV ---
        // Rounds of (shader alone, whole pipeline), each ratio over the lower ceiling of its round.
        std::vector<double> fps_ratios;
        for (int round = 0; round < 3; ++round) {
            const double shader = shader_fps(ctx, 640, 480, 30);
            const auto pipeline = steady_run(ctx, options(640, 480, dmabridge::camera::Path::zero_copy, fps), 45);
            const double limit = std::min(raw, shader);
            std::printf("  640x480 round %d: camera asked for %u fps, raw capture %.1f fps, shader alone %.1f fps, "
                        "pipeline %.1f fps (%u frames at most on the GPU, %.0f ms waiting on fences)\n",
                        round, fps, raw, shader, pipeline.fps, pipeline.max_in_flight, pipeline.fence_wait_ms);
            fps_ratios.push_back(pipeline.fps / limit);
        }
        std::printf("metric camera_fps_over_limit %.2f\n", median(fps_ratios));
    }

    // --- The GL path: pipeline fps over the lower ceiling, 640x480 YUYV ---
    auto gl = ok(egl::Headless::create(), "EGL display");
    std::vector<double> gl_ratios;
    for (int round = 0; round < 3; ++round) {
        const double shader = gl_shader_fps(gl.context(), 640, 480, 30);
        const auto pipeline =
            steady_run<dmabridge::camera::GlCameraPipeline>(gl.context(), options(640, 480, dmabridge::camera::Path::zero_copy, fps), 45);
        const double limit = std::min(raw, shader);
        std::printf("  GL 640x480 round %d: raw capture %.1f fps, GL shader alone %.1f fps, pipeline %.1f fps (%u "
                    "frames at most on the GPU, %.0f ms waiting on fences)\n",
                    round, raw, shader, pipeline.fps, pipeline.max_in_flight, pipeline.fence_wait_ms);
        gl_ratios.push_back(pipeline.fps / limit);
    }
    std::printf("metric camera_gl_fps_over_limit %.2f\n", median(gl_ratios));
    gl.context().collect();
    return 0;
}
