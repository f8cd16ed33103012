// SPDX-License-Identifier: MIT
#pragma once
// camera_zero_copy --serve / --connect: one camera feeding several processes through the buffer
// queue (dmabridge/queue), with no copy. The server owns the V4L2 ring and gives each captured
// buffer to every connected consumer; a slot goes back to the driver once every consumer released
// it (and its release fence signalled). Consumers import each buffer through their ImportCache
// (imported once, then hit) and write their first and last frames as PNGs (converted on the CPU).

#include <cstdint>
#include <string>

#include <dmabridge/bridge/camera_pipeline.hpp>

namespace camera {

struct ServeOptions {
    dmabridge::camera::PipelineOptions camera;      ///< device, format, size, fps, ring size
    std::string path;            ///< the socket path consumers connect to
    std::uint64_t frames = 60;   ///< frames to serve once the consumers are there
    std::uint32_t consumers = 1; ///< consumers to wait for before serving
};

/// Streams (to nobody) while it waits for `consumers` to connect, captures up to 60 frames with
/// nobody attached (the camera's raw rate, while the consumers wait idle), then serves `frames`
/// frames to all of them, and prints both rates. Returns the process exit code.
int serve(const ServeOptions& options);

/// Connects to a server, acquires up to `frames` frames (until the server ends), imports each
/// through an ImportCache, writes the first and last as PNGs to `output`, releases each, and
/// prints its frame rate and cache statistics. Returns the process exit code.
int consume(const std::string& path, std::uint64_t frames, const std::string& output);

}  // namespace camera
