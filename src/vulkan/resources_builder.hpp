// SPDX-License-Identifier: MIT
#pragma once
// Assembling Image and Buffer objects step by step: each object made is recorded at once, so
// that an error at any later step destroys everything made so far (the Image or Buffer's own
// destructor), and nothing half-made is left behind.

#include <memory>
#include <optional>
#include <string>

#include <dmabridge/vulkan/resources.hpp>

#include "vulkan/device_state.hpp"

namespace dmabridge::vulkan {

struct ImageBuilder {
    Image image;
    explicit ImageBuilder(std::shared_ptr<const detail::DeviceState> device) { image.device_ = std::move(device); }
    void set_image(VkImage handle, VkFormat format, VkExtent2D extent, VkImageUsageFlags usage) {
        image.image_ = handle;
        image.format_ = format;
        image.extent_ = extent;
        image.usage_ = usage;
    }
    void add_memory(VkDeviceMemory memory, std::uint64_t size) {
        image.memory_[image.memory_count_++] = memory;
        image.size_ += size;
    }
    void set_modifier(std::uint64_t modifier) { image.modifier_ = modifier; }
    Image finish() { return std::move(image); }
};

struct BufferBuilder {
    Buffer buffer;
    explicit BufferBuilder(std::shared_ptr<const detail::DeviceState> device) { buffer.device_ = std::move(device); }
    void set_buffer(VkBuffer handle, std::uint64_t size) {
        buffer.buffer_ = handle;
        buffer.size_ = size;
    }
    void set_memory(VkDeviceMemory memory) { buffer.memory_ = memory; }
    Buffer finish() { return std::move(buffer); }
};

namespace detail {

/// The lowest memory type index in `bits`, preferring types with `preferred` properties;
/// nothing when `bits` is empty.
std::optional<std::uint32_t> pick_memory_type(const DeviceState& state, std::uint32_t bits,
                                              VkMemoryPropertyFlags preferred = 0);

/// Memory requirements with the dedicated-allocation answer.
struct Requirements {
    VkMemoryRequirements memory{};
    bool requires_dedicated = false;
    bool prefers_dedicated = false;
};

/// The requirements of `image`, or of its memory plane `plane` (disjoint images) when >= 0.
Requirements image_requirements(const DeviceState& state, VkImage image, int plane = -1);
/// The requirements of `buffer`.
Requirements buffer_requirements(const DeviceState& state, VkBuffer buffer);

/// Creates a single-sample 2D image whose memory can be a dma-buf, owned by `builder` from then
/// on. `modifier_info` (the DRM-modifier list or explicit layout, or null for linear tiling) is
/// chained after the external-memory info.
Status create_dmabuf_image(const DeviceState& state, ImageBuilder& builder, VkFormat format, VkExtent2D extent,
                           VkImageUsageFlags usage, VkImageCreateFlags flags, const void* modifier_info,
                           const std::string& what);

/// Creates a buffer of `size` bytes whose memory can be a dma-buf, owned by `builder` from then on.
Status create_dmabuf_buffer(const DeviceState& state, BufferBuilder& builder, std::uint64_t size,
                            VkBufferUsageFlags usage, const std::string& what);

/// The aspect of plane `plane` of an image with `planes` format planes (COLOR for one plane,
/// PLANE_i otherwise): how linear-tiling images address their planes.
inline VkImageAspectFlags format_plane_aspect(std::uint32_t plane, std::uint32_t planes) {
    if (planes <= 1) return VK_IMAGE_ASPECT_COLOR_BIT;
    return static_cast<VkImageAspectFlags>(VK_IMAGE_ASPECT_PLANE_0_BIT) << plane;
}

}  // namespace detail
}  // namespace dmabridge::vulkan
