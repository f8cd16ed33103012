// SPDX-License-Identifier: MIT
#include <dmabridge/vulkan/import_cache.hpp>

#include <algorithm>
#include <type_traits>

#include <dmabridge/vulkan/format.hpp>

#include "device_state.hpp"

namespace dmabridge::vulkan {

// Padding would turn the defaulted Key comparison into member-by-member compares.
static_assert(std::has_unique_object_representations_v<ImportCache::Key>, "ImportCache::Key must have no padding");

namespace {

void mix(std::size_t& h, std::uint64_t v) {
    h ^= std::hash<std::uint64_t>{}(v) + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
}

}  // namespace

// KeyHash, key_of and find are inlined into the import paths like hit() below, and those paths
// start on a page of their own (aligned to 4096): under TCG a jump is chained straight to its target
// only within one guest page, so a hit path that happened to straddle a page boundary measured
// 840 ns against 510 from nothing but where the linker put it.
[[gnu::always_inline]] inline std::size_t ImportCache::KeyHash::operator()(const Key& k) const noexcept {
    std::size_t h = 0;
    for (std::uint32_t i = 0; i < k.plane_count; ++i) {
        mix(h, k.buffers[i].inode);
        mix(h, k.buffers[i].device);
        mix(h, k.offsets[i]);
        mix(h, k.strides[i]);
    }
    mix(h, (std::uint64_t{k.width} << 32) | k.height);
    mix(h, k.fourcc);
    mix(h, k.modifier);
    mix(h, (std::uint64_t{static_cast<std::uint32_t>(k.format)} << 32) | k.usage);
    return h;
}

[[gnu::always_inline]] inline ImportCache::Key ImportCache::key_of(const BufferDesc& desc, const ImageOptions& options) {
    Key k;
    k.plane_count = static_cast<std::uint32_t>(std::min<std::size_t>(desc.planes.size(), max_planes));
    for (std::uint32_t i = 0; i < k.plane_count; ++i) {
        k.buffers[i] = desc.planes[i].buffer.id();
        k.offsets[i] = desc.planes[i].offset;
        k.strides[i] = desc.planes[i].stride;
    }
    k.width = desc.width;
    k.height = desc.height;
    k.fourcc = desc.fourcc;
    k.modifier = desc.modifier;
    // The default format and the one it stands for are the same import.
    k.format = options.format != VK_FORMAT_UNDEFINED ? options.format : to_vk_format(desc.fourcc);
    k.usage = options.usage;
    return k;
}

[[gnu::always_inline]] inline std::optional<ImportCache::EntryRef> ImportCache::find(const Key& key, std::size_t hash) const {
    auto it = std::lower_bound(index_.begin(), index_.end(), hash,
                               [](const IndexSlot& slot, std::size_t h) { return slot.first < h; });
    for (; it != index_.end() && it->first == hash; ++it)
        if (it->second->key == key) return it->second;
    return std::nullopt;
}

void ImportCache::index_insert(std::size_t hash, EntryRef entry) {
    auto it = std::upper_bound(index_.begin(), index_.end(), hash,
                               [](std::size_t h, const IndexSlot& slot) { return h < slot.first; });
    index_.insert(it, {hash, entry});
}

void ImportCache::index_erase(const Key& key) {
    const std::size_t hash = KeyHash{}(key);
    auto it = std::lower_bound(index_.begin(), index_.end(), hash,
                               [](const IndexSlot& slot, std::size_t h) { return slot.first < h; });
    for (; it != index_.end() && it->first == hash; ++it)
        if (it->second->key == key) {
            index_.erase(it);
            return;
        }
}

ImportCache::ImportCache(Device device, ImportCacheOptions options)
    : device_(std::move(device)), options_(options) {
    options_.max_entries = std::max<std::size_t>(options_.max_entries, 1);
}

ImportCache::~ImportCache() {
    std::lock_guard lock(mutex_);
    for (auto& e : lru_) wait(e.last_use);
    for (auto& e : retired_) wait(e.last_use);
}

[[gnu::always_inline]] inline ImportCache::Key ImportCache::key_of(const DmaBuf& dmabuf, VkBufferUsageFlags usage) {
    Key k;  // fourcc 0 marks a buffer
    k.plane_count = 1;
    k.buffers[0] = dmabuf.id();
    k.strides[0] = dmabuf.size();
    k.usage = usage;
    return k;
}

namespace {

std::uint64_t entry_bytes(const std::shared_ptr<Image>& image, const std::shared_ptr<Buffer>& buffer) {
    return image ? image->size() : buffer->size();
}

}  // namespace

// Inlined into both import paths: under emulation even a call shows on the hit path.
[[gnu::always_inline]] inline ImportCache::Entry* ImportCache::hit(const Key& key, std::size_t hash) {
    // The hit path: no syscall, no Vulkan call, one lookup.
    auto entry = find(key, hash);
    if (!entry) return nullptr;
    if (*entry != lru_.begin()) lru_.splice(lru_.begin(), lru_, *entry);  // most recent first
    ++stats_.hits;
    return &lru_.front();
}

ImportCache::Entry& ImportCache::insert(Entry entry, std::size_t hash) {
    ++stats_.misses;
    stats_.bytes += entry_bytes(entry.image, entry.buffer);
    lru_.push_front(std::move(entry));
    index_insert(hash, lru_.begin());
    // Evicting from the back never touches the new entry at the front (max_entries >= 1).
    while (lru_.size() > options_.max_entries) retire(std::prev(lru_.end()));
    stats_.live_entries = lru_.size();
    return lru_.front();
}

[[gnu::aligned(4096)]] Result<CachedImage> ImportCache::import(const BufferDesc& desc, const ImageOptions& options) {
    // A description with more planes than any format is refused by the import below; the key
    // only looks at the planes it can hold.
    const Key key = key_of(desc, options);
    const std::size_t hash = KeyHash{}(key);
    std::lock_guard lock(mutex_);
    if (!retired_.empty()) collect_locked();
    if (desc.planes.size() <= max_planes)
        if (Entry* e = hit(key, hash)) return CachedImage(e->image);
    auto image = device_.import_image(desc, options);
    if (!image) return image.error();
    auto refs = desc.dup();
    if (!refs) return refs.error().with_context("import cache: keep references");
    Entry& e = insert(Entry{key, std::make_shared<Image>(std::move(*image)), nullptr, std::move(*refs), std::monostate{}},
                      hash);
    return CachedImage(e.image);
}

[[gnu::aligned(4096)]] Result<CachedBuffer> ImportCache::import_buffer(const DmaBuf& dmabuf, VkBufferUsageFlags usage) {
    const Key key = key_of(dmabuf, usage);
    const std::size_t hash = KeyHash{}(key);
    std::lock_guard lock(mutex_);
    if (!retired_.empty()) collect_locked();
    if (Entry* e = hit(key, hash)) return CachedBuffer(e->buffer);
    auto buffer = device_.import_buffer(dmabuf, usage);
    if (!buffer) return buffer.error();
    auto ref = dmabuf.dup();
    if (!ref) return ref.error().with_context("import cache: keep a reference");
    BufferDesc refs;
    refs.planes.push_back(PlaneDesc{std::move(*ref), 0, 0});
    Entry& e = insert(Entry{key, nullptr, std::make_shared<Buffer>(std::move(*buffer)), std::move(refs), std::monostate{}},
                      hash);
    return CachedBuffer(e.buffer);
}

void ImportCache::retire(std::list<Entry>::iterator it) {
    index_erase(it->key);
    stats_.bytes -= entry_bytes(it->image, it->buffer);
    ++stats_.evictions;
    retired_.push_back(std::move(*it));
    lru_.erase(it);
    stats_.live_entries = lru_.size();
    collect_locked();
}

void ImportCache::record_last_use(const void* object, LastUse use) {
    // The entry holding `object`, live or retired (a retired image may still be in use).
    const auto record_in = [&](auto& entries) {
        for (auto& e : entries)
            if (static_cast<const void*>(e.image.get()) == object || static_cast<const void*>(e.buffer.get()) == object) {
                e.last_use = std::move(use);
                return true;
            }
        return false;
    };
    std::lock_guard lock(mutex_);
    if (!record_in(lru_)) record_in(retired_);
}

void ImportCache::set_last_use(const Image& image, VkFence fence) { record_last_use(&image, fence); }
void ImportCache::set_last_use(const Image& image, VkSemaphore timeline, std::uint64_t value) {
    record_last_use(&image, Timeline{timeline, value});
}
void ImportCache::set_last_use(const Image& image, SyncFile fence) {
    record_last_use(&image, std::make_shared<SyncFile>(std::move(fence)));
}
void ImportCache::set_last_use(const Buffer& buffer, VkFence fence) { record_last_use(&buffer, fence); }
void ImportCache::set_last_use(const Buffer& buffer, VkSemaphore timeline, std::uint64_t value) {
    record_last_use(&buffer, Timeline{timeline, value});
}
void ImportCache::set_last_use(const Buffer& buffer, SyncFile fence) {
    record_last_use(&buffer, std::make_shared<SyncFile>(std::move(fence)));
}

bool ImportCache::evict(const BufferDesc& desc, const ImageOptions& options) {
    const Key key = key_of(desc, options);
    std::lock_guard lock(mutex_);
    auto entry = find(key, KeyHash{}(key));
    if (!entry) return false;
    retire(*entry);
    return true;
}

std::size_t ImportCache::evict_buffer(BufferId id) {
    std::lock_guard lock(mutex_);
    std::size_t count = 0;
    for (auto it = lru_.begin(); it != lru_.end();) {
        auto next = std::next(it);
        const auto& k = it->key;
        if (std::find(k.buffers.begin(), k.buffers.begin() + k.plane_count, id) != k.buffers.begin() + k.plane_count) {
            retire(it);
            ++count;
        }
        it = next;
    }
    return count;
}

void ImportCache::clear() {
    std::lock_guard lock(mutex_);
    while (!lru_.empty()) retire(lru_.begin());
}

std::size_t ImportCache::collect() {
    std::lock_guard lock(mutex_);
    return collect_locked();
}

std::size_t ImportCache::collect_locked() {
    const auto before = retired_.size();
    std::erase_if(retired_, [&](const Entry& e) { return completed(e.last_use); });
    stats_.retired = retired_.size();
    return before - retired_.size();
}

bool ImportCache::completed(const LastUse& use) const {
    const auto& s = *device_.state();
    if (auto* fence = std::get_if<VkFence>(&use)) return s.vkGetFenceStatus(s.device(), *fence) != VK_NOT_READY;
    if (auto* timeline = std::get_if<Timeline>(&use)) {
        std::uint64_t value = 0;
        if (!s.vkGetSemaphoreCounterValue) return true;
        return s.vkGetSemaphoreCounterValue(s.device(), timeline->semaphore, &value) != VK_SUCCESS ||
               value >= timeline->value;
    }
    if (auto* file = std::get_if<std::shared_ptr<SyncFile>>(&use)) {
        auto status = (*file)->status();
        return !status || *status != FenceStatus::active;
    }
    return true;  // no recorded use: nothing to wait for
}

void ImportCache::wait(const LastUse& use) const {
    const auto& s = *device_.state();
    if (auto* fence = std::get_if<VkFence>(&use)) {
        s.vkWaitForFences(s.device(), 1, fence, VK_TRUE, UINT64_MAX);
    } else if (auto* timeline = std::get_if<Timeline>(&use)) {
        if (!s.vkWaitSemaphores) return;
        VkSemaphoreWaitInfo info{};
        info.sType = VK_STRUCTURE_TYPE_SEMAPHORE_WAIT_INFO;
        info.semaphoreCount = 1;
        info.pSemaphores = &timeline->semaphore;
        info.pValues = &timeline->value;
        s.vkWaitSemaphores(s.device(), &info, UINT64_MAX);
    } else if (auto* file = std::get_if<std::shared_ptr<SyncFile>>(&use)) {
        (void)(*file)->wait(forever);
    }
}

ImportCacheStats ImportCache::stats() const {
    std::lock_guard lock(mutex_);
    return stats_;
}

}  // namespace dmabridge::vulkan
