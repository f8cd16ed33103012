// SPDX-License-Identifier: MIT
#pragma once
/// @file vulkan/import_cache.hpp
/// ImportCache: import each dma-buf once per device. A renderer that receives the same buffers
/// every frame (a camera's ring, a compositor's client buffers, fds passed again over a socket)
/// finds its earlier import again, even through a new fd, instead of building a new one: the
/// user-space echo of the kernel's cached attachment mapping.
///
/// Life cycle: import() (a miss imports, a hit returns the earlier image) ... use the image on
/// the GPU ... set_last_use() with what signals when that use completes ... eviction (LRU, or
/// evict()/clear()) retires the entry ... the image is destroyed once its last use completed
/// (collect(), called by every import(), or the cache's destructor, which waits).
///
/// Buffers work the same way through import_buffer(): a shader that decodes a camera's raw
/// bytes (YUYV, NV12 ...) itself reads the dma-buf as a storage buffer, which every device can
/// import whatever the pixel format. Images and buffers share the bound and the LRU order.

#include <array>
#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <variant>
#include <vector>

#include <vulkan/vulkan_core.h>

#include <dmabridge/buffer_desc.hpp>
#include <dmabridge/format.hpp>
#include <dmabridge/result.hpp>
#include <dmabridge/sync_file.hpp>
#include <dmabridge/vulkan/device.hpp>

namespace dmabridge::vulkan {

/// Options of an ImportCache. The zero value suits a swapchain-sized ring of buffers.
struct ImportCacheOptions {
    /// Entries kept; importing one more evicts the least recently used. At least 1.
    std::size_t max_entries = 64;
};

/// Counters since the cache was made (live_entries, bytes and retired are current values).
struct ImportCacheStats {
    std::uint64_t hits = 0;
    std::uint64_t misses = 0;         ///< imports built (failed imports are not counted)
    std::uint64_t evictions = 0;      ///< entries retired by the bound, evict() or clear()
    std::size_t live_entries = 0;
    std::uint64_t bytes = 0;          ///< device memory of the live entries
    std::size_t retired = 0;          ///< evicted images waiting for their last use to complete
};

/// A cached image. Holding it keeps the image alive even after its entry is evicted.
using CachedImage = std::shared_ptr<const Image>;
/// A cached buffer. Holding it keeps the buffer alive even after its entry is evicted.
using CachedBuffer = std::shared_ptr<const Buffer>;

/// An import cache for one device. Thread-safe: every member may be called from several threads
/// (imports of different buffers that miss are built one at a time).
class ImportCache {
public:
    explicit ImportCache(Device device, ImportCacheOptions options = {});
    /// Waits for the last use of every image (live and retired) and destroys them.
    ~ImportCache();
    ImportCache(const ImportCache&) = delete;
    ImportCache& operator=(const ImportCache&) = delete;

    /// The image for `desc` and `options`: the cached one when the same buffers (by identity,
    /// whatever the fds), fourcc, modifier, offsets, strides, extent, format and usage were
    /// imported before (a hit: no syscall, no Vulkan call), otherwise a new import
    /// (Device::import_image) that the cache keeps with its own references to the dma-bufs.
    /// The same buffer with any other layout is a different entry. Errors are import_image's.
    Result<CachedImage> import(const BufferDesc& desc, const ImageOptions& options = {});

    /// The buffer covering all of `dmabuf` with `usage`: the cached one when the same dma-buf (by
    /// identity, whatever the fd) was imported before with the same usage, otherwise a new import
    /// (Device::import_buffer) that the cache keeps with its own reference. Errors are
    /// import_buffer's.
    Result<CachedBuffer> import_buffer(const DmaBuf& dmabuf, VkBufferUsageFlags usage);

    /// Records the GPU's last use of a cached image: `fence` signals when it completes. The
    /// fence must stay unreset and alive until the image is destroyed (or a later last use is
    /// recorded); destruction waits for it. Unknown images are ignored.
    void set_last_use(const Image& image, VkFence fence);
    /// Last use as a timeline semaphore value (needs timeline semaphores on the device).
    void set_last_use(const Image& image, VkSemaphore timeline, std::uint64_t value);
    /// Last use as a sync_file (for example exported from the semaphore the work signals).
    void set_last_use(const Image& image, SyncFile fence);
    /// The same three for a cached buffer.
    void set_last_use(const Buffer& buffer, VkFence fence);
    void set_last_use(const Buffer& buffer, VkSemaphore timeline, std::uint64_t value);
    void set_last_use(const Buffer& buffer, SyncFile fence);

    /// Retires the entry for `desc` and `options`, if any; true when there was one.
    bool evict(const BufferDesc& desc, const ImageOptions& options = {});
    /// Retires every entry (image or buffer) that uses dma-buf `id` (in any plane); returns how
    /// many.
    std::size_t evict_buffer(BufferId id);
    /// Retires every entry.
    void clear();
    /// Destroys the retired images whose last use has completed (never blocks); returns how many.
    std::size_t collect();

    ImportCacheStats stats() const;

    /// The key of an import: plane identities and layout, format and usage. Exposed for tests
    /// and tools; equal keys are the same entry. A buffer import's key has one plane, fourcc 0
    /// (which no image has), and its VkBufferUsageFlags in `usage`. No padding: the defaulted
    /// comparison compiles to one memory compare, which keeps the hit path short.
    struct Key {
        std::array<BufferId, max_planes> buffers{};
        std::array<std::uint64_t, max_planes> offsets{};
        std::array<std::uint64_t, max_planes> strides{};
        std::uint32_t plane_count = 0;
        std::uint32_t width = 0, height = 0, fourcc = 0;
        std::uint64_t modifier = 0;
        VkFormat format = VK_FORMAT_UNDEFINED;
        VkImageUsageFlags usage = 0;
        friend bool operator==(const Key&, const Key&) = default;
    };
    static Key key_of(const BufferDesc& desc, const ImageOptions& options);
    static Key key_of(const DmaBuf& dmabuf, VkBufferUsageFlags usage);

private:
    struct Timeline {
        VkSemaphore semaphore;
        std::uint64_t value;
    };
    using LastUse = std::variant<std::monostate, VkFence, Timeline, std::shared_ptr<SyncFile>>;
    struct Entry {
        Key key;
        std::shared_ptr<Image> image;    // one of these two
        std::shared_ptr<Buffer> buffer;
        BufferDesc references;  // the cache's own references to the dma-bufs
        LastUse last_use;
    };
    struct KeyHash {
        std::size_t operator()(const Key& k) const noexcept;
    };

    bool completed(const LastUse& use) const;
    void wait(const LastUse& use) const;
    void retire(std::list<Entry>::iterator it);
    std::size_t collect_locked();
    // Records the last use of the image or buffer at `object` (takes the lock).
    void record_last_use(const void* object, LastUse use);
    // The hit path shared by images and buffers: the live entry for `key`, made most recent.
    Entry* hit(const Key& key, std::size_t hash);
    Entry& insert(Entry entry, std::size_t hash);

    Device device_;
    ImportCacheOptions options_;
    mutable std::mutex mutex_;
    using EntryRef = std::list<Entry>::iterator;
    // The index: (hash, entry) sorted by hash. A binary search finds a hit without the integer
    // division a std::unordered_map lookup pays, which costs ~150 ns under emulation; misses and
    // evictions, which insert and erase, are rare and dear anyway.
    using IndexSlot = std::pair<std::size_t, EntryRef>;
    std::optional<EntryRef> find(const Key& key, std::size_t hash) const;
    void index_insert(std::size_t hash, EntryRef entry);
    void index_erase(const Key& key);

    std::list<Entry> lru_;  // most recently used first
    std::vector<IndexSlot> index_;
    std::vector<Entry> retired_;
    ImportCacheStats stats_;
};

}  // namespace dmabridge::vulkan
