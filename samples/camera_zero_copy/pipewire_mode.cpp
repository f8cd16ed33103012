// SPDX-License-Identifier: MIT
#include "pipewire_mode.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include <poll.h>

#include <dmabridge/alloc/udmabuf.hpp>
#include <dmabridge/format/fourcc.hpp>
#include <dmabridge/pipewire/context.hpp>
#include <dmabridge/pipewire/producer.hpp>
#include <dmabridge/v4l2/buffer_ring.hpp>
#include <dmabridge/v4l2/device.hpp>

#include "mode_report.hpp"

namespace camera {

using namespace dmabridge;
using clock_type = std::chrono::steady_clock;

namespace {


// Every buffer of the stream, dequeued from the producer once a consumer linked: they are all
// free then, so dequeue() gives one after the other until none is left (the consumer may have
// asked for more than PublishOptions::ring). Errors: ETIMEDOUT after `wait_s` seconds; shared
// memory udmabuf could not wrap.
Result<std::vector<pipewire::ProducerFrame>> lend_buffers(pipewire::Context& context, pipewire::Producer& producer,
                                                          std::uint32_t wait_s,
                                                          std::optional<pipewire::ProducerFrame> first) {
    std::vector<pipewire::ProducerFrame> held;
    if (first) held.push_back(*first);
    const auto deadline = clock_type::now() + std::chrono::seconds(wait_s);
    while (true) {
        if (clock_type::now() > deadline) {
            for (const auto& f : held) (void)producer.queue(f);  // back to the stream
            return Error::from_errno(ETIMEDOUT, "no consumer linked within " + std::to_string(wait_s) + " s");
        }
        if (auto r = context.dispatch(std::chrono::milliseconds(100)); !r) return r.error();
        const std::uint64_t allocated = producer.stats().buffers_allocated;
        while (true) {
            auto f = producer.dequeue();
            if (!f) return f.error();
            if (!*f) break;
            if ((*f)->desc == nullptr)
                return Error::library(Errc::unsupported, "buffer " + std::to_string((*f)->index) +
                                                             " is shared memory udmabuf could not wrap: no dma-buf for the camera");
            held.push_back(**f);
        }
        if (held.empty()) continue;
        if (producer.stats().buffers_allocated == allocated) return held;
        // Buffer numbers count up and are never reused: the newest are the current set; older
        // ones were removed while we held them and queue() drops them.
        const std::uint64_t now_allocated = producer.stats().buffers_allocated;
        std::erase_if(held, [&](const pipewire::ProducerFrame& h) {
            if (h.index >= allocated) return false;
            (void)producer.queue(h);
            return true;
        });
        if (now_allocated != allocated && held.empty()) continue;
    }
}

struct Session {
    std::uint64_t sent = 0, skipped = 0;
    clock_type::time_point first{};
    std::optional<pipewire::ProducerFrame> stray;  // a buffer of the next set, dequeued already
    std::string ended;                              // why the set ended early
};

// Streams the camera into `held` (a V4L2_MEMORY_DMABUF ring over the stream's buffers) until
// `frames` were sent or the stream replaced its buffers. The ring (streaming stopped, the
// driver's references dropped) is gone when this returns.
Result<Session> stream(pipewire::Context& context, pipewire::Producer& producer, v4l2::Device& device,
                       std::vector<pipewire::ProducerFrame>& held, std::uint64_t frames) {
    std::vector<BufferDesc> lent;
    for (const auto& f : held) {
        auto copy = f.desc->dup();
        if (!copy) return copy.error();
        lent.push_back(std::move(*copy));
    }
    auto ring = v4l2::BufferRing::create_imported(device, v4l2::Direction::capture, std::move(lent));
    if (!ring) return ring.error().with_context("lend the stream's buffers to the camera");
    for (std::uint32_t i = 0; i < held.size(); ++i)
        if (auto r = ring->queue(i); !r) return r.error();
    if (auto r = ring->stream_on(); !r) return r.error();
    const auto negotiated = producer.negotiated();
    std::printf("linked: %s, %zu buffers lent to the camera\n",
                negotiated && negotiated->dmabuf ? "dma-buf" : "shared memory (memfd, wrapped by udmabuf)", held.size());
    std::fflush(stdout);
    // The ring slot of a stream buffer (ProducerFrame::index never changes).
    const auto slot_of = [&](std::uint32_t index) -> std::optional<std::uint32_t> {
        for (std::uint32_t i = 0; i < held.size(); ++i)
            if (held[i].index == index) return i;
        return std::nullopt;
    };
    Session s;
    const std::uint64_t allocated = producer.stats().buffers_allocated;
    while (s.sent < frames) {
        // One thread, two event sources: PipeWire's loop and the camera's queue.
        pollfd fds[2] = {{context.fd(), POLLIN, 0}, {device.fd(), POLLIN, 0}};
        if (::poll(fds, 2, 2000) == 0)
            return Error::from_errno(ETIMEDOUT, "neither the camera nor PipeWire answered for 2 s");
        if (auto r = context.dispatch(std::chrono::milliseconds(0)); !r) return r.error();
        // Buffers the consumer is done with go back to the camera.
        while (true) {
            auto f = producer.dequeue();
            if (!f) return f.error();
            if (!*f) break;
            auto slot = slot_of((*f)->index);
            if (!slot) {  // a buffer of a new set: this set was replaced
                s.stray = **f;
                s.ended = "buffer " + std::to_string((*f)->index) + " of a new set came back";
                return s;
            }
            held[*slot] = **f;
            if (auto r = ring->queue(*slot); !r) return r.error();
        }
        auto d = ring->dequeue(std::chrono::milliseconds(0));
        if (!d) return d.error();
        if (producer.stats().buffers_allocated != allocated) {  // a new set replaced this one
            s.ended = "the stream allocated a new set of buffers";
            return s;
        }
        if (!*d) continue;
        const std::uint32_t slot = (*d)->index;
        if ((*d)->error || (*d)->incomplete) {  // nothing worth sending: back to the driver
            ++s.skipped;
            if (auto r = ring->queue(slot); !r) return r.error();
            continue;
        }
        const auto now_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(clock_type::now().time_since_epoch());
        if (auto r = producer.queue(held[slot], (*d)->sequence, now_ns.count()); !r) {
            if (r.error().is(Errc::not_found)) {  // the buffers were replaced: a new set follows
                s.ended = r.error().message();
                return s;
            }
            return r.error();
        }
        if (s.sent == 0) s.first = clock_type::now();
        ++s.sent;
    }
    return s;
}

}  // namespace

int publish(const PublishOptions& options) {
    auto device = options.device.empty() ? v4l2::Device::find(v4l2::Direction::capture)
                                         : v4l2::Device::open(options.device, v4l2::Direction::capture);
    if (!device) return fail("--pipewire", "open the camera", device.error());
    // V4L2's 'XR24' is DRM's XRGB8888: the same bytes (B, G, R, X), the same code.
    auto format = device->set_format(v4l2::Direction::capture, options.width, options.height, fourcc::XRGB8888);
    if (!format) return fail("--pipewire", "set the camera's format to XR24", format.error());
    auto context = pipewire::Context::create();
    if (!context) return fail("--pipewire", "connect to PipeWire", context.error());
    auto udmabuf = UdmabufAllocator::open();
    if (!udmabuf) return fail("--pipewire", "open /dev/udmabuf", udmabuf.error());

    pipewire::ProducerOptions po;
    po.name = options.node_name;
    po.width = options.width;
    po.height = options.height;
    po.formats.add(fourcc::XRGB8888, modifier::linear);
    po.allocator = &*udmabuf;
    po.udmabuf = &*udmabuf;  // shared memory too reaches the camera as a dma-buf
    po.buffer_count = options.ring;
    auto producer = pipewire::Producer::create(*context, po);
    if (!producer) return fail("--pipewire", "create the PipeWire node", producer.error());
    std::printf("camera_zero_copy --pipewire %s: %s XR24 %ux%u, waiting for a consumer\n", options.node_name.c_str(),
                device->path().c_str(), options.width, options.height);
    std::fflush(stdout);

    std::uint64_t sent = 0, skipped = 0, links = 0;
    clock_type::time_point first{};
    std::optional<pipewire::ProducerFrame> stray;
    while (sent < options.frames) {
        // A link (or a renegotiation: GStreamer's pipewiresrc fixes its format again after the
        // first one, which replaces every buffer) hands out a new set of buffers: lend them all
        // to the camera. Before the first frame, wait for a consumer; after it, a few seconds
        // without buffers mean the consumer went away for good.
        auto held = lend_buffers(*context, *producer, sent == 0 ? options.wait_s : 5, stray);
        if (!held) {
            if (sent > 0 && held.error().is_errno(ETIMEDOUT)) break;
            return fail("--pipewire", "wait for the stream's buffers", held.error());
        }
        ++links;
        const std::uint64_t left = options.frames - sent;
        auto session = stream(*context, *producer, *device, *held, left);
        if (!session) return fail("--pipewire", "stream", session.error());
        // Ended early: the stream removed these buffers while they were lent (Producer::queue()
        // drops such a buffer and answers Errc::not_found; the camera's ring let go of them at the
        // end of stream()).
        if (session->sent < left) {
            std::printf("buffer set %llu ended after %llu frames: %s\n", static_cast<unsigned long long>(links),
                        static_cast<unsigned long long>(session->sent), session->ended.c_str());
            for (const auto& f : *held) (void)producer->queue(f);
        }
        if (sent == 0 && session->sent > 0) first = session->first;
        sent += session->sent;
        skipped += session->skipped;
        stray = session->stray;
    }
    const double s = seconds_since(first);
    std::printf("published %llu frames at %.1f fps over %llu buffer sets, %llu skipped (driver errors), 0 bytes copied\n",
                static_cast<unsigned long long>(sent), s > 0 && sent > 1 ? static_cast<double>(sent - 1) / s : 0.0,
                static_cast<unsigned long long>(links), static_cast<unsigned long long>(skipped));
    // Streaming stops (the ring's destructor) before the producer removes the buffers.
    return 0;
}

}  // namespace camera
