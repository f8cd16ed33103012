// SPDX-License-Identifier: MIT
#include "queue_mode.hpp"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <vector>

#include <linux/videodev2.h>
#include <poll.h>
#include <unistd.h>

#include <dmabridge/cpu_access.hpp>
#include <dmabridge/queue/consumer.hpp>
#include <dmabridge/queue/producer.hpp>
#include <dmabridge/v4l2/buffer_ring.hpp>
#include <dmabridge/v4l2/device.hpp>
#include <dmabridge/vulkan/context.hpp>
#include <dmabridge/vulkan/import_cache.hpp>

#include "conversion.hpp"
#include "png.hpp"

namespace camera {

using namespace dmabridge;
using clock_type = std::chrono::steady_clock;

namespace {

int fail(const char* who, const Error& e) {
    std::fprintf(stderr, "camera_zero_copy %s: %s\n", who, e.message().c_str());
    return 1;
}

// The bytes of a frame a consumer writes as a PNG (plane1 empty when one dma-buf holds both
// planes), and where.
struct Snapshot {
    std::string file;
    FrameLayout layout;
    std::vector<std::byte> plane0, plane1;
};

double seconds_since(clock_type::time_point t) { return std::chrono::duration<double>(clock_type::now() - t).count(); }

std::int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(clock_type::now().time_since_epoch()).count();
}

// Gives every free queue buffer back to the driver.
Status requeue_free(queue::Producer& producer, v4l2::BufferRing& ring) {
    while (producer.free_count() > 0) {
        auto index = producer.dequeue(Timeout{0});
        if (!index) return index.error();
        if (auto q = ring.queue(*index); !q) return q.error();
    }
    return {};
}

// Runs the capture loop until `frames` frames went to the queue (to nobody, when no consumer is
// attached). Returns the frames per second.
Result<double> capture(v4l2::Device& device, v4l2::BufferRing& ring, queue::Producer& producer, std::uint64_t frames,
                       std::uint64_t& sequence) {
    clock_type::time_point start{};
    for (std::uint64_t done = 0; done < frames;) {
        pollfd fds[2] = {{device.fd(), POLLIN, 0}, {producer.fd(), POLLIN, 0}};
        if (::poll(fds, 2, 10000) == 0)
            return Error::from_errno(ETIMEDOUT, "serve: neither the camera nor a consumer did anything for 10 s");
        if (fds[1].revents) {
            if (auto d = producer.dispatch(Timeout{0}); !d) return d.error();
        }
        if (fds[0].revents) {
            auto got = ring.dequeue(Timeout{0});
            if (!got) return got.error();
            if (*got) {
                const auto& frame = **got;
                if (frame.error || frame.incomplete) {
                    if (auto q = ring.queue(frame.index); !q) return q.error();
                } else {
                    if (done == 0) start = clock_type::now();
                    if (auto q = producer.queue(frame.index, std::nullopt, {sequence++, now_ns()}); !q) return q.error();
                    ++done;
                }
            }
        }
        if (auto r = requeue_free(producer, ring); !r) return r.error();
    }
    const double s = seconds_since(start);
    return s > 0 && frames > 1 ? static_cast<double>(frames - 1) / s : 0.0;
}

}  // namespace

int serve(const ServeOptions& options) {
    const auto& o = options.camera;
    auto device = o.device.empty() ? v4l2::Device::find(v4l2::Direction::capture) : v4l2::Device::open(o.device);
    if (!device) return fail("--serve", device.error());
    auto format = device->set_format(v4l2::Direction::capture, o.width, o.height,
                                     o.pixel_format ? o.pixel_format : V4L2_PIX_FMT_YUYV);
    if (!format) return fail("--serve", format.error());
    if (o.fps != 0)
        if (auto i = device->set_frame_interval(v4l2::Direction::capture, {1, o.fps}); !i) return fail("--serve", i.error());
    auto ring = v4l2::BufferRing::create_exported(*device, v4l2::Direction::capture, o.ring_size);
    if (!ring) return fail("--serve", ring.error());
    auto producer = queue::Producer::create();
    if (!producer) return fail("--serve", producer.error());
    for (std::uint32_t i = 0; i < ring->size(); ++i) {
        auto desc = ring->buffer(i).dup();
        if (!desc) return fail("--serve", desc.error());
        if (auto r = producer->add_buffer(std::move(*desc)); !r) return fail("--serve", r.error());
    }
    auto listener = queue::Listener::listen(options.path, 0660);
    if (!listener) return fail("--serve", listener.error());
    if (auto r = requeue_free(*producer, *ring); !r) return fail("--serve", r.error());
    if (auto r = ring->stream_on(); !r) return fail("--serve", r.error());
    std::printf("camera_zero_copy --serve %s: %s %ux%u, %zu buffers\n", options.path.c_str(), device->path().c_str(),
                format->width, format->height, ring->size());
    std::fflush(stdout);

    std::uint64_t sequence = 0;
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
        if (auto r = capture(*device, *ring, *producer, 1, sequence); !r) return fail("--serve", r.error());
    }
    // The camera's raw rate, measured now that every consumer has started (and waits, idle).
    auto raw = capture(*device, *ring, *producer, std::min<std::uint64_t>(60, options.frames), sequence);
    if (!raw) return fail("--serve", raw.error());
    for (auto& c : waiting)
        if (auto id = producer->add_consumer(std::move(c)); !id) return fail("--serve", id.error());
    auto served = capture(*device, *ring, *producer, options.frames, sequence);
    if (!served) return fail("--serve", served.error());
    std::printf("served %llu frames to %zu consumers at %.1f fps; raw capture %.1f fps\n",
                static_cast<unsigned long long>(options.frames), producer->consumer_count(), *served, *raw);
    std::printf("consumers lost: %llu\n", static_cast<unsigned long long>(producer->stats().consumers_lost));
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
            auto layout = frame_layout(*frame->desc);
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
        const auto rgba = convert_on_cpu(shot.layout, p0, p1);
        if (auto ok = sample::write_png(shot.file, shot.layout.width, shot.layout.height, rgba); !ok)
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
