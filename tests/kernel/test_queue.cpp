// SPDX-License-Identifier: MIT
// The buffer queue between real processes: this process produces (udmabuf buffers written by the
// CPU), tests/kernel/queue_peer consumes (or attacks). Every child checks what it received and its
// own fds, and exits 0 only when all held; this side checks its fds with FdLeakCheck.
#include <dmabridge/alloc/udmabuf.hpp>
#include <dmabridge/kernel/cpu_access.hpp>
#include <dmabridge/queue/consumer.hpp>
#include <dmabridge/queue/producer.hpp>

#include <chrono>
#include <csignal>
#include <optional>
#include <cstring>
#include <string>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include <dmabridge/vulkan/import_cache.hpp>

#include "fd_count.hpp"
#include "queue_buffers.hpp"
#include "syscall_filter.hpp"
#include "queue_peer_process.hpp"
#include "vgem.hpp"
#include "vk_fixture.hpp"
#include "vk_object_count.hpp"

using namespace dmabridge;
using namespace std::chrono_literals;
using dmabridge::test::FdLeakCheck;
using dmabridge::test::Peer;
using dmabridge::test::socket_link;


namespace {

constexpr std::uint32_t side = test::queue_side;
using test::make_queue_buffers;
std::uint32_t pattern(std::uint64_t s, std::size_t i) { return test::queue_pattern(s, i); }
std::vector<BufferDesc> make_buffers(std::size_t count) { return make_queue_buffers(count); }
void fill(const BufferDesc& desc, std::uint64_t sequence) { test::fill_queue_pattern(desc, sequence); }

void produce(queue::Producer& p, std::uint64_t sequence, bool explicit_fence = false) {
    auto index = p.dequeue(20s);
    REQUIRE_MESSAGE(index, (index ? "" : index.error().message()));
    fill(*p.buffer(*index), sequence);
    std::optional<SyncFile> fence;
    if (explicit_fence) {
        auto f = p.buffer(*index)->planes[0].buffer.export_sync_file(Access::write);
        REQUIRE(f);
        fence = std::move(*f);
    }
    REQUIRE(p.queue(*index, std::move(fence), {sequence, static_cast<std::int64_t>(sequence) * 1000}));
}

template <typename Pred>
void dispatch_until(queue::Producer& p, Pred done, std::chrono::milliseconds timeout = 20s) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (!done()) {
        REQUIRE_MESSAGE(std::chrono::steady_clock::now() < end, "the producer waited in vain");
        REQUIRE(p.dispatch(100ms));
    }
}

// The Vulkan device that imports (shared with the other kernel tests) exists before fds are counted.
struct VkReady {
    VkReady() { test::device_b(); }
};
struct VkReadyLeakCheck : VkReady, FdLeakCheck {};

queue::Producer make_producer(std::size_t buffers, queue::Mode mode = queue::Mode::fifo,
                              std::vector<std::string>* lost = nullptr) {
    queue::ProducerOptions o;
    o.mode = mode;
    if (lost) o.on_consumer_lost = [lost](queue::ConsumerId, const Error& e) { lost->push_back(e.message()); };
    auto p = queue::Producer::create(o);
    REQUIRE(p);
    for (auto& d : make_buffers(buffers)) REQUIRE(p->add_buffer(std::move(d)));
    return std::move(*p);
}

}  // namespace

TEST_SUITE_BEGIN("queue");

TEST_CASE_FIXTURE(FdLeakCheck, "in one process the queue carries frames and their pixels over the in-process channel") {
    auto producer = make_producer(2);
    auto pair = queue::Connection::local_pair();
    REQUIRE(pair);
    REQUIRE(producer.add_consumer(std::move(pair->first)));
    auto consumer = queue::Consumer::create(std::move(pair->second));
    REQUIRE(consumer);
    for (std::uint64_t seq = 1; seq <= 4; ++seq) {
        produce(producer, seq, seq % 2 == 0);
        auto f = consumer->acquire(1s);
        REQUIRE_MESSAGE(f, (f ? "" : f.error().message()));
        CHECK(f->info.sequence == seq);
        CHECK(f->acquire_fence.has_value() == (seq % 2 == 0));
        REQUIRE(consumer->wait_ready(*f, 1s));
        auto map = Mapping::map(f->desc->planes[0].buffer, Access::read);
        REQUIRE(map);
        CHECK(reinterpret_cast<const std::uint32_t*>(map->data())[77] == pattern(seq, 77));
        // The same buffer comes back as the same DmaBuf (fd) every time.
        CHECK(f->desc == consumer->buffer(f->buffer));
        REQUIRE(consumer->release(f->buffer));
    }
    CHECK(consumer->release(0).error().message().find("has not acquired") != std::string::npos);
    dispatch_until(producer, [&] { return producer.free_count() == 2; });
    CHECK(producer.stats().releases == 4);

    // Every buffer dequeued by the application: nothing can bring one back, so even a wait
    // without limit fails at once instead of hanging; a cancel makes one free again.
    auto a = producer.dequeue(0ms);
    auto b = producer.dequeue(0ms);
    REQUIRE(a);
    REQUIRE(b);
    const auto t0 = std::chrono::steady_clock::now();
    auto stuck = producer.dequeue(dmabridge::forever);
    REQUIRE_FALSE(stuck);
    CHECK(stuck.error().is_errno(EDEADLK));
    CHECK(stuck.error().message().find("all 2 buffers are dequeued") != std::string::npos);
    CHECK(std::chrono::steady_clock::now() - t0 < 1s);
    REQUIRE(producer.cancel(*a));
    auto again = producer.dequeue(dmabridge::forever);
    REQUIRE(again);
    CHECK(*again == *a);
    REQUIRE(producer.cancel(*again));
    REQUIRE(producer.cancel(*b));
    CHECK(producer.free_count() == 2);

    // Empty objects (moved from, default-constructed, or given one) fail at once with
    // Errc::empty_object, the library's one code for them.
    {
        auto idx = producer.dequeue(0ms);
        REQUIRE(idx);
        auto fence = producer.buffer(*idx)->planes[0].buffer.export_sync_file(Access::write);
        REQUIRE(fence);
        const SyncFile kept = std::move(*fence);  // *fence is now empty
        CHECK(producer.queue(*idx, std::move(*fence), {}).error().is(Errc::empty_object));
        REQUIRE(producer.cancel(*idx));
        produce(producer, 9);
        auto f = consumer->acquire(1s);
        REQUIRE(f);
        CHECK(consumer->release(f->buffer, std::move(*fence)).error().is(Errc::empty_object));
        REQUIRE(consumer->release(f->buffer));
    }
    auto moved_producer = std::move(producer);
    auto moved_consumer = std::move(*consumer);
    CHECK(producer.dequeue(0ms).error().is(Errc::empty_object));
    CHECK(producer.fd() == -1);
    CHECK(consumer->acquire(0ms).error().is(Errc::empty_object));
    CHECK(consumer->release(0).error().is(Errc::empty_object));
    CHECK(consumer->dispatch(0ms).error().is(Errc::empty_object));
    CHECK(queue::Consumer::create(queue::Connection()).error().is(Errc::empty_object));
    CHECK(moved_producer.add_consumer(queue::Connection()).error().is(Errc::empty_object));
    CHECK(queue::Connection().peer_credentials().error().is(Errc::empty_object));
    CHECK(queue::Connection().release_socket().error().is(Errc::empty_object));
    CHECK(queue::Connection::from_socket(UniqueFd()).error().is(Errc::empty_object));
    const std::string path = "/tmp/dmabridge-queue-empty-" + std::to_string(::getpid()) + ".sock";
    auto listener = queue::Listener::listen(path);
    REQUIRE(listener);
    auto moved_listener = std::move(*listener);
    CHECK(listener->accept().error().is(Errc::empty_object));
}

TEST_CASE_FIXTURE(FdLeakCheck, "descriptions handed out stay valid while 63 more buffers are added and announced, and across moves") {
    auto producer = make_producer(1);
    auto pair = queue::Connection::local_pair();
    REQUIRE(pair);
    REQUIRE(producer.add_consumer(std::move(pair->first)));
    auto consumer = queue::Consumer::create(std::move(pair->second));
    REQUIRE(consumer);
    produce(producer, 1);
    auto f = consumer->acquire(1s);
    REQUIRE(f);
    const BufferDesc* produced = producer.buffer(0);
    const BufferDesc* received = consumer->buffer(0);
    REQUIRE(produced);
    REQUIRE(received == f->desc);
    const int produced_fd = produced->planes[0].buffer.fd();
    const int received_fd = received->planes[0].buffer.fd();
    // Each add_buffer and each announcement grows the storage behind those pointers.
    for (auto& d : make_buffers(63)) REQUIRE(producer.add_buffer(std::move(d)));
    REQUIRE(consumer->dispatch(0ms));
    CHECK(consumer->buffer_count() == 64);
    auto moved_producer = std::move(producer);
    auto moved_consumer = std::move(*consumer);
    for (const BufferDesc* d : {produced, received}) {
        REQUIRE(d->planes.size() == 1);
        CHECK(d->width == side);
        CHECK(d->fourcc == fourcc::XRGB8888);
    }
    CHECK(moved_producer.buffer(0) == produced);
    CHECK(moved_consumer.buffer(0) == received);
    REQUIRE(produced->planes[0].buffer.fd() == produced_fd);
    REQUIRE(received->planes[0].buffer.fd() == received_fd);
    auto map = Mapping::map(f->desc->planes[0].buffer, Access::read);
    REQUIRE(map);
    CHECK(reinterpret_cast<const std::uint32_t*>(map->data())[77] == pattern(1, 77));
    REQUIRE(moved_consumer.release(f->buffer));
}

TEST_CASE_FIXTURE(FdLeakCheck, "an in-process channel keeps its messages and their fences in order while its backlog grows and wraps") {
    // 20 buffers: the hello and 20 announcements wait unread, then 20 frames with fences (the
    // channel's ring grows from 8 slots past 32); half are taken and 10 more frames queued behind
    // the rest, into the slots the taken ones left (the ring wraps).
    auto producer = make_producer(20);
    auto pair = queue::Connection::local_pair();
    REQUIRE(pair);
    REQUIRE(producer.add_consumer(std::move(pair->first)));
    auto consumer = queue::Consumer::create(std::move(pair->second));
    REQUIRE(consumer);
    std::uint64_t seq = 0;
    for (int i = 0; i < 20; ++i) produce(producer, ++seq, true);
    std::uint64_t expected = 1;
    const auto take = [&] {
        auto f = consumer->acquire(1s);
        REQUIRE_MESSAGE(f, (f ? "" : f.error().message()));
        CHECK(f->info.sequence == expected);
        REQUIRE(f->acquire_fence);  // each frame's own fence came with it
        auto map = Mapping::map(f->desc->planes[0].buffer, Access::read);
        REQUIRE(map);
        CHECK(reinterpret_cast<const std::uint32_t*>(map->data())[5] == pattern(expected, 5));
        ++expected;
        REQUIRE(consumer->release(f->buffer));
    };
    for (int i = 0; i < 10; ++i) take();
    dispatch_until(producer, [&] { return producer.free_count() == 10; });
    for (int i = 0; i < 10; ++i) produce(producer, ++seq, true);
    for (int i = 0; i < 20; ++i) take();
    CHECK(expected == 31);
}

TEST_CASE_FIXTURE(VkReadyLeakCheck, "a stream crosses from another process with its pixels, and the consumer's import cache hits from the second time on") {
    auto counted = vulkan::Device::attach(test::counted_handles(test::device_b().context()),
                                          vulkan::Capability::import_memory | vulkan::Capability::modifiers);
    REQUIRE(counted);
    const auto vk_objects = test::live_vulkan_objects();
    auto link = socket_link();
    Peer child({"--fd", "3", "produce", "8"}, link.there.get());
    link.there.reset();
    {
        auto consumer = queue::Consumer::create(std::move(link.here));
        REQUIRE(consumer);
        vulkan::ImportCache cache(*counted);
        for (std::uint64_t seq = 1; seq <= 8; ++seq) {
            auto f = consumer->acquire(60s);
            REQUIRE_MESSAGE(f, (f ? "" : f.error().message()));
            CHECK(f->info.sequence == seq);
            CHECK(f->info.timestamp_ns == static_cast<std::int64_t>(seq) * 1000);
            CHECK(f->acquire_fence.has_value() == (seq % 2 == 0));
            REQUIRE(consumer->wait_ready(*f, 10s));
            {
                const DmaBuf& buf = f->desc->planes[0].buffer;
                auto map = Mapping::map(buf, Access::read);
                REQUIRE(map);
                auto access = CpuAccess::begin(buf, Access::read);
                REQUIRE(access);
                const auto* p = reinterpret_cast<const std::uint32_t*>(map->data());
                std::size_t wrong = 0;
                for (std::size_t i = 0; i < side * side; ++i) wrong += p[i] != pattern(seq, i);
                CHECK(wrong == 0);
            }
            auto image = cache.import(*f->desc);
            REQUIRE_MESSAGE(image, (image ? "" : image.error().message()));
            REQUIRE(consumer->release(f->buffer));
        }
        // Three buffers: each imported once, found again for every later frame.
        CHECK(cache.stats().misses == 3);
        CHECK(cache.stats().hits == 5);
        CHECK(consumer->buffer_count() == 3);
        CHECK(child.line() == "released 8");
        child.expect_ok();
    }
    CHECK(test::live_vulkan_objects() == vk_objects);
}

TEST_CASE_FIXTURE(FdLeakCheck, "FIFO: the producer waits for a free buffer and times out while the consumer holds them all") {
    auto producer = make_producer(2);
    auto link = socket_link();
    Peer child({"--fd", "3", "hold", "2"}, link.there.get());
    link.there.reset();
    REQUIRE(producer.add_consumer(std::move(link.here)));
    produce(producer, 1);
    produce(producer, 2);
    CHECK(child.line() == "held");
    CHECK(producer.free_count() == 0);
    const auto t0 = std::chrono::steady_clock::now();
    auto none = producer.dequeue(100ms);
    REQUIRE_FALSE(none);
    CHECK(std::chrono::steady_clock::now() - t0 >= 100ms);
    CHECK(none.error().is_errno(ETIMEDOUT));
    CHECK(none.error().message().find("2 buffers, 2 queued to consumers") != std::string::npos);
    child.tell("go");
    for (std::uint64_t seq = 3; seq <= 5; ++seq) produce(producer, seq);
    dispatch_until(producer, [&] { return producer.stats().releases == 5; });
    { auto gone = std::move(producer); }
    CHECK(child.line() == "done frames=3");
    child.expect_ok();
}

TEST_CASE_FIXTURE(FdLeakCheck, "mailbox: a newer frame replaces the ones the consumer did not acquire, and they come back") {
    auto producer = make_producer(4, queue::Mode::mailbox);
    auto link = socket_link();
    Peer child({"--fd", "3", "mailbox"}, link.there.get());
    link.there.reset();
    REQUIRE(producer.add_consumer(std::move(link.here)));
    for (std::uint64_t seq = 1; seq <= 3; ++seq) produce(producer, seq);
    CHECK(producer.free_count() == 1);
    child.tell("go");
    CHECK(child.line() == "seq=3 replaced=2");
    dispatch_until(producer, [&] { return producer.free_count() == 4; });
    CHECK(producer.stats().releases == 3);
    { auto gone = std::move(producer); }
    CHECK(child.line() == "done frames=0");
    child.expect_ok();
}

TEST_CASE_FIXTURE(FdLeakCheck, "fan-out: three consumer processes each receive every frame; a buffer is free once all released it") {
    auto producer = make_producer(3);
    std::vector<std::unique_ptr<Peer>> children;
    for (int i = 0; i < 3; ++i) {
        auto link = socket_link();
        children.push_back(std::make_unique<Peer>(std::vector<std::string>{"--fd", "3", "stream", "6"}, link.there.get()));
        link.there.reset();
        REQUIRE(producer.add_consumer(std::move(link.here)));
    }
    for (std::uint64_t seq = 1; seq <= 6; ++seq) produce(producer, seq, seq == 3);
    for (auto& c : children) c->expect_ok();
    dispatch_until(producer, [&] { return producer.consumer_count() == 0; });
    CHECK(producer.stats().releases == 18);
    CHECK(producer.free_count() == 3);
}

TEST_CASE_FIXTURE(FdLeakCheck, "a consumer killed mid-frame: its buffer returns once the GPU is done with it, the other consumer goes on") {
    std::vector<std::string> lost;
    auto producer = make_producer(3, queue::Mode::fifo, &lost);
    auto link_a = socket_link();
    Peer victim({"--fd", "3", "hold", "1"}, link_a.there.get());
    link_a.there.reset();
    REQUIRE(producer.add_consumer(std::move(link_a.here)));
    auto link_b = socket_link();
    Peer survivor({"--fd", "3", "stream", "6"}, link_b.there.get());
    link_b.there.reset();
    REQUIRE(producer.add_consumer(std::move(link_b.here)));

    produce(producer, 1);
    CHECK(victim.line() == "held");
    // The victim's GPU still reads the buffer: a vgem fence on it, unsignalled.
    test::Vgem vgem;
    const std::uint32_t handle = vgem.import_buffer(producer.buffer(0)->planes[0].buffer);
    const std::uint32_t gpu = vgem.attach_fence(false, handle);
    REQUIRE(::kill(victim.pid(), SIGKILL) == 0);
    CHECK(victim.wait() == 128 + SIGKILL);
    for (std::uint64_t seq = 2; seq <= 6; ++seq) produce(producer, seq);
    survivor.expect_ok();
    dispatch_until(producer, [&] { return producer.stats().consumers_lost == 2; });
    REQUIRE(lost.size() == 2);
    // Found dead by a failed send of frame 2 or by its hang-up, whichever came first.
    CHECK_MESSAGE(lost[0].find("consumer 1") != std::string::npos, lost[0]);
    CHECK_MESSAGE((lost[0].find("closed the connection") != std::string::npos ||
                   lost[0].find("Broken pipe") != std::string::npos ||
                   lost[0].find("Connection reset") != std::string::npos), lost[0]);
    CHECK(producer.stats().buffers_reclaimed == 0);
    CHECK(producer.free_count() == 2);
    vgem.signal(gpu);
    dispatch_until(producer, [&] { return producer.stats().buffers_reclaimed == 1; });
    CHECK(producer.free_count() == 3);
}

TEST_CASE_FIXTURE(FdLeakCheck, "a hostile consumer's crafted messages are each refused, its connection closed, and the producer goes on") {
    std::vector<std::string> lost;
    auto producer = make_producer(2, queue::Mode::fifo, &lost);
    const std::string path = "/tmp/dmabridge-queue-" + std::to_string(::getpid()) + ".sock";
    auto listener = queue::Listener::listen(path);
    REQUIRE(listener);
    Peer child({"--connect", path, "hostile"});
    const std::vector<std::pair<std::string, std::string>> expected = {
        {"garbage", "bad magic"},
        {"version", "version 9, this side speaks 1"},
        {"truncated", "shorter than the 16-byte header"},
        {"oversize", "longer than the"},
        {"unknown-id", "released unknown buffer 99"},
        {"never-queued", "released buffer 0 which it does not hold"},
        {"wrong-direction", "sent a hello, only release is allowed"},
        {"not-a-sync-file", "release fence of buffer"},
        {"too-many-fds", "fds"},
        {"fd-overcount", "header announces 0 fds but 1 arrived"},
        {"double-release", "which it does not hold (never queued to it, or released twice)"},
    };
    std::uint64_t seq = 0;
    for (std::size_t i = 0; i < expected.size(); ++i) {
        CAPTURE(expected[i].first);
        pollfd p{listener->fd(), POLLIN, 0};
        REQUIRE(::poll(&p, 1, 20000) == 1);
        auto c = listener->accept();
        REQUIRE(c);
        auto id = producer.add_consumer(std::move(*c));
        REQUIRE(id);
        auto creds = producer.consumer_credentials(*id);
        REQUIRE(creds);
        CHECK(creds->pid == child.pid());
        CHECK(creds->uid == ::getuid());
        if (i >= 7) produce(producer, ++seq);
        dispatch_until(producer, [&] { return lost.size() == i + 1; });
        CHECK_MESSAGE(lost[i].find(expected[i].second) != std::string::npos, lost[i]);
        CHECK(child.line() == "closed " + expected[i].first);
    }
    child.expect_ok();
    // Every buffer came back, and a well-behaved consumer is served as before.
    dispatch_until(producer, [&] { return producer.free_count() == 2; });
    auto pair = queue::Connection::local_pair();
    REQUIRE(pair);
    REQUIRE(producer.add_consumer(std::move(pair->first)));
    auto consumer = queue::Consumer::create(std::move(pair->second));
    REQUIRE(consumer);
    produce(producer, ++seq);
    auto f = consumer->acquire(1s);
    REQUIRE(f);
    CHECK(f->info.sequence == seq);
}

TEST_CASE_FIXTURE(FdLeakCheck, "a producer that announces a pipe as a buffer is refused with not_a_dmabuf and its fd closed") {
    auto link = socket_link();
    Peer child({"--fd", "3", "bad-producer"}, link.there.get());
    link.there.reset();
    {
        auto consumer = queue::Consumer::create(std::move(link.here));
        REQUIRE(consumer);
        auto f = consumer->acquire(20s);
        REQUIRE_FALSE(f);
        CHECK_MESSAGE(f.error().is(Errc::not_a_dmabuf), f.error().message());
        CHECK(f.error().message().find("announce of buffer 0 fd 0") != std::string::npos);
        CHECK(consumer->acquire(0ms).error().is(Errc::not_a_dmabuf));  // stays failed
        CHECK(::fcntl(consumer->fd(), F_GETFD) >= 0);                    // and keeps its fd
        // The producer saw the hang-up without waiting for the Consumer to go.
        CHECK(child.line() == "hung up");
    }
    child.expect_ok();
}

TEST_CASE_FIXTURE(FdLeakCheck, "after the producer dies the consumer's fd stays open and polled, and every later call returns the same error") {
    for (const bool socket : {true, false}) {
        CAPTURE(socket);
        auto producer = std::make_optional(make_producer(2));
        auto pair = socket ? queue::Connection::socket_pair() : queue::Connection::local_pair();
        REQUIRE(pair);
        REQUIRE(producer->add_consumer(std::move(pair->first)));
        auto consumer = queue::Consumer::create(std::move(pair->second));
        REQUIRE(consumer);
        const int fd = consumer->fd();
        REQUIRE(fd >= 0);
        produce(*producer, 1);
        produce(*producer, 2);
        auto held = consumer->acquire(1s);
        REQUIRE(held);
        producer.reset();
        // The frame that arrived before the hang-up is still handed out.
        auto second = consumer->acquire(1s);
        REQUIRE(second);
        CHECK(second->info.sequence == 2);
        auto lost = consumer->acquire(1s);
        REQUIRE_FALSE(lost);
        CHECK_MESSAGE(lost.error().is_errno(ECONNRESET), lost.error().message());
        // The event loop's fd: the same number, still open, readable at once (no busy hang).
        CHECK(consumer->fd() == fd);
        CHECK(::fcntl(fd, F_GETFD) >= 0);
        pollfd p{fd, POLLIN, 0};
        CHECK(::poll(&p, 1, 1000) == 1);
        for (int i = 0; i < 3; ++i) {
            auto again = consumer->acquire(0ms);
            REQUIRE_FALSE(again);
            CHECK(again.error().message() == lost.error().message());
            auto d = consumer->dispatch(0ms);
            REQUIRE_FALSE(d);
            CHECK(d.error().message() == lost.error().message());
        }
        auto r = consumer->release(held->buffer);
        REQUIRE_FALSE(r);
        CHECK(r.error().message() == lost.error().message());
        CHECK(consumer->producer_credentials().error().message() == lost.error().message());
        CHECK(::fcntl(fd, F_GETFD) >= 0);
        // The Consumer closes it when it goes (FdLeakCheck counts).
    }
}

namespace {
// An in-process consumer of `producer`.
struct LocalConsumer {
    queue::ConsumerId id = 0;
    std::optional<queue::Consumer> consumer;
};
LocalConsumer add_local(queue::Producer& producer) {
    auto pair = queue::Connection::local_pair();
    REQUIRE(pair);
    auto id = producer.add_consumer(std::move(pair->first));
    REQUIRE(id);
    auto c = queue::Consumer::create(std::move(pair->second));
    REQUIRE(c);
    return {*id, std::move(*c)};
}
}  // namespace

TEST_CASE_FIXTURE(FdLeakCheck, "on_consumer_lost may call back into the producer: drop another consumer, add a buffer, accept a consumer") {
    const std::string path = "/tmp/dmabridge-queue-reenter-" + std::to_string(::getpid()) + ".sock";
    auto listener = queue::Listener::listen(path);
    REQUIRE(listener);
    std::optional<queue::Producer> producer;
    std::vector<std::pair<queue::ConsumerId, Error>> lost;
    queue::ConsumerId to_drop = 0;
    std::optional<queue::Consumer> late;
    queue::ProducerOptions o;
    o.on_consumer_lost = [&](queue::ConsumerId id, const Error& e) {
        lost.emplace_back(id, e);
        if (lost.size() != 1) return;
        // No REQUIRE here: it would throw through the library.
        CHECK(producer->drop(to_drop));
        auto more = make_buffers(1);
        CHECK(producer->add_buffer(std::move(more[0])));
        auto there = queue::Connection::connect(path);
        auto here = listener->accept();
        CHECK((there && here));
        if (!there || !here) return;
        CHECK(producer->add_consumer(std::move(*here)));
        auto c = queue::Consumer::create(std::move(*there));
        if (c) late.emplace(std::move(*c));
    };
    auto created = queue::Producer::create(o);
    REQUIRE(created);
    producer.emplace(std::move(*created));
    for (auto& d : make_buffers(2)) REQUIRE(producer->add_buffer(std::move(d)));
    // Four consumers: the first is gone before the frame is sent (its send fails inside the
    // loop over consumers), the second is dropped by the callback, two stay.
    std::vector<LocalConsumer> consumers;
    for (int i = 0; i < 4; ++i) consumers.push_back(add_local(*producer));
    to_drop = consumers[1].id;
    consumers[0].consumer.reset();
    produce(*producer, 1);
    REQUIRE(lost.size() == 2);
    CHECK(lost[0].first == consumers[0].id);
    CHECK_MESSAGE(lost[0].second.is_errno(EPIPE), lost[0].second.message());
    CHECK(lost[1].first == to_drop);
    CHECK_MESSAGE(lost[1].second.is_errno(ECANCELED), lost[1].second.message());
    CHECK(producer->consumer_count() == 3);
    CHECK(producer->buffer_count() == 3);
    CHECK(producer->drop(to_drop).error().is(Errc::not_found));
    for (int i : {2, 3}) {
        auto f = consumers[static_cast<std::size_t>(i)].consumer->acquire(1s);
        REQUIRE(f);
        CHECK(f->info.sequence == 1);
        REQUIRE(consumers[static_cast<std::size_t>(i)].consumer->release(f->buffer));
    }
    // The dropped one had been sent the frame before the drop: it gets it, then the hang-up.
    auto before = consumers[1].consumer->acquire(1s);
    REQUIRE(before);
    auto after = consumers[1].consumer->acquire(1s);
    REQUIRE_FALSE(after);
    CHECK(after.error().is_errno(ECONNRESET));
    // The consumer accepted inside the callback knows every buffer, the added one included,
    // and receives the next frame.
    REQUIRE(late);
    dispatch_until(*producer, [&] { return producer->free_count() == 3; });
    produce(*producer, 2);
    auto f = late->acquire(1s);
    REQUIRE(f);
    CHECK(f->info.sequence == 2);
    CHECK(late->buffer_count() == 3);
}

TEST_CASE_FIXTURE(FdLeakCheck, "on_consumer_lost may destroy the producer from dispatch, queue, add_buffer and dequeue") {
    for (const std::string site : {"dispatch", "queue", "add_buffer", "dequeue"}) {
        CAPTURE(site);
        std::optional<queue::Producer> producer;
        int calls = 0;
        queue::ProducerOptions o;
        o.on_consumer_lost = [&](queue::ConsumerId, const Error&) {
            ++calls;
            producer.reset();
        };
        auto created = queue::Producer::create(o);
        REQUIRE(created);
        producer.emplace(std::move(*created));
        for (auto& d : make_buffers(1)) REQUIRE(producer->add_buffer(std::move(d)));
        std::vector<LocalConsumer> consumers;
        for (int i = 0; i < 3; ++i) consumers.push_back(add_local(*producer));
        if (site == "dequeue") produce(*producer, 1);  // the only buffer is now held
        consumers[0].consumer.reset();                  // hangs up
        if (site == "dispatch") {
            auto d = producer->dispatch(1s);
            CHECK(d);
        } else if (site == "queue") {
            auto index = producer->dequeue(1s);
            REQUIRE(index);
            CHECK(producer->queue(*index, std::nullopt, {1, 0}));
        } else if (site == "add_buffer") {
            auto more = make_buffers(1);
            CHECK(producer->add_buffer(std::move(more[0])));
        } else {
            auto index = producer->dequeue(1s);
            REQUIRE_FALSE(index);
            CHECK_MESSAGE(index.error().is(Errc::empty_object), index.error().message());
        }
        CHECK(calls == 1);
        CHECK_FALSE(producer.has_value());
        // The others see the hang-up of a destroyed producer.
        CHECK(consumers[1].consumer->dispatch(1s).error().is_errno(ECONNRESET));
    }
}

namespace {
using Losses = std::vector<std::pair<queue::ConsumerId, Error>>;
queue::Producer make_policed(std::size_t buffers, queue::ProducerOptions o, Losses& lost) {
    o.on_consumer_lost = [&lost](queue::ConsumerId id, const Error& e) { lost.emplace_back(id, e); };
    auto p = queue::Producer::create(o);
    REQUIRE(p);
    for (auto& d : make_buffers(buffers)) REQUIRE(p->add_buffer(std::move(d)));
    return std::move(*p);
}
}  // namespace

// Serves one frame to an in-process consumer that keeps up: acquire and release at once.
void serve_local(queue::Producer& producer, queue::Consumer& local, std::uint64_t seq) {
    produce(producer, seq);
    auto f = local.acquire(5s);
    REQUIRE_MESSAGE(f, (f ? "" : f.error().message()));
    CHECK(f->info.sequence == seq);
    REQUIRE(local.release(f->buffer));
}

TEST_CASE_FIXTURE(FdLeakCheck, "a consumer process that stops releasing is dropped at the release deadline, in FIFO and mailbox, and a healthy one goes on") {
    for (const auto mode : {queue::Mode::fifo, queue::Mode::mailbox}) {
        CAPTURE(static_cast<int>(mode));
        Losses lost;
        queue::ProducerOptions o;
        o.mode = mode;
        o.release_deadline = 1000ms;
        auto producer = make_policed(3, o, lost);
        auto link_s = socket_link();
        Peer stalled({"--fd", "3", "stall", "1"}, link_s.there.get());
        link_s.there.reset();
        auto stalled_id = producer.add_consumer(std::move(link_s.here));
        REQUIRE(stalled_id);
        auto healthy = add_local(producer);
        serve_local(producer, *healthy.consumer, 1);
        CHECK(stalled.line() == "stalled");
        // The stalled consumer holds every buffer after three frames; the producer's dequeue
        // waits, the deadline passes, the consumer is dropped and its buffers come back.
        const auto t0 = std::chrono::steady_clock::now();
        for (std::uint64_t seq = 2; seq <= 10; ++seq) serve_local(producer, *healthy.consumer, seq);
        CHECK(std::chrono::steady_clock::now() - t0 < 15s);
        REQUIRE(lost.size() == 1);
        CHECK(lost[0].first == *stalled_id);
        CHECK_MESSAGE(lost[0].second.is_errno(ETIMEDOUT), lost[0].second.message());
        CHECK_MESSAGE(lost[0].second.message().find("longer than the release deadline of 1000 ms") != std::string::npos,
                      lost[0].second.message());
        stalled.tell("go");
        CHECK(stalled.line() == "dropped");
        stalled.expect_ok();
        dispatch_until(producer, [&] { return producer.free_count() == 3 && producer.consumer_count() == 1; });
    }
}

TEST_CASE_FIXTURE(FdLeakCheck, "a consumer process that reads nothing is dropped at the hold limit, and a healthy one goes on") {
    Losses lost;
    queue::ProducerOptions o;
    o.max_held_per_consumer = 2;
    auto producer = make_policed(4, o, lost);
    auto link_s = socket_link();
    Peer stalled({"--fd", "3", "stall", "0"}, link_s.there.get());
    link_s.there.reset();
    auto stalled_id = producer.add_consumer(std::move(link_s.here));
    REQUIRE(stalled_id);
    auto healthy = add_local(producer);
    CHECK(stalled.line() == "stalled");
    serve_local(producer, *healthy.consumer, 1);
    serve_local(producer, *healthy.consumer, 2);
    CHECK(lost.empty());
    serve_local(producer, *healthy.consumer, 3);  // the third would make it hold three
    REQUIRE(lost.size() == 1);
    CHECK(lost[0].first == *stalled_id);
    CHECK(lost[0].second.is(Errc::limit_exceeded));
    CHECK_MESSAGE(lost[0].second.message().find("holds 2 buffers (queued or acquired, not released), the limit is 2") !=
                      std::string::npos,
                  lost[0].second.message());
    for (std::uint64_t seq = 4; seq <= 8; ++seq) serve_local(producer, *healthy.consumer, seq);
    CHECK(lost.size() == 1);
    stalled.tell("go");
    CHECK(stalled.line() == "dropped");
    stalled.expect_ok();
    dispatch_until(producer, [&] { return producer.free_count() == 4; });
}

TEST_CASE_FIXTURE(FdLeakCheck, "a release fence that outlives its timeout drops its consumer and keeps the buffer out of rotation until it signals") {
    Losses lost;
    queue::ProducerOptions o;
    o.release_fence_timeout = 300ms;
    auto producer = make_policed(2, o, lost);
    auto link = socket_link();
    Peer child({"--fd", "3", "fence"}, link.there.get());
    link.there.reset();
    auto fenced_id = producer.add_consumer(std::move(link.here));
    REQUIRE(fenced_id);
    auto local = add_local(producer);
    produce(producer, 1);  // buffer 0
    CHECK(child.line() == "released");
    {
        auto f = local.consumer->acquire(1s);
        REQUIRE(f);
        REQUIRE(local.consumer->release(f->buffer));
    }
    dispatch_until(producer, [&] { return !lost.empty(); });
    REQUIRE(lost.size() == 1);
    CHECK(lost[0].first == *fenced_id);
    CHECK(lost[0].second.is_errno(ETIMEDOUT));
    CHECK_MESSAGE(lost[0].second.message().find("release fence of buffer 0 from consumer") != std::string::npos,
                  lost[0].second.message());
    CHECK(producer.stats().release_fence_timeouts == 1);
    // The consumer's GPU may still write buffer 0: only buffer 1 is served meanwhile.
    for (std::uint64_t seq = 2; seq <= 4; ++seq) {
        CHECK(producer.free_count() == 1);
        auto index = producer.dequeue(1s);
        REQUIRE(index);
        CHECK(*index == 1);
        REQUIRE(producer.queue(*index, std::nullopt, {seq, 0}));
        auto f = local.consumer->acquire(1s);
        REQUIRE(f);
        CHECK(f->info.sequence == seq);
        REQUIRE(local.consumer->release(f->buffer));
        dispatch_until(producer, [&] { return producer.free_count() == 1; });
    }
    child.tell("signal");
    CHECK(child.line() == "signalled");
    dispatch_until(producer, [&] { return producer.free_count() == 2; });
    CHECK(child.line() == "done frames=0");
    child.expect_ok();
}

TEST_CASE_FIXTURE(FdLeakCheck, "a buffer whose fences cannot be watched stays out of rotation until they are done") {
    // Both ways a buffer waits for another process's GPU: a lost consumer's implicit fences on
    // the dma-buf, and a release fence. The FenceWatcher's epoll_ctl(ADD) fails for each.
    for (const bool release_fence : {false, true}) {
        CAPTURE(release_fence);
        std::vector<std::string> lost;
        auto producer = make_producer(1, queue::Mode::fifo, &lost);
        auto local = add_local(producer);
        produce(producer, 1);
        auto f = local.consumer->acquire(1s);
        REQUIRE(f);
        test::Vgem vgem;
        const std::uint32_t gpu = vgem.attach_fence(true, vgem.import_buffer(producer.buffer(0)->planes[0].buffer));
        if (release_fence) {
            auto fence = f->desc->planes[0].buffer.export_sync_file(Access::write);
            REQUIRE(fence);
            REQUIRE(local.consumer->release(f->buffer, std::move(*fence)));
        } else {
            local.consumer.reset();  // hangs up holding the buffer its GPU still writes
        }
        test::run_with_failing_syscall(SYS_epoll_ctl, 1, EPOLL_CTL_ADD, EPERM, [&] {
            dispatch_until(producer, [&] { return producer.stats().releases == 1 || !lost.empty(); });
        });
        CHECK(producer.free_count() == 0);
        auto none = producer.dequeue(200ms);
        REQUIRE_FALSE(none);
        CHECK(none.error().is_errno(ETIMEDOUT));
        CHECK(none.error().message().find("1 waiting for release fences") != std::string::npos);
        vgem.signal(gpu);
        auto index = producer.dequeue(5s);
        REQUIRE_MESSAGE(index, (index ? "" : index.error().message()));
        REQUIRE(producer.cancel(*index));
    }
}

namespace {
// A raw listening SOCK_SEQPACKET socket at `path` with `backlog`, that never accepts.
UniqueFd raw_listener(const std::string& path, int backlog) {
    UniqueFd s(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    REQUIRE(s);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.c_str(), path.size());
    REQUIRE(::bind(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(s.get(), backlog) == 0);
    return s;
}
}  // namespace

TEST_CASE_FIXTURE(FdLeakCheck, "Listener: a live listener with a full backlog makes listen fail with EADDRINUSE at once, without blocking") {
    const std::string path = "/tmp/dmabridge-queue-backlog-" + std::to_string(::getpid()) + ".sock";
    ::unlink(path.c_str());
    UniqueFd live = raw_listener(path, 0);
    // Fill its backlog: non-blocking connects until the kernel answers EAGAIN.
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.c_str(), path.size());
    std::vector<UniqueFd> pending;
    for (int i = 0; i < 8; ++i) {
        UniqueFd c(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
        REQUIRE(c);
        const int r = ::connect(c.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
        pending.push_back(std::move(c));
        if (r != 0 && errno == EAGAIN) break;
    }
    REQUIRE(pending.size() < 8);  // the backlog is full now
    const auto t0 = std::chrono::steady_clock::now();
    auto l = queue::Listener::listen(path);
    CHECK(std::chrono::steady_clock::now() - t0 < 2s);
    REQUIRE_FALSE(l);
    CHECK_MESSAGE(l.error().is_errno(EADDRINUSE), l.error().message());
    CHECK_MESSAGE(l.error().message().find("another producer listens there") != std::string::npos, l.error().message());
    // The live socket is untouched.
    struct stat st {};
    CHECK(::lstat(path.c_str(), &st) == 0);
    pending.clear();
    live.reset();
    ::unlink(path.c_str());
    ::unlink((path + ".lock").c_str());
}

TEST_CASE_FIXTURE(FdLeakCheck, "Listener: a second producer waits on the lock instead of racing the stale-socket check") {
    const std::string path = "/tmp/dmabridge-queue-lock-" + std::to_string(::getpid()) + ".sock";
    // A stale socket file: bound, then closed (nobody listens).
    { UniqueFd stale = raw_listener(path, 1); }
    // Another producer is between its stale check and its bind: it holds the lock.
    UniqueFd other(::open((path + ".lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    REQUIRE(other);
    REQUIRE(::flock(other.get(), LOCK_EX) == 0);
    auto l = queue::Listener::listen(path);
    REQUIRE_FALSE(l);
    CHECK(l.error().is_errno(EADDRINUSE));
    CHECK_MESSAGE(l.error().message().find("another producer holds " + path + ".lock") != std::string::npos,
                  l.error().message());
    // Once it is gone, the stale file is replaced.
    other.reset();
    auto again = queue::Listener::listen(path);
    REQUIRE_MESSAGE(again, again.error().message());
    auto c = queue::Connection::connect(path);
    CHECK(c);
    auto second = queue::Listener::listen(path);  // while the first lives
    REQUIRE_FALSE(second);
    CHECK(second.error().is_errno(EADDRINUSE));
}

TEST_CASE_FIXTURE(FdLeakCheck, "Listener: the destructor leaves alone a path that another listener took over") {
    const std::string path = "/tmp/dmabridge-queue-takeover-" + std::to_string(::getpid()) + ".sock";
    auto first = queue::Listener::listen(path);
    REQUIRE(first);
    // Someone cleans the directory, and a second producer starts there.
    REQUIRE(::unlink(path.c_str()) == 0);
    REQUIRE(::unlink((path + ".lock").c_str()) == 0);
    auto second = queue::Listener::listen(path);
    REQUIRE_MESSAGE(second, second.error().message());
    { auto gone = std::move(*first); }
    struct stat st {};
    CHECK(::lstat(path.c_str(), &st) == 0);
    CHECK(::lstat((path + ".lock").c_str(), &st) == 0);
    auto c = queue::Connection::connect(path);
    REQUIRE_MESSAGE(c, c.error().message());
    pollfd p{second->fd(), POLLIN, 0};
    CHECK(::poll(&p, 1, 1000) == 1);
    auto accepted = second->accept();
    CHECK(accepted);
    // The second one's own files go with it.
    { auto gone = std::move(*second); }
    CHECK(::lstat(path.c_str(), &st) != 0);
    CHECK(::lstat((path + ".lock").c_str(), &st) != 0);
}

TEST_CASE_FIXTURE(FdLeakCheck, "a release fence gates reuse: the buffer is not dequeued until the consumer's vgem fence signals") {
    auto producer = make_producer(1);
    auto link = socket_link();
    Peer child({"--fd", "3", "fence"}, link.there.get());
    link.there.reset();
    REQUIRE(producer.add_consumer(std::move(link.here)));
    produce(producer, 1);
    CHECK(child.line() == "released");
    dispatch_until(producer, [&] { return producer.stats().releases == 1; });
    auto none = producer.dequeue(100ms);
    REQUIRE_FALSE(none);
    CHECK(none.error().message().find("1 waiting for release fences") != std::string::npos);
    child.tell("signal");
    CHECK(child.line() == "signalled");
    auto index = producer.dequeue(20s);
    REQUIRE(index);
    REQUIRE(producer.cancel(*index));
    { auto gone = std::move(producer); }
    CHECK(child.line() == "done frames=0");
    child.expect_ok();
}

TEST_SUITE_END();
