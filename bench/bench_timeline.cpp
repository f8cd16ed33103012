// SPDX-License-Identifier: MIT
// Timeline wake-up latency: from signalling a DRM syncobj timeline point (Timeline::signal) to
// the FenceWatcher's callback (DRM_IOCTL_SYNCOBJ_EVENTFD behind it), over the kernel's plain
// wake-up path in the same run (an eventfd write waking a poll()er on another thread). Both are
// medians of many round trips, taken in turns (an eventfd round trip, then a timeline one) so
// that both see the same load: on a busy machine the two used to be measured seconds apart and
// their ratio swung from 1 to 29. Needs a DRM device with syncobj timelines: ci/bench runs it in
// the VM with --virtio-gpu.
//
//   metric timeline_wake_over_eventfd R   (goal <= 2)
#include <dmabridge/kernel/fence_watcher.hpp>
#include <dmabridge/kernel/timeline.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

#include "wake_baseline.hpp"

using namespace dmabridge;
using dmabridge::bench::clock_type;

namespace {

constexpr int rounds = 300;

struct Medians {
    double timeline_us = -1, eventfd_us = -1;
};

// Point i + 1 of a fresh timeline, signalled on this thread, reaches a FenceWatcher callback on
// the watcher's thread. The watch is armed before the signal (the usual order: a consumer
// watches a point that the producer's work signals later). Each round also takes one eventfd
// round trip first.
Medians timeline_wake_us(int device) {
    auto timeline = Timeline::create(device);
    if (!timeline) {
        std::fprintf(stderr, "bench_timeline: %s\n", timeline.error().message().c_str());
        return {};
    }
    auto watcher = FenceWatcher::create();
    if (!watcher || !watcher->start()) return {};
    dmabridge::bench::EventfdWaker baseline;
    std::vector<double> baseline_samples;
    std::atomic<clock_type::time_point> woke{};
    std::atomic<int> seen{0};
    std::vector<double> samples;
    for (int i = 0; i < rounds; ++i) {
        baseline_samples.push_back(baseline.sample());
        const auto point = static_cast<std::uint64_t>(i + 1);
        auto id = watcher->watch(*timeline, point, [&](WatchId, WaitStatus) {
            woke = clock_type::now();
            ++seen;
        }, std::chrono::seconds(30));
        if (!id) {
            std::fprintf(stderr, "bench_timeline: watch: %s\n", id.error().message().c_str());
            return {};
        }
        std::this_thread::sleep_for(std::chrono::microseconds(500));  // let the watcher block
        const auto start = clock_type::now();
        if (auto s = timeline->signal(point); !s) {
            std::fprintf(stderr, "bench_timeline: signal: %s\n", s.error().message().c_str());
            return {};
        }
        while (seen.load() <= i) std::this_thread::yield();
        samples.push_back(std::chrono::duration<double, std::micro>(woke.load() - start).count());
    }
    watcher->stop();
    return {dmabridge::bench::median_us(samples), dmabridge::bench::median_us(baseline_samples)};
}

// The same signal reaching a thread blocked in Timeline::wait() (DRM_IOCTL_SYNCOBJ_TIMELINE_WAIT):
// the kernel's own wait on the point, without the watcher. Printed as a comment, to tell the
// watcher's cost from the kernel's.
double kernel_wait_wake_us(int device) {
    auto timeline = Timeline::create(device);
    if (!timeline) return -1;
    std::atomic<clock_type::time_point> woke{};
    std::atomic<int> seen{0};
    std::atomic<bool> failed{false};
    std::thread waiter([&] {
        for (int i = 0; i < rounds; ++i) {
            auto w = timeline->wait(static_cast<std::uint64_t>(i + 1), std::chrono::seconds(30));
            if (!w || *w != WaitStatus::ready) failed = true;
            woke = clock_type::now();
            ++seen;
        }
    });
    std::vector<double> samples;
    for (int i = 0; i < rounds; ++i) {
        std::this_thread::sleep_for(std::chrono::microseconds(500));  // let the waiter block
        const auto start = clock_type::now();
        if (!timeline->signal(static_cast<std::uint64_t>(i + 1))) failed = true;
        while (seen.load() <= i) std::this_thread::yield();
        samples.push_back(std::chrono::duration<double, std::micro>(woke.load() - start).count());
    }
    waiter.join();
    return failed ? -1 : dmabridge::bench::median_us(samples);
}

}  // namespace

int main() {
    auto device = Timeline::open_device();
    if (!device) {
        std::fprintf(stderr, "bench_timeline: %s (run inside ci/vm --virtio-gpu)\n", device.error().message().c_str());
        return 1;
    }
    const Medians wake = timeline_wake_us(device->get());
    const double timeline = wake.timeline_us, eventfd = wake.eventfd_us;
    const double kernel_wait = kernel_wait_wake_us(device->get());
    if (timeline < 0 || kernel_wait < 0) return 1;
    std::printf("# median wake-up: timeline point signal -> watcher callback %.1f us, -> a thread in "
                "Timeline::wait() %.1f us; eventfd -> poll %.1f us\n",
                timeline, kernel_wait, eventfd);
    std::printf("metric timeline_wake_over_eventfd %.2f\n", timeline / eventfd);
    return 0;
}
