// SPDX-License-Identifier: MIT
// GPU -> V4L2: buffers exported from Vulkan, drawn by a compute shader, queued to vivid's video
// output with V4L2_MEMORY_DMABUF, and looped back by vivid to its capture (an HDMI input
// "connected to" the HDMI output, Linux 6.11's replacement of the Loop Video control). The
// captured bytes must be the GPU's picture.
#include <dmabridge/format/fourcc.hpp>
#include <dmabridge/kernel/cpu_access.hpp>
#include <dmabridge/v4l2/buffer_ring.hpp>
#include <dmabridge/v4l2/device.hpp>
#include <dmabridge/vulkan/sync_bridge.hpp>

#include <array>

#include <linux/videodev2.h>

#include <doctest/doctest.h>

#include <dmabridge_shaders/draw_yuyv.hpp>

#include "draw_yuyv.hpp"
#include "vivid_nodes.hpp"
#include "vk_fixture.hpp"
#include "vulkan_compute.hpp"

using namespace dmabridge;
using namespace dmabridge::test;
using namespace std::chrono_literals;

namespace {

// vivid's default inputs (input_types 0xe4) and outputs (output_types 0x02).
constexpr std::uint32_t vivid_webcam_input = 0;
constexpr std::uint32_t vivid_hdmi_input = 3;
constexpr std::uint32_t vivid_svideo_output = 0;
constexpr std::uint32_t vivid_hdmi_output = 1;

template <typename T>
T required(Result<T> r) {
    REQUIRE_MESSAGE(r, (r ? "" : r.error().message()));
    return std::move(*r);
}

void required(Status s) { REQUIRE_MESSAGE(s, (s ? "" : s.error().message())); }

// The output node of the same vivid instance as `capture`.
v4l2::Device output_beside(const v4l2::Device& capture) {
    auto out = find_vivid_node([&](const v4l2::Device& d) {
        const auto& c = d.capabilities();
        return c.output && !c.multiplanar && c.bus == capture.capabilities().bus;
    });
    REQUIRE_MESSAGE(out, "no vivid output beside " << capture.path());
    return std::move(*out);
}

// Connects the capture's HDMI input to the output's HDMI output and turns the text overlay
// off; puts everything back on destruction (the settings outlive the file descriptors).
struct Loopback {
    v4l2::Device& cap;
    v4l2::Device& out;
    std::uint32_t connected_to = 0, osd = 0;
    Loopback(v4l2::Device& c, v4l2::Device& o) : cap(c), out(o) {
        required(out.select_output(vivid_hdmi_output));
        required(cap.select_input(vivid_hdmi_input));
        connected_to = required(cap.control_id("HDMI 000-0 Is Connected To"));
        required(cap.set_control(connected_to, required(cap.menu_value(connected_to, "Output HDMI 000-0"))));
        osd = required(cap.control_id("OSD Text Mode"));
        required(cap.set_control(osd, required(cap.menu_value(osd, "None"))));
    }
    ~Loopback() {
        (void)cap.set_control(connected_to, 0);  // Test Pattern Generator
        (void)cap.set_control(osd, 0);           // All
        (void)cap.select_input(vivid_webcam_input);
        (void)out.select_output(vivid_svideo_output);
    }
};

// Bytes of a captured YUYV frame that differ from the GPU's picture for `frame`.
std::size_t mismatches(const DmaBuf& buf, std::uint32_t width, std::uint32_t height, std::uint32_t stride,
                       std::uint32_t frame) {
    auto map = required(Mapping::map(buf, Access::read));
    auto cpu = required(CpuAccess::begin(buf, Access::read));
    std::size_t bad = 0;
    for (std::uint32_t y = 0; y < height; ++y)
        for (std::uint32_t pair = 0; pair < width / 2; ++pair) {
            const auto want = draw_yuyv_pair(pair, y, frame);
            const std::byte* got = map.data() + std::size_t{y} * stride + pair * 4;
            for (int i = 0; i < 4; ++i) bad += static_cast<std::uint8_t>(got[i]) != want[static_cast<std::size_t>(i)];
        }
    return bad;
}

}  // namespace

TEST_CASE_FIXTURE(VkTest, "GPU-drawn frames go to vivid's output as Vulkan dma-bufs and loop back to its capture") {
    auto cap = required(v4l2::Device::find(v4l2::Direction::capture));
    REQUIRE(cap.capabilities().driver == "vivid");
    auto out = output_beside(cap);
    Loopback loop(cap, out);

    // Both HDMI ends run at their default timings, 1280x720.
    constexpr std::uint32_t width = 1280, height = 720, picture = 7;
    const auto out_format = required(out.set_format(v4l2::Direction::output, width, height, V4L2_PIX_FMT_YUYV));
    required(cap.set_format(v4l2::Direction::capture, width, height, V4L2_PIX_FMT_YUYV));
    const std::uint32_t stride = out_format.planes[0].bytes_per_line;
    const std::uint32_t size = out_format.planes[0].size_image;

    // Two Vulkan buffers, exported, drawn by the GPU; the implicit write fence goes on each.
    const auto& ctx = device_b().context();
    const auto& dev = device_b().device();
    auto vk = required(support::DeviceFunctions::load(ctx));
    const std::array<VkDescriptorType, 1> bindings{VK_DESCRIPTOR_TYPE_STORAGE_BUFFER};
    auto draw = required(support::ComputePipeline::create(vk, "draw_yuyv", shaders::draw_yuyv, bindings,
                                                         sizeof(DrawYuyv), 2));
    auto bridge = required(vulkan::SyncBridge::create(dev));
    std::vector<vulkan::ExportedBuffer> exported;
    std::vector<BufferDesc> descs;
    std::vector<vulkan::Submission> submissions;
    for (std::uint32_t i = 0; i < 2; ++i) {
        exported.push_back(required(dev.export_buffer(size, VK_BUFFER_USAGE_STORAGE_BUFFER_BIT, "v4l2-output")));
        auto& e = exported.back();
        draw.set_storage_buffer(0, e.buffer.handle(), i);
        const vulkan::BufferUse use{VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_ACCESS_SHADER_WRITE_BIT};
        auto acquire = required(bridge.acquire_buffer(e.dmabuf, e.buffer, Access::write, use));
        auto release = required(bridge.prepare_release_buffer(e.buffer, use, {&acquire}));
        const DrawYuyv push{width, height, stride, picture};
        submissions.push_back(required(ctx.submit_async(
            [&](VkCommandBuffer cmd) {
                vk.CmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, 0,
                                      0, nullptr, 1, &acquire.buffer_barrier, 0, nullptr);
                draw.record_dispatch(cmd, std::as_bytes(std::span(&push, 1)), width / 2, height, i);
                vk.CmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT,
                                      0, 0, nullptr, 1, &release.buffer_barrier, 0, nullptr);
            },
            {{acquire.semaphore.handle()}, {acquire.wait_stage}, {release.semaphore.handle()}})));
        required(bridge.publish(release, e.dmabuf, Access::write, submissions.back().fence()));
        // vb2 does not wait for a dma-buf's fences before the driver reads it: wait for the
        // GPU's write fence before queueing (what a FenceWatcher does without blocking).
        CHECK(required(e.dmabuf.wait(Access::read, 10s)) == WaitStatus::ready);
        CHECK(required(submissions.back().wait(10s)) == WaitStatus::ready);

        BufferDesc desc;
        desc.width = width;
        desc.height = height;
        desc.fourcc = fourcc::YUYV;
        desc.planes.push_back({required(e.dmabuf.dup()), 0, stride});
        descs.push_back(std::move(desc));
    }

    auto out_ring = required(v4l2::BufferRing::create_imported(out, v4l2::Direction::output, std::move(descs)));
    CHECK(out_ring.memory() == v4l2::BufferRing::Memory::dmabuf);
    for (std::uint32_t i = 0; i < out_ring.size(); ++i) required(out_ring.queue(i, size));
    required(out_ring.stream_on());
    auto cap_ring = required(v4l2::BufferRing::create_exported(cap, v4l2::Direction::capture, 4));
    for (std::uint32_t i = 0; i < cap_ring.size(); ++i) required(cap_ring.queue(i));
    required(cap_ring.stream_on());

    // The first captured frames may precede the loop; give it 40 frames to show the picture.
    std::size_t best = SIZE_MAX;
    int frames = 0;
    for (; frames < 40 && best != 0; ++frames) {
        auto d = required(cap_ring.dequeue(10s));
        REQUIRE_MESSAGE(d.has_value(), "no captured frame within 10 s");
        best = std::min(best, mismatches(cap_ring.buffer(d->index).planes[0].buffer, width, height,
                                         cap.format(v4l2::Direction::capture)->planes[0].bytes_per_line, picture));
        required(cap_ring.queue(d->index));
        // Keep the output fed: its buffers come back once displayed; the picture stays the same.
        while (auto o = required(out_ring.dequeue(Timeout{0}))) required(out_ring.queue(o->index, size));
    }
    MESSAGE("looped picture after ", frames, " captured frames; fewest differing bytes ", best);
    CHECK(best == 0);
    required(cap_ring.stream_off());
    required(out_ring.stream_off());
}
