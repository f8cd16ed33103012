// SPDX-License-Identifier: MIT
#pragma once
/// @file pipewire/consumer.hpp
/// pipewire::Consumer: reads a PipeWire video node (a pipewire::Producer, GStreamer's
/// pipewiresink, a camera, a screen cast) as dmabridge buffers.
///
/// Negotiation: per fourcc of `formats` the consumer offers the modifiers its importer accepts
/// (MANDATORY | DONT_FIXATE, PipeWire's dma-buf procedure: the producer fixates), then, with
/// `accept_shm`, the fourccs of `formats` and `shm_fourccs` as shared memory.
///
/// Everything the peer sends is untrusted: a buffer's data types, fds, offsets, strides and
/// sizes are checked before anything uses them. A dma-buf plane must be a dma-buf fd
/// (DmaBuf::import_fd reads what the fd is), and the description with the negotiated size,
/// fourcc and modifier must pass BufferDesc::validate(); shared memory must lie inside its
/// mapping. libpipewire is not asked to map buffers (PW_STREAM_FLAG_MAP_BUFFERS would map any
/// fd the peer marks mappable, dma-bufs included, before these checks): the Consumer maps only
/// memfds it checked. A frame that fails is returned to the producer at once, counted in
/// stats().frames_rejected, and the reason kept in last_rejection().
///
/// Buffer identity: each PipeWire buffer is described once and the description (its DmaBufs)
/// lives until PipeWire removes the buffer, so an import cache keyed on the dma-bufs' identity
/// hits from the second frame of each buffer on.
///
/// Shared-memory frames (MemFd, MemPtr): with a udmabuf device (ConsumerOptions::udmabuf), a
/// memfd whose seals allow it is wrapped as a dma-buf with no copy, once per buffer
/// (stats().shm_wrapped): the whole pages around the buffer, so the dma-buf may also hold up to
/// a page of the neighbouring buffers of the same memfd, which this process maps anyway; otherwise, with a `copy_allocator`, the frame is copied once into
/// a dma-buf of its own (stats().shm_copies counts every copy). Without either the frame still
/// arrives, as a read-only CPU span.
///
/// Renegotiation (a producer that changes size or format, Producer::reconfigure()): PipeWire
/// removes every buffer of the old format before it sets the new one, so a frame is never
/// described with a format it was not made for. What the application sees:
/// - frames acquired before the change keep their description (and ConsumerFrame::format) until
///   release(); frames that arrived and were not acquired are gone with their buffers;
/// - the descriptions of the removed buffers are dropped (at release() for held frames), and
///   their dma-buf identities are reported once by take_removed_buffers(): evict them from the
///   import caches the frames went through (ImportCache::evict_buffer), which otherwise keep
///   their own references to the old dma-bufs (fds and imports) until the LRU bound retires them;
/// - negotiated() is nullopt and acquire() returns nullopt until the new buffers are in place,
///   then frames of the new size and format arrive (ConsumerFrame::format, desc->width ...);
/// - state() reads StreamState::paused during the change, then streaming again;
/// - a buffer that arrives with no data (chunk size 0; seen once during a renegotiation, a new
///   buffer handed out under the id of an old one before the producer filled it) is returned at
///   once, counted in stats().frames_empty, never handed out;
/// - a new format this consumer does not accept: PipeWire fails the negotiation and puts both
///   streams in error: error() says so (Errc::unsupported, PipeWire's "no more input formats"),
///   acquire() returns it from then on, and the removed buffers are still reported by
///   take_removed_buffers().
///
/// An import that fails after all (PipeWire's dma-buf procedure): the formats offered are what
/// the importer says it accepts, but only a real import of a real buffer proves it. When the
/// application's import of a dma-buf frame fails, refuse_import(frame, why) stops offering that
/// frame's (fourcc, modifier) and renegotiates: the producer fixates another of the pairs left
/// (another modifier of that fourcc, or another fourcc: which one is the negotiation's pick),
/// and once no dma-buf pair is left, shared memory follows (with `accept_shm`); with nothing left at all the
/// negotiation fails as for a format nobody supports (the stream's error says so). The
/// renegotiation is the one above: the old buffers are reported by take_removed_buffers().
///
/// Fences: implicit sync. The producer's writes are fences on the dma-bufs: wait for them
/// (DmaBuf::wait, export_sync_file, an importer's sync bridge) before reading. Release a frame
/// once the reads that were submitted are fenced on the buffer (or done).
///
/// Explicit sync (pipewire/explicit_sync.hpp): with ConsumerOptions::timeline_device, a producer
/// that offers SyncTimeline metadata (a dmabridge Producer with a timeline device) sends frames
/// whose ConsumerFrame::acquire_timeline is set: wait for acquire_point instead of the dma-buf's
/// fences (Timeline::wait, or a GPU wait on Timeline::export_sync_file). release() then submits
/// release_point: by default from the dma-bufs' fences at that moment (right after CPU reads and
/// GPU reads through implicit sync); with PointBy::application the application submitted it
/// already, before release() (a Vulkan timeline semaphore signal bridged to it): the producer
/// takes a buffer back with its point not submitted for a frame never read. The timelines are
/// checked as the dma-bufs are: SyncObj datas whose fds this consumer's device imports as
/// syncobjs, points non-zero and above the buffer's last ones; a frame that fails is rejected.
///
/// Event loop and thread safety: as the Context's (pipewire/context.hpp).

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

/// Options of Consumer::create().
struct ConsumerOptions {
    /// The node to read: its node.name, or its object serial as decimal digits. Empty: let the
    /// session manager pick a video source.
    std::string target;
    /// This stream's own node.name (empty: "dmabridge-consumer").
    std::string name;
    /// The (fourcc, modifier) pairs the importer accepts as dma-bufs (e.g. a Vulkan or EGL
    /// import cache's supported set), in order of preference.
    FormatSet formats;
    /// Also accept shared memory for the fourccs of `formats` and `shm_fourccs`.
    bool accept_shm = true;
    std::vector<std::uint32_t> shm_fourccs;
    /// Turns a shared-memory frame into a dma-buf without a copy where the memfd allows it.
    /// Optional; must outlive the Consumer.
    const UdmabufAllocator* udmabuf = nullptr;
    /// Where a shared-memory frame that cannot be wrapped is copied to (once per frame).
    /// Optional; must outlive the Consumer.
    Allocator* copy_allocator = nullptr;
    /// Explicit sync: a DRM device fd whose driver has syncobj timelines (Timeline::open_device()),
    /// on which the producer's timelines are imported. Borrowed: the Consumer keeps a dup. -1:
    /// implicit sync only (SyncTimeline metadata is not taken).
    int timeline_device = -1;
};

/// A frame from acquire(); hand it back with release().
struct ConsumerFrame {
    std::uint32_t buffer_id = 0;  ///< the buffer's number: stable for its life, never reused
    /// The image as dma-bufs (nullptr for a shared-memory frame with neither udmabuf nor a copy
    /// allocator). Owned by the Consumer; for dma-buf buffers the same object (and dma-bufs)
    /// every time the buffer comes back. Valid until release(), even when PipeWire removes the
    /// buffer meanwhile (the producer gone, a renegotiation).
    const BufferDesc* desc = nullptr;
    /// A shared-memory frame's bytes (read-only; plane p at offsets[p], strides[p]); empty for
    /// dma-buf frames, and for a memfd the producer can still shrink (F_SEAL_SHRINK not set: a
    /// read past its new end would raise SIGBUS; use `desc`, the copy). Unlike `desc`, this is a
    /// mapping of the producer's memory (the Consumer's own for memfds, made once the fd proved
    /// to be shared memory of the right size; libpipewire's for MemPtr memory): valid only until
    /// the next dispatch() (which may remove the buffer and unmap it), and the producer may
    /// change it meanwhile. Read it at once, or use `desc` (udmabuf or a copy).
    std::span<const std::byte> memory;
    std::uint32_t plane_count = 0;
    std::uint64_t offsets[4] = {};
    std::uint64_t strides[4] = {};
    bool dmabuf = false;       ///< the peer sent dma-bufs
    bool copied = false;       ///< `desc` holds a copy of shared memory
    std::uint64_t sequence = 0;      ///< the producer's header sequence (0 without one)
    std::int64_t timestamp_ns = 0;   ///< the producer's header pts (0 without one)
    /// The size and format this frame was made with (a shared-memory frame has no other record
    /// of them); stays right for a frame held across a renegotiation.
    Negotiated format;
    /// Explicit sync, where it was negotiated (nullptr: implicit sync): the buffer's acquire
    /// timeline and the point to wait for before reading.
    const Timeline* acquire_timeline = nullptr;
    std::uint64_t acquire_point = 0;
    /// Explicit sync: the buffer's release timeline and the point release() submits (see
    /// PointBy). Valid until release().
    Timeline* release_timeline = nullptr;
    std::uint64_t release_point = 0;
    void* handle = nullptr;    ///< the PipeWire buffer (for release())
};

/// Counters for tests and benchmarks.
struct ConsumerStats {
    std::uint64_t frames_acquired = 0;
    std::uint64_t frames_rejected = 0;   ///< frames that failed validation (returned at once)
    std::uint64_t descriptions_built = 0;  ///< dma-buf descriptions made (once per buffer)
    std::uint64_t shm_wrapped = 0;       ///< shared-memory buffers wrapped by udmabuf (no copy)
    std::uint64_t shm_copies = 0;        ///< shared-memory frames copied into a dma-buf
    std::uint64_t shm_cpu_only = 0;      ///< shared-memory frames delivered as CPU spans only
    std::uint64_t buffers_removed = 0;   ///< buffers PipeWire removed (renegotiation, producer gone)
    /// Buffers that arrived with no data (chunk size 0: never filled by the producer), returned
    /// at once and not handed out.
    std::uint64_t frames_empty = 0;
    /// (fourcc, modifier) pairs refused by refuse_import() (each once).
    std::uint64_t imports_refused = 0;
    /// Frames acquired with explicit sync (SyncTimeline).
    std::uint64_t timeline_frames = 0;
};

class Consumer {
public:
    /// Makes the stream and connects it to `target` (no wait: linking and negotiation happen in
    /// later dispatch() calls). Errors: nothing offered (Errc::invalid_argument), a fourcc
    /// PipeWire cannot describe (Errc::unsupported), a moved-from Context (Errc::empty_object),
    /// a Context whose daemon was lost (its EPIPE error), libpipewire's errno.
    static Result<Consumer> create(Context& context, ConsumerOptions options);

    Consumer(Consumer&&) noexcept;
    Consumer& operator=(Consumer&&) noexcept;
    Consumer(const Consumer&) = delete;
    Consumer& operator=(const Consumer&) = delete;
    /// Disconnects (frames not released are returned to PipeWire).
    ~Consumer();

    StreamState state() const noexcept;
    /// The failure that put the stream in StreamState::error: Errc::not_found when the session
    /// manager found no node `target` (it may not be published yet: create a new Consumer to
    /// try again), Errc::unsupported for PipeWire's other stream errors (for example "no more
    /// input formats" when the producer offers nothing this consumer accepts), with PipeWire's
    /// message; the Context's EPIPE error once the daemon was lost (pipewire/context.hpp:
    /// frames held stay valid and release() still takes them back).
    std::optional<Error> error() const;
    std::optional<Negotiated> negotiated() const;

    /// The oldest frame that arrived, or nullopt when none is waiting. Frames that fail
    /// validation are skipped (returned at once) and counted. Errors: Errc::empty_object when
    /// moved from; the stream's error.
    Result<std::optional<ConsumerFrame>> acquire();
    /// Returns a frame to the producer. With explicit sync, first submits its release_point
    /// (PointBy::implicit_fences: from the dma-bufs' fences now, one ioctl per dma-buf and one to
    /// the timeline) or leaves it to the application, which submitted it already
    /// (PointBy::application). Errors: a frame not acquired from this Consumer or released twice
    /// (Errc::invalid_argument), Errc::empty_object when moved from; the timeline's (the buffer
    /// still goes back, its point signalled on the CPU).
    Status release(const ConsumerFrame& frame, PointBy release = PointBy::implicit_fences);
    /// True when buffers in place carry explicit sync (SyncTimeline metadata taken). No syscall.
    bool uses_timelines() const noexcept;

    /// The application could not import `frame` (a dma-buf frame acquired from this Consumer and
    /// not released): never offer its (fourcc, modifier) again on this stream, renegotiate
    /// without it, and release the frame. `why` (the importer's error) is kept in
    /// last_import_refusal(). Frames of the refused pair that still arrive before the new format
    /// is in place are handed out as before (release them, or refuse them too: a pair is counted
    /// once). One pw_stream_update_params; the renegotiation follows in later dispatch() calls.
    /// Errors: Errc::invalid_argument for a frame not acquired from this Consumer or already
    /// released, and for a shared-memory frame (it has no modifier to refuse); Errc::empty_object
    /// when moved from; the stream's error.
    Status refuse_import(const ConsumerFrame& frame, const Error& why);
    /// The (fourcc, modifier) pairs refused so far, no longer offered. Empty on a moved-from Consumer.
    FormatSet refused_formats() const;
    /// What refuse_import() was last told, naming the pair (empty when it was never called).
    std::string last_import_refusal() const;

    /// The identities of the dma-bufs of buffers PipeWire removed since the last call (a
    /// renegotiation, the producer gone), each once: for a frame held at the time, once it was
    /// released. Evict them from the import caches the frames went through
    /// (`for (BufferId id : consumer.take_removed_buffers()) cache.evict_buffer(id);`): a cache
    /// keeps its own references, so its imports of the old buffers (and their fds) otherwise
    /// live until its LRU bound retires them. A cache's reference also keeps the identity from
    /// being reused meanwhile. No syscall; empty on a moved-from Consumer.
    std::vector<BufferId> take_removed_buffers();

    /// Counters since creation (ConsumerStats). No syscall.
    const ConsumerStats& stats() const noexcept;
    /// Why the last frame was rejected (empty when none was).
    std::string last_rejection() const;
    /// Why udmabuf last refused to wrap a shared-memory buffer (its frames are then copied):
    /// empty when it never did.
    std::string last_wrap_refusal() const;

    struct Impl;

private:
    explicit Consumer(std::unique_ptr<Impl> impl) noexcept;
    std::unique_ptr<Impl> impl_;
};

}  // namespace dmabridge::pipewire
