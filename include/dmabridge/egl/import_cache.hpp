// SPDX-License-Identifier: MIT
#pragma once
/// @file egl/import_cache.hpp
/// ImportCache: import each dma-buf once per EGL context. The same design as the Vulkan cache
/// (one implementation, detail::ImportCacheCore): entries keyed by the buffers' identity (whatever
/// the fds) and the layout, an LRU bound, statistics, and retirement that destroys an EGLImage and
/// its texture only after the GL's last recorded use of it completed and no handle is left.
///
/// Life cycle: import() ... draw with image->texture() ... set_last_use() with what signals when
/// that draw completed (Context::fence(), a sync_file such as SyncBridge::release()'s, or any
/// Completion) ... drop the handle.
///
/// Threads: every member may be called from several threads, but only members marked "GL" below
/// destroy GL objects, and they must run on a thread where the context is current (checked:
/// Errc::invalid_argument otherwise). Eviction on any thread only retires an entry; the
/// destruction happens at the next GL call of the cache (import(), collect()), or, for an Image
/// dropped outside, at the next Context::collect(). The destructor is GL too.

#include <chrono>
#include <cstddef>
#include <memory>

#include <dmabridge/base/result.hpp>
#include <dmabridge/cache/import_key.hpp>
#include <dmabridge/egl/context.hpp>
#include <dmabridge/format/buffer_desc.hpp>
#include <dmabridge/kernel/completion.hpp>
#include <dmabridge/kernel/sync_file.hpp>

namespace dmabridge::detail {
class ImportCacheCore;
}

namespace dmabridge::egl {

/// Options of an ImportCache. The zero value suits a swapchain-sized ring of buffers.
struct ImportCacheOptions {
    /// Entries kept live; importing one more retires the least recently used. At least 1.
    std::size_t max_entries = 64;
    /// How long the destructor waits, in all, for the recorded uses of every entry. Imports
    /// whose use did not complete by then (a peer's release fence that never signals) are
    /// leaked, never destroyed, with a LogLevel::error message: freeing them could let the GPU
    /// use freed memory. `forever` waits without limit.
    Timeout destroy_timeout = std::chrono::seconds(5);
};

/// The statistics every import cache reports (cache/import_key.hpp).
using dmabridge::ImportCacheStats;

/// A cached image: holding it keeps the EGLImage and texture alive, and the cache able to
/// record its uses even after eviction. Record the GL's use (set_last_use) before dropping it.
using CachedImage = SharedImage;

/// An import cache for one Context.
class ImportCache {
public:
    /// A cache on `context` (a copy sharing its state). Makes no EGL or GL call and cannot
    /// fail: an empty Context makes a cache whose every miss fails with Errc::empty_object.
    explicit ImportCache(Context context, ImportCacheOptions options = {});
    /// GL. Waits for every recorded use of every entry (live and retired), all together at most
    /// ImportCacheOptions::destroy_timeout (default 5 s), destroys the imports nobody else holds,
    /// and collects the Context's queue. Imports still in use at the deadline (a peer's release
    /// fence that never signals) are leaked, never destroyed, with a LogLevel::error message.
    /// Must run with the context current.
    ~ImportCache();
    /// Neither copyable nor movable.
    ImportCache(const ImportCache&) = delete;
    ImportCache& operator=(const ImportCache&) = delete;

    /// GL. The image for `desc` and `options`: the cached one when the same buffers (by identity),
    /// fourcc, modifier, offsets, pitches, extent and target were imported before (a hit: no
    /// syscall, no EGL or GL call, so it works on any thread), otherwise Context::import
    /// (validation first: a refused description never reaches EGL) and kept with the cache's
    /// own references to the dma-bufs. Each miss also destroys what retirement left (collect()).
    /// Errors: a description without planes, with more than max_planes or with an empty plane
    /// (before any lookup; an empty plane is Errc::empty_object), a miss while the context is
    /// not current (Errc::invalid_argument) or while the Context is empty, detached or its
    /// EGLContext gone (Errc::empty_object); otherwise Context::import's.
    Result<CachedImage> import(const BufferDesc& desc, const ImportOptions& options = {});

    /// Records a GL use of a cached image: the cache destroys it only after `use` completed.
    /// Uses add up; completed ones are pruned. Any thread. Errors: the image did not come from
    /// this cache; a null completion or an empty sync_file.
    Status set_last_use(const Image& image, std::shared_ptr<const Completion> use);
    /// The use ends when `fence` signals (e.g. SyncBridge::release()'s or Context::native_fence()).
    Status set_last_use(const Image& image, SyncFile fence);

    /// Retires the entry for `desc` and `options`, if any; true when there was one. Any thread.
    bool evict(const BufferDesc& desc, const ImportOptions& options = {});
    /// Retires every entry that uses dma-buf `id`; returns how many. Any thread.
    std::size_t evict_buffer(BufferId id);
    /// Retires every entry. Any thread.
    void clear();
    /// GL. Destroys the retired imports that nobody holds and whose uses completed, and the
    /// Context's queue (never blocks); returns how many cache entries it destroyed.
    Result<std::size_t> collect();
    /// Waits until every recorded use of every entry completed, or `timeout`. Any thread.
    Result<WaitStatus> wait_idle(Timeout timeout = forever);

    /// hits, misses, evictions, live_entries, bytes, retired. Any thread. `bytes` adds up each
    /// plane's dma-buf size, so a dma-buf that holds two planes (NV12 in one buffer) counts twice.

    ImportCacheStats stats() const;


    /// The key of an import (equal keys are the same entry), for tests and tools.
    static ImportKey key_of(const BufferDesc& desc, const ImportOptions& options);

private:
    Context context_;
    std::unique_ptr<::dmabridge::detail::ImportCacheCore> core_;
};

}  // namespace dmabridge::egl
