// SPDX-License-Identifier: MIT
// The buffer queue on DRM syncobj timelines (#21): both ends negotiate in the hello, frames carry
// acquire points and releases release points instead of sync_file fds, either end without
// timelines keeps both on sync_files, hostile timeline fds and points are refused, and a peer
// process that dies holding a point nobody will submit releases the other side with an error.
// Suite "syncobj": ci/test runs it in a VM with the virtio-gpu device (ci/vm --virtio-gpu),
// where timelines must work.
#include <dmabridge/alloc/udmabuf.hpp>
#include <dmabridge/kernel/cpu_access.hpp>
#include <dmabridge/kernel/timeline.hpp>
#include <dmabridge/queue/consumer.hpp>
#include <dmabridge/queue/producer.hpp>

#include <chrono>
#include <string>
#include <vector>

#include <libdrm/drm.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include "fd_count.hpp"
#include "ioctl_faults.hpp"
#include "queue_buffers.hpp"
#include "queue/transport.hpp"
#include "queue/wire.hpp"
#include "queue_peer_process.hpp"
#include "vgem.hpp"

using namespace dmabridge;
using namespace std::chrono_literals;
using dmabridge::test::FdLeakCheck;
using dmabridge::test::Peer;
using dmabridge::test::socket_link;
namespace wire = dmabridge::detail::wire;

namespace {

constexpr std::uint32_t side = test::queue_side;
std::uint32_t pattern(std::uint64_t s, std::size_t i) { return test::queue_pattern(s, i); }
void fill(const BufferDesc& desc, std::uint64_t sequence) { test::fill_queue_pattern(desc, sequence); }
BufferDesc make_buffer() { return std::move(test::make_queue_buffers(1).front()); }

UniqueFd timeline_device() {
    auto fd = Timeline::open_device();
    REQUIRE_MESSAGE(fd, (fd ? "" : fd.error().message()));
    return std::move(*fd);
}

queue::Producer make_producer(int device, std::size_t buffers, std::vector<std::string>* lost = nullptr,
                              queue::ProducerOptions o = {}) {
    o.timeline_device = device;
    if (lost) o.on_consumer_lost = [lost](queue::ConsumerId, const Error& e) { lost->push_back(e.message()); };
    auto p = queue::Producer::create(std::move(o));
    REQUIRE_MESSAGE(p, (p ? "" : p.error().message()));
    for (std::size_t i = 0; i < buffers; ++i) REQUIRE(p->add_buffer(make_buffer()));
    return std::move(*p);
}

template <typename Pred>
void dispatch_until(queue::Producer& p, Pred done, std::chrono::milliseconds timeout = 20s) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (!done()) {
        REQUIRE_MESSAGE(std::chrono::steady_clock::now() < end, "the producer waited in vain");
        REQUIRE(p.dispatch(50ms));
    }
}

// Sends one raw message on a connection's transport (a hostile peer speaking the wire by hand).
void raw_send(queue::Connection& c, const wire::Message& m, std::vector<int> fds = {}) {
    const auto bytes = wire::encode(m);
    REQUIRE(queue::detail::ConnectionAccess::transport(c)->send(bytes.view(), fds));
}

std::optional<queue::detail::Received> raw_receive(queue::Connection& c) {
    auto r = queue::detail::ConnectionAccess::transport(c)->receive();
    REQUIRE_MESSAGE(r, (r ? "" : r.error().message()));
    return std::move(*r);
}

}  // namespace

TEST_SUITE("syncobj") {

TEST_CASE_FIXTURE(FdLeakCheck, "queue: with timelines on both ends frames carry acquire points and releases release points, which gate reuse") {
    const auto device = timeline_device();
    auto producer = make_producer(device.get(), 1);
    REQUIRE(producer.acquire_timeline());
    auto pair = queue::Connection::local_pair();
    REQUIRE(pair);
    auto id = producer.add_consumer(std::move(pair->first));
    REQUIRE(id);
    auto consumer = queue::Consumer::create(std::move(pair->second), queue::ConsumerOptions{device.get()});
    REQUIRE_MESSAGE(consumer, (consumer ? "" : consumer.error().message()));
    REQUIRE(consumer->release_timeline());
    // The consumer reads the hello and answers with its release timeline.
    REQUIRE(consumer->dispatch());
    CHECK(consumer->uses_timelines());
    REQUIRE(consumer->acquire_timeline());
    for (std::uint64_t seq = 1; seq <= 3; ++seq) {
        auto b = producer.dequeue(1s);
        REQUIRE_MESSAGE(b, (b ? "" : b.error().message()));
        fill(*producer.buffer(*b), seq);
        // Queued before its point is submitted: the point number travels, no fence is needed yet.
        REQUIRE(producer.queue_point(*b, seq * 10, {seq, 0}));
        CHECK(producer.consumer_uses_timelines(*id).value());
        auto f = consumer->acquire(1s);
        REQUIRE_MESSAGE(f, (f ? "" : f.error().message()));
        CHECK_FALSE(f->acquire_fence.has_value());
        REQUIRE(f->acquire_point.has_value());
        CHECK(*f->acquire_point == seq * 10);
        CHECK(consumer->wait_ready(*f, 20ms).value() == WaitStatus::timed_out);
        REQUIRE(producer.acquire_timeline()->signal(seq * 10));
        CHECK(consumer->wait_ready(*f, 1s).value() == WaitStatus::ready);
        auto map = Mapping::map(f->desc->planes[0].buffer, Access::read);
        REQUIRE(map);
        CHECK(reinterpret_cast<const std::uint32_t*>(map->data())[77] == pattern(seq, 77));
        // Released with a point that is not signalled: the buffer stays out of rotation.
        REQUIRE(consumer->release_point(f->buffer, seq));
        REQUIRE(producer.dispatch(20ms));
        CHECK(producer.free_count() == 0);
        CHECK(producer.dequeue(30ms).error().is_errno(ETIMEDOUT));
        REQUIRE(consumer->release_timeline()->signal(seq));
        dispatch_until(producer, [&] { return producer.free_count() == 1; });
    }
    CHECK(producer.stats().release_points == 3);
    // Points must rise on both ends: the application is refused before anything is sent.
    auto b = producer.dequeue(1s);
    REQUIRE(b);
    auto back = producer.queue_point(*b, 30, {4, 0});
    CHECK(back.error().is(Errc::invalid_argument));
    CHECK(back.error().message().find("does not rise above the last one, 30") != std::string::npos);
    auto skip = producer.queue_point(*b, 30 + queue::max_point_step + 1, {4, 0});
    CHECK(skip.error().message().find("skips") != std::string::npos);
    REQUIRE(producer.cancel(*b));
}

TEST_CASE_FIXTURE(FdLeakCheck, "queue: a release point the watcher cannot take keeps the buffer out of rotation until it signals") {
    // Before Linux 6.6 (no DRM_IOCTL_SYNCOBJ_EVENTFD) a point nobody submitted yet cannot be
    // watched. The buffer must not come back then (the consumer's GPU may still read it), nor
    // the consumer be dropped for releasing normally: the producer polls the point instead.
    const auto device = timeline_device();
    std::vector<std::string> lost;
    auto producer = make_producer(device.get(), 1, &lost);
    auto pair = queue::Connection::local_pair();
    REQUIRE(pair);
    REQUIRE(producer.add_consumer(std::move(pair->first)));
    auto consumer = queue::Consumer::create(std::move(pair->second), queue::ConsumerOptions{device.get()});
    REQUIRE(consumer);
    REQUIRE(consumer->dispatch());
    REQUIRE(consumer->uses_timelines());
    auto b = producer.dequeue(1s);
    REQUIRE(b);
    REQUIRE(producer.queue_point(*b, 1, {1, 0}));
    REQUIRE(producer.acquire_timeline()->signal(1));
    auto f = consumer->acquire(1s);
    REQUIRE(f);
    REQUIRE(consumer->release_point(f->buffer, 5));  // nobody submitted point 5 yet
    std::size_t free_after_release = 99;
    const auto failure = test::run_with_ioctl_faults({{DRM_IOCTL_SYNCOBJ_EVENTFD, EINVAL}}, [&] {
        for (int i = 0; i < 5 && producer.stats().release_points == 0; ++i) (void)producer.dispatch(20ms);
        free_after_release = producer.free_count();
    });
    REQUIRE_MESSAGE(failure.empty(), failure);
    CHECK(producer.stats().release_points == 1);
    CHECK(free_after_release == 0);  // before the fix: 1, the buffer back while the point was pending
    CHECK(lost.empty());             // before the fix: the consumer was dropped
    CHECK(producer.dequeue(60ms).error().is_errno(ETIMEDOUT));
    REQUIRE(consumer->release_timeline()->signal(5));
    dispatch_until(producer, [&] { return producer.free_count() == 1; });
    CHECK(lost.empty());
}

TEST_CASE_FIXTURE(FdLeakCheck, "queue: a producer with timelines and a consumer without stay on sync_files, the point exported as one") {
    const auto device = timeline_device();
    std::vector<std::string> lost;
    auto producer = make_producer(device.get(), 1, &lost);
    auto pair = queue::Connection::local_pair();
    REQUIRE(pair);
    auto id = producer.add_consumer(std::move(pair->first));
    REQUIRE(id);
    auto consumer = queue::Consumer::create(std::move(pair->second));
    REQUIRE(consumer);
    REQUIRE(consumer->dispatch());  // the offer is read and declined (its fd closed)
    CHECK_FALSE(consumer->uses_timelines());
    CHECK(consumer->acquire_timeline() == nullptr);
    auto b = producer.dequeue(1s);
    REQUIRE(b);
    // A consumer on sync_files needs a fence: an unsubmitted point cannot be one.
    auto early = producer.queue_point(*b, 1, {1, 0});
    REQUIRE_FALSE(early);
    CHECK(early.error().is(Errc::not_found));
    // A vgem fence stands for point 1: the consumer gets it as a sync_file that waits for it.
    test::Vgem vgem;
    auto fenced = vgem.create_buffer();
    const auto fence_id = vgem.attach_fence(true);
    auto sf = fenced.export_sync_file(Access::write);
    REQUIRE(sf);
    REQUIRE(producer.acquire_timeline()->import_sync_file(1, *sf));
    REQUIRE(producer.queue_point(*b, 1, {1, 0}));
    CHECK_FALSE(producer.consumer_uses_timelines(*id).value());
    auto f = consumer->acquire(1s);
    REQUIRE(f);
    CHECK_FALSE(f->acquire_point.has_value());
    REQUIRE(f->acquire_fence.has_value());
    CHECK(consumer->wait_ready(*f, 20ms).value() == WaitStatus::timed_out);
    vgem.signal(fence_id);
    CHECK(consumer->wait_ready(*f, 1s).value() == WaitStatus::ready);
    CHECK(consumer->release_point(f->buffer, 1).error().is(Errc::unsupported));
    REQUIRE(consumer->release(f->buffer));
    dispatch_until(producer, [&] { return producer.free_count() == 1; });
    CHECK(lost.empty());
}

TEST_CASE_FIXTURE(FdLeakCheck, "queue: a consumer with timelines and a producer without stay on sync_files, the release point sent as one") {
    const auto device = timeline_device();
    auto p = queue::Producer::create();
    REQUIRE(p);
    REQUIRE(p->add_buffer(make_buffer()));
    auto pair = queue::Connection::local_pair();
    REQUIRE(pair);
    REQUIRE(p->add_consumer(std::move(pair->first)));
    auto consumer = queue::Consumer::create(std::move(pair->second), queue::ConsumerOptions{device.get()});
    REQUIRE(consumer);
    auto b = p->dequeue(1s);
    REQUIRE(b);
    REQUIRE(p->queue(*b, std::nullopt, {1, 0}));
    auto f = consumer->acquire(1s);
    REQUIRE(f);
    CHECK_FALSE(consumer->uses_timelines());
    CHECK_FALSE(f->acquire_point.has_value());
    // Without a negotiated timeline a release point must already stand for a fence.
    CHECK(consumer->release_point(f->buffer, 1).error().is(Errc::not_found));
    test::Vgem vgem;
    auto fenced = vgem.create_buffer();
    const auto fence_id = vgem.attach_fence(true);
    auto sf = fenced.export_sync_file(Access::write);
    REQUIRE(sf);
    REQUIRE(consumer->release_timeline()->import_sync_file(1, *sf));
    REQUIRE(consumer->release_point(f->buffer, 1));
    REQUIRE(p->dispatch(50ms));
    CHECK(p->free_count() == 0);  // the sync_file of point 1 is still pending
    vgem.signal(fence_id);
    dispatch_until(*p, [&] { return p->free_count() == 1; });
}

TEST_CASE_FIXTURE(FdLeakCheck, "queue: a hello whose timeline fd is not a syncobj fails the consumer, naming what the fd is") {
    const auto device = timeline_device();
    auto pair = queue::Connection::local_pair();
    REQUIRE(pair);
    int pipe_fds[2];
    REQUIRE(::pipe2(pipe_fds, O_CLOEXEC) == 0);
    raw_send(pair->first, wire::Hello{0, wire::hello_flag_timeline}, {pipe_fds[0]});
    ::close(pipe_fds[0]);
    ::close(pipe_fds[1]);
    auto consumer = queue::Consumer::create(std::move(pair->second), queue::ConsumerOptions{device.get()});
    REQUIRE(consumer);
    auto f = consumer->acquire(100ms);
    REQUIRE_FALSE(f);
    CHECK(f.error().is(Errc::invalid_argument));
    CHECK_MESSAGE(f.error().message().find("not a DRM syncobj: it is pipe:") != std::string::npos, f.error().message());
    // A dma-buf is refused too (the kernel would also refuse it; the library does not ask it).
    auto pair2 = queue::Connection::local_pair();
    REQUIRE(pair2);
    const auto buf = make_buffer();
    raw_send(pair2->first, wire::Hello{0, wire::hello_flag_timeline}, {buf.planes[0].buffer.fd()});
    auto consumer2 = queue::Consumer::create(std::move(pair2->second), queue::ConsumerOptions{device.get()});
    REQUIRE(consumer2);
    auto f2 = consumer2->dispatch();
    REQUIRE_FALSE(f2);
    CHECK_MESSAGE(f2.error().message().find("/dmabuf:") != std::string::npos, f2.error().message());
}

TEST_CASE_FIXTURE(FdLeakCheck, "queue: a producer whose acquire points go back, skip absurdly or come without an offer fails the consumer") {
    const auto device = timeline_device();
    auto offered = Timeline::create(device.get());
    REQUIRE(offered);
    auto buf = make_buffer();
    wire::Announce a;
    a.buffer = 0;
    a.width = side;
    a.height = side;
    a.fourcc = fourcc::XRGB8888;
    a.plane_count = 1;
    a.planes[0] = {0, 0, side * 4};
    a.fd_count = 1;
    struct Case {
        const char* name;
        bool offer;
        std::vector<std::uint64_t> points;
        const char* expect;
    };
    const Case cases[] = {
        {"back", true, {5, 5}, "does not rise above the last one, 5"},
        {"skip", true, {3, 3 + queue::max_point_step + 1}, "skips"},
        {"first zero", true, {0}, "points start at 1"},
        {"no offer", false, {1}, "offered no timeline"},
    };
    for (const Case& c : cases) {
        CAPTURE(std::string(c.name));
        auto pair = queue::Connection::local_pair();
        REQUIRE(pair);
        auto fd = offered->export_fd();
        REQUIRE(fd);
        if (c.offer) raw_send(pair->first, wire::Hello{0, wire::hello_flag_timeline}, {fd->get()});
        else raw_send(pair->first, wire::Hello{0, 0});
        raw_send(pair->first, a, {buf.planes[0].buffer.fd()});
        auto consumer = queue::Consumer::create(std::move(pair->second), queue::ConsumerOptions{device.get()});
        REQUIRE(consumer);
        bool first = true;
        for (std::uint64_t point : c.points) {
            raw_send(pair->first, wire::Frame{0, wire::flag_point, 1, 0, point});
            if (first && c.points.size() > 1) {
                auto f = consumer->acquire(100ms);
                REQUIRE_MESSAGE(f, (f ? "" : f.error().message()));
                CHECK(f->acquire_point == point);
                REQUIRE(consumer->release(f->buffer));
                auto answer = raw_receive(pair->first);  // the consumer's release timeline
                REQUIRE(answer);
                CHECK(std::holds_alternative<wire::ReleaseTimeline>(wire::parse_message(answer->view(), answer->fds.size()).value()));
                CHECK(raw_receive(pair->first).has_value());  // its release
            }
            first = false;
        }
        auto f = consumer->acquire(100ms);
        REQUIRE_FALSE(f);
        CHECK(f.error().is(Errc::invalid_argument));
        CHECK_MESSAGE(f.error().message().find(c.expect) != std::string::npos, f.error().message());
    }
    // A consumer that joins late meets a timeline far past 0: its first point is taken as it is,
    // the next ones are bounded again.
    auto pair = queue::Connection::local_pair();
    REQUIRE(pair);
    auto fd = offered->export_fd();
    REQUIRE(fd);
    raw_send(pair->first, wire::Hello{0, wire::hello_flag_timeline}, {fd->get()});
    raw_send(pair->first, a, {buf.planes[0].buffer.fd()});
    auto late = queue::Consumer::create(std::move(pair->second), queue::ConsumerOptions{device.get()});
    REQUIRE(late);
    const std::uint64_t far = 5 * queue::max_point_step;
    raw_send(pair->first, wire::Frame{0, wire::flag_point, 1, 0, far});
    auto f = late->acquire(100ms);
    REQUIRE_MESSAGE(f, (f ? "" : f.error().message()));
    CHECK(f->acquire_point == far);
}

TEST_CASE_FIXTURE(FdLeakCheck, "queue: a consumer whose release points go back or skip, or that sends a second or unoffered timeline, is dropped") {
    const auto device = timeline_device();
    struct Case {
        const char* name;
        bool with_timeline;  // the producer offers timelines
        int timelines;       // release timelines the consumer sends
        std::vector<std::uint64_t> points;
        const char* expect;
    };
    const Case cases[] = {
        {"back", true, 1, {4, 2}, "does not rise above the last one, 4"},
        {"same", true, 1, {4, 4}, "does not rise above the last one, 4"},
        {"skip", true, 1, {4, 5 + queue::max_point_step}, "skips"},
        {"no timeline", true, 0, {1}, "without a release timeline"},
        {"twice", true, 2, {}, "a second time"},
        {"unoffered", false, 1, {}, "none was offered"},
        {"not a syncobj", true, -1, {}, "not a DRM syncobj"},
    };
    for (const Case& c : cases) {
        CAPTURE(std::string(c.name));
        auto theirs = Timeline::create(device.get());
        REQUIRE(theirs);
        std::vector<std::string> lost;
        auto producer = make_producer(c.with_timeline ? device.get() : -1, 1, &lost);
        auto pair = queue::Connection::local_pair();
        REQUIRE(pair);
        REQUIRE(producer.add_consumer(std::move(pair->first)));
        auto hello = raw_receive(pair->second);
        REQUIRE(hello);
        REQUIRE(raw_receive(pair->second));  // the announce
        auto fd = theirs->export_fd();
        REQUIRE(fd);
        int pipe_fds[2];
        REQUIRE(::pipe2(pipe_fds, O_CLOEXEC) == 0);
        if (c.timelines < 0) raw_send(pair->second, wire::ReleaseTimeline{}, {pipe_fds[1]});
        for (int i = 0; i < c.timelines; ++i) raw_send(pair->second, wire::ReleaseTimeline{}, {fd->get()});
        ::close(pipe_fds[0]);
        ::close(pipe_fds[1]);
        for (std::uint64_t point : c.points) {
            if (!lost.empty()) break;
            auto b = producer.dequeue(1s);
            REQUIRE_MESSAGE(b, (b ? "" : b.error().message()));
            REQUIRE(producer.queue(*b, std::nullopt, {1, 0}));
            REQUIRE(raw_receive(pair->second));  // the frame
            raw_send(pair->second, wire::Release{0, wire::flag_point, point});
            REQUIRE(producer.dispatch(100ms));
            if (lost.empty()) {
                // The honest first point: signal it so the buffer comes back.
                REQUIRE(theirs->signal(point));
                dispatch_until(producer, [&] { return producer.free_count() == 1 || !lost.empty(); });
            }
        }
        dispatch_until(producer, [&] { return !lost.empty(); });
        CHECK(producer.consumer_count() == 0);
        REQUIRE(lost.size() == 1);
        CHECK_MESSAGE(lost[0].find(c.expect) != std::string::npos, lost[0]);
    }
}

TEST_CASE_FIXTURE(FdLeakCheck, "queue across processes: a consumer process on timelines receives every frame's pixels, gated by points both ways") {
    const auto device = timeline_device();
    std::vector<std::string> lost;
    auto producer = make_producer(device.get(), 2, &lost);
    auto link = socket_link();
    Peer child({"--fd", "3", "timeline-stream", "6"}, link.there.get());
    link.there.reset();
    auto id = producer.add_consumer(std::move(link.here));
    REQUIRE(id);
    CHECK(child.line() == "ready");
    dispatch_until(producer, [&] { return producer.consumer_uses_timelines(*id) && *producer.consumer_uses_timelines(*id); });
    for (std::uint64_t seq = 1; seq <= 6; ++seq) {
        auto b = producer.dequeue(20s);
        REQUIRE_MESSAGE(b, (b ? "" : b.error().message()));
        // The point is queued first and signalled only after the pixels are written: the
        // consumer's wait on the point is what keeps it from reading early.
        REQUIRE(producer.queue_point(*b, seq, {seq, 0}));
        fill(*producer.buffer(*b), seq);
        REQUIRE(producer.acquire_timeline()->signal(seq));
    }
    dispatch_until(producer, [&] { return producer.free_count() == 2; });
    CHECK(producer.stats().release_points == 6);
    { queue::Producer closing(std::move(producer)); }  // the child sees the hang-up
    child.expect_ok();
    CHECK(lost.empty());
}

TEST_CASE_FIXTURE(FdLeakCheck, "queue across processes: a consumer that dies holding a release point nobody submitted is dropped and its buffer comes back") {
    const auto device = timeline_device();
    std::vector<std::string> lost;
    auto producer = make_producer(device.get(), 1, &lost);
    auto link = socket_link();
    Peer child({"--fd", "3", "timeline-die"}, link.there.get());
    link.there.reset();
    auto id = producer.add_consumer(std::move(link.here));
    REQUIRE(id);
    dispatch_until(producer, [&] { return producer.consumer_uses_timelines(*id) && *producer.consumer_uses_timelines(*id); });
    auto b = producer.dequeue(1s);
    REQUIRE(b);
    fill(*producer.buffer(*b), 1);
    REQUIRE(producer.acquire_timeline()->signal(1));
    REQUIRE(producer.queue_point(*b, 1, {1, 0}));
    CHECK(child.line() == "released");
    // Released with point 1, which nothing submitted: the buffer is not free while the child lives.
    REQUIRE(producer.dispatch(50ms));
    CHECK(producer.free_count() == 0);
    child.tell("die");
    CHECK(child.wait() == 128 + SIGKILL);
    dispatch_until(producer, [&] { return !lost.empty(); });
    CHECK_MESSAGE(lost[0].find("closed the connection") != std::string::npos, lost[0]);
    dispatch_until(producer, [&] { return producer.free_count() == 1; });
    CHECK(producer.stats().abandoned_points == 1);
    auto again = producer.dequeue(1s);
    CHECK(again);
}

TEST_CASE_FIXTURE(FdLeakCheck, "queue across processes: a producer that dies holding an acquire point nobody submitted gives the consumer ECONNRESET") {
    const auto device = timeline_device();
    auto link = socket_link();
    Peer child({"--fd", std::to_string(3), "produce-timeline-die"}, link.there.get());
    link.there.reset();
    auto consumer = queue::Consumer::create(std::move(link.here), queue::ConsumerOptions{device.get()});
    REQUIRE(consumer);
    auto f = consumer->acquire(20s);
    REQUIRE_MESSAGE(f, (f ? "" : f.error().message()));
    CHECK(child.line() == "queued");
    REQUIRE(f->acquire_point.has_value());
    CHECK(consumer->wait_ready(*f, 20ms).value() == WaitStatus::timed_out);  // the producer lives: it may still submit
    child.tell("die");
    CHECK(child.wait() == 128 + SIGKILL);
    auto w = consumer->wait_ready(*f, 20ms);
    REQUIRE_FALSE(w);
    CHECK(w.error().is_errno(ECONNRESET));
    CHECK(consumer->acquire(100ms).error().is_errno(ECONNRESET));
    REQUIRE_FALSE(consumer->release_point(f->buffer, 1));
}

}  // TEST_SUITE
