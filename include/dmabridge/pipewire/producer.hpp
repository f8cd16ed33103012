// SPDX-License-Identifier: MIT
#pragma once
/// @file pipewire/producer.hpp
/// pipewire::Producer: a PipeWire Video/Source node whose frames are dmabridge buffers. Any
/// PipeWire application can read it (GStreamer's pipewiresrc, OBS, browsers, a
/// pipewire::Consumer).
///
/// Negotiation, PipeWire's documented dma-buf procedure: the node offers, per fourcc of
/// `formats`, a format whose modifier property lists the fourcc's modifiers with the MANDATORY
/// and DONT_FIXATE flags (a dma-buf offer), followed (with `offer_shm`) by the same formats
/// without a modifier (a shared-memory offer). When a consumer's answer leaves the modifier
/// open, the producer fixates it: the first modifier, in `formats`' order, that the consumer
/// listed and that the allocator really allocates (a test allocation); it announces the fixed
/// format and PipeWire completes the negotiation. Buffers are then allocated by the producer
/// (PW_STREAM_FLAG_ALLOC_BUFFERS): one allocator image per buffer, each plane a SPA_DATA_DmaBuf
/// data with its fd, offset and stride, the description validated (BufferDesc::validate()).
/// A consumer that accepts no modifier gets shared memory: one sealed memfd per buffer
/// (SPA_DATA_MemFd). The application writes every frame through the frame's mapping then; where
/// /dev/udmabuf can wrap that memfd the frame also carries it as a dma-buf (no copy).
///
/// Frames: the node is the driver of its graph. dequeue() hands out a free buffer, the
/// application renders into it and queue()s it; queue() starts a graph cycle that delivers it.
/// Fences: implicit sync. Whatever wrote the dma-buf attached its fences to it (a GPU submit, an
/// IMPORT_SYNC_FILE); the consumer waits for them through the dma-buf.
///
/// Renegotiation (reconfigure()): the size and formats can change while the node streams (a
/// camera switching mode, a screen cast following a resized window). reconfigure() replaces the
/// offer and returns at once; PipeWire then negotiates again inside later dispatch() calls. What
/// the application sees meanwhile, in order:
/// - until PipeWire sets the new format, dequeue() still hands out buffers of the old format
///   (ProducerFrame::format says which; their frames are delivered as that format, never
///   reinterpreted);
/// - PipeWire removes every buffer: frames queued and not yet delivered are dropped with them; a
///   buffer the application holds dequeued stays valid until queue(), which answers
///   Errc::not_found; the others' images are freed at once (stats().buffers_removed);
///   negotiated() is nullopt and dequeue() returns nullopt;
/// - once the consumer agreed, new buffers are allocated at the new size and format, negotiated()
///   says it, and dequeue() hands them out.
/// The stream pauses meanwhile (state() reads StreamState::paused, then streaming again); about
/// 0.1-0.2 s in the test VM (docs/measured.md).
/// A consumer that accepts nothing of the new offer: PipeWire fails the negotiation and puts both
/// streams in error, this one and the consumer's (Errc::unsupported, PipeWire's "no more input
/// formats"), within the same fraction of a second; every buffer is removed first. The error is
/// final, as every stream error: dequeue() and reconfigure() return it, negotiated() stays
/// nullopt; make a new Producer to publish again. Check what consumers take before narrowing the
/// offer, or keep the old format in it.
///
/// Explicit sync (pipewire/explicit_sync.hpp): with ProducerOptions::timeline_device, buffers
/// carry an acquire and a release timeline where the consumer takes them (a dmabridge Consumer
/// with a timeline device); ProducerFrame::acquire_timeline is then set. The frame's writes
/// must then signal ProducerFrame::acquire_point (queue() does it from the buffer's implicit
/// fences unless told PointBy::application), and the writes must wait for the consumer's
/// ProducerFrame::release_point (wait_released(), or a GPU wait). A buffer that comes back with
/// its release point not submitted was never read (PipeWire 1.4 recycles a frame its consumer
/// did not take, unannounced): dequeue() signals that point itself (stats().releases_unscheduled),
/// one ioctl per dequeue. dequeue() hands a buffer out
/// as soon as PipeWire returns it, as with implicit sync, where the consumer's reads are fences
/// on the dma-buf the writer waits for.
///
/// Event loop: the Context's (see pipewire/context.hpp): negotiation, buffer allocation and the
/// return of buffers happen inside Context::dispatch().
///
/// Thread safety: none; the thread that drives the Context drives its Producers.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <dmabridge/alloc/allocator.hpp>
#include <dmabridge/alloc/udmabuf.hpp>
#include <dmabridge/base/result.hpp>
#include <dmabridge/format/buffer_desc.hpp>
#include <dmabridge/format/format_set.hpp>
#include <dmabridge/kernel/timeline.hpp>
#include <dmabridge/pipewire/context.hpp>
#include <dmabridge/pipewire/explicit_sync.hpp>
#include <dmabridge/pipewire/stream_state.hpp>

namespace dmabridge::pipewire {

/// Options of Producer::create().
struct ProducerOptions {
    /// The node.name consumers target (pipewiresrc target-object=NAME). Required.
    std::string name;
    std::uint32_t width = 0;
    std::uint32_t height = 0;
    /// The (fourcc, modifier) pairs to offer as dma-bufs, in order of preference; fourccs
    /// PipeWire has no video format for are refused (Errc::unsupported). Usually what the
    /// allocator exports. May be empty when `offer_shm` is set (shared memory only).
    FormatSet formats;
    /// Allocates the dma-bufs (udmabuf, dma-heap, GBM, Vulkan); must outlive the Producer.
    /// Required when `formats` is not empty.
    Allocator* allocator = nullptr;
    /// Also offer each fourcc of `formats` (or `shm_fourccs`) as shared memory, for consumers
    /// that import no dma-buf (GStreamer 1.22's pipewiresrc, for one).
    bool offer_shm = true;
    /// With shared memory, wraps each memfd as a dma-buf (ProducerFrame::desc) so that the
    /// application renders through the same API either way. Optional; must outlive the Producer.
    const UdmabufAllocator* udmabuf = nullptr;
    /// Fourccs offered as shared memory in addition to `formats`' fourccs.
    std::vector<std::uint32_t> shm_fourccs;
    /// Buffers to allocate: at least 2, at most 16.
    std::uint32_t buffer_count = 4;
    /// The frame rate announced (frames per second over 1).
    std::uint32_t framerate = 30;
    /// Explicit sync: a DRM device fd whose driver has syncobj timelines (Timeline::open_device()),
    /// on which the Producer makes each buffer's two timelines. Borrowed: the Producer keeps a
    /// dup. -1: implicit sync only.
    int timeline_device = -1;
};

/// A buffer the application fills: dequeue() gives it, queue() gives it back (there is no way to
/// give a buffer back without sending it: queue it, or keep it until PipeWire removes it).
struct ProducerFrame {
    std::uint32_t index = 0;  ///< the buffer's number: stable for its life, never reused
    /// The image as dma-bufs: always for dma-buf buffers; for shared memory when udmabuf
    /// wrapped the memfd, else nullptr. Owned by the Producer; valid until queue().
    const BufferDesc* desc = nullptr;
    /// The shared memory of a shared-memory buffer (plane p at offsets[p] with strides[p]);
    /// empty for dma-buf buffers (render through `desc`).
    std::span<std::byte> memory;
    std::uint32_t plane_count = 0;
    std::uint64_t offsets[4] = {};
    std::uint64_t strides[4] = {};
    /// The size and format this buffer was allocated for: render the frame at this size (after a
    /// reconfigure() the buffers of the old format are still handed out until PipeWire replaces
    /// them).
    Negotiated format;
    /// Explicit sync, where the consumer took it (nullptr: implicit sync): the buffer's acquire
    /// timeline, and the point of it that this frame's writes signal (see queue()).
    Timeline* acquire_timeline = nullptr;
    std::uint64_t acquire_point = 0;
    /// Explicit sync: the buffer's release timeline, and the point that the consumer signals once
    /// it stopped reading the buffer's last frame: wait for it before writing (wait_released(),
    /// or a GPU wait). 0 (a buffer not sent yet): nothing to wait for.
    const Timeline* release_timeline = nullptr;
    std::uint64_t release_point = 0;
};

/// Counters for tests and benchmarks.
struct ProducerStats {
    std::uint64_t frames_queued = 0;
    std::uint64_t buffers_allocated = 0;    ///< images allocated for buffers (fixation tests excluded)
    /// Buffers PipeWire took back (a renegotiation, the last consumer gone, even killed while it
    /// held them): their memory is freed then, or at queue() for one the application held.
    /// buffers_allocated - buffers_removed is the number of buffers alive.
    std::uint64_t buffers_removed = 0;
    std::uint64_t fixation_tests = 0;       ///< test allocations made while fixating a modifier
    std::uint64_t negotiations = 0;         ///< formats that reached the streaming state
    std::uint64_t reconfigurations = 0;     ///< reconfigure() calls that changed the offer
    std::uint64_t timeline_frames = 0;      ///< frames sent with explicit sync (SyncTimeline)
    /// Explicit sync: buffers that came back with their release point not submitted (frames
    /// PipeWire recycled before the consumer took them), whose point dequeue() then signalled.
    std::uint64_t releases_unscheduled = 0;
};

class Producer {
public:
    /// Makes the stream and connects it as a driver Video/Source node (no wait: negotiation
    /// happens in later dispatch() calls). Errors: options out of range or missing
    /// (Errc::invalid_argument), a fourcc PipeWire cannot describe (Errc::unsupported), a moved-
    /// from Context (Errc::empty_object), a Context whose daemon was lost (its EPIPE error),
    /// libpipewire's errno.
    static Result<Producer> create(Context& context, ProducerOptions options);

    Producer(Producer&&) noexcept;
    Producer& operator=(Producer&&) noexcept;
    Producer(const Producer&) = delete;
    Producer& operator=(const Producer&) = delete;
    /// Disconnects the node; buffers a consumer still reads stay alive in its process (it holds
    /// its own references to the dma-bufs and memfds).
    ~Producer();

    /// The stream's state; StreamState::error with error() set after a failure, the loss of
    /// the daemon included (the Context's EPIPE error: see pipewire/context.hpp).
    StreamState state() const noexcept;
    /// The failure that put the stream in StreamState::error (its message names the cause).
    std::optional<Error> error() const;
    /// The format in use once StreamState::streaming, else nullopt.
    std::optional<Negotiated> negotiated() const;
    /// The node's id in the daemon (SPA_ID_INVALID until known).
    std::uint32_t node_id() const noexcept;

    /// A free buffer, or nullopt when none is free (every buffer out, or not streaming yet).
    /// No syscall. Errors: Errc::empty_object when moved from; the stream's error.
    Result<std::optional<ProducerFrame>> dequeue();
    /// Sends a dequeued buffer as the next frame (`sequence` and `timestamp_ns` travel in its
    /// header metadata) and starts a graph cycle. A buffer that PipeWire removed while it was
    /// dequeued (a renegotiation, the consumer gone) stayed valid until this call, which then
    /// drops it and answers Errc::not_found: the frame is lost, nothing else. A failed stream
    /// (the daemon lost, among others) takes the buffer back and answers its error. Errors: an
    /// index not dequeued (Errc::invalid_argument), Errc::empty_object when moved from.
    ///
    /// Explicit sync (frame.acquire_timeline set): the frame goes out with acquire_point and the
    /// next release point of its buffer. With PointBy::implicit_fences the point is made to
    /// stand for the buffer's implicit write fences now (one ioctl per dma-buf and one to the
    /// timeline; signalled at once after CPU writes); with PointBy::application the application
    /// submits it, before or after this call. Errors then also: the timeline's, for a point
    /// already submitted (the frame is not sent; the buffer stays dequeued).
    Status queue(const ProducerFrame& frame, std::uint64_t sequence = 0, std::int64_t timestamp_ns = 0,
                 PointBy acquire = PointBy::implicit_fences);

    /// Waits until the consumer released the buffer of `frame` (its release_point signalled),
    /// or `timeout` passed (WaitStatus::timed_out): what a CPU writer calls before writing.
    /// Ready at once with implicit sync (the consumer's reads are fences on the dma-buf) and for
    /// a buffer not sent yet. One ioctl. Errors: Errc::empty_object when moved from; the
    /// timeline's.
    Result<WaitStatus> wait_released(const ProducerFrame& frame, Timeout timeout) const;

    /// True when the buffers in place carry explicit sync (a consumer took the SyncTimeline
    /// metadata). No syscall.
    bool uses_timelines() const noexcept;

    /// Replaces the offer made at create() (ProducerOptions' width, height, formats and
    /// shm_fourccs; offer_shm, allocator and buffer_count stay) and asks PipeWire to negotiate
    /// again (pw_stream_update_params with the new EnumFormat list): "reconfigure" because it
    /// changes what the node offers and the change takes effect later, through a renegotiation
    /// the consumer takes part in, not when the call returns. See "Renegotiation" above for what
    /// dequeue(), queue() and negotiated() answer meanwhile. Costs a message to the daemon; no
    /// allocation until the consumer answered. Errors, with the offer unchanged: a size outside
    /// 1..16384 or nothing offered (Errc::invalid_argument), dma-buf formats without an
    /// allocator (Errc::invalid_argument), a fourcc PipeWire cannot describe or shared memory
    /// cannot lay out (Errc::unsupported), Errc::empty_object when moved from, the stream's
    /// error, libpipewire's errno.
    Status reconfigure(std::uint32_t width, std::uint32_t height, FormatSet formats,
                       std::vector<std::uint32_t> shm_fourccs = {});

    /// Counters since creation (ProducerStats). No syscall.
    const ProducerStats& stats() const noexcept;

    struct Impl;

private:
    explicit Producer(std::unique_ptr<Impl> impl) noexcept;
    std::unique_ptr<Impl> impl_;
};

}  // namespace dmabridge::pipewire
