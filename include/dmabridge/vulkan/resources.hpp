// SPDX-License-Identifier: MIT
#pragma once
/// @file vulkan/resources.hpp
/// Image and Buffer: Vulkan objects dmabridge made (by export or import) with the memory bound
/// to them. Each destroys its objects when destroyed; the application must make sure the GPU
/// is done with them first (ImportCache does that for cached imports).

#include <array>
#include <cstdint>
#include <memory>

#include <vulkan/vulkan_core.h>

namespace dmabridge::vulkan {

namespace detail {
struct DeviceState;
}

/// A VkImage with its memory (one VkDeviceMemory, or one per plane for disjoint imports).
/// Move-only. Keeps the Device's state alive (the Device object may go first; the VkDevice may
/// not).
class Image {
public:
    /// An empty image (valid() false).
    Image() = default;
    /// Moves: the image and its memory go with the new object; the moved-from one is empty
    /// (handle() VK_NULL_HANDLE, memory_count() and size() 0). Assignment first destroys what
    /// the target held, as the destructor does.
    Image(Image&&) noexcept;
    Image& operator=(Image&&) noexcept;
    Image(const Image&) = delete;
    Image& operator=(const Image&) = delete;
    /// Destroys the image and frees its memory at once (vkDestroyImage, vkFreeMemory), without
    /// waiting for the GPU: the caller makes sure no submitted work still uses it (or lets an
    /// ImportCache, which waits for recorded uses, own it). The dma-bufs stay alive while other
    /// references to them exist.
    ~Image();

    /// The VkImage; VK_NULL_HANDLE when empty.
    VkImage handle() const noexcept { return image_; }
    /// The image's VkFormat, extent in pixels, DRM format modifier and usage, as created.
    VkFormat format() const noexcept { return format_; }
    VkExtent2D extent() const noexcept { return extent_; }
    std::uint64_t modifier() const noexcept { return modifier_; }
    VkImageUsageFlags usage() const noexcept { return usage_; }
    /// The memory objects bound to the image: one per distinct dma-buf of an imported image (1
    /// when all planes share one; an NV12 image whose planes are {A, A} or a 3-plane image whose
    /// planes are {A, A, B} in a disjoint image gets one memory per buffer, bound to each of its
    /// planes), one for an exported image. `i` < memory_count(); others give VK_NULL_HANDLE.
    std::uint32_t memory_count() const noexcept { return memory_count_; }
    VkDeviceMemory memory(std::uint32_t i = 0) const noexcept { return i < memory_count_ ? memory_[i] : VK_NULL_HANDLE; }
    /// Bytes of device memory the image's allocations cover.
    std::uint64_t size() const noexcept { return size_; }
    /// True while it holds an image (false when default-made or moved from).
    bool valid() const noexcept { return image_ != VK_NULL_HANDLE; }

private:
    friend struct ImageBuilder;
    std::shared_ptr<const detail::DeviceState> device_;
    VkImage image_ = VK_NULL_HANDLE;
    std::array<VkDeviceMemory, 4> memory_{};
    std::uint32_t memory_count_ = 0;
    VkFormat format_ = VK_FORMAT_UNDEFINED;
    VkExtent2D extent_{};
    std::uint64_t modifier_ = 0;
    VkImageUsageFlags usage_ = 0;
    std::uint64_t size_ = 0;
    void destroy() noexcept;
};

/// A VkBuffer with its memory. Move-only. Keeps the Device's state alive, as Image does.
class Buffer {
public:
    /// An empty buffer (valid() false).
    Buffer() = default;
    /// Moves: the buffer and its memory go with the new object; the moved-from one is empty.
    /// Assignment first destroys what the target held, as the destructor does.
    Buffer(Buffer&&) noexcept;
    Buffer& operator=(Buffer&&) noexcept;
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;
    /// Destroys the buffer and frees its memory at once, without waiting for the GPU (as
    /// ~Image()).
    ~Buffer();

    /// The VkBuffer; VK_NULL_HANDLE when empty.
    VkBuffer handle() const noexcept { return buffer_; }
    /// The memory bound to it (imported from or exported as the dma-buf).
    VkDeviceMemory memory() const noexcept { return memory_; }
    /// The buffer's size in bytes; 0 when empty.
    std::uint64_t size() const noexcept { return size_; }
    /// True while it holds a buffer (false when default-made or moved from).
    bool valid() const noexcept { return buffer_ != VK_NULL_HANDLE; }


private:
    friend struct BufferBuilder;
    std::shared_ptr<const detail::DeviceState> device_;
    VkBuffer buffer_ = VK_NULL_HANDLE;
    VkDeviceMemory memory_ = VK_NULL_HANDLE;
    std::uint64_t size_ = 0;
    void destroy() noexcept;
};

}  // namespace dmabridge::vulkan
