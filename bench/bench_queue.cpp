// SPDX-License-Identifier: MIT
// The buffer queue: what crossing a process boundary costs, and how many system calls a frame
// takes on each endpoint's driving thread.
//
//   metric queue_cross_over_in_process R   the median time from Producer::queue() to the
//       consumer's acquire() returning, consumer in another process (SOCK_SEQPACKET socketpair)
//       over the same with the consumer on another thread of the same process (in-process
//       channel). Both consumers block in acquire() when the frame is queued. Goal: R <= 2.
//   metric queue_syscalls_per_frame N      system calls per frame in steady state, counted (not
//       timed) with a seccomp user-notification tap on each endpoint's thread, producer and
//       consumer in two processes over a socketpair; every frame carries an acquire fence and
//       a release fence (dups of signalled sync_files, counted too). N is the larger side; a
//       comment line gives both, and the same without fences. Goal: N <= 12.
//   metric queue_syscalls_per_frame_timeline N   (bench_queue --timeline, in a VM with a DRM
//       device that has syncobj timelines: ci/vm --virtio-gpu) the same count with timelines
//       negotiated: every frame carries an acquire point and every release a release point,
//       each signalled from the CPU by the application before it is sent (as the fenced run
//       sends signalled sync_files); the signals are counted too. Goal: N <= 6.
#include <dmabridge/alloc/udmabuf.hpp>
#include <dmabridge/kernel/timeline.hpp>
#include <dmabridge/queue/consumer.hpp>
#include <dmabridge/queue/producer.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>
#include <thread>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

#include "syscall_tap.hpp"

using namespace dmabridge;
using clock_type = std::chrono::steady_clock;

namespace {

constexpr int warmup = 20;
constexpr int measured = 300;
constexpr std::size_t buffer_count = 3;

[[noreturn]] void fail(const char* what, const Error& e) {
    std::fprintf(stderr, "bench_queue: %s: %s\n", what, e.message().c_str());
    std::exit(1);
}

std::int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(clock_type::now().time_since_epoch()).count();
}

// The device of the timeline runs (-1 in the others).
int timeline_device = -1;

queue::Producer make_producer(queue::Connection conn) {
    queue::ProducerOptions options;
    options.timeline_device = timeline_device;
    auto p = queue::Producer::create(std::move(options));
    if (!p) fail("producer", p.error());
    auto alloc = UdmabufAllocator::open();
    if (!alloc) fail("udmabuf", alloc.error());
    for (std::size_t i = 0; i < buffer_count; ++i) {
        auto buf = alloc->allocate_bytes(64 * 64 * 4, "bench-queue");
        if (!buf) fail("allocate", buf.error());
        BufferDesc d;
        d.width = 64;
        d.height = 64;
        d.fourcc = fourcc::XRGB8888;
        d.planes.push_back(PlaneDesc{std::move(*buf), 0, 256});
        if (auto r = p->add_buffer(std::move(d)); !r) fail("add_buffer", r.error());
    }
    if (auto r = p->add_consumer(std::move(conn)); !r) fail("add_consumer", r.error());
    return std::move(*p);
}

// A signalled sync_file to dup for every frame: stands for the GPU's fence.
SyncFile signalled_fence() {
    auto alloc = UdmabufAllocator::open();
    if (!alloc) fail("udmabuf", alloc.error());
    auto buf = alloc->allocate_bytes(4096);
    if (!buf) fail("allocate", buf.error());
    auto f = buf->export_sync_file(Access::write);
    if (!f) fail("export_sync_file", f.error());
    return std::move(*f);
}

struct Run {
    bool fences = false;                  // with timeline_device set: points instead of fences
    bool pace = false;                    // sleep before each queue so the consumer blocks
    test::SyscallTap* tap = nullptr;      // count this endpoint's calls
    std::uint64_t steady_calls = 0;       // calls of the measured frames
};

void produce(queue::Producer& p, Run& run) {
    std::optional<SyncFile> fence_source;
    const bool points = run.fences && timeline_device >= 0;
    if (run.fences && !points) fence_source = signalled_fence();
    std::uint64_t at_warmup = 0;
    for (int i = 0; i < warmup + measured; ++i) {
        if (i == warmup && run.tap) at_warmup = run.tap->count();
        if (run.pace) std::this_thread::sleep_for(std::chrono::microseconds(300));
        auto index = p.dequeue(std::chrono::seconds(30));
        if (!index) fail("dequeue", index.error());
        std::optional<SyncFile> fence;
        if (fence_source) {
            auto d = fence_source->dup();
            if (!d) fail("dup", d.error());
            fence = std::move(*d);
        }
        const queue::FrameInfo info{static_cast<std::uint64_t>(i), now_ns()};
        if (points) {
            const auto point = static_cast<std::uint64_t>(i + 1);
            if (auto r = p.acquire_timeline()->signal(point); !r) fail("signal", r.error());
            if (auto r = p.queue_point(*index, point, info); !r) fail("queue_point", r.error());
            continue;
        }
        if (auto r = p.queue(*index, std::move(fence), info); !r) fail("queue", r.error());
    }
    if (run.tap) run.steady_calls = run.tap->count() - at_warmup;
    while (p.free_count() < buffer_count)
        if (auto r = p.dispatch(std::chrono::seconds(30)); !r) fail("dispatch", r.error());
}

// Returns the median latency in microseconds.
double consume(queue::Consumer& c, Run& run) {
    std::optional<SyncFile> fence_source;
    const bool points = run.fences && timeline_device >= 0;
    if (run.fences && !points) fence_source = signalled_fence();
    std::vector<double> latencies;
    std::uint64_t at_warmup = 0;
    for (int i = 0; i < warmup + measured; ++i) {
        if (i == warmup && run.tap) at_warmup = run.tap->count();
        auto f = c.acquire(std::chrono::seconds(30));
        if (!f) fail("acquire", f.error());
        if (i >= warmup) latencies.push_back(static_cast<double>(now_ns() - f->info.timestamp_ns) / 1000.0);
        if (points) {
            if (i >= warmup && !f->acquire_point) {
                std::fprintf(stderr, "bench_queue: frame %d carries no acquire point: timelines not negotiated\n", i);
                std::exit(1);
            }
            const auto point = static_cast<std::uint64_t>(i + 1);
            if (auto r = c.release_timeline()->signal(point); !r) fail("signal", r.error());
            if (auto r = c.release_point(f->buffer, point); !r) fail("release_point", r.error());
            continue;
        }
        std::optional<SyncFile> fence;
        if (fence_source) {
            auto d = fence_source->dup();
            if (!d) fail("dup", d.error());
            fence = std::move(*d);
        }
        if (auto r = c.release(f->buffer, std::move(fence)); !r) fail("release", r.error());
    }
    if (run.tap) run.steady_calls = run.tap->count() - at_warmup;
    std::sort(latencies.begin(), latencies.end());
    return latencies[latencies.size() / 2];
}

// The consumer in a child process; returns {latency median us, consumer calls per frame} and
// fills the producer's calls per frame.
std::pair<double, double> cross_process(bool fences, bool pace, bool count, double* producer_calls) {
    auto pair = queue::Connection::socket_pair();
    if (!pair) fail("socketpair", pair.error());
    int result[2];
    if (::pipe(result) != 0) return {0, 0};
    const pid_t child = ::fork();
    if (child == 0) {
        ::close(result[0]);
        { queue::Connection drop(std::move(pair->first)); }
        auto c = queue::Consumer::create(std::move(pair->second), queue::ConsumerOptions{timeline_device});
        if (!c) fail("consumer", c.error());
        Run run{fences, pace, nullptr, 0};
        double out[2] = {0, 0};
        if (count) {
            test::SyscallTap tap;
            run.tap = &tap;
            if (!tap.run([&](test::SyscallTap&) { out[0] = consume(*c, run); })) std::_Exit(2);
            out[1] = static_cast<double>(run.steady_calls) / measured;
        } else {
            out[0] = consume(*c, run);
        }
        (void)!::write(result[1], out, sizeof out);
        std::_Exit(0);
    }
    ::close(result[1]);
    { queue::Connection drop(std::move(pair->second)); }
    auto p = make_producer(std::move(pair->first));
    Run run{fences, pace, nullptr, 0};
    if (count) {
        test::SyscallTap tap;
        run.tap = &tap;
        if (!tap.run([&](test::SyscallTap&) { produce(p, run); })) {
            std::fprintf(stderr, "bench_queue: %s\n", tap.error().c_str());
            std::exit(1);
        }
        *producer_calls = static_cast<double>(run.steady_calls) / measured;
    } else {
        produce(p, run);
    }
    double out[2] = {0, 0};
    if (::read(result[0], out, sizeof out) != sizeof out) {
        std::fprintf(stderr, "bench_queue: the consumer process reported nothing\n");
        std::exit(1);
    }
    ::close(result[0]);
    int status = 0;
    ::waitpid(child, &status, 0);
    return {out[0], out[1]};
}

double in_process(bool fences) {
    auto pair = queue::Connection::local_pair();
    if (!pair) fail("local_pair", pair.error());
    auto p = make_producer(std::move(pair->first));
    auto c = queue::Consumer::create(std::move(pair->second));
    if (!c) fail("consumer", c.error());
    double latency = 0;
    std::thread consumer([&] {
        Run run{fences, true, nullptr, 0};
        latency = consume(*c, run);
    });
    Run run{fences, true, nullptr, 0};
    produce(p, run);
    consumer.join();
    return latency;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc > 1 && std::strcmp(argv[1], "--timeline") == 0) {
        auto device = Timeline::open_device();
        if (!device) {
            std::fprintf(stderr, "bench_queue: %s (run inside ci/vm --virtio-gpu)\n", device.error().message().c_str());
            return 1;
        }
        timeline_device = device->get();
        double producer_points = 0;
        const double consumer_points = cross_process(true, false, true, &producer_points).second;
        std::printf("# syscalls per frame with timelines (acquire and release points, their CPU signals included): "
                    "producer %.2f, consumer %.2f\n",
                    producer_points, consumer_points);
        std::printf("metric queue_syscalls_per_frame_timeline %.2f\n", std::max(producer_points, consumer_points));
        return 0;
    }
    // Processes first: fork before this process has any thread.
    const double cross_us = cross_process(false, true, false, nullptr).first;
    double producer_fenced = 0, producer_plain = 0;
    const double consumer_fenced = cross_process(true, false, true, &producer_fenced).second;
    const double consumer_plain = cross_process(false, false, true, &producer_plain).second;
    const double local_us = in_process(false);

    std::printf("# queue -> acquire median: %.1f us across processes (socketpair), %.1f us in one process (thread)\n",
                cross_us, local_us);
    std::printf("metric queue_cross_over_in_process %.2f\n", cross_us / local_us);
    std::printf("# syscalls per frame, with acquire and release fences: producer %.2f, consumer %.2f; "
                "implicit sync: producer %.2f, consumer %.2f\n",
                producer_fenced, consumer_fenced, producer_plain, consumer_plain);
    std::printf("metric queue_syscalls_per_frame %.2f\n", std::max(producer_fenced, consumer_fenced));
    return 0;
}
