// SPDX-License-Identifier: MIT
#pragma once
/// @file capture_source.hpp
/// CaptureSource: a V4L2 camera whose exported buffer ring is served through a queue::Producer,
/// to consumers in this process (Connection::local_pair()) and in others. What a camera service
/// or an application with a preview otherwise writes by hand: the driver's buffers exported once
/// (VIDIOC_EXPBUF), every complete frame queued to the consumers, and each buffer given back to
/// the driver only after every consumer it went to released it and every release fence
/// signalled, so the driver never overwrites a frame a GPU may still read.
///
/// Life cycle: open() ... start() or start_local() ... pump() in the application's loop (or poll
/// fd()s yourself and call pump(Timeout{0})) ... stop() ... start() again. One thread drives a
/// CaptureSource; it is not safe to call from several threads at once.
///
/// Frames carry implicit sync: a V4L2 capture driver adds no fences, a frame is complete once
/// dequeued. Frames the driver flags V4L2_BUF_FLAG_ERROR, and frames whose bytesused does not
/// cover the format's layout from byte 0, go back to the driver at once and are counted: no
/// consumer ever sees a torn frame.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <dmabridge/base/result.hpp>
#include <dmabridge/format/buffer_desc.hpp>
#include <dmabridge/queue/consumer.hpp>
#include <dmabridge/queue/producer.hpp>
#include <dmabridge/v4l2/device.hpp>

namespace dmabridge::v4l2 {

/// What to open. The zero value opens the first capture device at 640x480 YUYV with the driver's
/// frame rate and a ring of 4 buffers.
struct CaptureOptions {
    std::string device;              ///< a V4L2 node ("/dev/video0"); empty: the first capture device
    std::uint32_t pixel_format = 0;  ///< a V4L2 fourcc (V4L2_PIX_FMT_*); 0: YUYV
    std::uint32_t width = 640;
    std::uint32_t height = 480;
    /// Frames per second to ask of the driver (VIDIOC_S_PARM); 0 keeps the driver's rate. The
    /// driver may round it: CaptureSource::frame_rate() says what it chose.
    std::uint32_t fps = 0;
    std::uint32_t ring_size = 4;     ///< buffers asked of the driver (it may give more)
};

/// What one CaptureSource::pump() did.
struct PumpResult {
    std::size_t frames_queued = 0;     ///< frames the driver delivered and the producer queued
    std::size_t buffers_returned = 0;  ///< buffers that came back from the consumers, to the driver
};

/// Counters since the last start().
struct CaptureStats {
    std::uint64_t frames_queued = 0;
    std::uint64_t driver_errors = 0;      ///< buffers the driver flagged V4L2_BUF_FLAG_ERROR
    std::uint64_t incomplete_frames = 0;  ///< buffers short of the frame layout (Dequeued::incomplete)
};

class CaptureSource {
public:
    /// Opens options.device (or the first capture device), sets the format exactly (a format
    /// the driver adjusts is an error naming what it offers), the frame rate (when options.fps
    /// is not 0), and allocates and exports a ring of options.ring_size buffers. `who` starts
    /// every error message ("camera", "preview"). Costs the V4L2 ioctls and one EXPBUF per
    /// buffer and plane. Errors: the driver's; Errc::unsupported for a device that cannot stream
    /// video capture; Errc::invalid_argument for a ring of 0 buffers.
    static Result<CaptureSource> open(const CaptureOptions& options, std::string who = "capture");
    CaptureSource(CaptureSource&&) noexcept;
    CaptureSource& operator=(CaptureSource&&) noexcept;
    /// Stops streaming (see stop()). Consumers keep the buffers they imported alive.
    ~CaptureSource();

    /// The V4L2 device and its format. A CaptureSource that was moved from answers an empty
    /// Device (every call fails with Errc::empty_object) and an empty Format; frame_rate(),
    /// size() and stats() answer 0 and buffer() throws for it.
    const Device& device() const noexcept;
    const Format& format() const noexcept;
    /// The frame rate the driver chose for CaptureOptions::fps; 0 when none was asked for.
    double frame_rate() const noexcept;
    /// The ring's buffers (this process's own fds): index = V4L2 buffer index = queue index.
    std::size_t size() const noexcept;
    /// Buffer `index` of the ring; throws std::out_of_range for an index >= size().
    const BufferDesc& buffer(std::uint32_t index) const;

    /// Starts streaming: a new queue::Producer (`options`) with the ring's buffers, every buffer
    /// given to the driver, then STREAMON. Consumers are added with producer()->add_consumer().
    /// Errors: Errc::invalid_argument when it streams already, Errc::empty_object when it was moved from; the producer's
    /// and the driver's (nothing is left streaming after an error).
    Status start(queue::ProducerOptions options = {});
    /// start() with one consumer in this process (over Connection::local_pair()), returned.
    Result<queue::Consumer> start_local(queue::ProducerOptions options = {});
    /// Stops streaming: STREAMOFF takes every buffer back from the driver, and the stream's
    /// producer stops sending frames. Its consumers stay connected while they hold any of its
    /// buffers (a frame acquired or queued to them and not yet released, or released with a
    /// fence that has not signalled): pump() keeps reading their releases, and only when all
    /// came back is the producer destroyed and its consumers see the end of the stream
    /// (ECONNRESET). Until then those buffers go to no driver, not even after a new start():
    /// a restart never overwrites a frame an old consumer, or its GPU, may still read (lent()
    /// counts them). A consumer that never releases keeps its buffers out of the ring; the
    /// ProducerOptions policy given to start() bounds that. Harmless when not streaming.
    Status stop();
    /// Buffers that consumers of stopped streams still hold (see stop()); 0 once all came back.
    std::size_t lent() const noexcept;
    /// True between start() and stop().
    bool streaming() const noexcept;
    /// The producer between start() and stop() (nullptr otherwise), to add consumers and read
    /// its state. Do not dequeue() from it: the source gives free buffers to the driver.
    queue::Producer* producer() noexcept;

    /// `callback` runs with a buffer's index whenever it goes to the driver: in start() for every
    /// buffer (no frame in it yet), and after each frame once it came back from every consumer
    /// (released, release fences signalled; at once for a frame queued to nobody). It is the last
    /// moment that frame is intact: read it there (a preview's snapshot, a test's check). It
    /// runs inside start() and pump(); it may read the buffer and the source's state but must not
    /// call start(), stop() or pump(). An error it returns stops that call with the error.
    void on_returned(std::function<Status(queue::BufferIndex)> callback);

    /// The fds pump() waits on, for an application's own event loop: the device (only while the
    /// driver holds buffers; -1 otherwise) and the producer's. Poll both for POLLIN, then call
    /// pump(Timeout{0}).
    int device_fd() const noexcept;
    int producer_fd() const noexcept;
    /// One fd for the producers of stopped streams that wait for their buffers (see stop()); -1
    /// when none waits. Poll it for POLLIN too, and call pump(Timeout{0}) when it is readable.
    int draining_fd() const noexcept;

    /// Waits up to `timeout` for the driver or the consumers, then handles what is ready: a
    /// frame the driver delivered goes to the queue, buffers the consumers gave back go to the
    /// driver. Timeout{0} never blocks. Costs, per frame: one poll, the DQBUF, the queue's send
    /// to each consumer, and the QBUF when the buffer returns.
    /// After stop(), while consumers of the stopped stream still hold buffers, pump() also
    /// reads their releases (with no stream running it does only that).
    /// Errors: Errc::invalid_argument when neither streaming nor waiting for a stopped stream's
    /// buffers (lent() == 0); ETIMEDOUT when a wait of more than
    /// 0 ms saw nothing (naming the device and where the buffers are); Errc::unsupported when the
    /// driver delivered more than twice the ring's size of incomplete frames in a row; the
    /// producer's, the driver's and on_returned's.
    Result<PumpResult> pump(Timeout timeout);

    /// Buffers with the driver now (queued for capture).
    std::size_t with_driver() const noexcept;
    CaptureStats stats() const noexcept;

    struct State;

private:
    explicit CaptureSource(std::unique_ptr<State> state) noexcept;
    std::unique_ptr<State> state_;
};

}  // namespace dmabridge::v4l2
