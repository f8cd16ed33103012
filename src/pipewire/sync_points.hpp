// SPDX-License-Identifier: MIT
#pragma once
// What the Producer and the Consumer share for explicit sync (pipewire/explicit_sync.hpp): the
// SyncTimeline metadata of a buffer, and a point made to stand for a frame's implicit fences.

#include <cstdint>

#include <spa/buffer/buffer.h>
#include <spa/buffer/meta.h>

#include <dmabridge/base/access.hpp>
#include <dmabridge/base/result.hpp>
#include <dmabridge/format/buffer_desc.hpp>
#include <dmabridge/kernel/timeline.hpp>

namespace dmabridge::pipewire::detail {

/// The two datas a buffer carries for explicit sync, after its planes.
constexpr std::uint32_t sync_datas = 2;

/// The buffer's SyncTimeline metadata (nullptr when it has none: implicit sync).
spa_meta_sync_timeline* sync_timeline_meta(const spa_buffer* sb);

/// Makes `point` of `timeline` stand for the implicit fences that `access` waits for on every
/// dma-buf of `desc` (export_fences, then Timeline::import_sync_file); signals it at once when
/// `desc` is null (memory that is no dma-buf) or the kernel cannot export fences (before 6.0).
/// Errors: the timeline's (a point not above the last one submitted among them).
Status fence_point(Timeline& timeline, std::uint64_t point, const BufferDesc* desc, Access access);

}  // namespace dmabridge::pipewire::detail
