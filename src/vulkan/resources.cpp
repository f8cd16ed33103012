// SPDX-License-Identifier: MIT
#include <dmabridge/vulkan/resources.hpp>

#include <optional>
#include <utility>

#include "vulkan/device_state.hpp"
#include "vulkan/resources_builder.hpp"

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

Requirements image_requirements(const DeviceState& s, VkImage image, int plane) {
    static constexpr VkImageAspectFlagBits memory_planes[] = {
        VK_IMAGE_ASPECT_MEMORY_PLANE_0_BIT_EXT, VK_IMAGE_ASPECT_MEMORY_PLANE_1_BIT_EXT,
        VK_IMAGE_ASPECT_MEMORY_PLANE_2_BIT_EXT, VK_IMAGE_ASPECT_MEMORY_PLANE_3_BIT_EXT};
    VkImagePlaneMemoryRequirementsInfo plane_info{};
    plane_info.sType = VK_STRUCTURE_TYPE_IMAGE_PLANE_MEMORY_REQUIREMENTS_INFO;
    if (plane >= 0) plane_info.planeAspect = memory_planes[plane];
    VkImageMemoryRequirementsInfo2 info{};
    info.sType = VK_STRUCTURE_TYPE_IMAGE_MEMORY_REQUIREMENTS_INFO_2;
    info.pNext = plane >= 0 ? &plane_info : nullptr;
    info.image = image;
    VkMemoryDedicatedRequirements dedicated{};
    dedicated.sType = VK_STRUCTURE_TYPE_MEMORY_DEDICATED_REQUIREMENTS;
    VkMemoryRequirements2 reqs{};
    reqs.sType = VK_STRUCTURE_TYPE_MEMORY_REQUIREMENTS_2;
    reqs.pNext = &dedicated;
    s.vkGetImageMemoryRequirements2(s.device(), &info, &reqs);
    return {reqs.memoryRequirements, dedicated.requiresDedicatedAllocation == VK_TRUE,
            dedicated.prefersDedicatedAllocation == VK_TRUE};
}

Requirements buffer_requirements(const DeviceState& s, VkBuffer buffer) {
    VkBufferMemoryRequirementsInfo2 info{};
    info.sType = VK_STRUCTURE_TYPE_BUFFER_MEMORY_REQUIREMENTS_INFO_2;
    info.buffer = buffer;
    VkMemoryDedicatedRequirements dedicated{};
    dedicated.sType = VK_STRUCTURE_TYPE_MEMORY_DEDICATED_REQUIREMENTS;
    VkMemoryRequirements2 reqs{};
    reqs.sType = VK_STRUCTURE_TYPE_MEMORY_REQUIREMENTS_2;
    reqs.pNext = &dedicated;
    s.vkGetBufferMemoryRequirements2(s.device(), &info, &reqs);
    return {reqs.memoryRequirements, dedicated.requiresDedicatedAllocation == VK_TRUE,
            dedicated.prefersDedicatedAllocation == VK_TRUE};
}

Status create_dmabuf_image(const DeviceState& s, ImageBuilder& builder, VkFormat format, VkExtent2D extent,
                           VkImageUsageFlags usage, VkImageCreateFlags flags, const void* modifier_info,
                           const std::string& what) {
    VkExternalMemoryImageCreateInfo external{};
    external.sType = VK_STRUCTURE_TYPE_EXTERNAL_MEMORY_IMAGE_CREATE_INFO;
    external.pNext = modifier_info;
    external.handleTypes = VK_EXTERNAL_MEMORY_HANDLE_TYPE_DMA_BUF_BIT_EXT;
    VkImageCreateInfo info{};
    info.sType = VK_STRUCTURE_TYPE_IMAGE_CREATE_INFO;
    info.pNext = &external;
    info.flags = flags;
    info.imageType = VK_IMAGE_TYPE_2D;
    info.format = format;
    info.extent = {extent.width, extent.height, 1};
    info.mipLevels = 1;
    info.arrayLayers = 1;
    info.samples = VK_SAMPLE_COUNT_1_BIT;
    // Plain linear tiling where no modifier info is given (formats without modifier support).
    info.tiling = modifier_info ? VK_IMAGE_TILING_DRM_FORMAT_MODIFIER_EXT : VK_IMAGE_TILING_LINEAR;
    info.usage = usage;
    info.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
    info.initialLayout = VK_IMAGE_LAYOUT_UNDEFINED;
    VkImage image = VK_NULL_HANDLE;
    if (VkResult r = s.vkCreateImage(s.device(), &info, nullptr, &image); r != VK_SUCCESS)
        return vk_error(r, what + ": vkCreateImage");
    builder.set_image(image, format, extent, usage);
    return {};
}

Status create_dmabuf_buffer(const DeviceState& s, BufferBuilder& builder, std::uint64_t size, VkBufferUsageFlags usage,
                            const std::string& what) {
    VkExternalMemoryBufferCreateInfo external{};
    external.sType = VK_STRUCTURE_TYPE_EXTERNAL_MEMORY_BUFFER_CREATE_INFO;
    external.handleTypes = VK_EXTERNAL_MEMORY_HANDLE_TYPE_DMA_BUF_BIT_EXT;
    VkBufferCreateInfo info{};
    info.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO;
    info.pNext = &external;
    info.size = size;
    info.usage = usage;
    info.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
    VkBuffer buffer = VK_NULL_HANDLE;
    if (VkResult r = s.vkCreateBuffer(s.device(), &info, nullptr, &buffer); r != VK_SUCCESS)
        return vk_error(r, what + ": vkCreateBuffer");
    builder.set_buffer(buffer, size);
    return {};
}

}  // namespace detail
}  // namespace dmabridge::vulkan
