// SPDX-License-Identifier: MIT
#pragma once
/// @file import_key.hpp
/// ImportKey and ImportCacheStats: what every import cache (Vulkan, EGL) keys its entries on and
/// reports. An import is found again when the same buffers (by identity, whatever the fds) are
/// imported with the same layout, format and usage; anything else is a different entry.

#include <array>
#include <cstddef>
#include <cstdint>

#include <dmabridge/format/buffer_desc.hpp>
#include <dmabridge/format/format.hpp>
#include <dmabridge/kernel/dmabuf.hpp>

namespace dmabridge {

/// What an import cache entry holds.
enum class ImportKind : std::uint32_t {
    image = 1,   ///< a multi-plane image made from a BufferDesc
    buffer = 2,  ///< one whole dma-buf as a linear buffer
};

/// The key of one import: plane identities and layout, format and usage. Equal keys are the same
/// entry. `format` and `usage` hold the importing API's own values (VkFormat and
/// VkImageUsageFlags or VkBufferUsageFlags for Vulkan). Planes past `plane_count` are zero.
/// For ImportKind::buffer, plane 0's stride holds the dma-buf's size and the image fields are 0.
/// EGL keys hold the GL texture target asked for in `format` (0: chosen from the display) and
/// the colour hints (YUV colour space << 32 | sample range) in `usage`.
struct ImportKey {
    ImportKind kind = ImportKind::image;              ///< an image or a whole-buffer import
    std::uint32_t plane_count = 0;                    ///< planes of the description (at most max_planes)
    std::array<BufferId, max_planes> buffers{};       ///< each plane's dma-buf identity, not its fd
    std::array<std::uint64_t, max_planes> offsets{};  ///< each plane's offset, bytes
    std::array<std::uint64_t, max_planes> strides{};  ///< each plane's stride, bytes
    std::uint32_t width = 0, height = 0, fourcc = 0;  ///< the description's size and DRM fourcc
    std::uint64_t modifier = 0;                       ///< the description's DRM modifier
    std::uint32_t format = 0;                         ///< the importing API's format (VkFormat, GL target)
    std::uint64_t usage = 0;                          ///< the importing API's usage flags or hints
    /// Field-by-field equality: equal keys are the same cache entry.
    friend bool operator==(const ImportKey&, const ImportKey&) = default;
};

/// A hash of every field of an ImportKey.
struct ImportKeyHash {
    /// The hash of `key`, for std::unordered_map.
    std::size_t operator()(const ImportKey& key) const noexcept;
};

/// Counters since a cache was made (live_entries, bytes and retired are current values).
struct ImportCacheStats {
    std::uint64_t hits = 0;           ///< lookups answered by a live entry (no new import)
    std::uint64_t misses = 0;         ///< imports built and kept (failed imports are not counted)
    std::uint64_t evictions = 0;      ///< entries retired by the bound, evict(), evict_buffer() or clear()
    std::size_t live_entries = 0;     ///< entries in the cache now

    std::uint64_t bytes = 0;          ///< device memory of the live entries
    std::size_t retired = 0;          ///< retired imports not destroyed yet: still held by the
                                      ///< application or waiting for their last use to complete
};

}  // namespace dmabridge
