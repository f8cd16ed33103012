// SPDX-License-Identifier: MIT
#pragma once
/// @file vulkan/import_cache.hpp
/// ImportCache: import each dma-buf once per device. A renderer that receives the same buffers
/// every frame (a camera's ring, a compositor's client buffers, fds passed again over a socket)
/// finds its earlier import again, even through a new fd, instead of building a new one: the
/// user-space echo of the kernel's cached attachment mapping.
///
/// Life cycle: import() (a miss imports, a hit returns the earlier image) ... use the image on
/// the GPU ... set_last_use() with what signals when that use completes ... drop the handle.
/// Eviction (the LRU bound, evict(), evict_buffer(), clear()) only retires an entry: the cache
/// destroys a retired image once no handle to it is left outside the cache and every use
/// recorded for it has completed. So an image evicted between import() and set_last_use() (by
/// another import of the same frame, or another thread) still gets its use recorded, and is never
/// destroyed while the GPU may read it, whatever the order of these calls.
///
/// What the cache waits on, it owns: a sync_file, a Submission's fence (kept from being reset and
/// reused while the cache holds it), or a timeline semaphore value (timeline values never go
/// back). A raw VkFence is not accepted: a fence the application resets and parks after its
/// work completed would read as pending forever.
///
/// Buffers work the same way through import_buffer(): a shader that decodes a camera's raw
/// bytes (YUYV, NV12 ...) itself reads the dma-buf as a storage buffer, which every device can
/// import whatever the pixel format. Images and buffers share the bound and the LRU order.
///
/// Thread safety: every member may be called from several threads. A hit never waits for
/// another thread's import (imports are built without the cache's lock; when two threads build
/// the same import at once, one is kept and the other dropped before anybody used it).

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>

#include <vulkan/vulkan_core.h>

#include <dmabridge/base/result.hpp>
#include <dmabridge/cache/import_key.hpp>
#include <dmabridge/format/buffer_desc.hpp>
#include <dmabridge/kernel/completion.hpp>
#include <dmabridge/kernel/sync_file.hpp>
#include <dmabridge/vulkan/device.hpp>

namespace dmabridge::detail {
class ImportCacheCore;
}

namespace dmabridge::vulkan {

class Submission;

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

/// A cached image. Holding it keeps the image alive, and the cache able to record its uses,
/// even after its entry is evicted. Record the GPU's use (set_last_use) before dropping it.
using CachedImage = std::shared_ptr<const Image>;
/// A cached buffer; the same rules as CachedImage.
using CachedBuffer = std::shared_ptr<const Buffer>;

/// A Completion for the moment `timeline` reaches `value` (vkGetSemaphoreCounterValue and
/// vkWaitSemaphores: the device must have timeline semaphores enabled). The semaphore is
/// borrowed, not owned (Vulkan has no reference count for it): the caller keeps it alive while
/// the completion is held, which for set_last_use() means until the cache destroyed the import
/// (collect() returned it, or wait_idle() returned ready and the entry was evicted) or the cache
/// itself was destroyed. Destroying it earlier is undefined behaviour in Vulkan (the cache queries
/// and waits on it). Errors: the device has no timeline semaphore entry points.
Result<std::shared_ptr<const Completion>> timeline_completion(const Device& device, VkSemaphore timeline,
                                                              std::uint64_t value);

/// An import cache for one device.
class ImportCache {
public:
    /// A cache on `device` (a copy sharing its state). Makes no Vulkan call and cannot fail:
    /// with an empty Device every miss fails with Errc::empty_object (Device::import_image's).
    explicit ImportCache(Device device, ImportCacheOptions options = {});
    /// Waits for every recorded use of every image and buffer (live and retired), all together
    /// at most ImportCacheOptions::destroy_timeout (default 5 s), then drops the cache's
    /// references: an image whose handle the application still holds is destroyed when that
    /// handle is. A wait longer than a second is logged (LogLevel::warning) every second with
    /// what it waits for; imports still in use at the deadline are leaked, never destroyed, and
    /// logged (LogLevel::error).
    ~ImportCache();
    /// Neither copyable nor movable.
    ImportCache(const ImportCache&) = delete;
    ImportCache& operator=(const ImportCache&) = delete;

    /// The image for `desc` and `options`: the cached one when the same buffers (by identity,
    /// whatever the fds), fourcc, modifier, offsets, strides, extent, format and usage were
    /// imported before (a hit: no syscall, no Vulkan call; a hit is equal, field by field, to a
    /// description that passed every check), otherwise a new import (Device::import_image,
    /// built without holding the cache's lock) that the cache keeps with its own references to
    /// the dma-bufs. The same buffer with any other layout is a different entry.
    /// Errors: a description without planes, with more than max_planes, or with a plane whose
    /// DmaBuf was moved from or released (Errc::empty_object, before any lookup); otherwise import_image's.
    Result<CachedImage> import(const BufferDesc& desc, const ImageOptions& options = {});

    /// The buffer covering all of `dmabuf` with `usage`: the cached one when the same dma-buf (by
    /// identity, whatever the fd) was imported before with the same usage, otherwise a new import
    /// (Device::import_buffer). Images and buffers never share an entry. Errors: a DmaBuf moved
    /// from or released (Errc::empty_object); otherwise import_buffer's.
    Result<CachedBuffer> import_buffer(const DmaBuf& dmabuf, VkBufferUsageFlags usage);

    /// Records a GPU use of a cached image or buffer: the cache destroys it only after `work`
    /// completed. Uses add up (an image read on two queues waits for both); completed ones are
    /// pruned. Shares the Submission's fence, which is then reset and reused only once the cache
    /// lets go of it. Errors: the object did not come from this cache, or the Submission is empty.
    Status set_last_use(const Image& image, const Submission& work);
    Status set_last_use(const Buffer& buffer, const Submission& work);
    /// The use ends when `timeline` reaches `value` (see timeline_completion(): the semaphore
    /// is borrowed and must outlive the import's entry or the cache).
    Status set_last_use(const Image& image, VkSemaphore timeline, std::uint64_t value);
    Status set_last_use(const Buffer& buffer, VkSemaphore timeline, std::uint64_t value);
    /// The use ends when `fence` signals (for example a sync_file exported from the work's
    /// semaphore, or from a VkFence with VK_EXTERNAL_FENCE_HANDLE_TYPE_SYNC_FD_BIT).
    /// An empty sync_file: Errc::empty_object.
    Status set_last_use(const Image& image, SyncFile fence);
    Status set_last_use(const Buffer& buffer, SyncFile fence);
    /// Any other kind of completion.
    Status set_last_use(const Image& image, std::shared_ptr<const Completion> work);
    Status set_last_use(const Buffer& buffer, std::shared_ptr<const Completion> work);

    /// Retires the entry for `desc` and `options`, if any; true when there was one.
    bool evict(const BufferDesc& desc, const ImageOptions& options = {});
    /// Retires every entry (image or buffer) that uses dma-buf `id` (in any plane); returns how
    /// many.
    std::size_t evict_buffer(BufferId id);
    /// Retires every entry.
    void clear();
    /// Destroys the retired imports that nobody holds and whose uses completed (never blocks;
    /// every miss does it too); returns how many.
    std::size_t collect();
    /// Waits until every recorded use of every entry completed, or `timeout` passed.
    Result<WaitStatus> wait_idle(Timeout timeout = forever);

    /// hits, misses, evictions, live_entries, bytes (the device memory of the live images and
    /// buffers, Image::size() and Buffer::size()), retired.
    ImportCacheStats stats() const;

    /// The key of an import, exposed for tests and tools; equal keys are the same entry.
    using Key = ImportKey;
    /// An image's key: the default format (VK_FORMAT_UNDEFINED) is keyed as the format it
    /// stands for (to_vk_format()), so both find the same entry.
    static Key key_of(const BufferDesc& desc, const ImageOptions& options);
    /// A whole-buffer import's key (the dma-buf's identity and size, and `usage`).
    static Key key_of(const DmaBuf& dmabuf, VkBufferUsageFlags usage);


private:
    Device device_;
    std::unique_ptr<::dmabridge::detail::ImportCacheCore> core_;
};

}  // namespace dmabridge::vulkan
