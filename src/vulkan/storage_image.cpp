// SPDX-License-Identifier: MIT
#include <dmabridge/vulkan/storage_image.hpp>

#include <string>
#include <utility>

#include "vulkan/device_state.hpp"
#include "vulkan/resources_builder.hpp"

namespace dmabridge::vulkan {
namespace {

// Bytes per texel of the colour formats record_copy_to() copies out (the copy's buffer size);
// 0 for the others.
std::uint32_t texel_bytes(VkFormat format) {
    switch (format) {
        case VK_FORMAT_R8_UNORM: case VK_FORMAT_R8_UINT:
            return 1;
        case VK_FORMAT_R8G8_UNORM: case VK_FORMAT_R8G8_UINT: case VK_FORMAT_R16_UNORM: case VK_FORMAT_R16_UINT:
        case VK_FORMAT_R16_SFLOAT:
            return 2;
        case VK_FORMAT_R8G8B8A8_UNORM: case VK_FORMAT_R8G8B8A8_SRGB: case VK_FORMAT_R8G8B8A8_UINT:
        case VK_FORMAT_B8G8R8A8_UNORM: case VK_FORMAT_B8G8R8A8_SRGB: case VK_FORMAT_A8B8G8R8_UNORM_PACK32:
        case VK_FORMAT_A2R10G10B10_UNORM_PACK32: case VK_FORMAT_A2B10G10R10_UNORM_PACK32:
        case VK_FORMAT_R32_UINT: case VK_FORMAT_R32_SFLOAT: case VK_FORMAT_R16G16_UNORM:
            return 4;
        case VK_FORMAT_R16G16B16A16_UNORM: case VK_FORMAT_R16G16B16A16_SFLOAT: case VK_FORMAT_R32G32_SFLOAT:
            return 8;
        case VK_FORMAT_R32G32B32A32_SFLOAT: case VK_FORMAT_R32G32B32A32_UINT:
            return 16;
        default:
            return 0;
    }
}

}  // namespace

Result<StorageImage> StorageImage::create(const Device& device, VkFormat format, std::uint32_t width,
                                          std::uint32_t height, VkImageUsageFlags usage) {
    if (!device.valid()) return detail::moved_from("create storage image", "Device");
    const std::string what = "create storage image " + std::to_string(width) + "x" + std::to_string(height);
    if (width == 0 || height == 0) return Error::library(Errc::invalid_argument, what + ": an empty extent");
    if (usage == 0) return Error::library(Errc::invalid_argument, what + ": no usage");
    StorageImage img;
    img.device_ = device.state();
    img.format_ = format;
    img.extent_ = {width, height};
    img.usage_ = usage;
    const auto& s = *img.device_;
    // What the device can make, asked before vkCreateImage (whose limits are otherwise undefined
    // behaviour, not errors).
    VkPhysicalDeviceImageFormatInfo2 format_info{};
    format_info.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_IMAGE_FORMAT_INFO_2;
    format_info.format = format;
    format_info.type = VK_IMAGE_TYPE_2D;
    format_info.tiling = VK_IMAGE_TILING_OPTIMAL;
    format_info.usage = usage;
    VkImageFormatProperties2 properties{};
    properties.sType = VK_STRUCTURE_TYPE_IMAGE_FORMAT_PROPERTIES_2;
    const VkResult supported =
        s.vkGetPhysicalDeviceImageFormatProperties2(s.handles.physical_device, &format_info, &properties);
    if (supported == VK_ERROR_FORMAT_NOT_SUPPORTED)
        return Error::library(Errc::unsupported, what + ": the device cannot make VkFormat " +
                                                     std::to_string(static_cast<int>(format)) + " with usage flags " +
                                                     std::to_string(usage) + " (optimal tiling)");
    if (supported != VK_SUCCESS) return detail::vk_error(supported, what + ": vkGetPhysicalDeviceImageFormatProperties2");
    const VkExtent3D max = properties.imageFormatProperties.maxExtent;
    if (width > max.width || height > max.height)
        return Error::library(Errc::limit_exceeded, what + ": above the device's " + std::to_string(max.width) + "x" +
                                                        std::to_string(max.height) + " for this format");
    VkImageCreateInfo info{};
    info.sType = VK_STRUCTURE_TYPE_IMAGE_CREATE_INFO;
    info.imageType = VK_IMAGE_TYPE_2D;
    info.format = format;
    info.extent = {width, height, 1};
    info.mipLevels = 1;
    info.arrayLayers = 1;
    info.samples = VK_SAMPLE_COUNT_1_BIT;
    info.tiling = VK_IMAGE_TILING_OPTIMAL;
    info.usage = usage;
    info.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
    info.initialLayout = VK_IMAGE_LAYOUT_UNDEFINED;
    if (VkResult r = s.vkCreateImage(s.device(), &info, nullptr, &img.image_); r != VK_SUCCESS)
        return detail::vk_error(r, what + ": vkCreateImage");
    const auto reqs = detail::image_requirements(s, img.image_);
    const auto type =
        detail::pick_memory_type(s, reqs.memory.memoryTypeBits, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT);
    if (!type) return Error::library(Errc::unsupported, what + ": no memory type for it");
    VkMemoryAllocateInfo alloc{};
    alloc.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO;
    alloc.allocationSize = reqs.memory.size;
    alloc.memoryTypeIndex = *type;
    // Where the driver asks for (or prefers) memory of the object's own, it gets it.
    VkMemoryDedicatedAllocateInfo dedicated{};
    dedicated.sType = VK_STRUCTURE_TYPE_MEMORY_DEDICATED_ALLOCATE_INFO;
    dedicated.image = img.image_;
    if (reqs.requires_dedicated || reqs.prefers_dedicated) alloc.pNext = &dedicated;
    if (VkResult r = s.vkAllocateMemory(s.device(), &alloc, nullptr, &img.memory_); r != VK_SUCCESS)
        return detail::vk_error(r, what + ": vkAllocateMemory of " + std::to_string(reqs.memory.size) + " bytes");
    VkBindImageMemoryInfo bind{};
    bind.sType = VK_STRUCTURE_TYPE_BIND_IMAGE_MEMORY_INFO;
    bind.image = img.image_;
    bind.memory = img.memory_;
    if (VkResult r = s.vkBindImageMemory2(s.device(), 1, &bind); r != VK_SUCCESS)
        return detail::vk_error(r, what + ": vkBindImageMemory2");
    VkImageViewCreateInfo view{};
    view.sType = VK_STRUCTURE_TYPE_IMAGE_VIEW_CREATE_INFO;
    view.image = img.image_;
    view.viewType = VK_IMAGE_VIEW_TYPE_2D;
    view.format = format;
    view.subresourceRange = {VK_IMAGE_ASPECT_COLOR_BIT, 0, 1, 0, 1};
    if (VkResult r = s.vkCreateImageView(s.device(), &view, nullptr, &img.view_); r != VK_SUCCESS)
        return detail::vk_error(r, what + ": vkCreateImageView");
    return img;
}

StorageImage::StorageImage(StorageImage&& other) noexcept
    : device_(std::move(other.device_)),
      image_(std::exchange(other.image_, VK_NULL_HANDLE)),
      memory_(std::exchange(other.memory_, VK_NULL_HANDLE)),
      view_(std::exchange(other.view_, VK_NULL_HANDLE)),
      format_(std::exchange(other.format_, VK_FORMAT_UNDEFINED)),
      extent_(std::exchange(other.extent_, VkExtent2D{})),
      usage_(std::exchange(other.usage_, 0)) {}

StorageImage& StorageImage::operator=(StorageImage&& other) noexcept {
    if (this != &other) {
        destroy();
        device_ = std::move(other.device_);
        image_ = std::exchange(other.image_, VK_NULL_HANDLE);
        memory_ = std::exchange(other.memory_, VK_NULL_HANDLE);
        view_ = std::exchange(other.view_, VK_NULL_HANDLE);
        format_ = std::exchange(other.format_, VK_FORMAT_UNDEFINED);
        extent_ = std::exchange(other.extent_, VkExtent2D{});
        usage_ = std::exchange(other.usage_, 0);
    }
    return *this;
}

StorageImage::~StorageImage() { destroy(); }

void StorageImage::destroy() noexcept {
    if (device_) {
        const auto& s = *device_;
        // The view, then the image, then its memory.
        if (view_ != VK_NULL_HANDLE) s.vkDestroyImageView(s.device(), view_, nullptr);
        if (image_ != VK_NULL_HANDLE) s.vkDestroyImage(s.device(), image_, nullptr);
        if (memory_ != VK_NULL_HANDLE) s.vkFreeMemory(s.device(), memory_, nullptr);
    }
    device_.reset();
    view_ = VK_NULL_HANDLE;
    image_ = VK_NULL_HANDLE;
    memory_ = VK_NULL_HANDLE;
}

Status StorageImage::record_copy_to(VkCommandBuffer cmd, const HostBuffer& buffer) const {
    if (!valid()) return detail::moved_from("record an image copy", "StorageImage");
    if (!buffer.valid()) return detail::moved_from("record an image copy", "HostBuffer");
    if (!(usage_ & VK_IMAGE_USAGE_TRANSFER_SRC_BIT))
        return Error::library(Errc::invalid_argument, "record an image copy: the image was made without "
                                                      "VK_IMAGE_USAGE_TRANSFER_SRC_BIT");
    if (!(buffer.usage() & VK_BUFFER_USAGE_TRANSFER_DST_BIT))
        return Error::library(Errc::invalid_argument, "record an image copy: the buffer was made without "
                                                      "VK_BUFFER_USAGE_TRANSFER_DST_BIT");
    const std::uint32_t texel = texel_bytes(format_);
    if (texel == 0)
        return Error::library(Errc::unsupported, "record an image copy: no texel size known for VkFormat " +
                                                     std::to_string(static_cast<int>(format_)));
    const std::uint64_t needed = std::uint64_t{extent_.width} * extent_.height * texel;
    if (buffer.size() < needed)
        return Error::library(Errc::invalid_argument,
                              "record an image copy: the buffer holds " + std::to_string(buffer.size()) +
                                  " bytes, the " + std::to_string(extent_.width) + "x" +
                                  std::to_string(extent_.height) + " image needs " + std::to_string(needed));
    const auto& s = *device_;
    VkImageMemoryBarrier to_copy{};
    to_copy.sType = VK_STRUCTURE_TYPE_IMAGE_MEMORY_BARRIER;
    to_copy.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT;
    to_copy.dstAccessMask = VK_ACCESS_TRANSFER_READ_BIT;
    to_copy.oldLayout = VK_IMAGE_LAYOUT_GENERAL;
    to_copy.newLayout = VK_IMAGE_LAYOUT_TRANSFER_SRC_OPTIMAL;
    to_copy.srcQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED;
    to_copy.dstQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED;
    to_copy.image = image_;
    to_copy.subresourceRange = {VK_IMAGE_ASPECT_COLOR_BIT, 0, 1, 0, 1};
    s.vkCmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_PIPELINE_STAGE_TRANSFER_BIT, 0, 0, nullptr,
                           0, nullptr, 1, &to_copy);
    VkBufferImageCopy region{};
    region.imageSubresource = {VK_IMAGE_ASPECT_COLOR_BIT, 0, 0, 1};
    region.imageExtent = {extent_.width, extent_.height, 1};
    s.vkCmdCopyImageToBuffer(cmd, image_, VK_IMAGE_LAYOUT_TRANSFER_SRC_OPTIMAL, buffer.handle(), 1, &region);
    // Back to GENERAL, where the image was before the copy (and where FrameConverter leaves it,
    // which is what camera::FrameInfo::image promises the application).
    VkImageMemoryBarrier to_general = to_copy;
    to_general.srcAccessMask = VK_ACCESS_TRANSFER_READ_BIT;
    to_general.dstAccessMask = VK_ACCESS_SHADER_WRITE_BIT;
    to_general.oldLayout = VK_IMAGE_LAYOUT_TRANSFER_SRC_OPTIMAL;
    to_general.newLayout = VK_IMAGE_LAYOUT_GENERAL;
    VkBufferMemoryBarrier to_host{};
    to_host.sType = VK_STRUCTURE_TYPE_BUFFER_MEMORY_BARRIER;
    to_host.srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT;
    to_host.dstAccessMask = VK_ACCESS_HOST_READ_BIT;
    to_host.srcQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED;
    to_host.dstQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED;
    to_host.buffer = buffer.handle();
    to_host.size = VK_WHOLE_SIZE;
    s.vkCmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_PIPELINE_STAGE_HOST_BIT, 0, 0, nullptr, 1, &to_host,
                           0, nullptr);
    s.vkCmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, 0, 0, nullptr, 0,
                           nullptr, 1, &to_general);
    return {};
}

}  // namespace dmabridge::vulkan
