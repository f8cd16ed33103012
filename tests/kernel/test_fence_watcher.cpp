// SPDX-License-Identifier: MIT
// The fence watcher against real dma-fences (vgem): many buffers, random signal order,
// cancellation from callbacks, the event-loop fd, timeouts.
#include <dmabridge/kernel/fence_watcher.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include <poll.h>

#include <doctest/doctest.h>

#include "fd_count.hpp"
#include "vgem.hpp"

using namespace dmabridge;
using namespace std::chrono_literals;
using dmabridge::test::FdLeakCheck;
using dmabridge::test::Vgem;

TEST_SUITE_BEGIN("any_kernel");

TEST_CASE_FIXTURE(FdLeakCheck, "a hundred buffers signalled in random order each call back exactly once, after their signal") {
    Vgem vgem;
    constexpr int count = 100;
    std::vector<DmaBuf> buffers;
    std::vector<std::uint32_t> fences;
    for (int i = 0; i < count; ++i) {
        buffers.push_back(vgem.create_buffer());
        fences.push_back(vgem.attach_fence(true));
    }
    auto watcher = FenceWatcher::create();
    REQUIRE(watcher);
    std::vector<std::atomic<int>> calls(count);
    std::vector<std::atomic<bool>> signalled(count);
    std::atomic<int> early{0}, done{0};
    std::vector<WatchId> ids(count);
    for (int i = 0; i < count; ++i) {
        auto id = watcher->watch(buffers[static_cast<std::size_t>(i)], Access::read, [&, i](WatchId, WaitStatus status) {
            if (!signalled[static_cast<std::size_t>(i)] || status != WaitStatus::ready) ++early;
            ++calls[static_cast<std::size_t>(i)];
            ++done;
        });
        REQUIRE(id);
        ids[static_cast<std::size_t>(i)] = *id;
    }
    REQUIRE(watcher->start());
    std::this_thread::sleep_for(50ms);
    CHECK(done == 0);  // nothing signalled yet
    std::vector<int> order(count);
    for (int i = 0; i < count; ++i) order[static_cast<std::size_t>(i)] = i;
    std::shuffle(order.begin(), order.end(), std::mt19937(1234));
    for (int i : order) {
        signalled[static_cast<std::size_t>(i)] = true;
        vgem.signal(fences[static_cast<std::size_t>(i)]);
    }
    for (int wait = 0; wait < 500 && done < count; ++wait) std::this_thread::sleep_for(10ms);
    watcher->stop();
    CHECK(done == count);
    CHECK(early == 0);
    for (int i = 0; i < count; ++i) CHECK(calls[static_cast<std::size_t>(i)] == 1);
    CHECK(watcher->pending() == 0);
    CHECK_FALSE(watcher->cancel(ids[0]));  // already completed
}

TEST_CASE_FIXTURE(FdLeakCheck, "a callback may cancel another watch that is due at the same time") {
    Vgem vgem;
    DmaBuf a = vgem.create_buffer();
    DmaBuf b = vgem.create_buffer();
    auto watcher = FenceWatcher::create();
    REQUIRE(watcher);
    WatchId second = 0;
    int first_calls = 0, second_calls = 0;
    bool cancelled = false;
    auto first = watcher->watch(a, Access::write, [&](WatchId, WaitStatus) {
        ++first_calls;
        cancelled = watcher->cancel(second);
    });
    REQUIRE(first);
    auto id = watcher->watch(b, Access::write, [&](WatchId, WaitStatus) { ++second_calls; });
    REQUIRE(id);
    second = *id;
    // Both buffers are idle: both watches are due in the first dispatch, in order.
    auto ran = watcher->dispatch(1000ms);
    REQUIRE(ran);
    CHECK(*ran == 1);
    CHECK(first_calls == 1);
    CHECK(cancelled);
    CHECK(second_calls == 0);
    CHECK(watcher->pending() == 0);
    CHECK(*watcher->dispatch(Timeout{0}) == 0);
}

TEST_CASE_FIXTURE(FdLeakCheck, "in event-loop mode the watcher's fd turns readable when a fence signals") {
    Vgem vgem;
    DmaBuf buf = vgem.create_buffer();
    const auto fence = vgem.attach_fence(true);
    auto watcher = FenceWatcher::create();
    REQUIRE(watcher);
    int calls = 0;
    REQUIRE(watcher->watch(buf, Access::write, [&](WatchId, WaitStatus s) { calls += s == WaitStatus::ready; }));
    pollfd p{watcher->fd(), POLLIN, 0};
    CHECK(::poll(&p, 1, 50) == 0);
    CHECK(watcher->next_timeout() == forever);
    vgem.signal(fence);
    CHECK(::poll(&p, 1, 2000) == 1);
    CHECK(*watcher->dispatch() == 1);
    CHECK(calls == 1);
}

TEST_CASE_FIXTURE(FdLeakCheck, "a watch whose fence does not signal in time calls back with timed_out") {
    Vgem vgem;
    DmaBuf buf = vgem.create_buffer();
    const auto fence = vgem.attach_fence(true);
    auto watcher = FenceWatcher::create();
    REQUIRE(watcher);
    WaitStatus seen = WaitStatus::ready;
    int calls = 0;
    const auto start = std::chrono::steady_clock::now();  // before watch(): the deadline counts from there
    REQUIRE(watcher->watch(buf, Access::read, [&](WatchId, WaitStatus s) { seen = s, ++calls; }, 100ms));
    CHECK(watcher->next_timeout() <= 100ms);
    while (calls == 0 && std::chrono::steady_clock::now() - start < 3s) REQUIRE(watcher->dispatch(forever));
    CHECK(calls == 1);
    CHECK(seen == WaitStatus::timed_out);
    CHECK(std::chrono::steady_clock::now() - start >= 100ms);
    vgem.signal(fence);
}

TEST_SUITE_END();

TEST_CASE_FIXTURE(FdLeakCheck, "a sync_file watch reports its signal, and pending watches cancel cleanly") {
    Vgem vgem;
    DmaBuf buf = vgem.create_buffer();
    const auto fence = vgem.attach_fence(true);
    auto sync = buf.export_sync_file(Access::read);
    REQUIRE(sync);
    auto watcher = FenceWatcher::create();
    REQUIRE(watcher);
    int calls = 0;
    REQUIRE(watcher->watch(*sync, [&](WatchId, WaitStatus s) { calls += s == WaitStatus::ready; }));
    auto doomed = watcher->watch(buf, Access::write, [&](WatchId, WaitStatus) { calls += 100; });
    REQUIRE(doomed);
    CHECK(watcher->cancel(*doomed));
    CHECK_FALSE(watcher->cancel(*doomed));
    CHECK(*watcher->dispatch(Timeout{0}) == 0);
    vgem.signal(fence);
    CHECK(*watcher->dispatch(2000ms) == 1);
    CHECK(calls == 1);
}

TEST_CASE_FIXTURE(FdLeakCheck, "a watcher moved while its thread runs keeps watching, calling back and stopping") {
    Vgem vgem;
    auto created = FenceWatcher::create();
    REQUIRE(created);
    std::atomic<int> ready{0};
    auto count = [&ready](WatchId, WaitStatus s) { ready += s == WaitStatus::ready; };
    DmaBuf first = vgem.create_buffer();
    const auto first_fence = vgem.attach_fence(true);
    REQUIRE(created->watch(first, Access::read, count));
    REQUIRE(created->start());
    std::this_thread::sleep_for(20ms);  // the thread is inside dispatch()

    FenceWatcher moved(std::move(*created));  // move construction while the thread runs
    vgem.signal(first_fence);
    for (int i = 0; i < 300 && ready < 1; ++i) std::this_thread::sleep_for(10ms);
    CHECK(ready == 1);

    auto other = FenceWatcher::create();
    REQUIRE(other);
    *other = std::move(moved);  // move assignment over another watcher
    DmaBuf second = vgem.create_buffer();
    const auto second_fence = vgem.attach_fence(true);
    REQUIRE(other->watch(second, Access::read, count));
    CHECK(other->pending() == 1);
    vgem.signal(second_fence);
    for (int i = 0; i < 300 && ready < 2; ++i) std::this_thread::sleep_for(10ms);
    CHECK(ready == 2);
    CHECK(other->pending() == 0);
    other->stop();
    CHECK(other->start());  // restartable after the move
    other->stop();
}

TEST_CASE_FIXTURE(FdLeakCheck, "a watch given Timeout::max() or another huge timeout waits for its signal") {
    Vgem vgem;
    for (Timeout t : {Timeout::max(), std::chrono::duration_cast<Timeout>(std::chrono::hours(24 * 365 * 1000))}) {
        CAPTURE(t.count());
        auto watcher = FenceWatcher::create();
        REQUIRE(watcher);
        DmaBuf buf = vgem.create_buffer();
        const auto fence = vgem.attach_fence(true);
        auto sync = buf.export_sync_file(Access::read);
        REQUIRE(sync);
        std::atomic<int> ready{0}, timed_out{0};
        auto count = [&](WatchId, WaitStatus s) { ++(s == WaitStatus::ready ? ready : timed_out); };
        REQUIRE(watcher->watch(buf, Access::write, count, t));
        REQUIRE(watcher->watch(*sync, count, t));
        CHECK(watcher->next_timeout() == forever);  // a deadline that never passes is none
        REQUIRE(watcher->start());
        std::this_thread::sleep_for(200ms);
        CHECK(timed_out == 0);
        CHECK(ready == 0);
        vgem.signal(fence);
        for (int i = 0; i < 300 && ready < 2; ++i) std::this_thread::sleep_for(10ms);
        watcher->stop();
        CHECK(ready == 2);
        CHECK(timed_out == 0);
    }
}
