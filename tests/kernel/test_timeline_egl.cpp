// SPDX-License-Identifier: MIT
// The EGL sync bridge with DRM syncobj timelines (virtio_gpu's render node, ci/vm --virtio-gpu;
// GL on Mesa's llvmpipe): GL work gated by a timeline point (held by a vgem fence the test
// signals) fills an image, and its completion becomes the next point; the point's state and the
// image's bytes, read by the CPU, are checked on both sides of the gate, with native fences and
// with CPU waits. Suite syncobj_egl: run in the plain build on 6.12 (llvmpipe is slow under ASan).
#include <dmabridge/alloc/dma_heap.hpp>
#include <dmabridge/egl/sync_bridge.hpp>
#include <dmabridge/kernel/cpu_access.hpp>
#include <dmabridge/kernel/timeline.hpp>

#include <chrono>
#include <cstring>
#include <thread>

#include <doctest/doctest.h>

#include "egl_harness.hpp"
#include "vgem.hpp"

using namespace dmabridge;
using namespace dmabridge::test;
using namespace std::chrono_literals;

namespace {

// No doctest assertion inside: the signaller thread calls it too. Empty when unreadable.
std::vector<std::uint8_t> cpu_read(const BufferDesc& desc) {
    const auto& p = desc.planes[0];
    auto map = Mapping::map(p.buffer, Access::read);
    auto cpu = CpuAccess::begin(p.buffer, Access::read);
    if (!map || !cpu) return {};
    const std::size_t row = std::size_t{desc.width} * 4;
    std::vector<std::uint8_t> out(row * desc.height);
    for (std::uint32_t y = 0; y < desc.height; ++y)
        std::memcpy(out.data() + y * row, map->data() + p.offset + y * p.stride, row);
    return cpu->end() ? out : std::vector<std::uint8_t>{};
}

}  // namespace

TEST_SUITE("syncobj_egl") {

TEST_CASE_FIXTURE(EglTest, "GL work gated by a timeline point fills an image, and its completion becomes the next point") {
    for (bool cpu_wait : {false, true}) {
        CAPTURE(cpu_wait);
        auto device = Timeline::open_device();
        REQUIRE_MESSAGE(device, (device ? "" : device.error().message()));
        auto t = Timeline::create(device->get());
        REQUIRE(t);
        Vgem vgem;
        const DmaBuf gate_buf = vgem.create_buffer();
        const std::uint32_t gate = vgem.attach_fence(true);
        auto gate_fence = gate_buf.export_sync_file(Access::write);
        REQUIRE(gate_fence);
        REQUIRE(t->import_sync_file(1, *gate_fence));

        auto heap = DmaHeapAllocator::open();
        REQUIRE(heap);
        ImageRequest request;
        request.width = 64;
        request.height = 64;
        request.fourcc = fourcc::ABGR8888;
        request.name = "timeline-gl";
        auto allocated = egl_context().allocate(*heap, request);
        REQUIRE_MESSAGE(allocated, (allocated ? "" : allocated.error().message()));
        const std::vector<std::uint8_t> zeros(64 * 64 * 4, 0);
        REQUIRE(cpu_read(allocated->desc) == zeros);  // a heap's pages start zeroed

        egl::SyncBridgeOptions options;
        options.force_cpu_wait = cpu_wait;
        auto bridge = egl::SyncBridge::create(egl_context(), options);
        REQUIRE(bridge);
        WaitStatus point2_before = WaitStatus::ready;
        std::vector<std::uint8_t> bytes_before;
        std::thread signaller([&] {
            std::this_thread::sleep_for(300ms);
            auto w = t->wait(2, 0ms);
            point2_before = w ? *w : WaitStatus::ready;
            bytes_before = cpu_read(allocated->desc);
            vgem.signal(gate);
        });
        // Where the driver waits for a native fence on the CPU (llvmpipe), or in cpu_wait mode,
        // this blocks until the signaller opens the gate.
        auto acquired = bridge->acquire_point(*t, 1, 0ms);
        const auto expected = fill_quadrants(*allocated->image, 21);
        auto completion = bridge->release_point(*t, 2);
        signaller.join();
        REQUIRE_MESSAGE(acquired, (acquired ? "" : acquired.error().message()));
        REQUIRE_MESSAGE(completion, (completion ? "" : completion.error().message()));
        CHECK(point2_before == WaitStatus::timed_out);
        CHECK(bytes_before == zeros);
        auto point2 = t->wait(2, 10s);
        REQUIRE(point2);
        CHECK(*point2 == WaitStatus::ready);
        CHECK((*completion)->done());
        CHECK(cpu_read(allocated->desc) == expected);  // AB24 is R, G, B, A in memory, as GL reads it
    }
}

TEST_CASE_FIXTURE(EglTest, "a GL timeline acquire names a point nothing submitted, and empty objects fail at once") {
    auto device = Timeline::open_device();
    REQUIRE(device);
    auto t = Timeline::create(device->get());
    REQUIRE(t);
    auto bridge = egl::SyncBridge::create(egl_context());
    REQUIRE(bridge);
    auto none = bridge->acquire_point(*t, 5, 100ms);
    REQUIRE_FALSE(none);
    CHECK(none.error().is_errno(ETIMEDOUT));
    CHECK(none.error().message().find("point 5") != std::string::npos);
    REQUIRE(t->signal(5));
    CHECK(bridge->acquire_point(*t, 5, 0ms));
    auto below = bridge->release_point(*t, 5);
    REQUIRE_FALSE(below);
    CHECK(below.error().is(Errc::invalid_argument));
    Timeline taker = std::move(*t);
    CHECK(bridge->acquire_point(*t, 6, 10s).error().is(Errc::empty_object));
    CHECK(bridge->release_point(*t, 6).error().is(Errc::empty_object));
    GLC(glFinish());
}

}  // TEST_SUITE
