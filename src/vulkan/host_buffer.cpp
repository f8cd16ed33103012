// SPDX-License-Identifier: MIT
#include <dmabridge/vulkan/host_buffer.hpp>

#include <string>
#include <utility>

#include "vulkan/device_state.hpp"
#include "vulkan/resources_builder.hpp"

namespace dmabridge::vulkan {

Result<HostBuffer> HostBuffer::create(const Device& device, std::uint64_t size, VkBufferUsageFlags usage) {
    if (!device.valid()) return detail::moved_from("create host buffer", "Device");
    const std::string what = "create host buffer of " + std::to_string(size) + " bytes";
    if (size == 0) return Error::library(Errc::invalid_argument, what + ": size 0");
    if (usage == 0) return Error::library(Errc::invalid_argument, what + ": no usage");
    HostBuffer b;
    b.device_ = device.state();
    b.size_ = size;
    b.usage_ = usage;
    const auto& s = *b.device_;
    VkBufferCreateInfo info{};
    info.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO;
    info.size = size;
    info.usage = usage;
    info.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
    if (VkResult r = s.vkCreateBuffer(s.device(), &info, nullptr, &b.buffer_); r != VK_SUCCESS)
        return detail::vk_error(r, what + ": vkCreateBuffer");
    const auto reqs = detail::buffer_requirements(s, b.buffer_);
    // Coherent memory needs no flush or invalidate around the host's accesses.
    constexpr VkMemoryPropertyFlags wanted = VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
    const auto type = detail::pick_memory_type(s, reqs.memory.memoryTypeBits, wanted);
    if (!type || (s.memory_properties.memoryTypes[*type].propertyFlags & wanted) != wanted)
        return Error::library(Errc::unsupported, what + ": no host-visible, host-coherent memory type for it");
    VkMemoryAllocateInfo alloc{};
    alloc.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO;
    alloc.allocationSize = reqs.memory.size;
    alloc.memoryTypeIndex = *type;
    // Where the driver asks for (or prefers) memory of the object's own, it gets it.
    VkMemoryDedicatedAllocateInfo dedicated{};
    dedicated.sType = VK_STRUCTURE_TYPE_MEMORY_DEDICATED_ALLOCATE_INFO;
    dedicated.buffer = b.buffer_;
    if (reqs.requires_dedicated || reqs.prefers_dedicated) alloc.pNext = &dedicated;
    if (VkResult r = s.vkAllocateMemory(s.device(), &alloc, nullptr, &b.memory_); r != VK_SUCCESS)
        return detail::vk_error(r, what + ": vkAllocateMemory of " + std::to_string(reqs.memory.size) + " bytes");
    VkBindBufferMemoryInfo bind{};
    bind.sType = VK_STRUCTURE_TYPE_BIND_BUFFER_MEMORY_INFO;
    bind.buffer = b.buffer_;
    bind.memory = b.memory_;
    if (VkResult r = s.vkBindBufferMemory2(s.device(), 1, &bind); r != VK_SUCCESS)
        return detail::vk_error(r, what + ": vkBindBufferMemory2");
    if (VkResult r = s.vkMapMemory(s.device(), b.memory_, 0, VK_WHOLE_SIZE, 0, &b.data_); r != VK_SUCCESS)
        return detail::vk_error(r, what + ": vkMapMemory");
    return b;
}

HostBuffer::HostBuffer(HostBuffer&& other) noexcept
    : device_(std::move(other.device_)),
      buffer_(std::exchange(other.buffer_, VK_NULL_HANDLE)),
      memory_(std::exchange(other.memory_, VK_NULL_HANDLE)),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      usage_(std::exchange(other.usage_, 0)) {}

HostBuffer& HostBuffer::operator=(HostBuffer&& other) noexcept {
    if (this != &other) {
        destroy();
        device_ = std::move(other.device_);
        buffer_ = std::exchange(other.buffer_, VK_NULL_HANDLE);
        memory_ = std::exchange(other.memory_, VK_NULL_HANDLE);
        data_ = std::exchange(other.data_, nullptr);
        size_ = std::exchange(other.size_, 0);
        usage_ = std::exchange(other.usage_, 0);
    }
    return *this;
}

HostBuffer::~HostBuffer() { destroy(); }

void HostBuffer::destroy() noexcept {
    if (device_) {
        const auto& s = *device_;
        // The buffer first, then its memory (freeing it unmaps it).
        if (buffer_ != VK_NULL_HANDLE) s.vkDestroyBuffer(s.device(), buffer_, nullptr);
        if (memory_ != VK_NULL_HANDLE) s.vkFreeMemory(s.device(), memory_, nullptr);
    }
    device_.reset();
    buffer_ = VK_NULL_HANDLE;
    memory_ = VK_NULL_HANDLE;
    data_ = nullptr;
    size_ = 0;
    usage_ = 0;
}

}  // namespace dmabridge::vulkan
