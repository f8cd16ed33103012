// SPDX-License-Identifier: MIT
#pragma once
// CameraSource: a V4L2 capture device whose exported buffer ring is served through a
// dmabridge::queue::Producer. Every complete frame the driver delivers is queued to the
// producer's consumers (in this process or in others) with implicit sync: the driver's frame is
// written when it is dequeued. A buffer goes back to the driver only once every consumer it was
// queued to released it and every release fence signalled (the producer's FenceWatcher): the
// ring's bookkeeping is the queue's. Frames the driver flags as errors, or that do not fill the
// frame layout, are given back at once and counted.
//
// Users: the in-process pipelines (CameraPipeline, GlCameraPipeline: one local consumer) and
// camera_zero_copy --serve (consumers in other processes). One thread drives it: pump() polls
// the device and the producer together.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <dmabridge/base/result.hpp>
#include <dmabridge/format/buffer_desc.hpp>
#include <dmabridge/queue/consumer.hpp>
#include <dmabridge/queue/producer.hpp>
#include <dmabridge/v4l2/device.hpp>

namespace camera {

struct PipelineOptions;

/// What CameraSource::pump() did.
struct PumpResult {
    std::size_t frames_queued = 0;    ///< frames the driver delivered and the producer queued
    std::size_t buffers_returned = 0; ///< buffers that came back from the consumers (to the driver)
};

/// Counters since CameraSource::start().
struct SourceStats {
    std::uint64_t frames_queued = 0;
    std::uint64_t driver_errors = 0;      ///< buffers the driver flagged V4L2_BUF_FLAG_ERROR
    std::uint64_t incomplete_frames = 0;  ///< buffers short of the frame layout (v4l2::Dequeued::incomplete)
};

class CameraSource {
public:
    /// Opens options.device (empty: the first capture device), sets the format exactly (an
    /// adjusted format is an error naming what the driver offers), the frame rate (options.fps,
    /// when not 0) and allocates a ring of options.ring_size exported buffers. `who` prefixes
    /// every error ("camera", "GL camera").
    static dmabridge::Result<CameraSource> open(const PipelineOptions& options, std::string who);
    CameraSource(CameraSource&&) noexcept;
    CameraSource& operator=(CameraSource&&) noexcept;
    ~CameraSource();

    const dmabridge::v4l2::Device& device() const noexcept;
    const dmabridge::v4l2::Format& format() const noexcept;
    /// The frame rate the driver chose for options.fps; 0 when none was asked for.
    double camera_fps() const noexcept;
    /// The ring's buffers (this process's own fds); index = V4L2 buffer index = queue index.
    std::size_t size() const noexcept;
    const dmabridge::BufferDesc& buffer(std::uint32_t index) const;

    /// Starts streaming: a new Producer (`options`) with the ring's buffers, every buffer given to
    /// the driver. Errors: the producer's, the driver's; Errc::invalid_argument when started.
    dmabridge::Status start(dmabridge::queue::ProducerOptions options = {});
    /// start() with one consumer in this process (over Connection::local_pair()), returned.
    dmabridge::Result<dmabridge::queue::Consumer> start_local(dmabridge::queue::ProducerOptions options = {});
    /// Stops streaming and destroys the producer: its consumers see the end of the stream
    /// (ECONNRESET); buffers they still import stay alive with them. Harmless when stopped.
    dmabridge::Status stop();
    /// The producer (between start() and stop(); nullptr otherwise), to add consumers.
    dmabridge::queue::Producer* producer() noexcept;

    /// Called with a buffer's index whenever it goes to the driver: in start() for every buffer
    /// (no frame yet), and after each frame once it came back from every consumer (released,
    /// release fences signalled; at once for a frame queued to nobody): the last moment that
    /// frame is intact. An error stops pump() with it.
    void on_returned(std::function<dmabridge::Status(dmabridge::queue::BufferIndex)> callback);

    /// Waits up to `timeout` for the driver or the consumers, then handles what is ready: a
    /// frame the driver delivered goes to the queue, buffers consumers gave back go to the
    /// driver. Timeout{0} never blocks. Errors: ETIMEDOUT when a wait of more than 0 ms saw
    /// nothing (naming the device and where the buffers are); Errc::unsupported when the driver
    /// delivered more than twice the ring's size of incomplete frames in a row; the producer's, the
    /// driver's and on_returned's.
    dmabridge::Result<PumpResult> pump(dmabridge::Timeout timeout);

    /// Buffers with the driver now (queued for capture).
    std::size_t with_driver() const noexcept;
    SourceStats stats() const noexcept;

    struct State;

private:
    explicit CameraSource(std::unique_ptr<State> state) noexcept;
    std::unique_ptr<State> state_;
};

}  // namespace camera
