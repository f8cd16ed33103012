// SPDX-License-Identifier: MIT
#include <dmabridge/vulkan/resources.hpp>

#include <optional>
#include <utility>

#include "device_state.hpp"
#include "resources_builder.hpp"

namespace dmabridge::vulkan {

Image::Image(Image&& o) noexcept
    : device_(std::move(o.device_)), image_(std::exchange(o.image_, VK_NULL_HANDLE)), memory_(std::exchange(o.memory_, {})),
      memory_count_(std::exchange(o.memory_count_, 0)), format_(o.format_), extent_(o.extent_), modifier_(o.modifier_),
      usage_(o.usage_), size_(std::exchange(o.size_, 0)) {}

Image& Image::operator=(Image&& o) noexcept {
    if (this != &o) {
        destroy();
        device_ = std::move(o.device_);
        image_ = std::exchange(o.image_, VK_NULL_HANDLE);
        memory_ = std::exchange(o.memory_, {});
        memory_count_ = std::exchange(o.memory_count_, 0);
        format_ = o.format_;
        extent_ = o.extent_;
        modifier_ = o.modifier_;
        usage_ = o.usage_;
        size_ = std::exchange(o.size_, 0);
    }
    return *this;
}

Image::~Image() { destroy(); }

void Image::destroy() noexcept {
    if (!device_) return;
    if (image_) device_->vkDestroyImage(device_->device(), image_, nullptr);
    for (std::uint32_t i = 0; i < memory_count_; ++i) device_->vkFreeMemory(device_->device(), memory_[i], nullptr);
    image_ = VK_NULL_HANDLE;
    memory_count_ = 0;
    device_.reset();
}

Buffer::Buffer(Buffer&& o) noexcept
    : device_(std::move(o.device_)), buffer_(std::exchange(o.buffer_, VK_NULL_HANDLE)),
      memory_(std::exchange(o.memory_, VK_NULL_HANDLE)), size_(std::exchange(o.size_, 0)) {}

Buffer& Buffer::operator=(Buffer&& o) noexcept {
    if (this != &o) {
        destroy();
        device_ = std::move(o.device_);
        buffer_ = std::exchange(o.buffer_, VK_NULL_HANDLE);
        memory_ = std::exchange(o.memory_, VK_NULL_HANDLE);
        size_ = std::exchange(o.size_, 0);
    }
    return *this;
}

Buffer::~Buffer() { destroy(); }

void Buffer::destroy() noexcept {
    if (!device_) return;
    if (buffer_) device_->vkDestroyBuffer(device_->device(), buffer_, nullptr);
    if (memory_) device_->vkFreeMemory(device_->device(), memory_, nullptr);
    buffer_ = VK_NULL_HANDLE;
    memory_ = VK_NULL_HANDLE;
    device_.reset();
}

namespace detail {

std::optional<std::uint32_t> pick_memory_type(const DeviceState& state, std::uint32_t bits,
                                              VkMemoryPropertyFlags preferred) {
    std::optional<std::uint32_t> first;
    for (std::uint32_t i = 0; i < state.memory_properties.memoryTypeCount; ++i) {
        if (!(bits & (1u << i))) continue;
        if ((state.memory_properties.memoryTypes[i].propertyFlags & preferred) == preferred) return i;
        if (!first) first = i;
    }
    return first;
}

}  // namespace detail
}  // namespace dmabridge::vulkan
