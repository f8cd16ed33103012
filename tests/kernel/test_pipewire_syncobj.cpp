// SPDX-License-Identifier: MIT
// Explicit sync on PipeWire streams (pipewire/explicit_sync.hpp): PipeWire's SyncTimeline
// metadata with DRM syncobj timelines between a dmabridge Producer and Consumer, against the
// real daemons of this binary. The points really gate: a vgem fence the test holds on the
// dma-buf keeps the acquire point (and, on the way back, the release point) unsignalled until
// the test signals it; a producer process that sends frames before writing them is read right
// only by waiting for the point. A consumer without a timeline device, and GStreamer, keep
// implicit sync with the same producer. Suite "pipewire_syncobj": ci/test runs it in a VM with
// the virtio-gpu device (ci/vm --virtio-gpu), where timelines must work.

#include <doctest/doctest.h>

#include <chrono>
#include <optional>
#include <string>

#include <fcntl.h>

#include <dmabridge/alloc/udmabuf.hpp>
#include <dmabridge/format/fourcc.hpp>
#include <dmabridge/kernel/cpu_access.hpp>
#include <dmabridge/kernel/timeline.hpp>
#include <dmabridge/pipewire/consumer.hpp>
#include <dmabridge/pipewire/context.hpp>
#include <dmabridge/pipewire/producer.hpp>

#include "fd_count.hpp"
#include "pipewire_daemon.hpp"
#include "pipewire_pattern.hpp"
#include "pipewire_pattern_producer.hpp"
#include "vgem.hpp"

using namespace dmabridge;
using namespace dmabridge::test;
using namespace std::chrono_literals;

namespace {

constexpr std::uint32_t width = 160;
constexpr std::uint32_t height = 120;

PipeWireDaemons& daemons() {
    auto d = PipeWireDaemons::get();
    if (!d) FAIL("the private PipeWire daemon did not start: " << d.error().message());
    return **d;
}

UniqueFd timeline_device() {
    auto fd = Timeline::open_device();
    REQUIRE_MESSAGE(fd, (fd ? "" : fd.error().message()));
    return std::move(*fd);
}

pipewire::ConsumerOptions consumer_options(const std::string& target, int device) {
    pipewire::ConsumerOptions o;
    o.target = target;
    o.formats.add(fourcc::XRGB8888, modifier::linear);
    o.accept_shm = false;
    o.timeline_device = device;
    return o;
}

// The pattern a frame's buffer holds now, read through a mapping (no wait: what a reader that
// ignored the points would see).
PatternCheck read_now(const BufferDesc& desc) {
    const PlaneDesc& p = desc.planes[0];
    auto map = Mapping::map(p.buffer, Access::read);
    REQUIRE_MESSAGE(map, map.error().message());
    return check_pattern(map->data() + p.offset, p.stride, desc.width, desc.height);
}

bool signalled(const Timeline& t, std::uint64_t point) {
    auto w = t.wait(point, Timeout{0});
    REQUIRE_MESSAGE(w, (w ? "" : w.error().message()));
    return *w == WaitStatus::ready;
}

std::string peer_path() { return PIPEWIRE_PEER_PATH; }

// Keeps `consumer` connected to a node that another process is still publishing: made again
// while the session manager answers that the target does not exist yet. False meanwhile.
bool connected(std::optional<pipewire::Consumer>& consumer, pipewire::Context& context,
               const pipewire::ConsumerOptions& options) {
    if (!consumer) {
        auto c = pipewire::Consumer::create(context, options);
        REQUIRE_MESSAGE(c, c.error().message());
        consumer.emplace(std::move(*c));
    }
    REQUIRE(context.dispatch(10ms));
    if (consumer->error() && consumer->error()->is(Errc::not_found)) {
        consumer.reset();
        return false;
    }
    REQUIRE_MESSAGE(!consumer->error(), consumer->error()->message());
    return true;
}

}  // namespace

TEST_SUITE("pipewire_syncobj") {

TEST_CASE_FIXTURE(FdLeakCheck, "a producer's GPU-style write fence becomes the frame's acquire point, and the consumer's "
                               "read fence its release point: each gates the other side until it signals") {
    daemons();
    const UniqueFd device = timeline_device();
    Vgem vgem;
    {
        auto context = pipewire::Context::create();
        REQUIRE_MESSAGE(context, context.error().message());
        auto udmabuf = UdmabufAllocator::open();
        REQUIRE_MESSAGE(udmabuf, udmabuf.error().message());
        auto po = dmabuf_producer_options("dmabridge-test-syncobj-gate", width, height, *udmabuf);
        po.timeline_device = device.get();
        auto producer = pipewire::Producer::create(*context, po);
        REQUIRE_MESSAGE(producer, producer.error().message());
        auto consumer = pipewire::Consumer::create(*context, consumer_options(po.name, device.get()));
        REQUIRE_MESSAGE(consumer, consumer.error().message());

        // Frames keep flowing (a frame reaches the consumer a graph cycle or so after it was
        // queued); one of them, the "gated" frame, is followed through both of its points.
        std::uint32_t frame = 0;
        int rounds = 0, recycled = 0;
        bool gating = false, returning = false;   // the gated frame is on its way there, or back
        std::uint64_t gated_seq = 0;              // its sequence
        BufferId gated_buffer{};                  // its buffer, released with a read fence
        std::uint32_t writing = 0, reading = 0;   // the vgem fences
        std::uint64_t release_point = 0;
        const double end = monotonic_seconds() + 90;
        while (rounds < 3 && monotonic_seconds() < end) {
            REQUIRE(context->dispatch(10ms));
            REQUIRE_MESSAGE(producer->state() != pipewire::StreamState::error, producer->error()->message());
            REQUIRE_MESSAGE(consumer->state() != pipewire::StreamState::error, consumer->error()->message());
            // A few frames ahead of the consumer at most (PipeWire recycles what it does not take).
            const bool ahead = frame > consumer->stats().frames_acquired + 3;
            auto pf = ahead ? Result<std::optional<pipewire::ProducerFrame>>(std::nullopt) : producer->dequeue();
            REQUIRE_MESSAGE(pf, pf.error().message());
            if (*pf) {
                REQUIRE_MESSAGE((*pf)->acquire_timeline != nullptr, "the consumer did not take explicit sync");
                REQUIRE((*pf)->release_timeline != nullptr);
                const BufferDesc& desc = *(*pf)->desc;
                if (gating && desc.planes[0].buffer.id() == gated_buffer) {
                    // PipeWire recycled the gated frame before the consumer took it (the
                    // producer outruns it): let the fence go and gate another frame.
                    vgem.signal(writing);
                    gating = false;
                    ++recycled;
                }
                if (returning && desc.planes[0].buffer.id() == gated_buffer) {
                    // The gated frame's buffer is back with the consumer's read fence as its
                    // release point: not to be written yet.
                    CHECK((*pf)->release_point == release_point);
                    auto r = producer->wait_released(**pf, 200ms);
                    REQUIRE(r);
                    CHECK(*r == WaitStatus::timed_out);
                    vgem.signal(reading);
                    r = producer->wait_released(**pf, 2000ms);
                    REQUIRE(r);
                    CHECK(*r == WaitStatus::ready);
                    returning = false;
                    ++rounds;
                }
                auto released = producer->wait_released(**pf, 2000ms);
                REQUIRE(released);
                REQUIRE(*released == WaitStatus::ready);
                REQUIRE(fill_pattern_frame(desc, frame));
                if (!gating && !returning) {
                    // A render job still running on the buffer: a vgem write fence on its
                    // dma-buf, which queue() turns into the acquire point.
                    writing = vgem.attach_fence(true, vgem.import_buffer(desc.planes[0].buffer));
                    gated_seq = frame;
                    gated_buffer = desc.planes[0].buffer.id();
                    gating = true;
                }
                REQUIRE(producer->queue(**pf, frame));
                ++frame;
            }
            auto f = consumer->acquire();
            REQUIRE_MESSAGE(f, f.error().message());
            if (!*f) continue;
            const pipewire::ConsumerFrame& cf = **f;
            REQUIRE(cf.acquire_timeline != nullptr);
            if (!gating || cf.sequence != gated_seq) {
                auto w = cf.acquire_timeline->wait(cf.acquire_point, 2000ms);
                REQUIRE(w);
                CHECK(*w == WaitStatus::ready);
                REQUIRE(consumer->release(cf));
                continue;
            }
            // The gated frame: its point waits for the fence, however long.
            gating = false;
            CHECK_FALSE(signalled(*cf.acquire_timeline, cf.acquire_point));
            auto w = cf.acquire_timeline->wait(cf.acquire_point, 200ms);
            REQUIRE(w);
            CHECK(*w == WaitStatus::timed_out);
            vgem.signal(writing);
            w = cf.acquire_timeline->wait(cf.acquire_point, 2000ms);
            REQUIRE(w);
            REQUIRE(*w == WaitStatus::ready);
            const auto check = read_now(*cf.desc);
            CHECK(check.wrong == 0);
            CHECK(check.frame == cf.sequence % 256);
            // The consumer's reads: a vgem read fence on the dma-buf, which release() turns into
            // the release point.
            reading = vgem.attach_fence(false, vgem.import_buffer(cf.desc->planes[0].buffer));
            gated_buffer = cf.desc->planes[0].buffer.id();
            returning = true;
            release_point = cf.release_point;
            REQUIRE(consumer->release(cf));
        }
        REQUIRE_MESSAGE(rounds == 3, "gated round trips: " << rounds << " of 3 after " << frame << " frames");
        CHECK(producer->uses_timelines());
        CHECK(consumer->uses_timelines());
        CHECK(producer->stats().timeline_frames == frame);
        CHECK(consumer->stats().frames_rejected == 0);
        MESSAGE("explicit sync: " << producer->stats().timeline_frames << " frames sent (" << recycled
                                  << " gated frames recycled unread), "
                                  << consumer->stats().timeline_frames << " acquired, "
                                  << producer->stats().releases_unscheduled << " unscheduled releases");
    }
}

TEST_CASE_FIXTURE(FdLeakCheck, "a timeline producer keeps implicit sync with a consumer that has no timeline device") {
    daemons();
    const UniqueFd device = timeline_device();
    {
        auto context = pipewire::Context::create();
        REQUIRE_MESSAGE(context, context.error().message());
        auto udmabuf = UdmabufAllocator::open();
        REQUIRE_MESSAGE(udmabuf, udmabuf.error().message());
        auto po = dmabuf_producer_options("dmabridge-test-syncobj-implicit", width, height, *udmabuf);
        po.timeline_device = device.get();
        auto producer = pipewire::Producer::create(*context, po);
        REQUIRE_MESSAGE(producer, producer.error().message());
        auto consumer = pipewire::Consumer::create(*context, consumer_options(po.name, -1));
        REQUIRE_MESSAGE(consumer, consumer.error().message());
        std::uint32_t frame = 0;
        int got = 0;
        const double end = monotonic_seconds() + 60;
        while (got < 6 && monotonic_seconds() < end) {
            REQUIRE(context->dispatch(20ms));
            auto pf = producer->dequeue();
            REQUIRE_MESSAGE(pf, pf.error().message());
            if (*pf) {
                CHECK((*pf)->acquire_timeline == nullptr);
                REQUIRE(fill_pattern_frame(*(*pf)->desc, frame));
                REQUIRE(producer->queue(**pf, frame));
                ++frame;
            }
            auto f = consumer->acquire();
            REQUIRE_MESSAGE(f, f.error().message());
            if (!*f) continue;
            CHECK((*f)->acquire_timeline == nullptr);
            REQUIRE((*f)->desc->planes[0].buffer.wait(Access::read, 1000ms));
            CHECK(read_now(*(*f)->desc).wrong == 0);
            REQUIRE(consumer->release(**f));
            ++got;
        }
        REQUIRE(got == 6);
        CHECK_FALSE(producer->uses_timelines());
        CHECK_FALSE(consumer->uses_timelines());
        CHECK(producer->stats().timeline_frames == 0);
    }
}

TEST_CASE_FIXTURE(FdLeakCheck, "a producer process that sends each frame before writing it: read right only after "
                               "the acquire point, which the producer signals once it wrote") {
    PipeWireDaemons& d = daemons();
    const UniqueFd device = timeline_device();
    const std::string name = "dmabridge-test-syncobj-peer";
    auto peer = Child::spawn({peer_path(), "produce-timeline", name, std::to_string(width), std::to_string(height), "400"},
                             d.runtime_dir() + "/peer-syncobj.log");
    REQUIRE_MESSAGE(peer, peer.error().message());
    {
        auto context = pipewire::Context::create();
        REQUIRE_MESSAGE(context, context.error().message());
        std::optional<pipewire::Consumer> consumer;
        int got = 0, early = 0, stale_when_early = 0;
        double end = monotonic_seconds() + 60;
        while (got < 6 && monotonic_seconds() < end) {
            if (!connected(consumer, *context, consumer_options(name, device.get()))) continue;
            auto f = consumer->acquire();
            REQUIRE_MESSAGE(f, f.error().message());
            if (!*f) continue;
            const pipewire::ConsumerFrame& cf = **f;
            REQUIRE_MESSAGE(cf.acquire_timeline != nullptr, "explicit sync was not negotiated\n" << peer->output());
            if (!signalled(*cf.acquire_timeline, cf.acquire_point)) {
                // Arrived before its writes: what the buffer holds now is not this frame.
                ++early;
                const auto now = read_now(*cf.desc);
                if (now.wrong != 0 || now.frame != cf.sequence % 256) ++stale_when_early;
            }
            auto w = cf.acquire_timeline->wait(cf.acquire_point, 5000ms);
            REQUIRE(w);
            REQUIRE_MESSAGE(*w == WaitStatus::ready, "acquire point " << cf.acquire_point << " not signalled in 5 s");
            const auto check = read_now(*cf.desc);
            CHECK_MESSAGE(check.wrong == 0, check.wrong << " pixels wrong after the acquire point");
            CHECK(check.frame == cf.sequence % 256);
            REQUIRE(consumer->release(cf));
            ++got;
        }
        REQUIRE_MESSAGE(got == 6, "frames: " << got << "\n" << peer->output() << d.log_tail());
        MESSAGE(early << " of " << got << " frames arrived before their acquire point signalled, " << stale_when_early
                      << " of those held other contents then");
        // The peer writes 400 ms after sending: frames arrive well before that.
        CHECK(early >= 3);
        CHECK(stale_when_early == early);
        CHECK(consumer->stats().frames_rejected == 0);
    }
    CHECK(peer->output().find("timelines") != std::string::npos);
    peer->kill();
}

TEST_CASE_FIXTURE(FdLeakCheck, "a producer whose SyncObj datas are no syncobjs, or whose points are 0 or not above the "
                               "buffer's last, has those frames refused before anything uses them") {
    PipeWireDaemons& d = daemons();
    const UniqueFd device = timeline_device();
    for (const std::string kind : {"syncobj-memfd", "syncobj-points"}) {
        CAPTURE(kind);
        const std::string name = "dmabridge-test-hostile-" + kind;
        auto peer = Child::spawn({peer_path(), "hostile", kind, name, std::to_string(width), std::to_string(height)},
                                 d.runtime_dir() + "/hostile-" + kind + ".log");
        REQUIRE_MESSAGE(peer, peer.error().message());
        std::string rejection;
        pipewire::ConsumerStats stats;
        {
            auto context = pipewire::Context::create();
            REQUIRE_MESSAGE(context, context.error().message());
            std::optional<pipewire::Consumer> consumer;
            const double end = monotonic_seconds() + 30;
            while (monotonic_seconds() < end && !peer->exited() &&
                   (!consumer || consumer->stats().frames_rejected < 6)) {
                if (!connected(consumer, *context, consumer_options(name, device.get()))) continue;
                auto f = consumer->acquire();
                REQUIRE_MESSAGE(f, f.error().message());
                if (!*f) continue;
                // Only honest frames get through: syncobjs this device imports, points in order.
                CHECK(kind == "syncobj-points");
                CHECK((*f)->acquire_point == 1);
                CHECK((*f)->release_point == 1);
                CHECK(read_now(*(*f)->desc).wrong == 0);
                REQUIRE(consumer->release(**f));
            }
            REQUIRE(consumer);
            stats = consumer->stats();
            rejection = consumer->last_rejection();
        }
        MESSAGE(kind << ": " << stats.frames_rejected << " refused, " << stats.frames_acquired
                     << " acquired; last refusal: " << rejection);
        REQUIRE_MESSAGE(stats.frames_rejected >= 6, peer->output() << d.log_tail());
        CHECK_FALSE(peer->exited());  // no setup failure on the peer's side
        if (kind == "syncobj-memfd") {
            CHECK(stats.frames_acquired == 0);
            CHECK(rejection.find("not a syncobj") != std::string::npos);
            CHECK(rejection.find("data 1") != std::string::npos);
        } else {
            CHECK(stats.frames_acquired <= 4);  // each buffer's first (1, 1) only
            CHECK(rejection.find("point") != std::string::npos);
        }
        peer->kill();
    }
}

TEST_CASE("explicit sync options are checked: a device without syncobj timelines is refused at create()") {
    daemons();
    auto context = pipewire::Context::create();
    REQUIRE_MESSAGE(context, context.error().message());
    auto udmabuf = UdmabufAllocator::open();
    REQUIRE_MESSAGE(udmabuf, udmabuf.error().message());
    // A udmabuf fd is no DRM device.
    auto po = dmabuf_producer_options("dmabridge-test-syncobj-bad", width, height, *udmabuf);
    const UniqueFd not_drm(::open("/dev/udmabuf", O_RDWR | O_CLOEXEC));
    REQUIRE(not_drm);
    po.timeline_device = not_drm.get();
    auto producer = pipewire::Producer::create(*context, po);
    REQUIRE_FALSE(producer);
    CHECK(producer.error().message().find("timeline_device") != std::string::npos);
    auto consumer = pipewire::Consumer::create(*context, consumer_options(po.name, not_drm.get()));
    REQUIRE_FALSE(consumer);
    CHECK(consumer.error().message().find("timeline_device") != std::string::npos);
}

}  // TEST_SUITE
