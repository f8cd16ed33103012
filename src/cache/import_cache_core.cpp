// SPDX-License-Identifier: MIT
#include "cache/import_cache_core.hpp"

#include <algorithm>
#include <chrono>

#include "base/sys.hpp"

namespace dmabridge {
namespace {

void mix(std::size_t& h, std::uint64_t v) {
    h ^= std::hash<std::uint64_t>{}(v) + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
}

// Uses are pruned of completed ones once a list grows past this, so that an image used every
// frame does not pile up one Completion per frame.
constexpr std::size_t prune_uses_at = 4;

}  // namespace

std::size_t ImportKeyHash::operator()(const ImportKey& k) const noexcept {
    std::size_t h = static_cast<std::size_t>(k.kind);
    for (std::uint32_t i = 0; i < k.plane_count && i < max_planes; ++i) {
        mix(h, k.buffers[i].inode);
        mix(h, k.buffers[i].device);
        mix(h, k.offsets[i]);
        mix(h, k.strides[i]);
    }
    mix(h, (std::uint64_t{k.width} << 32) | k.height);
    mix(h, (std::uint64_t{k.fourcc} << 32) | k.plane_count);
    mix(h, k.modifier);
    mix(h, k.format);
    mix(h, k.usage);
    return h;
}

namespace detail {

ImportKey image_key(const BufferDesc& desc, std::uint32_t format, std::uint64_t usage) noexcept {
    ImportKey k;
    k.kind = ImportKind::image;
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
    k.format = format;
    k.usage = usage;
    return k;
}

ImportKey buffer_key(const DmaBuf& dmabuf, std::uint64_t usage) noexcept {
    ImportKey k;
    k.kind = ImportKind::buffer;
    k.plane_count = 1;
    k.buffers[0] = dmabuf.id();
    k.strides[0] = dmabuf.size();
    k.usage = usage;
    return k;
}

Status check_lookup(const BufferDesc& desc, const char* operation) { return desc.check_planes(operation); }

ImportCacheCore::ImportCacheCore(std::size_t max_entries, std::string what, Timeout destroy_timeout)
    : max_entries_(std::max<std::size_t>(max_entries, 1)), what_(std::move(what)), destroy_timeout_(destroy_timeout) {}

namespace {
// Imports the destructor could not prove idle: kept reachable for the life of the process (never
// destroyed: the GPU may still use them), under a mutex, never freed.
std::mutex& leaked_mutex() {
    static auto* m = new std::mutex;
    return *m;
}
std::vector<std::shared_ptr<void>>& leaked_imports() {
    static auto* v = new std::vector<std::shared_ptr<void>>;
    return *v;
}
}  // namespace

ImportCacheCore::~ImportCacheCore() {
    // No other thread may use the cache any more; the lock only keeps the tools quiet.
    std::lock_guard lock(mutex_);
    // One deadline for every use of every entry: the destructor may run on a GL or render
    // thread, and a peer's release fence need never signal.
    const Deadline deadline(destroy_timeout_);
    const auto start = std::chrono::steady_clock::now();
    std::size_t leaked = 0;
    std::string first_stuck;
    for (EntryList* list : {&live_, &retired_}) {
        for (Entry& e : *list) {
            bool idle = true;
            for (const auto& use : e.uses) {
                for (;;) {
                    const auto left = deadline.wait_timeout();
                    const Timeout slice = !left ? Timeout{0} : (*left < Timeout{0} ? Timeout{1000} : std::min(*left, Timeout{1000}));
                    auto waited = use->wait(slice);
                    if (!waited) {
                        // The wait itself failed (a lost device): nothing more will run.
                        log_message(LogLevel::error, what_ + " destroyed: waiting for " + use->describe() +
                                                         " failed (" + waited.error().message() + "); not waiting");
                        break;
                    }
                    if (*waited == WaitStatus::ready) break;
                    if (!deadline.wait_ms()) {
                        idle = false;
                        if (first_stuck.empty()) first_stuck = use->describe();
                        break;
                    }
                    const auto s = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - start).count();
                    log_message(LogLevel::warning, what_ + " destroyed while an import is in use: still waiting for " +
                                                       use->describe() + " after " + std::to_string(s) + " s");
                }
                if (!idle) break;
            }
            if (!idle) {
                std::lock_guard leak(leaked_mutex());
                leaked_imports().push_back(e.object);
                ++leaked;
            }
        }
    }
    if (leaked > 0)
        log_message(LogLevel::error,
                    what_ + " destroyed: " + std::to_string(leaked) + " import(s) still in use after " +
                        std::to_string(destroy_timeout_.count()) + " ms (waiting for " + first_stuck +
                        "); leaking them (never destroyed, their memory stays) rather than freeing what the GPU may still use");
}

std::shared_ptr<void> ImportCacheCore::find(const ImportKey& key) {
    std::lock_guard lock(mutex_);
    auto found = index_.find(key);
    if (found == index_.end()) return nullptr;
    EntryList::iterator it = found->second;
    if (it != live_.begin()) live_.splice(live_.begin(), live_, it);  // most recent first
    ++stats_.hits;
    return it->object;
}

std::shared_ptr<void> ImportCacheCore::insert(const ImportKey& key, std::shared_ptr<void> object, std::uint64_t bytes,
                                              BufferDesc references) {
    std::vector<Entry> doomed;  // destroyed after the lock is released
    std::shared_ptr<void> result;
    {
        std::lock_guard lock(mutex_);
        if (auto found = index_.find(key); found != index_.end()) {
            // Another thread built the same import meanwhile: use its entry, drop ours.
            EntryList::iterator it = found->second;
            if (it != live_.begin()) live_.splice(live_.begin(), live_, it);
            ++stats_.hits;
            result = it->object;
        } else {
            const void* handle = object.get();
            live_.push_front(Entry{key, object, bytes, std::move(references), {}, false});
            index_.emplace(key, live_.begin());
            by_object_.emplace(handle, live_.begin());
            ++stats_.misses;
            stats_.bytes += bytes;
            // Evicting from the back never touches the new entry at the front (max_entries >= 1).
            while (live_.size() > max_entries_) retire_locked(std::prev(live_.end()));
            result = std::move(object);
        }
        collect_locked(doomed);
        update_counts_locked();
    }
    return result;
}

Status ImportCacheCore::add_use(const void* object, std::shared_ptr<const Completion> use, const char* operation) {
    if (!use) return Error::library(Errc::invalid_argument, std::string(operation) + ": no completion to record");
    std::lock_guard lock(mutex_);
    auto found = by_object_.find(object);
    if (found == by_object_.end())
        return Error::library(Errc::not_found, std::string(operation) + ": the object was not imported through this " +
                                                   what_ + " (or was destroyed)");
    auto& uses = found->second->uses;
    if (uses.size() >= prune_uses_at)
        std::erase_if(uses, [](const std::shared_ptr<const Completion>& u) { return u->done(); });
    uses.push_back(std::move(use));
    return {};
}

void ImportCacheCore::retire_locked(EntryList::iterator it) {
    index_.erase(it->key);
    stats_.bytes -= it->bytes;
    ++stats_.evictions;
    it->retired = true;
    retired_.splice(retired_.end(), live_, it);
}

std::size_t ImportCacheCore::collect_locked(std::vector<Entry>& doomed) {
    std::size_t count = 0;
    for (auto it = retired_.begin(); it != retired_.end();) {
        auto next = std::next(it);
        // use_count() == 1: only the cache holds the object, so no handle can record a new use.
        const bool unheld = it->object.use_count() == 1;
        if (unheld && std::all_of(it->uses.begin(), it->uses.end(),
                                  [](const std::shared_ptr<const Completion>& u) { return u->done(); })) {
            by_object_.erase(it->object.get());
            doomed.push_back(std::move(*it));
            retired_.erase(it);
            ++count;
        }
        it = next;
    }
    return count;
}

void ImportCacheCore::update_counts_locked() {
    stats_.live_entries = live_.size();
    stats_.retired = retired_.size();
}

bool ImportCacheCore::evict(const ImportKey& key) {
    std::vector<Entry> doomed;
    std::lock_guard lock(mutex_);
    auto found = index_.find(key);
    if (found == index_.end()) return false;
    retire_locked(found->second);
    collect_locked(doomed);
    update_counts_locked();
    return true;
}

std::size_t ImportCacheCore::evict_buffer(BufferId id) {
    std::vector<Entry> doomed;
    std::lock_guard lock(mutex_);
    std::size_t count = 0;
    for (auto it = live_.begin(); it != live_.end();) {
        auto next = std::next(it);
        const auto& k = it->key;
        if (std::find(k.buffers.begin(), k.buffers.begin() + k.plane_count, id) != k.buffers.begin() + k.plane_count) {
            retire_locked(it);
            ++count;
        }
        it = next;
    }
    collect_locked(doomed);
    update_counts_locked();
    return count;
}

void ImportCacheCore::clear() {
    std::vector<Entry> doomed;
    std::lock_guard lock(mutex_);
    while (!live_.empty()) retire_locked(live_.begin());
    collect_locked(doomed);
    update_counts_locked();
}

std::size_t ImportCacheCore::collect() {
    std::vector<Entry> doomed;
    std::size_t count = 0;
    {
        std::lock_guard lock(mutex_);
        count = collect_locked(doomed);
        update_counts_locked();
    }
    return count;
}

Result<WaitStatus> ImportCacheCore::wait_idle(Timeout timeout) {
    // Copies of the uses, so that no lock is held while waiting.
    std::vector<std::shared_ptr<const Completion>> uses;
    {
        std::lock_guard lock(mutex_);
        for (const EntryList* list : {&live_, &retired_})
            for (const Entry& e : *list) uses.insert(uses.end(), e.uses.begin(), e.uses.end());
    }
    // `forever` and negative values wait without limit; the remaining time is recomputed per use.
    const bool unlimited = timeout.count() < 0;
    const auto end = unlimited ? std::chrono::steady_clock::time_point::max()
                               : std::chrono::steady_clock::now() + std::min(timeout, Timeout{std::chrono::hours(24 * 365)});
    for (const auto& use : uses) {
        const Timeout left = unlimited ? forever
                                       : std::max(Timeout{0}, std::chrono::duration_cast<Timeout>(end - std::chrono::steady_clock::now()));
        auto waited = use->wait(left);
        if (!waited) return waited.error().with_context(what_ + ": wait for " + use->describe());
        if (*waited == WaitStatus::timed_out) return WaitStatus::timed_out;
    }
    return WaitStatus::ready;
}

ImportCacheStats ImportCacheCore::stats() const {
    std::lock_guard lock(mutex_);
    return stats_;
}

}  // namespace detail
}  // namespace dmabridge
