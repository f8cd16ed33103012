// SPDX-License-Identifier: MIT
#include <dmabridge/format/buffer_fences.hpp>

#include <string>

namespace dmabridge {

Result<std::optional<SyncFile>> export_fences(const BufferDesc& desc, Access access, std::string_view name) {
    if (auto ok = desc.check_planes("export fences"); !ok) return ok.error();
    std::optional<SyncFile> merged;
    const auto buffers = desc.distinct_buffers();
    for (std::size_t b = 0; b < buffers.size(); ++b) {
        auto fence = buffers[b]->export_sync_file(access);
        if (!fence) {
            // DmaBuf maps the kernel's ENOTTY (no such ioctl) to Errc::unsupported.
            if (fence.error().is(Errc::unsupported)) return std::optional<SyncFile>{};
            return fence.error().with_context("export fences of buffer " + std::to_string(b));
        }
        if (!merged) {
            merged = std::move(*fence);
            continue;
        }
        auto both = SyncFile::merge(*merged, *fence, name);
        if (!both) return both.error().with_context("export fences of buffer " + std::to_string(b));
        merged = std::move(*both);
    }
    return merged;
}

Status attach_fence(const BufferDesc& desc, const SyncFile& fence, Access access) {
    if (auto ok = desc.check_planes("attach fence"); !ok) return ok.error();
    const auto buffers = desc.distinct_buffers();
    for (std::size_t b = 0; b < buffers.size(); ++b)
        if (auto ok = buffers[b]->import_sync_file(fence, access); !ok)
            return ok.error().with_context("attach fence to buffer " + std::to_string(b));
    return {};
}

}  // namespace dmabridge
