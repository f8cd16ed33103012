// SPDX-License-Identifier: MIT
#pragma once
// The import cache's one design, shared by every API adapter: entries keyed by ImportKey, an LRU
// bound, statistics, and retirement that destroys an import only when nobody can still use it.
// An adapter supplies the import itself (built without the cache's lock) and the Completions
// that say when each GPU use of an import ended.
//
// Lifetime rules, the reason this class exists:
// - The cache owns every import it built until it destroys it itself. A handle it gave out shares
//   the object, so while any handle lives the cache keeps the entry (live or retired) and can
//   still record uses of it: an entry evicted between import() and set_last_use() is not lost.
// - A retired entry is destroyed when no handle is left outside the cache and every recorded use
//   has completed. Uses accumulate (two queues may use one image); completed ones are pruned.
// - Hits never wait for another thread's import: the lock is not held while an import is built.
// - Destruction of Vulkan or EGL objects happens outside the lock.

#include <chrono>
#include <cstddef>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include <dmabridge/base/result.hpp>
#include <dmabridge/cache/import_key.hpp>
#include <dmabridge/format/buffer_desc.hpp>
#include <dmabridge/kernel/completion.hpp>

namespace dmabridge::detail {

class ImportCacheCore {
public:
    /// `what` names the cache in log messages ("vulkan import cache"). `destroy_timeout` bounds
    /// the destructor's wait for all recorded uses together.
    ImportCacheCore(std::size_t max_entries, std::string what, Timeout destroy_timeout = std::chrono::seconds(5));
    /// Waits for the recorded uses of every entry, all together at most destroy_timeout (logging
    /// a warning every second it waits), then drops the cache's references. Entries with a use
    /// that did not complete in time (a peer's fence that never signals) are leaked on purpose,
    /// with an error-level log line: destroying them could let the GPU use freed memory. Handles
    /// still held elsewhere keep their objects.
    ~ImportCacheCore();
    ImportCacheCore(const ImportCacheCore&) = delete;
    ImportCacheCore& operator=(const ImportCacheCore&) = delete;

    /// The hit path: the live object for `key`, made most recently used, or null. No syscall
    /// and no API call.
    std::shared_ptr<void> find(const ImportKey& key);

    /// Keeps `object` (built after find() missed) under `key`, with the cache's own references
    /// to its dma-bufs, and retires what the bound pushes out. When another thread inserted the
    /// same key meanwhile, that entry wins and is returned (a hit); `object` is dropped here,
    /// never having been handed out.
    std::shared_ptr<void> insert(const ImportKey& key, std::shared_ptr<void> object, std::uint64_t bytes,
                                 BufferDesc references);

    /// Records one more use of the object at `object` (live or retired). Errors: the object is
    /// not one this cache holds; `use` is null.
    Status add_use(const void* object, std::shared_ptr<const Completion> use, const char* operation);

    bool evict(const ImportKey& key);
    std::size_t evict_buffer(BufferId id);
    void clear();
    /// Destroys the retired entries that nobody holds and whose uses completed; never blocks.
    std::size_t collect();
    /// Waits until every recorded use of every entry completed, or `timeout`.
    Result<WaitStatus> wait_idle(Timeout timeout);

    ImportCacheStats stats() const;

private:
    struct Entry {
        ImportKey key;
        std::shared_ptr<void> object;
        std::uint64_t bytes = 0;
        BufferDesc references;  // the cache's own references to the dma-bufs
        std::vector<std::shared_ptr<const Completion>> uses;
        bool retired = false;
    };
    using EntryList = std::list<Entry>;

    // Moves `it` from the live list to the retired list.
    void retire_locked(EntryList::iterator it);
    // Moves the destroyable retired entries into `doomed`, to be destroyed after unlocking.
    std::size_t collect_locked(std::vector<Entry>& doomed);
    void update_counts_locked();

    std::size_t max_entries_;
    std::string what_;
    Timeout destroy_timeout_;
    mutable std::mutex mutex_;
    EntryList live_;     // most recently used first
    EntryList retired_;  // evicted, not yet destroyed
    std::unordered_map<ImportKey, EntryList::iterator, ImportKeyHash> index_;      // live entries
    std::unordered_map<const void*, EntryList::iterator> by_object_;               // live and retired
    ImportCacheStats stats_;
};

/// Makes `key` for an image import of `desc` (planes past max_planes are left out: such a
/// description never imports). `format` and `usage` are the API's own values.
ImportKey image_key(const BufferDesc& desc, std::uint32_t format, std::uint64_t usage) noexcept;
/// Makes `key` for a whole-buffer import of `dmabuf`.
ImportKey buffer_key(const DmaBuf& dmabuf, std::uint64_t usage) noexcept;

/// An error when `desc` cannot even be looked up: no planes, more than max_planes, or a plane
/// whose DmaBuf was moved from or released (fd -1). Checked before the hit path, without syscalls.
Status check_lookup(const BufferDesc& desc, const char* operation);

}  // namespace dmabridge::detail
