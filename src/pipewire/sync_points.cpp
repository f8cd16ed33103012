// SPDX-License-Identifier: MIT
#include "pipewire/sync_points.hpp"

#include <dmabridge/format/buffer_fences.hpp>

namespace dmabridge::pipewire::detail {

spa_meta_sync_timeline* sync_timeline_meta(const spa_buffer* sb) {
    if (sb == nullptr) return nullptr;
    return static_cast<spa_meta_sync_timeline*>(
        spa_buffer_find_meta_data(sb, SPA_META_SyncTimeline, sizeof(spa_meta_sync_timeline)));
}

Status fence_point(Timeline& timeline, std::uint64_t point, const BufferDesc* desc, Access access) {
    if (desc != nullptr) {
        auto fences = export_fences(*desc, access, "dmabridge-pipewire");
        if (!fences) return fences.error();
        if (*fences) return timeline.import_sync_file(point, **fences);
    }
    // CPU access only (or a kernel without sync_file export, where the implicit fences cannot
    // be carried over: the caller's access is done by now, as the call's contract says).
    return timeline.signal(point);
}

}  // namespace dmabridge::pipewire::detail
