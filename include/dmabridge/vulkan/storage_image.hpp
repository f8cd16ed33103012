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
    /// an empty Device, Errc::invalid_argument for a zero extent or no usage, Errc::unsupported
    /// when the device cannot make the format with that usage (optimal tiling),
    /// Errc::limit_exceeded above the device's largest extent for it, Vulkan's errors named with
    /// the extent.
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

    /// The VkImage; VK_NULL_HANDLE when empty.
    VkImage handle() const noexcept { return image_; }
    /// The 2D colour view over the whole image (its format, one level, one layer); VK_NULL_HANDLE
    /// when empty.
    VkImageView view() const noexcept { return view_; }
    /// The format, extent and usage asked for at creation (zero when empty).
    VkFormat format() const noexcept { return format_; }
    VkExtent2D extent() const noexcept { return extent_; }
    VkImageUsageFlags usage() const noexcept { return usage_; }
    /// True while it holds an image (false when default-made or moved from).
    bool valid() const noexcept { return image_ != VK_NULL_HANDLE; }

    /// Records, into `cmd`, the copy of the whole image into `buffer` (rows tightly packed, top
    /// row first): a barrier from compute-shader writes in VK_IMAGE_LAYOUT_GENERAL to a transfer
    /// read, the copy, the image back to GENERAL, and the buffer made visible to the host. Once
    /// the work's fence signalled, buffer.bytes() holds the pixels. Errors (nothing recorded): an
    /// empty image or buffer (Errc::empty_object); an image made without
    /// VK_IMAGE_USAGE_TRANSFER_SRC_BIT or a buffer without VK_BUFFER_USAGE_TRANSFER_DST_BIT
    /// (Errc::invalid_argument); a format whose texel size this does not know (Errc::unsupported:
    /// the 8-, 16-, 32-, 64- and 128-bit colour formats of 1 to 4 channels compute shaders write
    /// are known); a buffer smaller than width * height * texel bytes (Errc::invalid_argument,
    /// naming both sizes).
    Status record_copy_to(VkCommandBuffer cmd, const HostBuffer& buffer) const;

private:
    void destroy() noexcept;
    std::shared_ptr<const detail::DeviceState> device_;
    VkImage image_ = VK_NULL_HANDLE;
    VkDeviceMemory memory_ = VK_NULL_HANDLE;
    VkImageView view_ = VK_NULL_HANDLE;
    VkFormat format_ = VK_FORMAT_UNDEFINED;
    VkExtent2D extent_{};
    VkImageUsageFlags usage_ = 0;
};

}  // namespace dmabridge::vulkan
