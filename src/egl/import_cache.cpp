// SPDX-License-Identifier: MIT
// The EGL adapter of the import cache: how to build an import (Context::import) and which
// completions say a GL use ended. Keying, the LRU bound, statistics and retirement are the shared
// design in cache/import_cache_core. Retired entries are destroyed by dropping the cache's
// reference; an egl::Image destroys its EGLImage and texture at once when the context is current
// on that thread and queues them for Context::collect() otherwise, so the core may drop entries
// from any thread.
#include <dmabridge/egl/import_cache.hpp>

#include "cache/import_cache_core.hpp"
#include "egl/egl_state.hpp"

namespace dmabridge::egl {

ImportCache::ImportCache(Context context, ImportCacheOptions options)
    : context_(std::move(context)),
      core_(std::make_unique<::dmabridge::detail::ImportCacheCore>(options.max_entries, "egl import cache",
                                                                    options.destroy_timeout)) {}

ImportCache::~ImportCache() {
    // The core waits for every recorded use and drops its references; then the queue of objects
    // dropped meanwhile is destroyed here, on the GL thread.
    core_.reset();
    context_.collect();
}

ImportKey ImportCache::key_of(const BufferDesc& desc, const ImportOptions& options) {
    // `format` keeps the asked target (0: chosen by the display's flags, which do not change);
    // `usage` the colour hints.
    const std::uint64_t hints = (static_cast<std::uint64_t>(static_cast<std::uint32_t>(options.yuv_color_space)) << 32) |
                                static_cast<std::uint32_t>(options.sample_range);
    return ::dmabridge::detail::image_key(desc, options.target, hints);
}

Result<CachedImage> ImportCache::import(const BufferDesc& desc, const ImportOptions& options) {
    if (auto ok = ::dmabridge::detail::check_lookup(desc, "egl import cache"); !ok) return ok.error();
    const ImportKey key = key_of(desc, options);
    // A hit is equal, field by field, to a description that passed every check of Context::import.
    if (auto hit = core_->find(key)) return std::static_pointer_cast<const Image>(hit);
    if (auto c = detail::require_current(detail::ContextAccess::state(context_).get(), "egl import cache"); !c) return c.error();
    auto image = context_.import(desc, options);
    if (!image) return image.error();
    auto refs = desc.dup();
    if (!refs) return refs.error().with_context("egl import cache: keep references");
    std::uint64_t bytes = 0;
    for (const auto& p : desc.planes) bytes += p.buffer.size();
    // The core keeps a shared_ptr<void>; the const Image inside is never modified.
    std::shared_ptr<void> object = std::const_pointer_cast<Image>(std::move(*image));
    auto kept = std::static_pointer_cast<const Image>(core_->insert(key, std::move(object), bytes, std::move(*refs)));
    context_.collect();
    return kept;
}

Status ImportCache::set_last_use(const Image& image, std::shared_ptr<const Completion> use) {
    return core_->add_use(&image, std::move(use), "egl set_last_use");
}

Status ImportCache::set_last_use(const Image& image, SyncFile fence) {
    if (!fence.valid())
        return Error::library(Errc::empty_object, "egl set_last_use: the sync_file was moved from or released (fd -1)");
    return set_last_use(image, completion_of(std::move(fence)));
}

bool ImportCache::evict(const BufferDesc& desc, const ImportOptions& options) {
    if (!::dmabridge::detail::check_lookup(desc, "egl evict")) return false;
    return core_->evict(key_of(desc, options));
}

std::size_t ImportCache::evict_buffer(BufferId id) { return core_->evict_buffer(id); }

void ImportCache::clear() { core_->clear(); }

Result<std::size_t> ImportCache::collect() {
    if (auto c = detail::require_current(detail::ContextAccess::state(context_).get(), "egl import cache collect"); !c) return c.error();
    const std::size_t n = core_->collect();
    context_.collect();
    return n;
}

Result<WaitStatus> ImportCache::wait_idle(Timeout timeout) { return core_->wait_idle(timeout); }

ImportCacheStats ImportCache::stats() const { return core_->stats(); }

}  // namespace dmabridge::egl
