// SPDX-License-Identifier: MIT
// PipeWire against dmabridge's own queue: what the PipeWire transport costs a camera-sized stream.
//
//   metric pipewire_fps_over_queue R   frames per second of 640x480 XRGB8888 LINEAR dma-bufs
//       (udmabuf, 4 buffers) from a producer in this process to a consumer in another process
//       through a private PipeWire daemon (dmabridge::pipewire Producer/Consumer), over the same
//       through dmabridge::queue over a socketpair, same run, same frame count. The producer
//       fills every frame with the test pattern (a stand-in for a camera: no vivid device), the
//       consumer acquires, imports through a vulkan::ImportCache (lavapipe) and releases, on
//       both paths alike. The rate is timed in the consumer from its first measured frame to
//       its last. Goal: R >= 0.9.
//   metric pipewire_import_hits R   the fraction of the PipeWire consumer's imports that were
//       cache hits after the warm-up frames (more than one round of buffers). Goal: >= 0.99.
//
// The PipeWire consumer runs as a second process of this binary:
//   bench_pipewire pw-consume TARGET   prints "result FPS HITS MISSES" and exits 0
#include <dmabridge/alloc/udmabuf.hpp>
#include <dmabridge/format/fourcc.hpp>
#include <dmabridge/kernel/cpu_access.hpp>
#include <dmabridge/pipewire/consumer.hpp>
#include <dmabridge/pipewire/context.hpp>
#include <dmabridge/pipewire/producer.hpp>
#include <dmabridge/queue/consumer.hpp>
#include <dmabridge/queue/producer.hpp>
#include <dmabridge/vulkan/context.hpp>
#include <dmabridge/vulkan/import_cache.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include <sys/wait.h>
#include <unistd.h>

#include "pipewire_daemon.hpp"
#include "pipewire_pattern_producer.hpp"

using namespace dmabridge;
using namespace std::chrono_literals;

namespace {

constexpr std::uint32_t width = 640;
constexpr std::uint32_t height = 480;
constexpr int warmup = 20;      // more than a round of buffers: every buffer has been imported
constexpr int measured = 300;
constexpr std::uint32_t buffer_count = 4;
constexpr double give_up_s = 120;  // bounded: a stalled path fails the benchmark

[[noreturn]] void fail(const char* what, const Error& e) {
    std::fprintf(stderr, "bench_pipewire: %s: %s\n", what, e.message().c_str());
    std::exit(1);
}

[[noreturn]] void fail(const char* what) {
    std::fprintf(stderr, "bench_pipewire: %s\n", what);
    std::exit(1);
}

double now() { return test::monotonic_seconds(); }

// What both consumers do with a frame: import it through the cache (a hit once the buffer was
// seen).
vulkan::Context make_vulkan() {
    auto ctx = vulkan::Context::create();
    if (!ctx) fail("create a Vulkan device", ctx.error());
    return std::move(*ctx);
}

struct Importer {
    vulkan::Context context = make_vulkan();
    vulkan::ImportCache cache{context.device()};

    void import(const BufferDesc& desc) {
        if (auto image = cache.import(desc); !image) fail("import", image.error());
    }
};

// The writes a camera would make into the frame.
void fill(const BufferDesc& desc, std::uint32_t frame) {
    if (auto ok = test::fill_pattern_frame(desc, frame); !ok) fail("fill", ok.error());
}

// ---- dmabridge::queue ----------------------------------------------------------------------

double queue_fps() {
    auto pair = queue::Connection::socket_pair();
    if (!pair) fail("socketpair", pair.error());
    int result[2];
    if (::pipe(result) != 0) fail("pipe");
    const pid_t child = ::fork();
    if (child == 0) {
        ::close(result[0]);
        { queue::Connection drop(std::move(pair->first)); }
        auto c = queue::Consumer::create(std::move(pair->second));
        if (!c) fail("queue consumer", c.error());
        Importer importer;
        // Ready: the producer starts once the Vulkan device exists (lavapipe takes seconds to
        // start under emulation, longer than a dequeue waits).
        const char ready = 1;
        (void)!::write(result[1], &ready, 1);
        double start = 0;
        for (int i = 0; i < warmup + measured; ++i) {
            auto f = c->acquire(30s);
            if (!f) fail("acquire", f.error());
            if (i == warmup) start = now();
            importer.import(*c->buffer(f->buffer));
            if (auto r = c->release(f->buffer, std::nullopt); !r) fail("release", r.error());
        }
        const double fps = (measured - 1) / (now() - start);
        (void)!::write(result[1], &fps, sizeof fps);
        std::_Exit(0);
    }
    ::close(result[1]);
    { queue::Connection drop(std::move(pair->second)); }
    auto p = queue::Producer::create({});
    if (!p) fail("queue producer", p.error());
    auto alloc = UdmabufAllocator::open();
    if (!alloc) fail("udmabuf", alloc.error());
    for (std::uint32_t i = 0; i < buffer_count; ++i) {
        ImageRequest request;
        request.width = width;
        request.height = height;
        request.fourcc = fourcc::XRGB8888;
        auto d = alloc->allocate(request);
        if (!d) fail("allocate", d.error());
        if (auto r = p->add_buffer(std::move(*d)); !r) fail("add_buffer", r.error());
    }
    if (auto r = p->add_consumer(std::move(pair->first)); !r) fail("add_consumer", r.error());
    char ready = 0;
    if (::read(result[0], &ready, 1) != 1) fail("the queue consumer process did not start");
    for (int i = 0; i < warmup + measured; ++i) {
        auto index = p->dequeue(30s);
        if (!index) fail("dequeue", index.error());
        fill(*p->buffer(*index), static_cast<std::uint32_t>(i));
        if (auto r = p->queue(*index, std::nullopt, queue::FrameInfo{static_cast<std::uint64_t>(i), 0}); !r)
            fail("queue", r.error());
    }
    double fps = 0;
    if (::read(result[0], &fps, sizeof fps) != sizeof fps) fail("the queue consumer process reported nothing");
    ::close(result[0]);
    int status = 0;
    ::waitpid(child, &status, 0);
    return fps;
}

// ---- PipeWire -------------------------------------------------------------------------------

int pw_consume(const std::string& target) {
    auto context = pipewire::Context::create();
    if (!context) fail("context", context.error());
    pipewire::ConsumerOptions o;
    o.target = target;
    o.name = "bench-pipewire-consumer";
    o.formats.add(fourcc::XRGB8888, modifier::linear);
    o.accept_shm = false;
    auto consumer = pipewire::Consumer::create(*context, o);
    if (!consumer) fail("consumer", consumer.error());
    Importer importer;
    int got = 0;
    double start = 0;
    ImportCacheStats at_start;
    const double end = now() + give_up_s;
    while (got < warmup + measured) {
        if (now() > end) fail("the PipeWire consumer timed out");
        if (auto r = context->dispatch(100ms); !r) fail("dispatch", r.error());
        auto f = consumer->acquire();
        if (!f) fail("acquire", f.error());
        if (!*f) continue;
        if (got == warmup) {
            start = now();
            at_start = importer.cache.stats();
        }
        if (!(*f)->dmabuf || (*f)->desc == nullptr) fail("the PipeWire consumer got no dma-buf");
        importer.import(*(*f)->desc);
        if (auto r = consumer->release(**f); !r) fail("release", r.error());
        ++got;
    }
    const double fps = (measured - 1) / (now() - start);
    const auto stats = importer.cache.stats();
    std::printf("result %f %llu %llu\n", fps, static_cast<unsigned long long>(stats.hits - at_start.hits),
                static_cast<unsigned long long>(stats.misses - at_start.misses));
    return 0;
}

struct PwResult {
    double fps = 0;
    unsigned long long hits = 0, misses = 0;
};

PwResult pipewire_fps(const char* self) {
    auto daemons = test::PipeWireDaemons::get();
    if (!daemons) fail("start pipewire and wireplumber", daemons.error());
    auto context = pipewire::Context::create();
    if (!context) fail("context", context.error());
    auto udmabuf = UdmabufAllocator::open();
    if (!udmabuf) fail("udmabuf", udmabuf.error());
    const std::string name = "bench-pipewire-producer";
    auto o = test::dmabuf_producer_options(name, width, height, *udmabuf);
    o.buffer_count = buffer_count;
    auto producer = pipewire::Producer::create(*context, o);
    if (!producer) fail("producer", producer.error());
    const std::string log = (*daemons)->runtime_dir() + "/bench-consumer.log";
    auto consumer = test::Child::spawn({self, "pw-consume", name}, log);
    if (!consumer) fail("spawn the consumer", consumer.error());
    std::uint32_t frame = 0;
    const double end = now() + give_up_s;
    while (!consumer->exited()) {
        if (now() > end) fail("the PipeWire producer timed out");
        if (auto r = context->dispatch(10ms); !r) fail("dispatch", r.error());
        if (producer->error()) fail("producer", *producer->error());
        auto f = producer->dequeue();
        if (!f) fail("dequeue", f.error());
        if (!*f) continue;
        fill(*(*f)->desc, frame);
        if (auto r = producer->queue(**f, frame); !r) fail("queue", r.error());
        ++frame;
    }
    const std::string out = consumer->output();
    PwResult r;
    const auto at = out.find("result ");
    if (consumer->exit_code() != 0 || at == std::string::npos ||
        std::sscanf(out.c_str() + at, "result %lf %llu %llu", &r.fps, &r.hits, &r.misses) != 3) {
        std::fprintf(stderr, "bench_pipewire: the consumer failed (exit %d):\n%s\n%s\n", consumer->exit_code(),
                     out.c_str(), (*daemons)->log_tail().c_str());
        std::exit(1);
    }
    std::printf("# PipeWire producer queued %u frames for the consumer's %d\n", frame, warmup + measured);
    return r;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc == 3 && std::strcmp(argv[1], "pw-consume") == 0) return pw_consume(argv[2]);
    // The queue first: fork before this process has started anything.
    const double queue = queue_fps();
    const PwResult pw = pipewire_fps(argv[0]);
    std::printf("# %ux%u XRGB8888, %d frames after %d warm-up: PipeWire %.1f fps, dmabridge::queue %.1f fps\n", width,
                height, measured, warmup, pw.fps, queue);
    std::printf("# PipeWire consumer imports after warm-up: %llu hits, %llu misses\n", pw.hits, pw.misses);
    std::printf("metric pipewire_fps_over_queue %.3f\n", pw.fps / queue);
    const double total = static_cast<double>(pw.hits + pw.misses);
    std::printf("metric pipewire_import_hits %.3f\n", total > 0 ? static_cast<double>(pw.hits) / total : 0.0);
    return 0;
}
