// SPDX-License-Identifier: MIT
// The buffer queue against peers that speak its wire format by hand (src/queue/wire.hpp), from
// both ends: a fake producer feeding a real Consumer, a fake consumer answering a real Producer.
// Each attack must end in a clear error (the Consumer) or the loss of that one peer (the
// Producer), without a hang or a leaked fd, while a healthy consumer keeps being served.
// (The child-process attacks of test_queue.cpp cover the rest: bad magic and version, oversize
// datagrams, unknown and doubled releases, pipes as fences, fd over-counts.)
#include <dmabridge/alloc/udmabuf.hpp>
#include <dmabridge/queue/consumer.hpp>
#include <dmabridge/queue/producer.hpp>

#include <chrono>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include "fd_count.hpp"
#include "queue/transport.hpp"
#include "queue/wire.hpp"

using namespace dmabridge;
using namespace std::chrono_literals;
namespace wire = dmabridge::detail::wire;
using dmabridge::test::FdLeakCheck;

namespace {

constexpr std::uint32_t side = 64;

DmaBuf udmabuf() {
    auto alloc = UdmabufAllocator::open();
    REQUIRE(alloc);
    auto buf = alloc->allocate_bytes(side * side * 4, "queue-hostile");
    REQUIRE(buf);
    return std::move(*buf);
}

BufferDesc desc_of(DmaBuf buf) {
    BufferDesc d;
    d.width = side;
    d.height = side;
    d.fourcc = fourcc::XRGB8888;
    d.planes.push_back(PlaneDesc{std::move(buf), 0, side * 4});
    return d;
}

UniqueFd memfd() {
    UniqueFd f(::memfd_create("queue-hostile", MFD_CLOEXEC));
    REQUIRE(f);
    REQUIRE(::ftruncate(f.get(), side * side * 4) == 0);
    return f;
}

UniqueFd dev_null() {
    UniqueFd f(::open("/dev/null", O_RDWR | O_CLOEXEC));
    REQUIRE(f);
    return f;
}

// A Connection for the library's side and the raw socket of the hand-written peer.
struct RawLink {
    queue::Connection conn;
    UniqueFd raw;
};
RawLink raw_link() {
    auto pair = queue::Connection::socket_pair();
    REQUIRE(pair);
    auto s = pair->second.release_socket();
    REQUIRE(s);
    return {std::move(pair->first), std::move(*s)};
}

// Sends bytes with fds; false when the socket is full (EAGAIN) or the peer is gone.
bool send_raw(int s, std::span<const std::byte> bytes, std::vector<int> fds = {}) {
    return static_cast<bool>(queue::detail::send_datagram(s, bytes, fds, true));
}
bool send_msg(int s, const wire::Message& m, std::vector<int> fds = {}) {
    const auto e = wire::encode(m);
    return send_raw(s, e.view(), std::move(fds));
}
std::vector<std::byte> bytes_of(const wire::Message& m) {
    const auto e = wire::encode(m);
    return {e.bytes.begin(), e.bytes.begin() + static_cast<std::ptrdiff_t>(e.size)};
}

// Reads what waits on the raw socket (closing every fd that came); the frames' buffer ids.
// `hung_up` is set when the other end closed or shut down.
std::vector<std::uint32_t> drain_raw(int s, bool* hung_up = nullptr) {
    std::vector<std::uint32_t> frames;
    for (;;) {
        std::byte buf[wire::max_message_size + 1];
        iovec iov{buf, sizeof buf};
        alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 16)];
        msghdr msg{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control;
        msg.msg_controllen = sizeof control;
        const ssize_t n = ::recvmsg(s, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n <= 0) {
            if (hung_up) *hung_up = n == 0 || errno == ECONNRESET;
            return frames;
        }
        std::size_t fds = 0;
        for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
            for (std::size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); ++i, ++fds) {
                int fd;
                std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
                ::close(fd);
            }
        auto m = wire::parse_message({buf, static_cast<std::size_t>(n)}, fds);
        if (m)
            if (const auto* f = std::get_if<wire::Frame>(&*m)) frames.push_back(f->buffer);
    }
}

wire::Announce announce_of(std::uint32_t id, std::uint64_t offset = 0, std::uint64_t stride = side * 4) {
    wire::Announce a;
    a.buffer = id;
    a.width = side;
    a.height = side;
    a.fourcc = fourcc::XRGB8888;
    a.plane_count = 1;
    a.planes[0] = {0, offset, stride};
    a.fd_count = 1;
    return a;
}

// Reads everything sent (so a second frame meets the first still queued), then acquires until
// the Consumer reports its failure (at most `frames` frames first).
Error failure_of(queue::Consumer& c, int frames = 4) {
    (void)c.dispatch(0ms);
    for (int i = 0; i <= frames; ++i) {
        auto f = c.acquire(2s);
        if (!f) return f.error();
        (void)c.release(f->buffer);
    }
    FAIL("the consumer never failed");
    return Error::library(Errc::invalid_argument, "");
}

}  // namespace

TEST_SUITE_BEGIN("queue");

TEST_CASE_FIXTURE(FdLeakCheck, "a hand-written producer's malformed, misordered and lying messages each fail the consumer with a clear error") {
    const DmaBuf buf = udmabuf();
    const int dmabuf_fd = buf.fd();
    struct Attack {
        const char* name;
        std::function<void(int)> send;
        const char* expected;
    };
    const std::vector<Attack> attacks = {
        {"frame before hello", [](int s) { send_msg(s, wire::Frame{0, 0, 1, 0}); }, "sent a frame before its hello"},
        {"second hello", [](int s) { send_msg(s, wire::Hello{0}); send_msg(s, wire::Hello{1}); }, "second hello"},
        {"release sent to a consumer", [](int s) { send_msg(s, wire::Hello{0}); send_msg(s, wire::Release{0, 0}); },
         "the producer sent a release"},
        {"truncated header", [](int s) { auto b = bytes_of(wire::Hello{0}); send_raw(s, {b.data(), 10}); },
         "shorter than the 16-byte header"},
        {"truncated payload",
         [](int s) {
             send_msg(s, wire::Hello{0});
             auto b = bytes_of(wire::Frame{0, 0, 1, 0});
             send_raw(s, {b.data(), b.size() - 4});
         },
         "payload length 24 but 20 bytes follow"},
        {"wrong magic", [](int s) { auto b = bytes_of(wire::Hello{0}); b[1] = std::byte{0}; send_raw(s, b); }, "bad magic"},
        {"wrong version", [](int s) { auto b = bytes_of(wire::Hello{0}); b[4] = std::byte{2}; send_raw(s, b); },
         "version 2, this side speaks 1"},
        {"announced id above the limit",
         [&](int s) { send_msg(s, wire::Hello{0}); send_msg(s, announce_of(64), {dmabuf_fd}); }, "ids go up to 63"},
        {"announced id reused",
         [&](int s) {
             send_msg(s, wire::Hello{0});
             send_msg(s, announce_of(0), {dmabuf_fd});
             send_msg(s, announce_of(0), {dmabuf_fd});
         },
         "announce of buffer 0: announced before"},
        {"plane leaving the buffer",
         [&](int s) { send_msg(s, wire::Hello{0}); send_msg(s, announce_of(0, 8192), {dmabuf_fd}); }, "announce of buffer 0"},
        {"plane whose end overflows",
         [&](int s) { send_msg(s, wire::Hello{0}); send_msg(s, announce_of(0, ~std::uint64_t{0} - 15, 1ull << 62), {dmabuf_fd}); },
         "announce of buffer 0"},
        {"memfd announced as a dma-buf",
         [](int s) {
             send_msg(s, wire::Hello{0});
             UniqueFd m = memfd();
             send_msg(s, announce_of(0), {m.get()});
         },
         "announce of buffer 0 fd 0"},
        {"/dev/null as an acquire fence",
         [&](int s) {
             send_msg(s, wire::Hello{0});
             send_msg(s, announce_of(0), {dmabuf_fd});
             UniqueFd n = dev_null();
             send_msg(s, wire::Frame{0, wire::flag_fence, 1, 0}, {n.get()});
         },
         "frame 1 of buffer 0 acquire fence"},
        {"more fds than the header declares",
         [](int s) {
             UniqueFd a = memfd(), b = memfd(), c = dev_null();
             send_msg(s, wire::Hello{0}, {a.get(), b.get(), c.get()});
         },
         "header announces 0 fds but 3 arrived"},
        {"fewer fds than the header declares",
         [&](int s) {
             send_msg(s, wire::Hello{0});
             auto b = bytes_of(announce_of(0));
             b[12] = std::byte{2};
             send_raw(s, b, {dmabuf_fd});
         },
         "header announces 2 fds but 1 arrived"},
        {"frame of a buffer never announced", [](int s) { send_msg(s, wire::Hello{0}); send_msg(s, wire::Frame{5, 0, 1, 0}); },
         "frame 1 of buffer 5: buffer never announced"},
        {"frame of a buffer the consumer holds",
         [&](int s) {
             send_msg(s, wire::Hello{0});
             send_msg(s, announce_of(0), {dmabuf_fd});
             send_msg(s, wire::Frame{0, 0, 1, 0});
             send_msg(s, wire::Frame{0, 0, 2, 0});
         },
         "frame 2 of buffer 0: this consumer still holds the buffer (queued)"},
    };
    for (const Attack& a : attacks) {
        const std::string attack = a.name;
        CAPTURE(attack);
        auto link = raw_link();
        auto consumer = queue::Consumer::create(std::move(link.conn));
        REQUIRE(consumer);
        a.send(link.raw.get());
        const Error e = failure_of(*consumer);
        CHECK_MESSAGE(e.message().find(a.expected) != std::string::npos, e.message());
        CHECK_FALSE(e.is_errno(ECONNRESET));  // refused, not merely hung up on
        // Final, on the same open fd, and the fake producer sees the hang-up.
        CHECK(consumer->acquire(0ms).error().message() == e.message());
        CHECK(::fcntl(consumer->fd(), F_GETFD) >= 0);
        bool hung_up = false;
        drain_raw(link.raw.get(), &hung_up);
        CHECK(hung_up);
    }
}

TEST_CASE_FIXTURE(FdLeakCheck, "a hand-written producer that hangs up at every step leaves a consumer with ECONNRESET and what arrived before") {
    const DmaBuf buf = udmabuf();
    for (int step = 0; step <= 3; ++step) {
        CAPTURE(step);
        auto link = raw_link();
        auto consumer = queue::Consumer::create(std::move(link.conn));
        REQUIRE(consumer);
        if (step >= 1) send_msg(link.raw.get(), wire::Hello{0});
        if (step >= 2) send_msg(link.raw.get(), announce_of(0), {buf.fd()});
        if (step >= 3) send_msg(link.raw.get(), wire::Frame{0, 0, 7, 0});
        link.raw.reset();
        if (step == 3) {
            auto f = consumer->acquire(2s);
            REQUIRE(f);
            CHECK(f->info.sequence == 7);
            CHECK(f->desc->planes[0].buffer.id() == buf.id());
        }
        auto e = consumer->acquire(2s);
        REQUIRE_FALSE(e);
        CHECK_MESSAGE(e.error().is_errno(ECONNRESET), e.error().message());
        CHECK(consumer->buffer_count() == (step >= 2 ? 1u : 0u));
    }
}

TEST_CASE_FIXTURE(FdLeakCheck, "thousands of mailbox frames from a hand-written producer: the consumer keeps the newest and gives back the rest") {
    const DmaBuf a = udmabuf(), b = udmabuf();
    auto link = raw_link();
    auto consumer = queue::Consumer::create(std::move(link.conn));
    REQUIRE(consumer);
    const int s = link.raw.get();
    REQUIRE(send_msg(s, wire::Hello{1}));
    REQUIRE(send_msg(s, announce_of(0), {a.fd()}));
    REQUIRE(send_msg(s, announce_of(1), {b.fd()}));
    // Buffer ids alternate: the previous frame's buffer comes back as a release each time.
    std::uint64_t sent = 0;
    std::size_t released = 0;
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    while (sent < 3000) {
        REQUIRE(std::chrono::steady_clock::now() < deadline);
        if (send_msg(s, wire::Frame{static_cast<std::uint32_t>(sent % 2), 0, sent + 1, 0})) {
            ++sent;
            continue;
        }
        // The socket is full: let the consumer read, and read its releases.
        REQUIRE(consumer->dispatch(0ms));
        for (int i = 0; i < 4096; ++i) {
            std::byte buf[64];
            if (::recv(s, buf, sizeof buf, MSG_DONTWAIT) <= 0) break;
            ++released;
        }
    }
    auto f = consumer->acquire(2s);
    REQUIRE_MESSAGE(f, f.error().message());
    CHECK(f->info.sequence == 3000);
    CHECK(consumer->stats().frames_replaced == 2999);
    CHECK(consumer->queued_count() == 0);
    REQUIRE(consumer->release(f->buffer));
}

TEST_CASE_FIXTURE(FdLeakCheck, "a hand-written consumer's lies drop only that consumer: the producer serves a healthy one and gets every buffer back") {
    std::vector<std::pair<queue::ConsumerId, Error>> lost;
    queue::ProducerOptions o;
    o.on_consumer_lost = [&](queue::ConsumerId id, const Error& e) { lost.emplace_back(id, e); };
    auto created = queue::Producer::create(o);
    REQUIRE(created);
    queue::Producer& producer = *created;
    REQUIRE(producer.add_buffer(desc_of(udmabuf())));
    REQUIRE(producer.add_buffer(desc_of(udmabuf())));
    auto pair = queue::Connection::local_pair();
    REQUIRE(pair);
    REQUIRE(producer.add_consumer(std::move(pair->first)));
    auto healthy = queue::Consumer::create(std::move(pair->second));
    REQUIRE(healthy);

    struct Attack {
        const char* name;
        bool needs_frame;  // the attack comes after a frame was queued to it
        std::function<void(int, std::uint32_t)> send;
        const char* expected;  // empty: a plain hang-up
    };
    const std::vector<Attack> attacks = {
        {"frame sent to the producer", false, [](int s, std::uint32_t) { send_msg(s, wire::Frame{0, 0, 1, 0}); },
         "sent a frame, only release is allowed"},
        {"announce sent to the producer", false,
         [](int s, std::uint32_t) {
             UniqueFd m = memfd();
             send_msg(s, announce_of(0), {m.get()});
         },
         "sent a announce, only release is allowed"},
        {"truncated release", false,
         [](int s, std::uint32_t) {
             auto b = bytes_of(wire::Release{0, 0});
             send_raw(s, {b.data(), b.size() - 4});
         },
         "payload length 8 but 4 bytes follow"},
        {"/dev/null as a release fence", true,
         [](int s, std::uint32_t b) {
             UniqueFd n = dev_null();
             send_msg(s, wire::Release{b, wire::flag_fence}, {n.get()});
         },
         "release fence of buffer"},
        {"memfd as a release fence", true,
         [](int s, std::uint32_t b) {
             UniqueFd m = memfd();
             send_msg(s, wire::Release{b, wire::flag_fence}, {m.get()});
         },
         "release fence of buffer"},
        {"more fds than the header declares", true,
         [](int s, std::uint32_t b) {
             UniqueFd x = memfd(), y = dev_null(), z = memfd();
             send_msg(s, wire::Release{b, 0}, {x.get(), y.get(), z.get()});
         },
         "header announces 0 fds but 3 arrived"},
        {"30 fds in one datagram", true,
         [](int s, std::uint32_t b) {
             std::vector<UniqueFd> fds;
             for (int i = 0; i < 30; ++i) fds.push_back(dev_null());
             const auto e = wire::encode(wire::Release{b, 0});
             iovec iov{const_cast<std::byte*>(e.bytes.data()), e.size};
             alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 30)] = {};
             msghdr msg{};
             msg.msg_iov = &iov;
             msg.msg_iovlen = 1;
             msg.msg_control = control;
             msg.msg_controllen = sizeof control;
             auto* c = CMSG_FIRSTHDR(&msg);
             c->cmsg_level = SOL_SOCKET;
             c->cmsg_type = SCM_RIGHTS;
             c->cmsg_len = CMSG_LEN(sizeof(int) * 30);
             for (int i = 0; i < 30; ++i) {
                 const int fd = fds[static_cast<std::size_t>(i)].get();
                 std::memcpy(CMSG_DATA(c) + i * sizeof(int), &fd, sizeof fd);
             }
             CHECK(::sendmsg(s, &msg, MSG_NOSIGNAL) > 0);
         },
         "fds"},
        {"thousands of releases of a buffer it does not hold", false,
         [](int s, std::uint32_t) {
             for (int i = 0; i < 3000; ++i)
                 if (!send_msg(s, wire::Release{1, 0})) break;
         },
         "released buffer 1 which it does not hold"},
        {"hang-up before reading anything", false, [](int, std::uint32_t) {}, ""},
        {"hang-up holding a frame", true, [](int, std::uint32_t) {}, ""},
    };
    std::uint64_t seq = 0;
    for (const Attack& a : attacks) {
        const std::string attack = a.name;
        CAPTURE(attack);
        auto link = raw_link();
        auto id = producer.add_consumer(std::move(link.conn));
        REQUIRE(id);
        std::uint32_t held = 0;
        if (a.needs_frame) {
            auto index = producer.dequeue(2s);
            REQUIRE_MESSAGE(index, index.error().message());
            REQUIRE(producer.queue(*index, std::nullopt, {++seq, 0}));
            auto frames = drain_raw(link.raw.get());
            REQUIRE(frames.size() == 1);
            held = frames[0];
            auto f = healthy->acquire(1s);
            REQUIRE(f);
            REQUIRE(healthy->release(f->buffer));
        }
        const std::size_t before = lost.size();
        a.send(link.raw.get(), held);
        if (*a.expected == '\0') link.raw.reset();
        const auto end = std::chrono::steady_clock::now() + 10s;
        while (lost.size() == before) {
            REQUIRE(std::chrono::steady_clock::now() < end);
            REQUIRE(producer.dispatch(100ms));
        }
        REQUIRE(lost.size() == before + 1);
        CHECK(lost.back().first == *id);
        const std::string& why = lost.back().second.message();
        if (*a.expected) CHECK_MESSAGE(why.find(a.expected) != std::string::npos, why);
        else CHECK_MESSAGE(lost.back().second.is_errno(ECONNRESET), why);
        if (link.raw) {
            bool hung_up = false;
            drain_raw(link.raw.get(), &hung_up);
            CHECK(hung_up);
        }
        // The healthy consumer is served, and every buffer comes back.
        auto index = producer.dequeue(2s);
        REQUIRE_MESSAGE(index, index.error().message());
        REQUIRE(producer.queue(*index, std::nullopt, {++seq, 0}));
        auto f = healthy->acquire(1s);
        REQUIRE(f);
        CHECK(f->info.sequence == seq);
        REQUIRE(healthy->release(f->buffer));
        const auto back = std::chrono::steady_clock::now() + 10s;
        while (producer.free_count() != 2) {
            REQUIRE(std::chrono::steady_clock::now() < back);
            REQUIRE(producer.dispatch(100ms));
        }
        CHECK(producer.consumer_count() == 1);
    }
}

TEST_SUITE_END();
