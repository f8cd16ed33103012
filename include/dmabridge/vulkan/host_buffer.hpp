// SPDX-License-Identifier: MIT
#pragma once
/// @file vulkan/host_buffer.hpp
/// HostBuffer: a VkBuffer in host-visible, host-coherent memory, mapped for its whole life. What
/// a frame is staged in when the CPU copies it (the copy path of bridge/camera_pipeline.hpp), and
/// what a converted frame is read back into.

#include <cstdint>
#include <memory>
#include <span>

#include <vulkan/vulkan_core.h>

#include <dmabridge/base/result.hpp>
#include <dmabridge/vulkan/device.hpp>

namespace dmabridge::vulkan {

/// A buffer in host-visible, host-coherent memory, mapped from creation to destruction.
/// Move-only; a moved-from or default-made HostBuffer is empty (handle() VK_NULL_HANDLE,
/// bytes() empty). Keeps the Device's state alive, as Image and Buffer do.
///
/// Coherent memory: host writes are visible to work submitted afterwards, and the device's
/// writes are visible in bytes() once that work's fence signalled, provided the work made them
/// available to the host (a barrier to VK_ACCESS_HOST_READ_BIT, as StorageImage::record_copy_to
/// records).
class HostBuffer {
public:
    /// A buffer of `size` bytes for `usage`, in the first host-visible, host-coherent memory
    /// type the buffer allows. Errors: Errc::empty_object for an empty Device,
    /// Errc::invalid_argument for size 0 or no usage, Errc::unsupported when no memory type is both host-
    /// visible and coherent, Vulkan's errors (out of memory) named.
    static Result<HostBuffer> create(const Device& device, std::uint64_t size, VkBufferUsageFlags usage);

    HostBuffer() = default;
    HostBuffer(HostBuffer&&) noexcept;
    HostBuffer& operator=(HostBuffer&&) noexcept;
    HostBuffer(const HostBuffer&) = delete;
    HostBuffer& operator=(const HostBuffer&) = delete;
    /// Destroys the buffer and frees (unmapping) its memory at once, without waiting for the
    /// GPU: the owner makes sure no submitted work still uses it.
    ~HostBuffer();

    /// The VkBuffer; VK_NULL_HANDLE when empty.
    VkBuffer handle() const noexcept { return buffer_; }
    /// The mapped bytes, size() of them; empty when empty.
    std::span<std::byte> bytes() const noexcept { return {static_cast<std::byte*>(data_), data_ ? size_ : 0}; }
    /// Bytes and usage asked for at creation (0 when empty).
    std::uint64_t size() const noexcept { return size_; }
    VkBufferUsageFlags usage() const noexcept { return usage_; }
    /// True while it holds a buffer (false when default-made or moved from).
    bool valid() const noexcept { return buffer_ != VK_NULL_HANDLE; }

private:
    void destroy() noexcept;
    std::shared_ptr<const detail::DeviceState> device_;
    VkBuffer buffer_ = VK_NULL_HANDLE;
    VkDeviceMemory memory_ = VK_NULL_HANDLE;
    void* data_ = nullptr;
    std::uint64_t size_ = 0;
    VkBufferUsageFlags usage_ = 0;
};

}  // namespace dmabridge::vulkan
