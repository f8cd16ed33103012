// SPDX-License-Identifier: MIT
#include "queue_mode.hpp"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <vector>

#include <poll.h>
#include <unistd.h>

#include <dmabridge/bridge/capture_source.hpp>
#include <dmabridge/format/frame_layout.hpp>
#include <dmabridge/kernel/cpu_access.hpp>
#include <dmabridge/queue/consumer.hpp>
#include <dmabridge/queue/producer.hpp>
#include <dmabridge/vulkan/context.hpp>
#include <dmabridge/vulkan/import_cache.hpp>

#include <dmabridge/bridge/camera_pipeline.hpp>
#include "mode_report.hpp"
#include "png.hpp"

namespace camera {

using namespace dmabridge;
using clock_type = std::chrono::steady_clock;

namespace {


// The bytes of a frame a consumer writes as a PNG (plane1 empty when one dma-buf holds both
// planes), and where.
struct Snapshot {
    std::string file;
    dmabridge::FrameLayout layout;
    std::vector<std::byte> plane0, plane1;
};


// Streams until `frames` frames went to the queue (to nobody, when no consumer is attached).
// Returns the frames per second.
Result<double> capture(dmabridge::v4l2::CaptureSource& source, std::uint64_t frames) {
    clock_type::time_point start{};
    for (std::uint64_t done = 0; done < frames;) {
        auto pumped = source.pump(std::chrono::seconds(10));
        if (!pumped) return pumped.error();
        if (pumped->frames_queued == 0) continue;
        if (done == 0) start = clock_type::now();
        done += pumped->frames_queued;
    }
    const double s = seconds_since(start);
    return s > 0 && frames > 1 ? static_cast<double>(frames - 1) / s : 0.0;
}

}  // namespace

int serve(const ServeOptions& options) {
    // The V4L2 ring behind a queue Producer: a buffer goes back to the driver once every
    // consumer released it and the release fences signalled.
    auto source = dmabridge::v4l2::CaptureSource::open(dmabridge::camera::capture_options(options.camera), "camera");
    if (!source) return fail("--serve", source.error());
    auto listener = queue::Listener::listen(options.path, 0660);
    if (!listener) return fail("--serve", listener.error());
    if (auto r = source->start(); !r) return fail("--serve", r.error());
    queue::Producer& producer = *source->producer();
    std::printf("camera_zero_copy --serve %s: %s %ux%u, %zu buffers\n", options.path.c_str(),
                source->device().path().c_str(), source->format().width, source->format().height, source->size());
    std::fflush(stdout);

    // Consumers connected meanwhile wait in the listen backlog. Streaming goes on (to nobody)
    // until all of them are there, so the driver keeps its rate; then they are added together
    // and all receive the same frames.
    std::vector<queue::Connection> waiting;
    while (waiting.size() < options.consumers) {
        pollfd p{listener->fd(), POLLIN, 0};
        if (::poll(&p, 1, 0) == 1) {
            auto c = listener->accept();
            if (!c) return fail("--serve", c.error());
            auto creds = c->peer_credentials();
            std::printf("consumer connected (pid %d)\n", creds ? creds->pid : 0);
            std::fflush(stdout);
            waiting.push_back(std::move(*c));
            continue;
        }
        if (auto r = capture(*source, 1); !r) return fail("--serve", r.error());
    }
    // The camera's raw rate, measured now that every consumer has started (and waits, idle).
    auto raw = capture(*source, std::min<std::uint64_t>(60, options.frames));
    if (!raw) return fail("--serve", raw.error());
    for (auto& c : waiting)
        if (auto id = producer.add_consumer(std::move(c)); !id) return fail("--serve", id.error());
    auto served = capture(*source, options.frames);
    if (!served) return fail("--serve", served.error());
    std::printf("served %llu frames to %zu consumers at %.1f fps; raw capture %.1f fps\n",
                static_cast<unsigned long long>(options.frames), producer.consumer_count(), *served, *raw);
    std::printf("consumers lost: %llu\n", static_cast<unsigned long long>(producer.stats().consumers_lost));
    return 0;
}

int consume(const std::string& path, std::uint64_t frames, const std::string& output) {
    auto context = vulkan::Context::create();
    if (!context) return fail("--connect", context.error());
    vulkan::ImportCache cache(context->device());
    auto connection = queue::Connection::connect(path);
    if (!connection) return fail("--connect", connection.error());
    auto consumer = queue::Consumer::create(std::move(*connection));
    if (!consumer) return fail("--connect", consumer.error());
    std::error_code ec;
    std::filesystem::create_directories(output, ec);
    const std::string tag = std::to_string(::getpid());
    std::uint64_t received = 0;
    clock_type::time_point first{};
    std::vector<std::string> written;
    std::vector<Snapshot> snapshots;  // frames to write as PNGs once the stream ended
    for (; received < frames; ++received) {
        auto frame = consumer->acquire(std::chrono::seconds(30));
        if (!frame) {
            if (frame.error().is_errno(ECONNRESET)) break;  // the server ended
            return fail("--connect", frame.error());
        }
        if (received == 0) first = clock_type::now();
        if (auto w = consumer->wait_ready(*frame, std::chrono::seconds(10)); !w || *w != WaitStatus::ready)
            return fail("--connect", w ? Error::from_errno(ETIMEDOUT, "frame not ready") : w.error());
        // Each dma-buf of the frame through the cache (a storage buffer, as the conversion shader
        // reads raw camera bytes): imported the first time, a hit ever after.
        for (const auto& plane : frame->desc->planes) {
            auto buffer = cache.import_buffer(plane.buffer, VK_BUFFER_USAGE_STORAGE_BUFFER_BIT);
            if (!buffer) return fail("--connect", buffer.error());
        }
        if (received == 0 || received + 1 == frames) {
            // Only the frame's bytes are copied while it is held; the conversion and the PNG
            // encoding wait until the stream ended. In FIFO mode a consumer that holds a buffer
            // for a PNG encode holds back the camera for every other consumer too.
            auto layout = dmabridge::frame_layout(*frame->desc);
            if (!layout) return fail("--connect", layout.error());
            const DmaBuf& b0 = frame->desc->planes[0].buffer;
            const DmaBuf& b1 = frame->desc->planes.size() > 1 ? frame->desc->planes[1].buffer : b0;
            Snapshot shot{output + "/connect_" + tag + (received == 0 ? "_first.png" : "_last.png"), *layout, {}, {}};
            const auto copy = [](const DmaBuf& b, std::vector<std::byte>& into) -> Status {
                auto map = Mapping::map(b, Access::read);
                if (!map) return map.error();
                auto cpu = CpuAccess::begin(b, Access::read);
                if (!cpu) return cpu.error();
                into.assign(map->bytes().begin(), map->bytes().end());
                return cpu->end();
            };
            if (auto ok = copy(b0, shot.plane0); !ok) return fail("--connect", ok.error());
            // plane1 stays empty when one dma-buf holds both planes.
            if (&b1 != &b0 && b1.id() != b0.id())
                if (auto ok = copy(b1, shot.plane1); !ok) return fail("--connect", ok.error());
            snapshots.push_back(std::move(shot));
        }
        if (auto r = consumer->release(frame->buffer); !r) return fail("--connect", r.error());
    }
    const double s = seconds_since(first);
    for (const Snapshot& shot : snapshots) {
        const std::span<const std::byte> p0(shot.plane0);
        const std::span<const std::byte> p1 = shot.plane1.empty() ? p0 : std::span<const std::byte>(shot.plane1);
        const auto rgba = convert_to_rgba(shot.layout, p0, p1);
        if (!rgba) return fail("--connect", rgba.error());
        if (auto ok = support::write_png(shot.file, shot.layout.width, shot.layout.height, *rgba); !ok)
            return fail("--connect", ok.error());
        written.push_back(shot.file);
    }
    const auto st = cache.stats();
    std::printf("camera_zero_copy --connect %s: %llu frames at %.1f fps, import cache %llu misses, %llu hits\n",
                path.c_str(), static_cast<unsigned long long>(received),
                s > 0 && received > 1 ? static_cast<double>(received - 1) / s : 0.0,
                static_cast<unsigned long long>(st.misses), static_cast<unsigned long long>(st.hits));
    for (const auto& f : written) std::printf("wrote %s\n", f.c_str());
    return received > 0 ? 0 : 1;
}

}  // namespace camera
