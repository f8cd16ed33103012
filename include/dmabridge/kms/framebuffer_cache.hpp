// SPDX-License-Identifier: MIT
#pragma once
/// @file kms/framebuffer_cache.hpp
/// kms::FramebufferCache: make each framebuffer once. A camera ring or a swapchain hands the
/// display the same few buffers every frame, often as new fds (a V4L2 DQBUF after EXPBUF, a
/// buffer passed again over a socket); the cache finds the framebuffer made earlier by the
/// buffers' identity and layout, with no PRIME import, no AddFB2 and no system call.
///
/// It is the import cache design Vulkan and EGL use (identity + layout keys, an LRU bound,
/// statistics, retirement): evicting a framebuffer only lets go of the cache's reference. The
/// framebuffer is removed when nobody holds it any more: not the application (a handle it kept),
/// not a Commit not applied yet, and not the display: the Device keeps every framebuffer a plane
/// shows until a later commit replaced it and completed (see kms/device.hpp). So eviction never
/// turns off a plane nor removes a framebuffer the display may still scan out.
///
/// The cache holds a reference to each cached dma-buf (its key cannot then be taken by another
/// buffer) and one GEM handle per buffer on the device's import file, shared with every other
/// framebuffer of that buffer (counted; closed with the last).
///
/// Thread safety: every member may be called from several threads.

#include <chrono>
#include <cstddef>
#include <memory>

#include <dmabridge/base/result.hpp>
#include <dmabridge/cache/import_key.hpp>
#include <dmabridge/format/buffer_desc.hpp>
#include <dmabridge/kms/device.hpp>

namespace dmabridge::detail {
class ImportCacheCore;
}

namespace dmabridge::kms {

/// Options of a FramebufferCache. The zero value suits a camera ring or a swapchain.
struct FramebufferCacheOptions {
    /// Framebuffers kept; making one more retires the least recently used. At least 1.
    std::size_t max_entries = 16;
};

/// A cached framebuffer. Holding it keeps the framebuffer even after its entry is evicted.
using CachedFramebuffer = std::shared_ptr<const Framebuffer>;

/// A framebuffer cache for one Device.
class FramebufferCache {
public:
    /// A cache of framebuffers on `device` (shares its state: the Device may be moved or
    /// destroyed meanwhile, the framebuffers stay valid). An empty Device makes a cache whose
    /// every call fails with Errc::empty_object.
    explicit FramebufferCache(const Device& device, FramebufferCacheOptions options = {});
    /// Drops the cache's references; framebuffers the application or the display still holds
    /// stay until those let go. Never waits.
    ~FramebufferCache();
    /// Neither copyable nor movable: share it by reference or through a pointer.
    FramebufferCache(const FramebufferCache&) = delete;

    FramebufferCache& operator=(const FramebufferCache&) = delete;

    /// The framebuffer of `desc`: the cached one when the same buffers (by identity, whatever
    /// the fds), offsets, strides, size, fourcc and modifier made one before (a hit: no syscall;
    /// the key is equal, field by field, to a description that passed every check), otherwise
    /// Device::add_framebuffer(desc) (a miss: PRIME imports, ADDFB2) kept with the cache's own
    /// references to the dma-bufs. Errors, before any lookup: a description without planes or
    /// with more than max_planes (Errc::invalid_argument), a plane whose DmaBuf was moved from
    /// (Errc::empty_object), a cache made from an empty Device (Errc::empty_object); otherwise
    /// add_framebuffer's.
    Result<CachedFramebuffer> get(const BufferDesc& desc);

    /// Retires the entry of `desc`, if any; true when there was one.
    bool evict(const BufferDesc& desc);
    /// Retires every entry that uses dma-buf `id` (in any plane; a camera buffer going away);
    /// returns how many.
    std::size_t evict_buffer(BufferId id);
    /// Retires every entry.
    void clear();
    /// Lets go of the retired entries nobody holds any more; returns how many (every miss does
    /// it too).
    std::size_t collect();

    /// hits, misses, evictions, live_entries, retired (bytes is 0: a framebuffer holds no
    /// memory of its own).
    ImportCacheStats stats() const;

private:
    std::shared_ptr<Device::State> device_;
    std::unique_ptr<::dmabridge::detail::ImportCacheCore> core_;
};

}  // namespace dmabridge::kms
