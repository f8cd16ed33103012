// SPDX-License-Identifier: MIT
#pragma once
/// @file queue/producer.hpp
/// Producer: the sending end of a buffer queue (the model of Android's BufferQueue and
/// PipeWire's buffer ids). Buffers cross once, frames move as small messages, and every hand-off
/// carries a fence.
///
/// Life cycle:
///   create() ... add_buffer() for each buffer (announced once, with every plane's dma-buf, to
///   every consumer, now and later) ... add_consumer() for each Connection ... per frame:
///   dequeue() a free buffer, render into it, queue() it with an acquire fence (a SyncFile, or
///   none for "implicit": the dma-buf's own fences) and its metadata ... each consumer acquires,
///   uses and releases it with a release fence ... the buffer is free again once every consumer
///   it was queued to released it and every release fence signalled (a FenceWatcher watches them).
///
/// Modes (announced to consumers): FIFO, every queued frame is acquired in order and dequeue()
/// waits for a free buffer; mailbox, a consumer that has not acquired a queued frame when a newer
/// one arrives gives the older one back at once (it is replaced), so consumers always see the
/// newest frame. The replacement happens when the consumer next reads its connection.
///
/// Hostile or dying consumers: everything a consumer sends is checked (wire format, unknown
/// buffer ids, releases of buffers it does not hold, doubled releases, fds that are not
/// sync_files, too many fds). On the first fault, or when the consumer hangs up or dies, its
/// connection is closed, on_consumer_lost is called with the reason, and every buffer it held is
/// returned once its implicit fences (the GPU's work on it) are done. The other consumers go on.
/// When those fences (or a release fence) cannot be watched (the FenceWatcher's watch fails,
/// e.g. out of fds), the buffer is not freed blind: it stays out of rotation and dispatch()
/// polls it (at least every 50 ms while dispatch or dequeue waits) until it is idle.
///
/// Stalled consumers: a consumer that stops reading or releasing is dropped like a faulty one
/// when it breaks the policy of ProducerOptions (max_held_per_consumer, release_deadline,
/// release_fence_timeout), or when the application calls drop(). What it held comes back only
/// when that is safe: once the dma-bufs' implicit fences are done (GPU work it submitted), and
/// for a release fence it sent, once that fence signals. A dropped consumer that is still alive
/// keeps its mappings and dma-bufs: CPU reads it makes after the drop cannot be fenced, which is
/// why the deadlines are the application's choice. Deadlines are checked by dispatch() (and
/// dequeue()), which fd() wakes when one passes.
///
/// Explicit sync on DRM syncobj timelines: with ProducerOptions::timeline_device set, the
/// producer makes an acquire timeline and offers it in its hello to every consumer. A consumer
/// that opted in too (ConsumerOptions::timeline_device) imports it and answers once with its own
/// release timeline; from then on, frames queued with queue_point() reach that consumer as a
/// point number (no fd) and its releases come back as points of its release timeline, watched
/// by the FenceWatcher like release fences. Consumers that did not opt in (or libraries that
/// predate timelines) keep getting sync_files: queue_point() exports the point as a sync_file
/// for them. Every timeline fd received is checked to be a syncobj (from /proc/self/fd, before
/// any ioctl) and imported on this producer's device; points from a consumer must rise, by at
/// most max_point_step each time, or the consumer is dropped. A consumer lost (hung up, died,
/// dropped) after releasing with a point nobody submitted yet gets its buffer back as if it
/// still held it (once the dma-bufs' implicit fences are done): a dead process cannot submit
/// any more, and a live one that is dropped is in the situation of "Stalled consumers" above.
/// A point submitted but not signalled is still waited for (the GPU may be using the buffer).
/// A release point the FenceWatcher cannot watch (before Linux 6.6, one nobody submitted yet)
/// is polled at each dispatch() instead; its buffer stays out of rotation until it signals.
///
/// Trust: every timeline consumer imports the same acquire syncobj, and a syncobj fd carries
/// every right over it: a consumer can signal or reset points of it, which every other
/// consumer's waits then see (a point signalled early lets them read a frame still being
/// written). Give timelines (timeline_device) only to consumers that trust each other, e.g. the
/// processes of one application; serve strangers with sync_files (their own fds per frame).
///
/// Cost per frame in steady state, counted by bench/bench_queue across two processes: 3 system
/// calls on the producer's thread and 3 on the consumer's with implicit sync, 8 and 7 with an
/// acquire and a release fence (the fences' own dups included), 6 and about 5 with timelines
/// (acquire and release points, the application's CPU signals of them included; a release point
/// already signalled when it arrives costs one query, one that is not yet costs a watch). A release deadline or fence
/// timeout adds up to one timerfd_settime per queue() and per dispatch() (when the next
/// deadline moved); a hold limit adds nothing unless a consumer reaches it.
///
/// Thread safety: none; one thread drives a Producer (its event loop polls fd()).

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include <dmabridge/base/access.hpp>
#include <dmabridge/base/result.hpp>
#include <dmabridge/format/buffer_desc.hpp>
#include <dmabridge/kernel/sync_file.hpp>
#include <dmabridge/kernel/timeline.hpp>
#include <dmabridge/queue/connection.hpp>

namespace dmabridge::queue {

/// How frames reach consumers, like Vulkan's present modes.
enum class Mode : std::uint8_t {
    fifo,     ///< every frame, in order; the producer waits for free buffers
    mailbox,  ///< the newest frame; a queued, unacquired frame is replaced by a newer one
};

/// A buffer's number in its queue: given by Producer::add_buffer, the same on every consumer.
using BufferIndex = std::uint32_t;
/// A consumer's number in its Producer; never 0, never reused.
using ConsumerId = std::uint64_t;

/// The largest step between two points one side sends on a timeline (and the largest first
/// point): a peer that skips further is dropped. A point far ahead would leave every later point
/// of the timeline waiting for it (points are reached in order), and one near 2^64 would end the
/// timeline; no honest use needs four billion points per frame.
inline constexpr std::uint64_t max_point_step = std::uint64_t{1} << 32;

/// What travels with a frame.
struct FrameInfo {
    std::uint64_t sequence = 0;      ///< the producer's frame counter
    std::int64_t timestamp_ns = 0;   ///< e.g. the capture time (CLOCK_MONOTONIC)
};

/// Options of a Producer; the zero value is a FIFO queue.
struct ProducerOptions {
    Mode mode = Mode::fifo;  ///< how frames reach consumers (sent to each at add_consumer())
    /// Called (on the Producer's thread) once for every consumer that is dropped: it hung up,
    /// died, sent something refused, could not be sent to, or drop() dropped it; `reason` says
    /// which, with the numbers. Every drop is also logged (LogLevel::warning).
    ///
    /// When: at the end of the Producer call that found the loss (dispatch(), dequeue() between
    /// its waits, queue(), add_buffer(), drop()), after that call has done its work and left
    /// every internal loop; never from the destructor (consumers closed by ~Producer are not
    /// reported). The dropped consumer is already gone (consumer_count() no longer counts it).
    ///
    /// What it may do: call any function of this Producer (drop() another consumer,
    /// add_consumer() one it accepts, add_buffer(), dequeue()/queue(), dispatch()), and even
    /// destroy or move the Producer. A loss found by such a nested call is reported by the
    /// nested call. When the callback destroys the Producer, the call that ran it returns at once
    /// without touching it: dispatch() its count, queue() and add_buffer() their success (their
    /// work was done), dequeue() Errc::empty_object.
    std::function<void(ConsumerId, const Error& reason)> on_consumer_lost;

    /// Stalled consumers (see "Stalled consumers" above). Without these a consumer that stops
    /// releasing keeps its buffers for good, and in FIFO the producer runs out of them; the
    /// application can still drop() it itself. The defaults set no limit.
    ///
    /// The most buffers one consumer may hold: frames queued to it and not released, acquired
    /// or not. queue() drops a consumer that already holds this many instead of sending it the
    /// frame (reason Errc::limit_exceeded). 0: no limit.
    std::size_t max_held_per_consumer = 0;
    /// How long a consumer may hold a frame, from queue() to its release message. A consumer
    /// that holds one longer is dropped (reason ETIMEDOUT). `forever` (any negative value,
    /// Timeout::max() or anything above a century): no deadline.
    Timeout release_deadline = forever;
    /// How long a release fence may stay unsignalled after the release arrived. Then the
    /// consumer that sent it is dropped (reason ETIMEDOUT) if still connected, and the buffer
    /// stays out of rotation until the fence signals (the consumer's GPU may still write it;
    /// a fence that never signals retires the buffer for good). `forever` (as above): no timeout.
    Timeout release_fence_timeout = forever;

    /// Explicit sync on timelines (see above): a DRM device fd whose driver has syncobj
    /// timelines (Timeline::open_device(), or the render node the application's Vulkan or EGL
    /// device uses). Borrowed: the Producer keeps a dup. -1 (the default): sync_files only.
    int timeline_device = -1;
};

/// Counters of a Producer (for tests and tools).
struct ProducerStats {
    std::uint64_t frames_queued = 0;     ///< queue() calls that queued a frame (once per frame, not per consumer)
    std::uint64_t releases = 0;          ///< releases accepted from consumers
    std::uint64_t consumers_lost = 0;    ///< consumers dropped (hung up, refused, stalled or drop())
    std::uint64_t buffers_reclaimed = 0; ///< holds of lost consumers given back after the GPU
    std::uint64_t release_fence_timeouts = 0; ///< release fences that outlived release_fence_timeout
    std::uint64_t release_points = 0;    ///< releases that came back as timeline points
    std::uint64_t abandoned_points = 0;  ///< release points of lost consumers that nothing had submitted
};

/// The producing end. Move-only; a moved-from Producer fails every call at once with
/// Errc::empty_object (fd() -1, counts 0).
class Producer {
public:
    /// Creates the producer's epoll instance and FenceWatcher (three fds; four with a release
    /// deadline or fence timeout: a timerfd).
    static Result<Producer> create(ProducerOptions options = {});
    /// Moves: consumers, buffers and watches go with the new object (buffer() pointers stay
    /// valid); the moved-from Producer is empty. Assignment first closes the target's
    /// connections, as the destructor does.
    Producer(Producer&&) noexcept;
    Producer& operator=(Producer&&) noexcept;
    /// Closes every connection. Buffers stay alive in consumers that still map or import them.
    ~Producer();

    /// Adds a buffer to the queue (it starts free) and announces it to every consumer (one
    /// message with its planes' dma-bufs to each). Checks desc.validate() first.
    /// Errors: the description's; Errc::limit_exceeded above 64 buffers. A consumer that cannot
    /// be sent the announcement is dropped (on_consumer_lost), not an error here.
    Result<BufferIndex> add_buffer(BufferDesc desc);

    /// The description of buffer `index` (the producer's own fds), to render into; nullptr for
    /// an unknown index. The pointer stays valid, and points to the same description, until the
    /// Producer is destroyed: later add_buffer() calls and moving the Producer do not move it.
    const BufferDesc* buffer(BufferIndex index) const noexcept;
    /// Buffers added so far (indices 0 to buffer_count() - 1); 0 when moved from.
    std::size_t buffer_count() const noexcept;

    /// Adds a consumer: sends it the mode and every buffer's announcement (one message each),
    /// and watches its connection. Errors: Errc::empty_object for an empty Connection, the send's errno.
    Result<ConsumerId> add_consumer(Connection connection);
    /// Consumers connected now (dropped ones no longer count); 0 when moved from.
    std::size_t consumer_count() const noexcept;
    /// Drops a consumer now, as if it had hung up: closes its connection (it sees ECONNRESET),
    /// reports it through on_consumer_lost with an ECANCELED reason, and takes back what it held
    /// as for any lost consumer (see "Hostile or dying consumers" above). Errors:
    /// Errc::not_found for an id that is not (or no longer) a consumer.
    Status drop(ConsumerId id);
    /// The credentials of a consumer's peer (see Connection::peer_credentials); Errc::not_found
    /// for a consumer that is gone.
    Result<PeerCredentials> consumer_credentials(ConsumerId id) const;

    /// A free buffer to render into, marked dequeued. When none is free, reads the consumers'
    /// releases and waits for their fences (dispatch()) until one is, or `timeout` passes
    /// (then ETIMEDOUT, "no free buffer within N ms: B buffers, Q queued to consumers, F
    /// waiting for release fences"). Costs nothing when a buffer is free. EDEADLK at once when
    /// every buffer is dequeued by the application (none can come back, so any wait would never
    /// end); Errc::invalid_argument for a queue without buffers. No default timeout: a stalled
    /// consumer can keep every buffer (see ProducerOptions' deadlines), so the caller says how
    /// long it may wait; `forever` waits without limit.
    Result<BufferIndex> dequeue(Timeout timeout);

    /// Queues a dequeued buffer to every consumer (one message to each, with a dup of
    /// `acquire_fence` where one is given; std::nullopt means implicit sync: consumers wait for
    /// the dma-buf's own fences). With no consumer the buffer is free again at once.
    /// Errors: Errc::invalid_argument for a buffer that is not dequeued, Errc::empty_object for
    /// an empty (moved-from) acquire fence; nothing is sent then. A consumer the frame
    /// cannot be sent to is dropped (on_consumer_lost), not an error here.
    Status queue(BufferIndex index, std::optional<SyncFile> acquire_fence, FrameInfo info);

    /// Queues a dequeued buffer whose acquire fence is `point` of acquire_timeline(): the
    /// application submitted work that signals it (a Vulkan timeline semaphore bridged with
    /// vulkan::SyncBridge::publish_point, an EGL fence, Timeline::signal, ...), or will. Consumers
    /// that negotiated timelines get the point number (no fd, no ioctl here); the others get the
    /// point as a sync_file (Timeline::export_sync_file: the point must be submitted already
    /// when any such consumer is connected, or this fails with Errc::not_found and sends
    /// nothing). Points must rise: `point` above the last one queued, by at most max_point_step
    /// (Errc::invalid_argument otherwise, nothing sent). Errc::unsupported without
    /// ProducerOptions::timeline_device. A consumer counts as one with timelines once its
    /// release timeline arrived (it sends it when it reads the hello; this call first reads what
    /// waits from consumers that have not answered yet). Otherwise as queue().
    Status queue_point(BufferIndex index, std::uint64_t point, FrameInfo info);

    /// The acquire timeline (made on ProducerOptions::timeline_device), for the application to
    /// signal or submit points of; nullptr without one. Valid until the Producer is destroyed.
    Timeline* acquire_timeline() noexcept;
    /// Whether consumer `id` negotiated timelines (its release timeline arrived): its frames
    /// carry points. Errc::not_found for a consumer that is gone.
    Result<bool> consumer_uses_timelines(ConsumerId id) const;

    /// Gives a dequeued buffer back without queueing it.
    Status cancel(BufferIndex index);

    /// Reads what consumers sent (releases, hang-ups) and reports signalled release fences,
    /// waiting up to `timeout` for the first event (Timeout{0} never blocks). Returns how many
    /// events it handled. A faulty consumer is dropped, not an error here.
    Result<std::size_t> dispatch(Timeout timeout = Timeout{0});

    /// Readable when dispatch() has something to do (an epoll fd over the connections, the
    /// fence watcher and, with a release deadline or fence timeout, a timer that fires when the
    /// next one passes). -1 once moved from. A dropped consumer's connection leaves the set
    /// before it is closed. An in-process consumer's stale doorbell (see Connection::fd()) may
    /// make it readable once with nothing to read: dispatch() then reads nothing and silences
    /// the doorbell (it still counts that event), and the next poll sleeps.
    int fd() const noexcept;

    /// Buffers free to dequeue now.
    std::size_t free_count() const noexcept;
    /// The counters since create(); all 0 when moved from.
    ProducerStats stats() const noexcept;


    struct State;

private:
    explicit Producer(std::unique_ptr<State> state) noexcept;
    std::unique_ptr<State> state_;
};

}  // namespace dmabridge::queue
