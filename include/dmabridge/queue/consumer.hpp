// SPDX-License-Identifier: MIT
#pragma once
/// @file queue/consumer.hpp
/// Consumer: the receiving end of a buffer queue (see queue/producer.hpp for the model).
///
/// Life cycle: create() on a Connection ... acquire() a frame: its buffer's description (whose
/// dma-bufs are this consumer's own fds, the same DmaBufs every time that buffer comes back, so
/// an ImportCache hits from the second time on) and its acquire fence ... wait_ready() (or hand
/// the fence to the GPU) ... use the buffer ... release() it with a release fence (or none when
/// the use is complete) ... acquire() the next.
///
/// Everything the producer sends is checked: the wire format, fds (every announced fd must be a
/// dma-buf, every fence a sync_file), the description (BufferDesc::validate), and ids (a frame
/// of a buffer never announced, or of one this consumer holds, is refused). On the first fault,
/// or when the producer hangs up, the connection fails for good, like a Wayland display's
/// error: it is shut down (the producer sees the hang-up) but fd() stays open, the same fd
/// number, until the Consumer is destroyed, so an event loop polling it never polls a closed or
/// reused fd. Frames received before the failure are still acquired; then acquire(), dispatch(),
/// release() and producer_credentials() return the same error every time. Held frames stay
/// usable until the Consumer is destroyed.
///
/// Timelines: with ConsumerOptions::timeline_device, a consumer takes a producer's offer of
/// explicit sync on DRM syncobj timelines (see queue/producer.hpp): it imports the producer's
/// acquire timeline (refusing, and failing the connection for, an fd that is not a syncobj or
/// that its device cannot import) and sends its own release timeline once. Frames may then carry
/// an acquire point (AcquiredFrame::acquire_point) instead of a sync_file, and release_point()
/// gives a buffer back with a point of release_timeline(). The first acquire point may be any
/// non-zero value (a consumer that joins late meets a timeline that has run long); later ones must
/// rise, by at most max_point_step; a producer that goes back or skips further fails the
/// connection. Without
/// the option (or with a producer that offers nothing) everything stays on sync_files.
///
/// Thread safety: none; one thread drives a Consumer (its event loop polls fd()).

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>

#include <dmabridge/base/result.hpp>
#include <dmabridge/format/buffer_desc.hpp>
#include <dmabridge/kernel/sync_file.hpp>
#include <dmabridge/kernel/timeline.hpp>
#include <dmabridge/queue/connection.hpp>
#include <dmabridge/queue/producer.hpp>

namespace dmabridge::queue {

/// An acquired frame.
struct AcquiredFrame {
    BufferIndex buffer = 0;  ///< which buffer; give it back with release()
    /// The buffer's description, owned by the Consumer: valid until the Consumer is destroyed
    /// (later announcements and moving the Consumer do not move it). Its DmaBufs are the same
    /// objects (fds) for every frame of this buffer.
    const BufferDesc* desc = nullptr;
    /// The producer's acquire fence; std::nullopt for implicit sync (wait for the dma-buf's own
    /// write fences, as wait_ready() does).
    std::optional<SyncFile> acquire_fence;
    /// With timelines negotiated: the point of Consumer::acquire_timeline() the producer's
    /// work signals (then acquire_fence is empty). Hand it to the GPU (e.g.
    /// vulkan::SyncBridge::acquire_point) or wait_ready().
    std::optional<std::uint64_t> acquire_point;
    FrameInfo info;  ///< the sequence number and timestamp the producer queued it with
};

/// Options of a Consumer; the zero value uses sync_files only.
struct ConsumerOptions {
    /// Take a producer's offer of timelines: a DRM device fd whose driver has syncobj
    /// timelines (Timeline::open_device()). Borrowed: the Consumer keeps a dup. -1: no timelines.
    int timeline_device = -1;
};

/// Counters of a Consumer.
struct ConsumerStats {
    std::uint64_t frames_received = 0;  ///< frame messages accepted from the producer
    std::uint64_t frames_acquired = 0;  ///< frames acquire() returned
    std::uint64_t frames_replaced = 0;  ///< mailbox: frames given back unacquired for a newer one
    std::uint64_t buffers_announced = 0;  ///< buffer announcements accepted
};

/// The consuming end. Move-only; a moved-from Consumer fails every call at once with
/// Errc::empty_object (fd() -1, counts 0).
class Consumer {
public:
    /// Takes the connection; reads nothing yet (announcements arrive with the first dispatch()
    /// or acquire()). With options.timeline_device, also creates the release timeline on it
    /// (Timeline::create: its errors, e.g. Errc::unsupported for a device without timelines).
    /// Errors: Errc::empty_object for an empty Connection.
    static Result<Consumer> create(Connection connection, ConsumerOptions options = {});
    /// Moves: the connection, buffers and frames go with the new object (descriptions and
    /// AcquiredFrame::desc pointers stay valid); the moved-from Consumer is empty. Assignment
    /// first closes the target's connection, as the destructor does.
    Consumer(Consumer&&) noexcept;
    Consumer& operator=(Consumer&&) noexcept;
    /// Closes the connection: the producer takes back every held buffer once its implicit fences
    /// are done.
    ~Consumer();

    /// The oldest queued frame (FIFO) or the newest (mailbox), reading the connection and
    /// waiting up to `timeout` for one. Typical cost: one recvmsg (plus a poll when it waits,
    /// an ioctl to check a received fence). Errors: ETIMEDOUT when no frame came in time
    /// (nothing changes); once the connection failed, the reason (ECONNRESET when the producer
    /// hung up, Errc::invalid_argument or not_a_dmabuf for what it sent). No default timeout: a
    /// producer may stop sending without hanging up, so the caller says how long to wait
    /// (`forever` waits without limit).
    Result<AcquiredFrame> acquire(Timeout timeout);

    /// Waits until the frame's buffer may be read: its acquire fence, its acquire point
    /// (Timeline::wait, which also waits for the point's submit), or with implicit sync the
    /// dma-bufs' write fences (poll). WaitStatus::timed_out when `timeout` passed first (no
    /// default: a fence may never signal; `forever` waits without limit). An acquire point that
    /// nothing submitted when the time is up and whose producer hung up (the socket polls
    /// POLLHUP, or the connection failed) gives ECONNRESET instead: nobody will submit it.
    Result<WaitStatus> wait_ready(const AcquiredFrame& frame, Timeout timeout) const;

    /// Gives an acquired buffer back, with the fence that signals when this consumer's use of it
    /// completes (std::nullopt when it has completed). One sendmsg. Errors:
    /// Errc::invalid_argument for a buffer this consumer has not acquired, Errc::empty_object for
    /// an empty (moved-from) release fence (nothing is sent); the send's errno.
    Status release(BufferIndex buffer, std::optional<SyncFile> release_fence = std::nullopt);

    /// Gives an acquired buffer back with `point` of release_timeline(): the point this
    /// consumer's use of the buffer signals (submitted now or later: a Vulkan timeline semaphore
    /// bridged with vulkan::SyncBridge::publish_point, Timeline::signal, ...). With timelines
    /// negotiated the release carries the number only; with a producer that did not negotiate
    /// them the point goes as a sync_file (it must be submitted already, else Errc::not_found and
    /// the buffer stays acquired). Points must rise: above the last one released, by at most
    /// max_point_step (Errc::invalid_argument, nothing sent). Errc::unsupported without
    /// ConsumerOptions::timeline_device. Otherwise as release().
    Status release_point(BufferIndex buffer, std::uint64_t point);

    /// The producer's acquire timeline, imported on this consumer's device; nullptr until the
    /// producer's offer was read (or without timelines). Valid until the Consumer is destroyed.
    const Timeline* acquire_timeline() const noexcept;
    /// This consumer's release timeline (made by create() with ConsumerOptions::timeline_device);
    /// nullptr without one. Valid until the Consumer is destroyed. The application signals or
    /// submits the points it releases with.
    Timeline* release_timeline() noexcept;
    /// True once timelines are negotiated: the producer offered its timeline and this consumer
    /// sent its own.
    bool uses_timelines() const noexcept;

    /// Reads every message waiting (announcements, frames), waiting up to `timeout` for the
    /// first. Returns how many it read. Errors as acquire().
    Result<std::size_t> dispatch(Timeout timeout = Timeout{0});

    /// Readable when the producer sent something (the connection's fd; an in-process channel's
    /// may be readable with nothing to read, see Connection::fd()). -1 once moved from. After
    /// the connection failed it stays the same open fd and polls readable for good (so the
    /// loop wakes and acquire()/dispatch() report the error): remove it from the poll set then,
    /// and destroy the Consumer to close it.
    int fd() const noexcept;
    /// The producer's mode, known after its first message (FIFO until then).
    Mode mode() const noexcept;
    /// The description of announced buffer `index`; nullptr when unknown. Valid until the
    /// Consumer is destroyed, like AcquiredFrame::desc (it is the same object).
    const BufferDesc* buffer(BufferIndex index) const noexcept;
    /// Buffers announced so far (indices 0 to buffer_count() - 1); 0 when moved from.
    std::size_t buffer_count() const noexcept;
    /// Frames received and not acquired yet.
    std::size_t queued_count() const noexcept;
    /// The producer's credentials (Connection::peer_credentials).
    Result<PeerCredentials> producer_credentials() const;
    /// The counters since create(); all 0 when moved from.
    ConsumerStats stats() const noexcept;


    struct State;

private:
    explicit Consumer(std::unique_ptr<State> state) noexcept;
    std::unique_ptr<State> state_;
};

}  // namespace dmabridge::queue
