// SPDX-License-Identifier: MIT
// The Vulkan adapter of the import cache: how to build an import (Device::import_image or
// import_buffer) and which completions say a GPU use ended. Keying, the LRU bound, statistics
// and retirement are the shared design in cache/import_cache_core.
#include <dmabridge/vulkan/import_cache.hpp>

#include <cstdio>

#include <dmabridge/vulkan/context.hpp>
#include <dmabridge/vulkan/format.hpp>

#include "cache/import_cache_core.hpp"
#include "vulkan/device_state.hpp"

namespace dmabridge::vulkan {
namespace {

class TimelineCompletion final : public Completion {
public:
    TimelineCompletion(std::shared_ptr<const detail::DeviceState> state, VkSemaphore semaphore, std::uint64_t value)
        : state_(std::move(state)), semaphore_(semaphore), value_(value) {}
    bool done() const override {
        std::uint64_t current = 0;
        // An error (a lost device) means nothing will run any more.
        return state_->vkGetSemaphoreCounterValue(state_->device(), semaphore_, &current) != VK_SUCCESS ||
               current >= value_;
    }
    Result<WaitStatus> wait(Timeout timeout) const override {
        VkSemaphoreWaitInfo info{};
        info.sType = VK_STRUCTURE_TYPE_SEMAPHORE_WAIT_INFO;
        info.semaphoreCount = 1;
        info.pSemaphores = &semaphore_;
        info.pValues = &value_;
        // Saturated: Timeout::max() and other huge values wait, they never wrap into a short wait.
        VkResult r = state_->vkWaitSemaphores(state_->device(), &info, detail::timeout_ns(timeout));
        if (r == VK_TIMEOUT) return WaitStatus::timed_out;
        if (r != VK_SUCCESS) return detail::vk_error(r, "wait for timeline semaphore");
        return WaitStatus::ready;
    }
    std::string describe() const override {
        char text[96];
        std::snprintf(text, sizeof text, "timeline semaphore 0x%llx value %llu",
                      static_cast<unsigned long long>(reinterpret_cast<std::uintptr_t>(semaphore_)),
                      static_cast<unsigned long long>(value_));
        return text;
    }

private:
    std::shared_ptr<const detail::DeviceState> state_;
    VkSemaphore semaphore_;
    std::uint64_t value_;
};

Result<std::shared_ptr<const Completion>> submission_completion(const Submission& work) {
    auto c = work.completion();
    if (!c) return Error::library(Errc::empty_object, "set_last_use: the Submission is empty (moved from or released)");
    return c;
}

Status device_usable(const Device& device, const char* operation) {
    if (!device.state())
        return Error::library(Errc::empty_object, std::string(operation) + ": the cache's Device was moved from");
    return {};
}

}  // namespace

Result<std::shared_ptr<const Completion>> timeline_completion(const Device& device, VkSemaphore timeline,
                                                              std::uint64_t value) {
    if (auto usable = device_usable(device, "timeline completion"); !usable) return usable.error();
    const auto& s = device.state();
    if (!s->vkWaitSemaphores || !s->vkGetSemaphoreCounterValue)
        return Error::library(Errc::unsupported,
                              "timeline completion: the device has no timeline semaphores (Vulkan 1.2 or "
                              "VK_KHR_timeline_semaphore with the timelineSemaphore feature)");
    if (timeline == VK_NULL_HANDLE)
        return Error::library(Errc::invalid_argument, "timeline completion: null semaphore");
    return std::shared_ptr<const Completion>(std::make_shared<TimelineCompletion>(s, timeline, value));
}

ImportCache::ImportCache(Device device, ImportCacheOptions options)
    : device_(std::move(device)),
      core_(std::make_unique<::dmabridge::detail::ImportCacheCore>(options.max_entries, "vulkan import cache",
                                                                    options.destroy_timeout)) {}

ImportCache::~ImportCache() = default;

ImportCache::Key ImportCache::key_of(const BufferDesc& desc, const ImageOptions& options) {
    // The default format and the one it stands for are the same import.
    const VkFormat format = options.format != VK_FORMAT_UNDEFINED ? options.format : to_vk_format(desc.fourcc);
    return ::dmabridge::detail::image_key(desc, static_cast<std::uint32_t>(format), options.usage);
}

ImportCache::Key ImportCache::key_of(const DmaBuf& dmabuf, VkBufferUsageFlags usage) {
    return ::dmabridge::detail::buffer_key(dmabuf, usage);
}

Result<CachedImage> ImportCache::import(const BufferDesc& desc, const ImageOptions& options) {
    if (auto ok = ::dmabridge::detail::check_lookup(desc, "import cache"); !ok) return ok.error();
    const Key key = key_of(desc, options);
    // A hit is equal, field by field, to a description that passed every check of import_image.
    if (auto hit = core_->find(key)) return std::static_pointer_cast<const Image>(hit);
    if (auto usable = device_usable(device_, "import cache"); !usable) return usable.error();
    auto image = device_.import_image(desc, options);
    if (!image) return image.error();
    auto refs = desc.dup();
    if (!refs) return refs.error().with_context("import cache: keep references");
    auto object = std::make_shared<Image>(std::move(*image));
    const std::uint64_t bytes = object->size();
    return std::static_pointer_cast<const Image>(core_->insert(key, std::move(object), bytes, std::move(*refs)));
}

Result<CachedBuffer> ImportCache::import_buffer(const DmaBuf& dmabuf, VkBufferUsageFlags usage) {
    if (dmabuf.fd() < 0)
        return Error::library(Errc::empty_object, "import cache: the dma-buf was moved from or released (fd -1)");
    const Key key = key_of(dmabuf, usage);
    if (auto hit = core_->find(key)) return std::static_pointer_cast<const Buffer>(hit);
    if (auto usable = device_usable(device_, "import cache"); !usable) return usable.error();
    auto buffer = device_.import_buffer(dmabuf, usage);
    if (!buffer) return buffer.error();
    auto ref = dmabuf.dup();
    if (!ref) return ref.error().with_context("import cache: keep a reference");
    BufferDesc refs;
    refs.planes.push_back(PlaneDesc{std::move(*ref), 0, 0});
    auto object = std::make_shared<Buffer>(std::move(*buffer));
    const std::uint64_t bytes = object->size();
    return std::static_pointer_cast<const Buffer>(core_->insert(key, std::move(object), bytes, std::move(refs)));
}

Status ImportCache::set_last_use(const Image& image, std::shared_ptr<const Completion> work) {
    return core_->add_use(&image, std::move(work), "set_last_use (image)");
}
Status ImportCache::set_last_use(const Buffer& buffer, std::shared_ptr<const Completion> work) {
    return core_->add_use(&buffer, std::move(work), "set_last_use (buffer)");
}
Status ImportCache::set_last_use(const Image& image, const Submission& work) {
    auto c = submission_completion(work);
    if (!c) return c.error();
    return set_last_use(image, std::move(*c));
}
Status ImportCache::set_last_use(const Buffer& buffer, const Submission& work) {
    auto c = submission_completion(work);
    if (!c) return c.error();
    return set_last_use(buffer, std::move(*c));
}
Status ImportCache::set_last_use(const Image& image, VkSemaphore timeline, std::uint64_t value) {
    auto c = timeline_completion(device_, timeline, value);
    if (!c) return c.error().with_context("set_last_use (image)");
    return set_last_use(image, std::move(*c));
}
Status ImportCache::set_last_use(const Buffer& buffer, VkSemaphore timeline, std::uint64_t value) {
    auto c = timeline_completion(device_, timeline, value);
    if (!c) return c.error().with_context("set_last_use (buffer)");
    return set_last_use(buffer, std::move(*c));
}
Status ImportCache::set_last_use(const Image& image, SyncFile fence) {
    if (fence.fd() < 0) return Error::library(Errc::empty_object, "set_last_use (image): the sync_file was moved from or released");
    return set_last_use(image, completion_of(std::move(fence)));
}
Status ImportCache::set_last_use(const Buffer& buffer, SyncFile fence) {
    if (fence.fd() < 0) return Error::library(Errc::empty_object, "set_last_use (buffer): the sync_file was moved from or released");
    return set_last_use(buffer, completion_of(std::move(fence)));
}

bool ImportCache::evict(const BufferDesc& desc, const ImageOptions& options) {
    if (!::dmabridge::detail::check_lookup(desc, "evict")) return false;
    return core_->evict(key_of(desc, options));
}
std::size_t ImportCache::evict_buffer(BufferId id) { return core_->evict_buffer(id); }
void ImportCache::clear() { core_->clear(); }
std::size_t ImportCache::collect() { return core_->collect(); }
Result<WaitStatus> ImportCache::wait_idle(Timeout timeout) { return core_->wait_idle(timeout); }
ImportCacheStats ImportCache::stats() const { return core_->stats(); }

}  // namespace dmabridge::vulkan
