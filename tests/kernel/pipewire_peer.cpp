// SPDX-License-Identifier: MIT
// The other process of the pipewire tests (tests/kernel/test_pipewire.cpp starts it), public API
// only:
//   pipewire_peer produce NAME WIDTH HEIGHT   publishes NAME (udmabuf dma-bufs, XRGB8888 LINEAR,
//                                             no shared memory) with the test pattern until killed
//   pipewire_peer consume TARGET FRAMES       reads FRAMES frames of TARGET as dma-bufs, checks
//                                             every pixel, prints "frames N" after each; exits 0
//                                             when all were right, 1 otherwise
//   pipewire_peer hold TARGET FRAMES          reads FRAMES frames as consume does but releases
//                                             none; prints "holding N" once it holds them all,
//                                             then waits holding them until killed
//   pipewire_peer produce-timeline NAME W H DELAY_MS
//                                             as produce, offering explicit sync (a timeline
//                                             device of its own); where a consumer takes it,
//                                             each frame is queued first with its acquire point
//                                             left to this process (PointBy::application), then
//                                             written DELAY_MS later, then its point signalled;
//                                             waits for each buffer's release point before
//                                             writing into it; prints "timelines N" once
//   pipewire_peer hostile KIND NAME W H       publishes NAME with buffers described falsely
//                                             (pipewire_hostile.hpp: raw libpipewire)
// All give up after 60 s.

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <dmabridge/alloc/udmabuf.hpp>
#include <dmabridge/format/fourcc.hpp>
#include <dmabridge/kernel/cpu_access.hpp>
#include <dmabridge/kernel/timeline.hpp>
#include <dmabridge/pipewire/consumer.hpp>
#include <dmabridge/pipewire/context.hpp>
#include <dmabridge/pipewire/producer.hpp>

#include "pipewire_hostile.hpp"
#include "pipewire_pattern.hpp"
#include "pipewire_pattern_producer.hpp"

using namespace dmabridge;
using namespace std::chrono_literals;

namespace {

int fail(const std::string& what, const Error& e) {
    std::fprintf(stderr, "pipewire_peer: %s: %s\n", what.c_str(), e.message().c_str());
    return 2;
}

double now() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

int produce(const std::string& name, std::uint32_t width, std::uint32_t height) {
    auto context = pipewire::Context::create();
    if (!context) return fail("context", context.error());
    auto udmabuf = UdmabufAllocator::open();
    if (!udmabuf) return fail("udmabuf", udmabuf.error());
    const auto o = test::dmabuf_producer_options(name, width, height, *udmabuf);
    auto producer = pipewire::Producer::create(*context, o);
    if (!producer) return fail("producer", producer.error());
    std::uint32_t frame = 0;
    const double end = now() + 60;
    while (now() < end) {
        if (auto r = context->dispatch(10ms); !r) return fail("dispatch", r.error());
        auto f = producer->dequeue();
        if (!f) return fail("dequeue", f.error());
        if (!*f) continue;
        if (auto ok = test::fill_pattern_frame(*(*f)->desc, frame); !ok) return fail("fill", ok.error());
        if (auto ok = producer->queue(**f, frame); !ok) return fail("queue", ok.error());
        ++frame;
    }
    return 0;
}

int produce_with_timelines(const std::string& name, std::uint32_t width, std::uint32_t height, int delay_ms) {
    auto device = Timeline::open_device();
    if (!device) return fail("timeline device", device.error());
    auto context = pipewire::Context::create();
    if (!context) return fail("context", context.error());
    auto udmabuf = UdmabufAllocator::open();
    if (!udmabuf) return fail("udmabuf", udmabuf.error());
    auto o = test::dmabuf_producer_options(name, width, height, *udmabuf);
    o.timeline_device = device->get();
    auto producer = pipewire::Producer::create(*context, o);
    if (!producer) return fail("producer", producer.error());
    std::uint32_t frame = 0;
    bool told = false;
    const double end = now() + 60;
    while (now() < end) {
        if (auto r = context->dispatch(10ms); !r) return fail("dispatch", r.error());
        auto f = producer->dequeue();
        if (!f) return fail("dequeue", f.error());
        if (!*f) continue;
        const pipewire::ProducerFrame& pf = **f;
        if (pf.acquire_timeline == nullptr) {  // implicit sync: as produce
            if (auto ok = test::fill_pattern_frame(*pf.desc, frame); !ok) return fail("fill", ok.error());
            if (auto ok = producer->queue(pf, frame); !ok) return fail("queue", ok.error());
            ++frame;
            continue;
        }
        if (!told) {
            std::printf("timelines %u\n", frame);
            std::fflush(stdout);
            told = true;
        }
        // The consumer's last reads of this buffer first.
        auto released = producer->wait_released(pf, 5000ms);
        if (!released) return fail("wait for the release point", released.error());
        if (*released != WaitStatus::ready) {
            std::fprintf(stderr, "pipewire_peer: release point %llu of buffer %u not signalled in 5 s\n",
                         static_cast<unsigned long long>(pf.release_point), pf.index);
            return 3;
        }
        // Sent before it is written: only the acquire point tells the consumer when to read.
        if (auto ok = producer->queue(pf, frame, 0, pipewire::PointBy::application); !ok) return fail("queue", ok.error());
        const double write_at = now() + delay_ms / 1000.0;
        while (now() < write_at)
            if (auto r = context->dispatch(5ms); !r) return fail("dispatch", r.error());
        if (auto ok = test::fill_pattern_frame(*pf.desc, frame); !ok) return fail("fill", ok.error());
        if (auto ok = pf.acquire_timeline->signal(pf.acquire_point); !ok) return fail("signal", ok.error());
        ++frame;
    }
    return 0;
}

// Waits for the producer's writes to `frame` and checks its pixels: 0 when right.
int check_frame(const pipewire::ConsumerFrame& frame) {
    const BufferDesc& desc = *frame.desc;
    if (auto w = desc.planes[0].buffer.wait(Access::read, 1000ms); !w || *w != WaitStatus::ready)
        return fail("wait for the producer's writes", w ? Error::library(Errc::unsupported, "timed out") : w.error());
    auto map = Mapping::map(desc.planes[0].buffer, Access::read);
    if (!map) return fail("map", map.error());
    auto check = test::check_pattern(map->data() + desc.planes[0].offset, desc.planes[0].stride, desc.width,
                                     desc.height);
    if (check.wrong != 0) {
        std::fprintf(stderr, "pipewire_peer: frame %u: %zu pixels wrong\n", check.frame, check.wrong);
        return 1;
    }
    return 0;
}

// Reads `frames` frames of `target` as dma-bufs; with `hold`, releases none of them: prints
// "holding N" once it holds them all and keeps dispatching, holding, until killed (or 60 s).
int consume(const std::string& target, std::uint64_t frames, bool hold = false) {
    auto context = pipewire::Context::create();
    if (!context) return fail("context", context.error());
    pipewire::ConsumerOptions o;
    o.target = target;
    o.name = "dmabridge-peer-consumer";
    o.formats.add(fourcc::XRGB8888, modifier::linear);
    o.accept_shm = false;
    auto consumer = pipewire::Consumer::create(*context, o);
    if (!consumer) return fail("consumer", consumer.error());
    std::uint64_t got = 0;
    std::vector<pipewire::ConsumerFrame> held;
    const double end = now() + 60;
    while (got < frames && now() < end) {
        if (auto r = context->dispatch(10ms); !r) return fail("dispatch", r.error());
        auto f = consumer->acquire();
        if (!f) return fail("acquire", f.error());
        if (!*f) continue;
        if (int wrong = check_frame(**f); wrong != 0) return wrong;
        if (hold) {
            held.push_back(**f);
            ++got;
            continue;
        }
        if (auto ok = consumer->release(**f); !ok) return fail("release", ok.error());
        std::printf("frames %llu\n", static_cast<unsigned long long>(++got));
        std::fflush(stdout);
    }
    if (hold && got == frames) {
        std::printf("holding %llu\n", static_cast<unsigned long long>(got));
        std::fflush(stdout);
        while (now() < end)
            if (auto r = context->dispatch(100ms); !r) return fail("dispatch", r.error());
    }
    return got == frames ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
    const std::string mode = argc > 1 ? argv[1] : "";
    if (mode == "produce" && argc == 5)
        return produce(argv[2], static_cast<std::uint32_t>(std::atoi(argv[3])), static_cast<std::uint32_t>(std::atoi(argv[4])));
    if (mode == "produce-timeline" && argc == 6)
        return produce_with_timelines(argv[2], static_cast<std::uint32_t>(std::atoi(argv[3])),
                                      static_cast<std::uint32_t>(std::atoi(argv[4])), std::atoi(argv[5]));
    if (mode == "hostile" && argc == 6)
        return test::run_hostile_producer(argv[2], argv[3], static_cast<unsigned>(std::atoi(argv[4])),
                                          static_cast<unsigned>(std::atoi(argv[5])));
    if (mode == "consume" && argc == 4) return consume(argv[2], std::strtoull(argv[3], nullptr, 10));
    if (mode == "hold" && argc == 4) return consume(argv[2], std::strtoull(argv[3], nullptr, 10), true);
    std::fprintf(stderr, "usage: pipewire_peer produce NAME WIDTH HEIGHT | consume TARGET FRAMES | hold TARGET FRAMES | "
                         "hostile KIND NAME WIDTH HEIGHT\n");
    return 2;
}
