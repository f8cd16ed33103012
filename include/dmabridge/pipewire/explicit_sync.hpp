// SPDX-License-Identifier: MIT
#pragma once
/// @file pipewire/explicit_sync.hpp
/// Explicit sync on PipeWire streams: PipeWire's SyncTimeline metadata with DRM syncobj
/// timelines (dmabridge::Timeline), next to the implicit sync of the dma-bufs.
///
/// Negotiation: a Producer and a Consumer that both have a timeline device
/// (ProducerOptions::timeline_device, ConsumerOptions::timeline_device: a DRM device whose
/// driver has syncobj timelines, Timeline::open_device()) agree on it through PipeWire's buffer
/// negotiation: the producer offers buffers with two more datas (SPA_DATA_SyncObj: an acquire
/// and a release timeline per buffer, made by the producer on its device) that require the
/// SyncTimeline metadata, and plain buffers after them; the metadata is negotiated only when the
/// consumer lists it too. Any other peer (GStreamer's pipewiresrc, a consumer without a device)
/// gets the plain buffers and implicit sync, as before.
///
/// With explicit sync, every frame carries two points of its buffer's timelines:
/// - the acquire point, which signals once the producer's writes are done: the consumer waits
///   for it before reading (Timeline::wait on the CPU, or a GPU wait: Timeline::export_sync_file
///   to a Vulkan SYNC_FD semaphore or an EGL native fence);
/// - the release point, which the consumer signals once its reads are done: the producer waits
///   for it before writing into the buffer again (Producer::wait_released, or a GPU wait).
/// Points count up per buffer from 1; a consumer refuses a frame whose points are 0 or not above
/// the buffer's last ones.
///
/// Who makes a point stand for the work it guards is said at queue() and release() (PointBy):
/// by default dmabridge does, from the buffer's implicit fences at that moment, which is right
/// for CPU access and for GPU work through an implicit-sync API; an application that signals the
/// point itself (a Vulkan timeline semaphore bridged to it, Timeline::signal) says so, and may
/// then do it after the call.

#include <cstdint>

namespace dmabridge::pipewire {

/// Who makes an explicit-sync point stand for the accesses it guards (see the file comment).
enum class PointBy : std::uint8_t {
    /// dmabridge, at the call: the point takes the buffer's implicit fences (DMA_BUF_IOCTL_EXPORT_SYNC_FILE
    /// of every dma-buf of the frame, imported into the point); with none (CPU access), or on a
    /// buffer that is not a dma-buf, the point is signalled at once.
    implicit_fences,
    /// The application, before or after the call (the point must not be submitted by anyone
    /// else). A point never submitted stalls the peer until its own wait times out.
    application,
};

}  // namespace dmabridge::pipewire
