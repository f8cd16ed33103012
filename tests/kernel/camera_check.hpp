// SPDX-License-Identifier: MIT
#pragma once
// What the camera pipeline tests (Vulkan and GL) share: each converted frame checked against the
// CPU conversion of the same captured bytes, and the pipelines' options.
#include <dmabridge/format/frame_layout.hpp>
#include <dmabridge/kernel/cpu_access.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include <dmabridge/bridge/camera_pipeline.hpp>

namespace dmabridge::test {

// The whole buffer of a plane, mapped and bracketed for reading.
struct MappedPlane {
    Mapping map;
    CpuAccess cpu;
};

inline MappedPlane map_for_read(const DmaBuf& buf) {
    auto map = Mapping::map(buf, Access::read);
    REQUIRE_MESSAGE(map, (map ? "" : map.error().message()));
    auto cpu = CpuAccess::begin(buf, Access::read);
    REQUIRE(cpu);
    return {std::move(*map), std::move(*cpu)};
}

// The largest difference of any channel of any pixel.
inline int max_difference(std::span<const std::uint8_t> a, std::span<const std::uint8_t> b) {
    REQUIRE(a.size() == b.size());
    int worst = 0;
    for (std::size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(int{a[i]} - int{b[i]}));
    return worst;
}

// vivid's default picture is 75% colour bars: the leftmost bar is grey, the rightmost black.
inline void check_colour_bars(std::span<const std::uint8_t> rgba, std::uint32_t width, std::uint32_t height) {
    const auto px = [&](std::uint32_t x, std::uint32_t y) { return &rgba[(std::size_t{y} * width + x) * 4]; };
    const std::uint8_t* grey = px(width / 16, height * 7 / 8);
    CHECK(grey[0] > 150);
    CHECK(grey[0] == grey[1]);
    CHECK(grey[1] == grey[2]);
    const std::uint8_t* black = px(width - width / 16, height * 7 / 8);
    CHECK(black[0] < 20);
    CHECK(black[3] == 255);
}

struct Run {
    dmabridge::camera::PipelineStats stats;
    std::uint64_t frames_checked = 0;
    int worst = 0;
    std::uint64_t busy_at_release = 0;  // source buffers still carrying unsignalled fences
    std::set<std::uint32_t> slots;
};

template <typename Pipeline>
Run run_and_check(Pipeline& pipeline, std::uint64_t frames) {
    Run r;
    auto stats = pipeline.run(frames, [&](const dmabridge::camera::FrameInfo& f) {
        REQUIRE(f.rgba.size() == std::size_t{f.layout.width} * f.layout.height * 4);
        Result<std::vector<std::uint8_t>> expected = std::vector<std::uint8_t>{};
        if (f.source) {
            // Zero-copy: the V4L2 buffer itself, not yet back with the driver. The GPU has
            // released it: no fence may be pending on it any more.
            for (const auto& plane : f.source->planes)
                if (auto idle = plane.buffer.wait(Access::write, Timeout{0}); !idle || *idle != WaitStatus::ready)
                    ++r.busy_at_release;
            const auto& p0 = f.source->planes[0].buffer;
            const auto& p1 = f.source->planes.size() > 1 ? f.source->planes[1].buffer : p0;
            auto m0 = map_for_read(p0);
            std::optional<MappedPlane> m1;
            if (p1.id() != p0.id()) m1 = map_for_read(p1);
            expected = convert_to_rgba(f.layout, m0.map.bytes(), m1 ? m1->map.bytes() : m0.map.bytes());
        } else {
            expected = convert_to_rgba(f.layout, f.staged0, f.staged1);
        }
        REQUIRE_MESSAGE(expected, (expected ? "" : expected.error().message()));
        r.worst = std::max(r.worst, max_difference(f.rgba, *expected));
        if (f.number == 0) check_colour_bars(f.rgba, f.layout.width, f.layout.height);
        r.slots.insert(f.slot);
        ++r.frames_checked;
    });
    REQUIRE_MESSAGE(stats, (stats ? "" : stats.error().message()));
    r.stats = *stats;
    return r;
}

inline dmabridge::camera::PipelineOptions options_for(std::uint32_t pixel_format, std::string device = {}) {
    dmabridge::camera::PipelineOptions o;
    o.device = std::move(device);
    o.pixel_format = pixel_format;
    o.width = 640;
    o.height = 480;
    o.fps = 30;
    o.ring_size = 4;
    o.read_back = dmabridge::camera::read_back_all;
    // Lavapipe under TCG on a loaded 2-core host was seen converting 0.4 frames/s: the default
    // 10 s wait for a frame to leave the GPU is a frame budget, not what these tests check.
    o.timeout = std::chrono::seconds(60);
    return o;
}

}  // namespace dmabridge::test
