// SPDX-License-Identifier: MIT
// queue_peer: the other process of the buffer queue tests (tests/kernel/test_queue.cpp). The
// test starts it with fork/exec, gives it a connection (an inherited socket, or a path), and talks
// to it through stdin/stdout lines. It checks what it receives (pixels, sequences) and its own
// fds, and exits 0 only when everything held.
//
//   queue_peer (--fd N | --connect PATH) ROLE [ARGS]
//   stream N            acquire N frames, check every pixel, release
//   hold K              acquire K frames, print "held", wait for a stdin line, release them, then
//                       acquire and release until the producer hangs up
//   mailbox             wait for a stdin line, acquire one frame, print "seq=S replaced=R"
//   fence               acquire one frame, release it with a vgem fence as the release fence,
//                       print "released", wait for a stdin line, signal, then like hold's end
//   stall K             acquire K frames (0: none), print "stalled", then neither read nor release
//                       until a stdin line; then expect the producer's hang-up (frames sent
//                       before it may still come) and print "dropped"
//   hostile             (with --connect) one connection per crafted message; prints
//                       "closed NAME" once the producer hung up on each
//   checksum N ROWBYTES acquire N frames of any producer (a camera), print "frame SEQ SUM" for
//                       each (FNV-1a over plane 0's rows, read through a CPU mapping), release,
//                       then acquire and release until the producer hangs up
//   bad-producer        act as a producer that announces a pipe as a buffer
//   timeline-stream N   (timelines) acquire N frames, each must carry an acquire point; wait for
//                       it, check every pixel, release with a point of the release timeline and
//                       signal that point from the CPU
//   timeline-die        (timelines) acquire one frame, release it with point 1 of the release
//                       timeline, which nothing ever submits, print "released", wait for a stdin
//                       line, then die by SIGKILL
//   produce-timeline-die act as a producer with timelines: one buffer, wait for the consumer's
//                       release timeline, queue a frame with acquire point 1, which nothing ever
//                       submits, print "queued", wait for a stdin line, then die by SIGKILL
//   produce N           act as the producer: 3 udmabuf buffers of 64x64 XRGB8888 written by the
//                       CPU, N frames (even sequences with an explicit acquire fence, odd ones
//                       implicit), then wait until every buffer came back
#include <dmabridge/alloc/udmabuf.hpp>
#include <dmabridge/kernel/cpu_access.hpp>
#include <dmabridge/kernel/devices.hpp>
#include <dmabridge/kernel/timeline.hpp>
#include <dmabridge/queue/consumer.hpp>
#include <dmabridge/queue/producer.hpp>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <optional>
#include <string>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <vector>
#include <xf86drm.h>

#include "queue/transport.hpp"
#include "queue/wire.hpp"
#include "vgem_uapi.hpp"

using namespace dmabridge;
namespace wire = dmabridge::detail::wire;

namespace {

void say(const std::string& line) {
    const std::string l = line + "\n";
    [[maybe_unused]] ssize_t n = ::write(1, l.data(), l.size());
}

[[noreturn]] void die(const std::string& why) {
    std::fprintf(stderr, "queue_peer: %s\n", why.c_str());
    say("error " + why);
    std::exit(1);
}

std::string read_line() {
    std::string s;
    char c;
    while (::read(0, &c, 1) == 1 && c != '\n') s += c;
    return s;
}

std::size_t fd_count() {
    std::size_t n = 0;
    DIR* d = ::opendir("/proc/self/fd");
    while (dirent* e = ::readdir(d))
        if (e->d_name[0] != '.') ++n;
    ::closedir(d);
    return n - 1;  // the directory's own fd
}

// The pattern the test's producer writes: word i of the frame with sequence s.
std::uint32_t pattern(std::uint64_t s, std::size_t i) { return static_cast<std::uint32_t>(s * 2654435761u) ^ static_cast<std::uint32_t>(i); }

void check_pixels(const queue::AcquiredFrame& f) {
    const DmaBuf& buf = f.desc->planes[0].buffer;
    auto map = Mapping::map(buf, Access::read);
    if (!map) die(map.error().message());
    auto access = CpuAccess::begin(buf, Access::read);
    if (!access) die(access.error().message());
    const std::size_t words = static_cast<std::size_t>(f.desc->width) * f.desc->height;
    const auto* p = reinterpret_cast<const std::uint32_t*>(map->data() + f.desc->planes[0].offset);
    for (std::size_t i = 0; i < words; ++i)
        if (p[i] != pattern(f.info.sequence, i))
            die("frame " + std::to_string(f.info.sequence) + " word " + std::to_string(i) + " is " + std::to_string(p[i]) +
                ", expected " + std::to_string(pattern(f.info.sequence, i)));
    if (auto e = access->end(); !e) die(e.error().message());
}

queue::Connection open_connection(int argc, char** argv) {
    if (argc < 3) die("usage: queue_peer (--fd N | --connect PATH) ROLE [ARGS]");
    if (std::strcmp(argv[1], "--fd") == 0) {
        auto c = queue::Connection::from_socket(UniqueFd(std::atoi(argv[2])));
        if (!c) die(c.error().message());
        return std::move(*c);
    }
    auto c = queue::Connection::connect(argv[2]);
    if (!c) die(c.error().message());
    return std::move(*c);
}

// Acquires and releases until the producer hangs up; returns how many frames came.
int drain(queue::Consumer& consumer) {
    int frames = 0;
    for (;;) {
        auto f = consumer.acquire(std::chrono::seconds(20));
        if (!f) {
            if (f.error().is_errno(ECONNRESET)) return frames;
            die(f.error().message());
        }
        ++frames;
        if (auto r = consumer.release(f->buffer); !r) die(r.error().message());
    }
}

void stream(queue::Consumer& consumer, int count) {
    say("ready");
    std::uint64_t last = 0;
    for (int i = 0; i < count; ++i) {
        auto f = consumer.acquire(std::chrono::seconds(20));
        if (!f) die("acquire " + std::to_string(i) + ": " + f.error().message());
        if (i > 0 && f->info.sequence <= last) die("sequence went from " + std::to_string(last) + " to " + std::to_string(f->info.sequence));
        last = f->info.sequence;
        auto ready = consumer.wait_ready(*f, std::chrono::seconds(10));
        if (!ready || *ready != WaitStatus::ready) die("acquire fence of frame " + std::to_string(i) + " did not signal");
        check_pixels(*f);
        if (auto r = consumer.release(f->buffer); !r) die(r.error().message());
    }
}

// FNV-1a over the rows of plane 0 (width x bytes_per_row_of_plane_0 / stride: the row bytes only,
// not the padding), the same function the capture tests compute on the producer's side.
std::uint64_t plane0_checksum(const BufferDesc& desc, std::uint64_t row_bytes) {
    const DmaBuf& buf = desc.planes[0].buffer;
    auto map = Mapping::map(buf, Access::read);
    if (!map) die(map.error().message());
    auto access = CpuAccess::begin(buf, Access::read);
    if (!access) die(access.error().message());
    std::uint64_t h = 1469598103934665603ull;
    const auto* base = reinterpret_cast<const unsigned char*>(map->data()) + desc.planes[0].offset;
    for (std::uint32_t y = 0; y < desc.height; ++y)
        for (std::uint64_t x = 0; x < row_bytes; ++x) h = (h ^ base[y * desc.planes[0].stride + x]) * 1099511628211ull;
    if (auto e = access->end(); !e) die(e.error().message());
    return h;
}

void checksum_role(queue::Consumer& consumer, int count, std::uint64_t row_bytes) {
    say("ready");
    for (int i = 0; i < count; ++i) {
        auto f = consumer.acquire(std::chrono::seconds(20));
        if (!f) die("acquire " + std::to_string(i) + ": " + f.error().message());
        auto ready = consumer.wait_ready(*f, std::chrono::seconds(10));
        if (!ready || *ready != WaitStatus::ready) die("frame " + std::to_string(i) + " never became ready");
        say("frame " + std::to_string(f->info.sequence) + " " + std::to_string(plane0_checksum(*f->desc, row_bytes)));
        if (auto r = consumer.release(f->buffer); !r) die(r.error().message());
    }
}

int vgem_fd() {
    auto devices = list_drm_devices();
    if (!devices) die(devices.error().message());
    for (const auto& d : *devices)
        if (d.driver == "vgem" && !d.primary_node.empty()) return ::open(d.primary_node.c_str(), O_RDWR | O_CLOEXEC);
    die("no vgem device");
}

void fence_role(queue::Consumer& consumer) {
    auto f = consumer.acquire(std::chrono::seconds(20));
    if (!f) die(f.error().message());
    UniqueFd vgem(vgem_fd());
    std::uint32_t handle = 0;
    if (drmPrimeFDToHandle(vgem.get(), f->desc->planes[0].buffer.fd(), &handle) != 0) die("vgem prime import");
    namespace uapi = dmabridge::test::vgem_uapi;
    uapi::fence_attach attach{handle, uapi::fence_write, 0, 0};
    if (drmIoctl(vgem.get(), uapi::ioctl_fence_attach, &attach) != 0) die("vgem fence attach");
    auto fence = f->desc->planes[0].buffer.export_sync_file(Access::write);
    if (!fence) die(fence.error().message());
    if (auto r = consumer.release(f->buffer, std::move(*fence)); !r) die(r.error().message());
    say("released");
    read_line();
    uapi::fence_signal sig{attach.out_fence, 0};
    if (drmIoctl(vgem.get(), uapi::ioctl_fence_signal, &sig) != 0) die("vgem fence signal");
    say("signalled");
}

void timeline_stream(queue::Consumer& consumer, int count) {
    say("ready");
    for (int i = 0; i < count; ++i) {
        auto f = consumer.acquire(std::chrono::seconds(20));
        if (!f) die("acquire " + std::to_string(i) + ": " + f.error().message());
        if (!consumer.uses_timelines()) die("timelines were not negotiated");
        if (!f->acquire_point || f->acquire_fence) die("frame " + std::to_string(i) + " carries no acquire point");
        auto ready = consumer.wait_ready(*f, std::chrono::seconds(10));
        if (!ready || *ready != WaitStatus::ready) die("acquire point of frame " + std::to_string(i) + " did not signal");
        check_pixels(*f);
        const auto point = static_cast<std::uint64_t>(i + 1);
        if (auto r = consumer.release_point(f->buffer, point); !r) die(r.error().message());
        if (auto r = consumer.release_timeline()->signal(point); !r) die(r.error().message());
    }
}

void timeline_die(queue::Consumer& consumer) {
    auto f = consumer.acquire(std::chrono::seconds(20));
    if (!f) die(f.error().message());
    if (!f->acquire_point) die("the frame carries no acquire point");
    if (auto r = consumer.release_point(f->buffer, 1); !r) die(r.error().message());
    say("released");
    read_line();
    ::kill(::getpid(), SIGKILL);
}

UniqueFd timeline_device() {
    auto d = Timeline::open_device();
    if (!d) die(d.error().message());
    return std::move(*d);
}

// Adds `count` udmabuf buffers of 64x64 XRGB8888 to `producer`.
void add_peer_buffers(queue::Producer& producer, int count) {
    auto alloc = UdmabufAllocator::open();
    if (!alloc) die(alloc.error().message());
    for (int i = 0; i < count; ++i) {
        auto buf = alloc->allocate_bytes(64 * 64 * 4, "queue-peer");
        if (!buf) die(buf.error().message());
        BufferDesc d;
        d.width = 64;
        d.height = 64;
        d.fourcc = fourcc::XRGB8888;
        d.planes.push_back(PlaneDesc{std::move(*buf), 0, 256});
        if (auto r = producer.add_buffer(std::move(d)); !r) die(r.error().message());
    }
}

void produce_timeline_die(int socket) {
    auto conn = queue::Connection::from_socket(UniqueFd(socket));
    if (!conn) die(conn.error().message());
    const UniqueFd device = timeline_device();
    queue::ProducerOptions options;
    options.timeline_device = device.get();
    auto producer = queue::Producer::create(std::move(options));
    if (!producer) die(producer.error().message());
    add_peer_buffers(*producer, 1);
    auto id = producer->add_consumer(std::move(*conn));
    if (!id) die(id.error().message());
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (![&] { auto u = producer->consumer_uses_timelines(*id); return u && *u; }()) {
        if (std::chrono::steady_clock::now() > end) die("the consumer never sent its release timeline");
        if (auto r = producer->dispatch(std::chrono::milliseconds(100)); !r) die(r.error().message());
    }
    auto index = producer->dequeue(std::chrono::seconds(1));
    if (!index) die(index.error().message());
    if (auto r = producer->queue_point(*index, 1, {1, 1000}); !r) die(r.error().message());
    say("queued");
    read_line();
    ::kill(::getpid(), SIGKILL);
}

// --- raw peers: they speak the wire format by hand ---

void raw_send(int s, std::span<const std::byte> bytes, const std::vector<int>& fds) {
    if (auto r = queue::detail::send_datagram(s, bytes, fds, false); !r) die("raw send: " + r.error().message());
}

// Reads (and closes the fds of) messages until the producer hangs up. Returns the types seen;
// `last_frame_buffer`, when given, receives the buffer of the last frame read.
std::vector<int> read_until_hangup(int s, int stop_after_frames = -1, std::uint32_t* last_frame_buffer = nullptr) {
    std::vector<int> types;
    int frames = 0;
    for (;;) {
        std::byte buf[512];
        iovec iov{buf, sizeof buf};
        alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 8)];
        msghdr msg{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control;
        msg.msg_controllen = sizeof control;
        const ssize_t n = ::recvmsg(s, &msg, MSG_CMSG_CLOEXEC);
        if (n <= 0) return types;
        std::size_t fds_received = 0;
        for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
            for (std::size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); ++i, ++fds_received) {
                int fd;
                std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
                ::close(fd);
            }
        std::uint16_t type = 0;
        if (n >= 8) std::memcpy(&type, buf + 6, 2);
        types.push_back(type);
        if (last_frame_buffer) {
            // The frame's fds were closed above; parse it with the count that arrived.
            auto m = wire::parse_message({buf, static_cast<std::size_t>(n)}, fds_received);
            if (m)
                if (const auto* f = std::get_if<wire::Frame>(&*m)) *last_frame_buffer = f->buffer;
        }
        if (type == 3 && ++frames == stop_after_frames) return types;
    }
}

int raw_connect(const char* path) {
    int s = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path, sizeof addr.sun_path - 1);
    if (::connect(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) die(std::string("connect: ") + std::strerror(errno));
    return s;
}

std::vector<std::byte> encoded(const wire::Message& m) {
    const auto e = wire::encode(m);
    return {e.bytes.begin(), e.bytes.begin() + static_cast<std::ptrdiff_t>(e.size)};
}

// Each attack: its name, whether it waits for a frame first, and what it sends.
void hostile(const char* path) {
    struct Attack {
        const char* name;
        bool after_frame;
        std::vector<std::byte> bytes;
        int fds;       // how many fds to send
        bool pipe_fd;  // send a pipe instead of a sync_file
    };
    auto release0 = encoded(wire::Release{0, 0});
    auto release0_fence = encoded(wire::Release{0, wire::flag_fence});
    auto bad_magic = release0;
    bad_magic[0] = std::byte{0x42};
    auto bad_version = release0;
    bad_version[4] = std::byte{9};
    std::vector<std::byte> truncated(release0.begin(), release0.begin() + 10);
    std::vector<std::byte> oversize(600, std::byte{0});
    std::memcpy(oversize.data(), release0.data(), 16);
    const std::vector<Attack> attacks = {
        {"garbage", false, bad_magic, 0, false},
        {"version", false, bad_version, 0, false},
        {"truncated", false, truncated, 0, false},
        {"oversize", false, oversize, 0, false},
        {"unknown-id", false, encoded(wire::Release{99, 0}), 0, false},
        {"never-queued", false, release0, 0, false},
        {"wrong-direction", false, encoded(wire::Hello{0}), 0, false},
        {"not-a-sync-file", true, release0_fence, 1, true},
        {"too-many-fds", true, release0_fence, 12, true},
        {"fd-overcount", true, release0, 1, true},
        {"double-release", true, release0, 0, false},
    };
    for (const Attack& a : attacks) {
        const int s = raw_connect(path);
        std::uint32_t received = 0;
        if (a.after_frame) read_until_hangup(s, 1, &received);
        std::vector<int> fds;
        for (int i = 0; i < a.fds; ++i) {
            int p[2];
            if (::pipe2(p, O_CLOEXEC) != 0) die("pipe");
            fds.push_back(p[0]);
            ::close(p[1]);
        }
        if (std::string(a.name) == "double-release") {
            // The buffer the frame came in (which one depends on when the producer got the
            // earlier attackers' buffers back): the first release is valid, the second is not.
            const auto release = encoded(wire::Release{received, 0});
            raw_send(s, release, fds);
            raw_send(s, release, fds);
        } else {
            raw_send(s, a.bytes, fds);
        }
        for (int fd : fds) ::close(fd);
        read_until_hangup(s);
        ::close(s);
        say(std::string("closed ") + a.name);
    }
}

void bad_producer(int s) {
    raw_send(s, encoded(wire::Hello{0}), {});
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) die("pipe");
    wire::Announce a;
    a.width = 64;
    a.height = 64;
    a.fourcc = 0x34325258;
    a.plane_count = 1;
    a.planes[0] = {0, 0, 256};
    a.fd_count = 1;
    raw_send(s, encoded(a), {p[0]});
    ::close(p[0]);
    ::close(p[1]);
    read_until_hangup(s);
    say("hung up");
}

void produce(int socket, int count) {
    auto conn = queue::Connection::from_socket(UniqueFd(socket));
    if (!conn) die(conn.error().message());
    auto producer = queue::Producer::create();
    if (!producer) die(producer.error().message());
    add_peer_buffers(*producer, 3);
    if (auto r = producer->add_consumer(std::move(*conn)); !r) die(r.error().message());
    for (int seq = 1; seq <= count; ++seq) {
        auto index = producer->dequeue(std::chrono::seconds(60));
        if (!index) die(index.error().message());
        const DmaBuf& buf = producer->buffer(*index)->planes[0].buffer;
        {
            auto map = Mapping::map(buf, Access::write);
            if (!map) die(map.error().message());
            auto access = CpuAccess::begin(buf, Access::write);
            if (!access) die(access.error().message());
            auto* p = reinterpret_cast<std::uint32_t*>(map->data());
            for (std::size_t i = 0; i < 64 * 64; ++i) p[i] = pattern(static_cast<std::uint64_t>(seq), i);
            if (auto e = access->end(); !e) die(e.error().message());
        }
        std::optional<SyncFile> fence;
        if (seq % 2 == 0) {
            auto f = buf.export_sync_file(Access::write);
            if (!f) die(f.error().message());
            fence = std::move(*f);
        }
        if (auto r = producer->queue(*index, std::move(fence), {static_cast<std::uint64_t>(seq), seq * 1000}); !r)
            die(r.error().message());
    }
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (producer->free_count() < 3) {
        if (std::chrono::steady_clock::now() > end) die("the consumer did not release every buffer");
        if (auto r = producer->dispatch(std::chrono::milliseconds(100)); !r) die(r.error().message());
    }
    say("released " + std::to_string(producer->stats().releases));
}

}  // namespace

int main(int argc, char** argv) {
    const std::size_t fds_at_start = fd_count();
    if (argc < 4) die("usage: queue_peer (--fd N | --connect PATH) ROLE [ARGS]");
    const std::string role = argv[3];
    // An inherited socket is this process's only extra fd: it is closed when the consumer goes.
    const std::size_t fds_expected = std::strcmp(argv[1], "--fd") == 0 ? fds_at_start - 1 : fds_at_start;
    if (role == "hostile") {
        hostile(argv[2]);
    } else if (role == "produce-timeline-die") {
        produce_timeline_die(std::atoi(argv[2]));
    } else if (role == "produce") {
        produce(std::atoi(argv[2]), argc > 4 ? std::atoi(argv[4]) : 1);
    } else if (role == "bad-producer") {
        const int s = std::atoi(argv[2]);
        bad_producer(s);
        ::close(s);
    } else {
        UniqueFd device;
        queue::ConsumerOptions options;
        if (role.rfind("timeline", 0) == 0) {
            device = timeline_device();
            options.timeline_device = device.get();
        }
        auto consumer = queue::Consumer::create(open_connection(argc, argv), options);
        if (!consumer) die(consumer.error().message());
        device.reset();  // the consumer keeps its own dup
        auto creds = consumer->producer_credentials();
        if (!creds || creds->pid != ::getppid()) die("the producer's credentials are not the parent's");
        if (std::strcmp(argv[1], "--fd") == 0 && consumer->fd() != 3) die("the consumer does not poll the inherited socket");
        if (role == "stream") {
            stream(*consumer, argc > 4 ? std::atoi(argv[4]) : 1);
        } else if (role == "hold") {
            const int k = argc > 4 ? std::atoi(argv[4]) : 1;
            std::vector<queue::AcquiredFrame> held;
            for (int i = 0; i < k; ++i) {
                auto f = consumer->acquire(std::chrono::seconds(20));
                if (!f) die(f.error().message());
                held.push_back(std::move(*f));
            }
            say("held");
            read_line();
            for (auto& f : held)
                if (auto r = consumer->release(f.buffer); !r) die(r.error().message());
            held.clear();
            say("done frames=" + std::to_string(drain(*consumer)));
        } else if (role == "stall") {
            const int k = argc > 4 ? std::atoi(argv[4]) : 0;
            std::vector<queue::AcquiredFrame> held;
            for (int i = 0; i < k; ++i) {
                auto f = consumer->acquire(std::chrono::seconds(20));
                if (!f) die(f.error().message());
                held.push_back(std::move(*f));
            }
            say("stalled");
            read_line();
            for (;;) {
                auto f = consumer->acquire(std::chrono::seconds(20));
                if (f) continue;
                if (!f.error().is_errno(ECONNRESET)) die("expected the producer's hang-up: " + f.error().message());
                break;
            }
            if (!held.empty() && consumer->release(held[0].buffer)) die("a release after the drop succeeded");
            say("dropped");
        } else if (role == "mailbox") {
            read_line();
            auto f = consumer->acquire(std::chrono::seconds(20));
            if (!f) die(f.error().message());
            check_pixels(*f);
            say("seq=" + std::to_string(f->info.sequence) + " replaced=" + std::to_string(consumer->stats().frames_replaced));
            if (auto r = consumer->release(f->buffer); !r) die(r.error().message());
            say("done frames=" + std::to_string(drain(*consumer)));
        } else if (role == "checksum") {
            checksum_role(*consumer, argc > 4 ? std::atoi(argv[4]) : 1, argc > 5 ? std::strtoull(argv[5], nullptr, 10) : 0);
            say("done frames=" + std::to_string(drain(*consumer)));
        } else if (role == "timeline-stream") {
            timeline_stream(*consumer, argc > 4 ? std::atoi(argv[4]) : 1);
            say("done frames=" + std::to_string(drain(*consumer)));
        } else if (role == "timeline-die") {
            timeline_die(*consumer);
        } else if (role == "fence") {
            fence_role(*consumer);
            say("done frames=" + std::to_string(drain(*consumer)));
        } else {
            die("unknown role " + role);
        }
    }
    const std::size_t fds_at_end = fd_count();
    if (fds_at_end != fds_expected)
        die("fd leak: " + std::to_string(fds_at_end) + " fds open at the end, expected " + std::to_string(fds_expected));
    say("ok fds=" + std::to_string(fds_at_end));
    return 0;
}
