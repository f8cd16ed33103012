// SPDX-License-Identifier: MIT
#pragma once
// The baseline of the wake-up benchmarks: the kernel's plain wake-up path on the same machine in
// the same run, an eventfd written on this thread waking a poll()er on another thread. Median
// of `rounds` round trips, in microseconds.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <dmabridge/base/unique_fd.hpp>

namespace dmabridge::bench {

using clock_type = std::chrono::steady_clock;

inline double median_us(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

inline double eventfd_wake_us(int rounds) {
    UniqueFd efd(::eventfd(0, EFD_CLOEXEC));
    std::atomic<clock_type::time_point> woke{};
    std::atomic<int> seen{0};
    std::thread waiter([&] {
        for (int i = 0; i < rounds; ++i) {
            pollfd p{efd.get(), POLLIN, 0};
            ::poll(&p, 1, -1);
            woke = clock_type::now();
            std::uint64_t v;
            (void)!::read(efd.get(), &v, sizeof v);
            ++seen;
        }
    });
    std::vector<double> samples;
    for (int i = 0; i < rounds; ++i) {
        std::this_thread::sleep_for(std::chrono::microseconds(500));  // let the waiter block
        const auto start = clock_type::now();
        const std::uint64_t one = 1;
        (void)!::write(efd.get(), &one, sizeof one);
        while (seen.load() <= i) std::this_thread::yield();
        samples.push_back(std::chrono::duration<double, std::micro>(woke.load() - start).count());
    }
    waiter.join();
    return median_us(samples);
}

}  // namespace dmabridge::bench
