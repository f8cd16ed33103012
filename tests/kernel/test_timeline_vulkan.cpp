// SPDX-License-Identifier: MIT
// The Vulkan sync bridge with DRM syncobj timelines (virtio_gpu's render node, ci/vm
// --virtio-gpu): a submit gated by a timeline point (held by a vgem fence the test signals)
// writes a buffer, and its completion becomes the next point; the bytes and the point's state are
// checked on both sides of the gate, in both release modes and in cpu_wait mode.
#include <dmabridge/kernel/cpu_access.hpp>
#include <dmabridge/kernel/timeline.hpp>
#include <dmabridge/vulkan/sync_bridge.hpp>

#include <chrono>
#include <cstring>
#include <thread>

#include <doctest/doctest.h>

#include "vgem.hpp"
#include "vk_fixture.hpp"

using namespace dmabridge;
using namespace dmabridge::test;
using namespace std::chrono_literals;

namespace {

struct Gate {
    Vgem vgem;
    DmaBuf buf = vgem.create_buffer();
    std::uint32_t id = vgem.attach_fence(true);
    SyncFile sync_file() const {
        auto f = buf.export_sync_file(Access::write);
        REQUIRE_MESSAGE(f, (f ? "" : f.error().message()));
        return std::move(*f);
    }
};

// No doctest assertion inside: the signaller thread calls it too. 0xdeadbeef when unreadable.
std::uint32_t first_word(const DmaBuf& buf) {
    auto map = Mapping::map(buf, Access::read);
    auto cpu = CpuAccess::begin(buf, Access::read);
    if (!map || !cpu) return 0xdeadbeefu;
    std::uint32_t word = 0;
    std::memcpy(&word, map->data(), sizeof word);
    return cpu->end() ? word : 0xdeadbeefu;
}

WaitStatus state_of(const Timeline& t, std::uint64_t point, Timeout timeout) {
    auto w = t.wait(point, timeout);
    REQUIRE_MESSAGE(w, (w ? "" : w.error().message()));
    return *w;
}

struct TimelineDevice {
    UniqueFd fd = [] {
        auto d = Timeline::open_device();
        REQUIRE_MESSAGE(d, (d ? "" : d.error().message()));
        return std::move(*d);
    }();
    Timeline make() const {
        auto t = Timeline::create(fd.get());
        REQUIRE_MESSAGE(t, (t ? "" : t.error().message()));
        return std::move(*t);
    }
};

}  // namespace

TEST_SUITE("syncobj") {

TEST_CASE_FIXTURE(VkTest, "a submit gated by a timeline point writes a buffer, and its completion becomes the next point") {
    struct Case {
        const char* name;
        vulkan::SyncBridgeOptions options;
    };
    vulkan::SyncBridgeOptions export_fence, wait_for_submit, cpu_wait;
    export_fence.release = vulkan::ReleaseMode::export_fence;
    wait_for_submit.release = vulkan::ReleaseMode::wait_for_submit;
    cpu_wait.force_cpu_wait = true;
    for (const Case& c : {Case{"export_fence", export_fence}, Case{"wait_for_submit", wait_for_submit},
                          Case{"cpu_wait", cpu_wait}}) {
        CAPTURE(c.name);
        const TimelineDevice device;
        auto t = device.make();
        Gate gate;
        REQUIRE(t.import_sync_file(1, gate.sync_file()));
        auto target = device_b().device().export_buffer(4096, VK_BUFFER_USAGE_TRANSFER_DST_BIT, "timeline-target");
        REQUIRE_MESSAGE(target, (target ? "" : target.error().message()));
        {
            auto map = Mapping::map(target->dmabuf, Access::write);
            REQUIRE(map);
            std::memset(map->data(), 0, 4096);
        }
        auto bridge = vulkan::SyncBridge::create(device_b().device(), c.options);
        REQUIRE(bridge);

        // cpu_wait: the acquire itself waits for the gate, so it is signalled from a thread.
        std::uint32_t word_before = 1;
        WaitStatus point2_before = WaitStatus::ready;
        std::thread signaller([&] {
            std::this_thread::sleep_for(300ms);
            auto w = t.wait(2, 0ms);
            point2_before = w ? *w : WaitStatus::ready;
            word_before = first_word(target->dmabuf);
            gate.vgem.signal(gate.id);
        });
        auto acquire = bridge->acquire_point(t, 1, VK_PIPELINE_STAGE_TRANSFER_BIT, 0ms);
        REQUIRE_MESSAGE(acquire, (acquire ? "" : acquire.error().message()));
        if (c.options.force_cpu_wait) {
            CHECK(acquire->waited_on_cpu);
            CHECK(acquire->semaphore.handle() == VK_NULL_HANDLE);
        } else {
            CHECK(acquire->semaphore.handle() != VK_NULL_HANDLE);
        }
        auto release = bridge->prepare_release_buffer(
            target->buffer, vulkan::BufferUse{VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_WRITE_BIT});
        REQUIRE(release);
        const auto& ctx = device_b().context();
        auto fill = reinterpret_cast<PFN_vkCmdFillBuffer>(ctx.device_proc("vkCmdFillBuffer"));
        auto barrier = reinterpret_cast<PFN_vkCmdPipelineBarrier>(ctx.device_proc("vkCmdPipelineBarrier"));
        auto submit = ctx.submit_async(
            [&](VkCommandBuffer cmd) {
                fill(cmd, target->buffer.handle(), 0, 4096, 0xa5a5a5a5u);
                barrier(cmd, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_PIPELINE_STAGE_ALL_COMMANDS_BIT, 0, 0, nullptr, 1,
                        &release->buffer_barrier, 0, nullptr);
            },
            {{acquire->semaphore.handle()}, {acquire->wait_stage}, {release->semaphore.handle()}});
        REQUIRE(submit);
        auto published = bridge->publish_point(*release, t, 2, submit->fence());
        signaller.join();
        REQUIRE_MESSAGE(published, (published ? "" : published.error().message()));
        // Before the gate: neither the point nor the bytes had moved.
        CHECK(point2_before == WaitStatus::timed_out);
        CHECK(word_before == 0);
        // After it: the point signals, and by then the GPU's bytes are there.
        CHECK(state_of(t, 2, 10s) == WaitStatus::ready);
        CHECK(first_word(target->dmabuf) == 0xa5a5a5a5u);
        REQUIRE(submit->wait(10s));
        check_no_validation_messages();
    }
}

TEST_CASE_FIXTURE(VkTest, "a timeline acquire names a point nothing submitted, and a signalled point needs no semaphore") {
    const TimelineDevice device;
    auto t = device.make();
    auto bridge = vulkan::SyncBridge::create(device_b().device());
    REQUIRE(bridge);
    const auto start = std::chrono::steady_clock::now();
    auto none = bridge->acquire_point(t, 3, VK_PIPELINE_STAGE_TRANSFER_BIT, 100ms);
    REQUIRE_FALSE(none);
    CHECK(none.error().is_errno(ETIMEDOUT));
    CHECK(none.error().message().find("point 3") != std::string::npos);
    CHECK(std::chrono::steady_clock::now() - start >= 90ms);
    REQUIRE(t.signal(3));
    auto done = bridge->acquire_point(t, 3, VK_PIPELINE_STAGE_TRANSFER_BIT, 0ms);
    REQUIRE(done);
    CHECK(done->semaphore.handle() == VK_NULL_HANDLE);
    CHECK_FALSE(done->waited_on_cpu);
    // A point at or below the last one refuses a publish, naming it.
    auto target = device_b().device().export_buffer(4096, VK_BUFFER_USAGE_TRANSFER_DST_BIT, "timeline-refused");
    REQUIRE(target);
    auto release = bridge->prepare_release_buffer(target->buffer, {});
    REQUIRE(release);
    auto submit = device_b().context().submit_async([](VkCommandBuffer) {}, {{}, {}, {release->semaphore.handle()}});
    REQUIRE(submit);
    auto refused = bridge->publish_point(*release, t, 3, submit->fence());
    REQUIRE_FALSE(refused);
    CHECK(refused.error().is(Errc::invalid_argument));
    REQUIRE(submit->wait(10s));
    Timeline moved = std::move(t);
    CHECK(bridge->acquire_point(t, 4, VK_PIPELINE_STAGE_TRANSFER_BIT, 10s).error().is(Errc::empty_object));
    CHECK(bridge->publish_point(*release, t, 4, submit->fence()).error().is(Errc::empty_object));
}

}  // TEST_SUITE
