// SPDX-License-Identifier: MIT
#pragma once
// The baseline of the wake-up benchmarks: the kernel's plain wake-up path on the same machine in
// the same run, an eventfd written on this thread waking a poll()er on another thread: one round
// trip at a time (EventfdWaker), or the median of `rounds` of them in microseconds.
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

// An eventfd with a thread blocked in poll() on it. sample() writes it and returns the time
// from the write to the waiter's wake-up, in microseconds. One sample at a time, so that a
// benchmark can interleave the baseline with what it measures: both then see the same load.
class EventfdWaker {
public:
    EventfdWaker() : efd_(::eventfd(0, EFD_CLOEXEC)), waiter_([this] { run(); }) {}
    EventfdWaker(const EventfdWaker&) = delete;
    EventfdWaker& operator=(const EventfdWaker&) = delete;
    ~EventfdWaker() {
        stop_ = true;
        const std::uint64_t one = 1;
        (void)!::write(efd_.get(), &one, sizeof one);
        waiter_.join();
    }

    double sample() {
        const int before = seen_.load();
        std::this_thread::sleep_for(std::chrono::microseconds(500));  // let the waiter block
        const auto start = clock_type::now();
        const std::uint64_t one = 1;
        (void)!::write(efd_.get(), &one, sizeof one);
        while (seen_.load() == before) std::this_thread::yield();
        return std::chrono::duration<double, std::micro>(woke_.load() - start).count();
    }

private:
    void run() {
        while (!stop_) {
            pollfd p{efd_.get(), POLLIN, 0};
            ::poll(&p, 1, -1);
            woke_ = clock_type::now();
            std::uint64_t v;
            (void)!::read(efd_.get(), &v, sizeof v);
            ++seen_;
        }
    }

    UniqueFd efd_;
    std::atomic<clock_type::time_point> woke_{};
    std::atomic<int> seen_{0};
    std::atomic<bool> stop_{false};
    std::thread waiter_;
};

inline double eventfd_wake_us(int rounds) {
    EventfdWaker waker;
    std::vector<double> samples;
    for (int i = 0; i < rounds; ++i) samples.push_back(waker.sample());
    return median_us(samples);
}

}  // namespace dmabridge::bench
