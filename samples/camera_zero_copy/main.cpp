// SPDX-License-Identifier: MIT
// camera_zero_copy: frames from a V4L2 camera converted to RGBA on a Vulkan device (or with
// OpenGL ES through EGL), with no CPU copy of a pixel. Writes the first and last converted frames
// as PNGs and prints what it did.
//
//   camera_zero_copy [--device /dev/videoN] [--format YUYV|UYVY|NV12|NM12|XR24] [--size WxH]
//                    [--frames N] [--fps N] [--ring N] [--output DIR] [--api vulkan|gl] [--copy]
//                    [--readback] [--validate]
//   camera_zero_copy --serve PATH [--consumers N] [camera options]   (queue_mode.hpp)
//   camera_zero_copy --connect PATH [--frames N] [--output DIR]
//   camera_zero_copy --display [--card /dev/dri/cardN] [--copy] [--check] [--validate] [camera options]  (display_mode.hpp)
//   camera_zero_copy --pipewire NAME [--frames N] [--device /dev/videoN] [--size WxH] [--ring N]  (pipewire_mode.hpp)
//
// --api gl converts with a GLES 3.1 compute shader on a headless EGL display (the device platform,
// Mesa's software device where there is one) instead of a Vulkan compute shader. --copy runs the
// baseline instead (the CPU copies each frame, then the GPU reads the copy), for comparison.
// --readback copies every converted frame back to host memory (by default only the two written
// as PNGs are). --validate enables the Vulkan validation layer (a GL debug context with --api gl)
// and fails on any message.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include <dmabridge/egl/context.hpp>
#include <dmabridge/format/fourcc.hpp>
#include <dmabridge/vulkan/context.hpp>

#include <GLES3/gl3.h>

#include <dmabridge/bridge/camera_pipeline.hpp>
#include <dmabridge/bridge/gl_camera_pipeline.hpp>
#include "png.hpp"
#include "display_mode.hpp"
#include "queue_mode.hpp"
#ifdef CAMERA_WITH_PIPEWIRE
#include "pipewire_mode.hpp"
#endif

namespace {

struct Args {
    dmabridge::camera::PipelineOptions pipeline;
    std::uint64_t frames = 60;
    std::string output = "out/demo";
    bool validate = false;
    bool readback_every_frame = false;
    bool gl = false;  // --api gl: OpenGL ES through EGL instead of Vulkan
    std::string serve, connect;      // --serve PATH / --connect PATH (queue_mode.hpp)
    std::uint32_t consumers = 1;     // --consumers N: how many --serve waits for
    bool display = false;            // --display: on a KMS plane (display_mode.hpp)
    std::string card;                // --card: the DRM node for --display
    bool check = false;              // --check: --display compares the screen through writeback
    std::string pipewire;            // --pipewire NAME: a PipeWire node (pipewire_mode.hpp)
};

[[noreturn]] void usage(const char* why) {
    std::fprintf(stderr,
                 "camera_zero_copy: %s\n"
                 "usage: camera_zero_copy [--device /dev/videoN] [--format YUYV|UYVY|NV12|NM12|XR24] [--size WxH]\n"
                 "                        [--frames N] [--fps N] [--ring N] [--output DIR] [--api vulkan|gl] [--copy] [--readback]\n"
                 "                        [--validate]\n"
                 "       camera_zero_copy --serve PATH [--consumers N] [camera options]\n"
                 "       camera_zero_copy --connect PATH [--frames N] [--output DIR]\n"
                 "       camera_zero_copy --display [--card /dev/dri/cardN] [--copy] [--check] [--validate] [camera options]\n"
                 "       camera_zero_copy --pipewire NAME [--frames N] [--device /dev/videoN] [--size WxH] [--ring N]\n",
                 why);
    std::exit(2);
}

std::uint32_t parse_number(std::string_view text, const char* what) {
    std::uint32_t value = 0;
    if (text.empty() || text.size() > 9) usage((std::string("bad ") + what).c_str());
    for (char c : text) {
        if (c < '0' || c > '9') usage((std::string("bad ") + what).c_str());
        value = value * 10 + static_cast<std::uint32_t>(c - '0');
    }
    return value;
}

Args parse(int argc, char** argv) {
    Args a;
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        const auto value = [&]() -> std::string_view {
            if (i + 1 >= argc) usage(("missing value after " + std::string(arg)).c_str());
            return argv[++i];
        };
        if (arg == "--device") {
            a.pipeline.device = value();
        } else if (arg == "--format") {
            const auto f = value();
            if (f.size() != 4) usage("--format takes a four-character code such as YUYV");
            a.pipeline.pixel_format = dmabridge::fourcc_code(f[0], f[1], f[2], f[3]);  // V4L2 codes are built alike
        } else if (arg == "--size") {
            const auto s = value();
            const auto x = s.find('x');
            if (x == std::string_view::npos) usage("--size takes WxH, e.g. 640x480");
            a.pipeline.width = parse_number(s.substr(0, x), "width");
            a.pipeline.height = parse_number(s.substr(x + 1), "height");
        } else if (arg == "--frames") {
            a.frames = parse_number(value(), "frame count");
            if (a.frames == 0) usage("--frames must be at least 1");
        } else if (arg == "--fps") {
            a.pipeline.fps = parse_number(value(), "frame rate");
        } else if (arg == "--ring") {
            a.pipeline.ring_size = parse_number(value(), "ring size");
        } else if (arg == "--output") {
            a.output = value();
        } else if (arg == "--copy") {
            a.pipeline.path = dmabridge::camera::Path::copy;
        } else if (arg == "--api") {
            const auto api = value();
            if (api != "vulkan" && api != "gl") usage("--api takes vulkan or gl");
            a.gl = api == "gl";
        } else if (arg == "--readback") {
            a.readback_every_frame = true;
        } else if (arg == "--serve") {
            a.serve = value();
        } else if (arg == "--connect") {
            a.connect = value();
        } else if (arg == "--consumers") {
            a.consumers = parse_number(value(), "--consumers");
        } else if (arg == "--display") {
            a.display = true;
        } else if (arg == "--card") {
            a.card = value();
        } else if (arg == "--pipewire") {
            a.pipewire = value();
        } else if (arg == "--check") {
            a.check = true;
        } else if (arg == "--validate") {
            a.validate = true;
        } else {
            usage(("unknown argument " + std::string(arg)).c_str());
        }
    }
    return a;
}

// Runs `pipeline` (Vulkan or GL) and prints what it did; writes the first and last frames.
template <typename Pipeline>
int run(Pipeline& pipeline, const Args& args, const std::string& api, const std::string& device_name) {
    std::error_code ec;
    std::filesystem::create_directories(args.output, ec);
    if (ec) {
        std::fprintf(stderr, "camera_zero_copy: cannot create %s: %s\n", args.output.c_str(), ec.message().c_str());
        return 1;
    }
    const auto& layout = pipeline.layout();
    std::printf("camera_zero_copy: %s, %s %ux%u, %s path, %s on %s\n", pipeline.device_path().c_str(),
                dmabridge::to_string(layout.format), layout.width, layout.height, dmabridge::camera::to_string(args.pipeline.path),
                api.c_str(), device_name.c_str());

    const std::uint64_t last = args.frames - 1;
    std::vector<std::string> written;
    std::string png_error;
    std::uint64_t read_back = 0;
    auto stats = pipeline.run(args.frames, [&](const dmabridge::camera::FrameInfo& frame) {
        if (!frame.rgba.empty()) ++read_back;
        if (frame.number != 0 && frame.number != last) return;
        const std::string path = args.output + (frame.number == 0 ? "/camera_first.png" : "/camera_last.png");
        if (auto ok = support::write_png(path, frame.layout.width, frame.layout.height, frame.rgba); !ok)
            png_error = ok.error().message();
        else
            written.push_back(path);
    });
    if (!stats) {
        std::fprintf(stderr, "camera_zero_copy: %s\n", stats.error().message().c_str());
        return 1;
    }
    std::printf("frames:                 %llu in %.2f s, %.1f fps\n", static_cast<unsigned long long>(stats->frames),
                stats->seconds, stats->fps);
    if (stats->camera_fps > 0) std::printf("camera:                 %.1f fps (set with --fps)\n", stats->camera_fps);
    std::printf("ring:                   %u V4L2 buffers, at most %u frames on the GPU at once\n", stats->ring_size,
                stats->max_in_flight);
    std::printf("import cache:           %llu misses, %llu hits\n", static_cast<unsigned long long>(stats->cache_misses),
                static_cast<unsigned long long>(stats->cache_hits));
    std::printf("bytes copied by the CPU: %llu\n", static_cast<unsigned long long>(stats->bytes_copied_by_cpu));
    std::printf("waiting on fences:      %.1f ms\n", stats->fence_wait_ms);
    std::printf("CPU per frame:          %.0f us dequeue to submit (median; mean %.0f us), %.0f us outside it\n",
                stats->cpu_us_dequeue_to_submit_median, stats->cpu_us_dequeue_to_submit, stats->cpu_us_after_submit);
    std::printf("sync:                   %s\n", stats->sync_mode.c_str());
    if (stats->driver_errors) std::printf("driver errors:          %llu frames skipped\n",
                                          static_cast<unsigned long long>(stats->driver_errors));
    for (const auto& path : written) std::printf("wrote %s\n", path.c_str());
    if (!png_error.empty()) {
        std::fprintf(stderr, "camera_zero_copy: %s\n", png_error.c_str());
        return 1;
    }
    std::printf("read back to the CPU:   %llu frames\n", static_cast<unsigned long long>(read_back));
    return 0;
}

int run_vulkan(const Args& args) {
    dmabridge::vulkan::ContextOptions context_options;
    context_options.validation = args.validate;
    auto context = dmabridge::vulkan::Context::create(context_options);
    if (!context) {
        std::fprintf(stderr, "camera_zero_copy: %s\n", context.error().message().c_str());
        return 1;
    }
    auto pipeline = dmabridge::camera::CameraPipeline::create(*context, args.pipeline);
    if (!pipeline) {
        std::fprintf(stderr, "camera_zero_copy: %s\n", pipeline.error().message().c_str());
        return 1;
    }
    if (const int rc = run(*pipeline, args, "Vulkan", context->device().name()); rc != 0) return rc;
    if (args.validate) {
        const auto messages = context->validation_messages();
        for (const auto& m : messages) std::fprintf(stderr, "validation: %s\n", m.c_str());
        if (!messages.empty()) return 1;
        std::printf("validation layer: 0 messages\n");
    }
    return 0;
}

int run_gl(const Args& args) {
    // --validate: a debug context, and any GL_KHR_debug message fails the run.
    std::vector<std::string> messages;
    dmabridge::egl::HeadlessOptions options;
    if (args.validate) options.on_debug_message = [&](std::string_view m) { messages.emplace_back(m); };
    auto gl = dmabridge::egl::Headless::create(options);
    if (!gl) {
        std::fprintf(stderr, "camera_zero_copy: %s\n", gl.error().message().c_str());
        return 1;
    }
    int rc = 0;
    {
        auto pipeline = dmabridge::camera::GlCameraPipeline::create(gl->context(), args.pipeline);
        if (!pipeline) {
            std::fprintf(stderr, "camera_zero_copy: %s\n", pipeline.error().message().c_str());
            return 1;
        }
        const char* renderer = reinterpret_cast<const char*>(glGetString(GL_RENDERER));
        rc = run(*pipeline, args, "OpenGL ES", renderer ? renderer : "unknown GL renderer");
    }
    gl->context().collect();
    if (rc == 0 && args.validate) {
        for (const auto& m : messages) std::fprintf(stderr, "GL debug: %s\n", m.c_str());
        if (!messages.empty()) return 1;
        std::printf("GL debug output: 0 messages\n");
    }
    return rc;
}

}  // namespace

int main(int argc, char** argv) {
    Args args = parse(argc, argv);
    if (!args.serve.empty()) return camera::serve({args.pipeline, args.serve, args.frames, args.consumers});
    if (!args.connect.empty()) return camera::consume(args.connect, args.frames, args.output);
    if (!args.pipewire.empty()) {
#ifdef CAMERA_WITH_PIPEWIRE
        camera::PublishOptions p;
        p.node_name = args.pipewire;
        p.device = args.pipeline.device;
        if (args.pipeline.width) p.width = args.pipeline.width;
        if (args.pipeline.height) p.height = args.pipeline.height;
        if (args.pipeline.ring_size) p.ring = args.pipeline.ring_size;
        p.frames = args.frames;
        if (args.pipeline.pixel_format && args.pipeline.pixel_format != dmabridge::fourcc::XRGB8888)
            usage("--pipewire publishes XR24 only");
        return camera::publish(p);
#else
        usage("--pipewire: this build has no dmabridge::pipewire (libpipewire-0.3 not found)");
#endif
    }
    if (args.display) {
        camera::DisplayOptions d;
        d.camera = args.pipeline.device;
        d.card = args.card;
        d.v4l2_format = args.pipeline.pixel_format;
        if (args.pipeline.width) d.width = args.pipeline.width;
        if (args.pipeline.height) d.height = args.pipeline.height;
        d.fps = args.pipeline.fps;
        if (args.pipeline.ring_size) d.ring = args.pipeline.ring_size;
        d.frames = args.frames;
        d.copy = args.pipeline.path == dmabridge::camera::Path::copy;
        d.check = args.check;
        d.validate = args.validate;
        return camera::display(d);
    }
    // Only the two frames written as PNGs are copied back to host memory (every frame with
    // --readback, which measures a pipeline that ends on the CPU, like a GStreamer gldownload).
    const std::uint64_t last = args.frames - 1;
    if (args.readback_every_frame)
        args.pipeline.read_back = dmabridge::camera::read_back_all;
    else
        args.pipeline.read_back = [last](std::uint64_t n) { return n == 0 || n == last; };
    return args.gl ? run_gl(args) : run_vulkan(args);
}
