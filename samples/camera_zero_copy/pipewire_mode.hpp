// SPDX-License-Identifier: MIT
#pragma once
// camera_zero_copy --pipewire NAME: the V4L2 camera published as a PipeWire Video/Source node
// (dmabridge::pipewire::Producer) that any PipeWire application reads, GStreamer's pipewiresrc
// included, with no copy: the camera captures straight into the buffers PipeWire carries.
//
// How, with the public API only: the producer negotiates XRGB8888 LINEAR (dma-bufs from
// udmabuf for a consumer that imports them, sealed memfds wrapped by udmabuf for one that takes
// shared memory only, such as GStreamer 1.22's pipewiresrc). Once linked, every buffer of the
// stream is dequeued from the producer and given to the camera as a V4L2_MEMORY_DMABUF ring
// (v4l2::BufferRing::create_imported): the driver writes each frame into the very memory the
// consumer reads. A renegotiation replaces the stream's buffers: the ring is made again over the
// new set (ProducerStats::buffers_allocated tells; buffer numbers are never reused). A captured slot is queued to PipeWire; a buffer the consumer returned
// (Producer::dequeue()) goes back to the driver. The direction is the reverse of the issue's
// wording (the camera's own exported buffers carried by PipeWire): that needs a producer with
// application-supplied buffers, which the library does not have yet; this way needs none.
//
// Only XR24 (XRGB8888) is published: the format PipeWire, GStreamer and vivid share without a
// conversion.

#include <cstdint>
#include <string>

namespace camera {

struct PublishOptions {
    std::string node_name;        ///< the PipeWire node.name (pipewiresrc target-object=NAME)
    std::string device;           ///< the V4L2 node; empty: the first capture device
    std::uint32_t width = 640;
    std::uint32_t height = 480;
    /// Buffers the stream offers (ProducerOptions::buffer_count); the consumer may ask for more
    /// (GStreamer's pipewiresrc takes 16). All of them are lent to the camera.
    std::uint32_t ring = 4;
    std::uint64_t frames = 60;    ///< frames to publish before exiting
    std::uint32_t wait_s = 60;    ///< how long to wait for a consumer to link
};

/// Waits up to `wait_s` for a consumer, then publishes the camera until `frames` frames were
/// sent or the consumer went away (no new buffers within 5 s: a clean end, exit code 0). Returns the process exit code; errors name the step and the numbers.
int publish(const PublishOptions& options);

}  // namespace camera
