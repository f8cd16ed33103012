// SPDX-License-Identifier: MIT
#pragma once
/// @file buffer_fences.hpp
/// Implicit fences of a whole description: what every user of a multi-plane or multi-buffer
/// image otherwise writes by hand, once per distinct dma-buf (NV12M's two buffers, NV12's one
/// buffer with two planes), and usually only for plane 0.

#include <optional>
#include <string_view>

#include <dmabridge/base/access.hpp>
#include <dmabridge/base/result.hpp>
#include <dmabridge/format/buffer_desc.hpp>
#include <dmabridge/kernel/sync_file.hpp>

namespace dmabridge {

/// The fences that `access` must wait for on every distinct dma-buf of `desc`
/// (DMA_BUF_IOCTL_EXPORT_SYNC_FILE on each, merged with SYNC_IOC_MERGE into one sync_file named
/// `name`): Access::read gives the writers' fences (what a reader waits for), Access::write every
/// fence (what a writer, or the exporter taking the buffer back, waits for). A snapshot: fences
/// added later are not in it. An idle description gives an already-signalled sync_file.
///
/// std::nullopt when the kernel cannot export sync_files (before Linux 6.0, or without
/// CONFIG_SYNC_FILE): the caller then waits with DmaBuf::wait() on the CPU, or hands the buffer
/// on without a fence. Costs one ioctl per distinct dma-buf and one merge per extra buffer.
/// Errors: check_planes()'s; the kernel's (naming the plane's buffer).
Result<std::optional<SyncFile>> export_fences(const BufferDesc& desc, Access access,
                                              std::string_view name = "dmabridge-fences");

/// Adds `fence` to every distinct dma-buf of `desc` (DMA_BUF_IOCTL_IMPORT_SYNC_FILE): with
/// Access::write as a write fence (everyone waits: a producer's render fence, a compositor's
/// release fence before the client writes again), with Access::read as a read fence (only
/// writers wait). The sync_file stays the caller's. Costs one ioctl per distinct dma-buf.
/// Errors: check_planes()'s; Errc::unsupported when the kernel cannot import sync_files (before
/// Linux 6.0: wait for the fence with SyncFile::wait() instead); the kernel's.
Status attach_fence(const BufferDesc& desc, const SyncFile& fence, Access access);

}  // namespace dmabridge
