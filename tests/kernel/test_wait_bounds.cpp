// SPDX-License-Identifier: MIT
// Waits that a peer's fence can stretch: every one of them ends within the bound its caller gave,
// however many planes or uses it covers. vgem fences stand for a peer that never signals (vgem
// signals them itself after 10 s, so every bound here stays well below that).
#include <dmabridge/kernel/dmabuf.hpp>
#include <dmabridge/queue/consumer.hpp>
#include <dmabridge/queue/producer.hpp>

#include <chrono>
#include <thread>

#include <doctest/doctest.h>

#include "fd_count.hpp"
#include "vgem.hpp"

using namespace dmabridge;
using namespace std::chrono_literals;
using dmabridge::test::FdLeakCheck;
using dmabridge::test::Vgem;

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace

TEST_SUITE_BEGIN("any_kernel");

TEST_CASE_FIXTURE(FdLeakCheck, "wait_ready of a two-buffer frame ends at one deadline, not one timeout per plane") {
    Vgem vgem;
    // NV12 64x64 from two dma-bufs (luma, chroma), each with a pending write fence: the luma's
    // signals just before the timeout, the chroma's stays pending.
    BufferDesc desc;
    desc.width = 64;
    desc.height = 64;
    desc.fourcc = fourcc::NV12;
    desc.planes.push_back(PlaneDesc{vgem.create_buffer(4096), 0, 64});
    const auto luma_fence = vgem.attach_fence(true);
    desc.planes.push_back(PlaneDesc{vgem.create_buffer(4096), 0, 64});
    const auto chroma_fence = vgem.attach_fence(true);

    auto producer = queue::Producer::create({});
    REQUIRE(producer);
    REQUIRE(producer->add_buffer(std::move(desc)));
    auto pair = queue::Connection::local_pair();
    REQUIRE(pair);
    REQUIRE(producer->add_consumer(std::move(pair->first)));
    auto consumer = queue::Consumer::create(std::move(pair->second));
    REQUIRE(consumer);
    auto index = producer->dequeue(1s);
    REQUIRE(index);
    REQUIRE(producer->queue(*index, std::nullopt, {1, 0}));  // implicit sync: no acquire fence
    auto frame = consumer->acquire(1s);
    REQUIRE_MESSAGE(frame, (frame ? "" : frame.error().message()));
    REQUIRE(frame->desc->planes.size() == 2);
    REQUIRE(frame->desc->planes[0].buffer.id() != frame->desc->planes[1].buffer.id());

    const auto start = Clock::now();
    std::thread peer([&] {
        std::this_thread::sleep_for(700ms);
        vgem.signal(luma_fence);
    });
    auto waited = consumer->wait_ready(*frame, 1000ms);
    const double took = seconds_since(start);
    peer.join();
    REQUIRE_MESSAGE(waited, (waited ? "" : waited.error().message()));
    CHECK(*waited == WaitStatus::timed_out);
    // One deadline for both planes: about 1 s. A timeout per plane took 0.7 + 1 s.
    CHECK(took >= 0.95);
    CHECK_MESSAGE(took < 1.5, "wait_ready took " << took << " s for a 1 s timeout");

    vgem.signal(chroma_fence);
    auto ready = consumer->wait_ready(*frame, 1000ms);
    REQUIRE(ready);
    CHECK(*ready == WaitStatus::ready);
    REQUIRE(consumer->release(frame->buffer));
}

TEST_SUITE_END();
