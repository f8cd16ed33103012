// SPDX-License-Identifier: MIT
#pragma once
/// @file vulkan/storage_image.hpp
/// StorageImage: a 2D image in device-local memory with a colour view, that compute shaders
/// write (FrameConverter's target) and the application samples or copies out. Made by dmabridge,
/// never shared as a dma-buf: for a target another device or process reads, export an image
/// with Device::export_image instead.

#include <cstdint>
#include <memory>

#include <vulkan/vulkan_core.h>

#include <dmabridge/base/result.hpp>
#include <dmabridge/vulkan/device.hpp>
#include <dmabridge/vulkan/host_buffer.hpp>

namespace dmabridge::vulkan {

/// A 2D single-sample image with optimal tiling and one colour view over it. Move-only; a
/// moved-from or default-made StorageImage is empty. Keeps the Device's state alive. It is
/// created in VK_IMAGE_LAYOUT_UNDEFINED: the first use transitions it (FrameConverter::record
/// does, to GENERAL).
class StorageImage {
public:
    /// An image of `format`, `width` x `height`, for `usage` (which must include
    /// VK_IMAGE_USAGE_STORAGE_BIT or another usage a view needs). Errors: Errc::empty_object for
    /// an empty Device, Errc::invalid_argument for a zero extent, Vulkan's errors named with the
    /// extent.
    static Result<StorageImage> create(const Device& device, VkFormat format, std::uint32_t width,
                                       std::uint32_t height, VkImageUsageFlags usage);

    StorageImage() = default;
    StorageImage(StorageImage&&) noexcept;
    StorageImage& operator=(StorageImage&&) noexcept;
    StorageImage(const StorageImage&) = delete;
    StorageImage& operator=(const StorageImage&) = delete;
    /// Destroys the view, the image and its memory at once, without waiting for the GPU: the
    /// owner makes sure no submitted work still uses them.
    ~StorageImage();

    VkImage handle() const noexcept { return image_; }
    VkImageView view() const noexcept { return view_; }
    VkFormat format() const noexcept { return format_; }
    VkExtent2D extent() const noexcept { return extent_; }
    bool valid() const noexcept { return image_ != VK_NULL_HANDLE; }

    /// Records, into `cmd`, the copy of the whole image into `buffer` (rows tightly packed, top
    /// row first, 4 bytes per pixel for the RGBA formats): a barrier from compute-shader writes
    /// in VK_IMAGE_LAYOUT_GENERAL to a transfer read, the copy, the image back to GENERAL for
    /// the next compute write, and the buffer made visible to the host. Once the work's fence
    /// signalled, buffer.bytes() holds the pixels. The image must have been made with
    /// VK_IMAGE_USAGE_TRANSFER_SRC_BIT and the buffer with VK_BUFFER_USAGE_TRANSFER_DST_BIT.
    /// Errors (nothing recorded): an empty image or buffer (Errc::empty_object), a buffer
    /// smaller than the image's width * height * 4 bytes (Errc::invalid_argument, naming both).
    Status record_copy_to(VkCommandBuffer cmd, const HostBuffer& buffer) const;

private:
    void destroy() noexcept;
    std::shared_ptr<const detail::DeviceState> device_;
    VkImage image_ = VK_NULL_HANDLE;
    VkDeviceMemory memory_ = VK_NULL_HANDLE;
    VkImageView view_ = VK_NULL_HANDLE;
    VkFormat format_ = VK_FORMAT_UNDEFINED;
    VkExtent2D extent_{};
};

}  // namespace dmabridge::vulkan
