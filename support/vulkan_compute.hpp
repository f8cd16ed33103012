// SPDX-License-Identifier: MIT
#pragma once
// The plain Vulkan the samples and tests need around dmabridge: their entry points, owned handles, a compute
// pipeline with one descriptor set and a storage-image view (host buffers and storage images are
// the library's: vulkan::HostBuffer, vulkan::StorageImage). Nothing here knows about dma-bufs;
// the samples do the sharing.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <vulkan/vulkan_core.h>

#include <dmabridge/base/result.hpp>
#include <dmabridge/vulkan/context.hpp>

namespace support {

/// The device-level entry points the users of this file call, loaded through Context::device_proc (the
/// users define VK_NO_PROTOTYPES and link no loader), plus the one instance-level query.
struct DeviceFunctions {
    VkDevice device = VK_NULL_HANDLE;
    VkPhysicalDevice physical_device = VK_NULL_HANDLE;

    PFN_vkGetPhysicalDeviceMemoryProperties GetPhysicalDeviceMemoryProperties = nullptr;
    PFN_vkCreateShaderModule CreateShaderModule = nullptr;
    PFN_vkDestroyShaderModule DestroyShaderModule = nullptr;
    PFN_vkCreateDescriptorSetLayout CreateDescriptorSetLayout = nullptr;
    PFN_vkDestroyDescriptorSetLayout DestroyDescriptorSetLayout = nullptr;
    PFN_vkCreatePipelineLayout CreatePipelineLayout = nullptr;
    PFN_vkDestroyPipelineLayout DestroyPipelineLayout = nullptr;
    PFN_vkCreateComputePipelines CreateComputePipelines = nullptr;
    PFN_vkDestroyPipeline DestroyPipeline = nullptr;
    PFN_vkCreateDescriptorPool CreateDescriptorPool = nullptr;
    PFN_vkDestroyDescriptorPool DestroyDescriptorPool = nullptr;
    PFN_vkAllocateDescriptorSets AllocateDescriptorSets = nullptr;
    PFN_vkUpdateDescriptorSets UpdateDescriptorSets = nullptr;
    PFN_vkCreateImageView CreateImageView = nullptr;
    PFN_vkDestroyImageView DestroyImageView = nullptr;
    PFN_vkCreateBuffer CreateBuffer = nullptr;
    PFN_vkDestroyBuffer DestroyBuffer = nullptr;
    PFN_vkGetBufferMemoryRequirements GetBufferMemoryRequirements = nullptr;
    PFN_vkAllocateMemory AllocateMemory = nullptr;
    PFN_vkFreeMemory FreeMemory = nullptr;
    PFN_vkBindBufferMemory BindBufferMemory = nullptr;
    PFN_vkMapMemory MapMemory = nullptr;
    PFN_vkCreateImage CreateImage = nullptr;
    PFN_vkDestroyImage DestroyImage = nullptr;
    PFN_vkGetImageMemoryRequirements GetImageMemoryRequirements = nullptr;
    PFN_vkBindImageMemory BindImageMemory = nullptr;
    PFN_vkCmdCopyImageToBuffer CmdCopyImageToBuffer = nullptr;
    PFN_vkCmdPipelineBarrier CmdPipelineBarrier = nullptr;
    PFN_vkCmdBindPipeline CmdBindPipeline = nullptr;
    PFN_vkCmdBindDescriptorSets CmdBindDescriptorSets = nullptr;
    PFN_vkCmdPushConstants CmdPushConstants = nullptr;
    PFN_vkCmdDispatch CmdDispatch = nullptr;

    /// Loads every entry point above; the error names the first one the device does not have.
    static dmabridge::Result<DeviceFunctions> load(const dmabridge::vulkan::Context& context);
};

/// An Error for a failed Vulkan call: "what: VkResult -3".
dmabridge::Error vk_failure(VkResult result, const std::string& what);

/// Owns one Vulkan object of a device and destroys it with `Destroy` (a vkDestroy* or vkFree*
/// entry point, all of which take (device, handle, allocator)). Move-only.
template <typename Handle, typename Destroy>
class DeviceObject {
public:
    DeviceObject() = default;
    DeviceObject(Destroy destroy, VkDevice device, Handle handle) noexcept
        : destroy_(destroy), device_(device), handle_(handle) {}
    DeviceObject(DeviceObject&& other) noexcept
        : destroy_(other.destroy_), device_(other.device_), handle_(std::exchange(other.handle_, VK_NULL_HANDLE)) {}
    DeviceObject& operator=(DeviceObject&& other) noexcept {
        if (this != &other) {
            reset();
            destroy_ = other.destroy_;
            device_ = other.device_;
            handle_ = std::exchange(other.handle_, VK_NULL_HANDLE);
        }
        return *this;
    }
    DeviceObject(const DeviceObject&) = delete;
    DeviceObject& operator=(const DeviceObject&) = delete;
    ~DeviceObject() { reset(); }

    Handle get() const noexcept { return handle_; }

private:
    void reset() noexcept {
        if (handle_ != VK_NULL_HANDLE) destroy_(device_, handle_, nullptr);
        handle_ = VK_NULL_HANDLE;
    }
    Destroy destroy_ = nullptr;
    VkDevice device_ = VK_NULL_HANDLE;
    Handle handle_ = VK_NULL_HANDLE;
};

using ShaderModule = DeviceObject<VkShaderModule, PFN_vkDestroyShaderModule>;
using DescriptorSetLayout = DeviceObject<VkDescriptorSetLayout, PFN_vkDestroyDescriptorSetLayout>;
using PipelineLayout = DeviceObject<VkPipelineLayout, PFN_vkDestroyPipelineLayout>;
using Pipeline = DeviceObject<VkPipeline, PFN_vkDestroyPipeline>;
using DescriptorPool = DeviceObject<VkDescriptorPool, PFN_vkDestroyDescriptorPool>;
using ImageView = DeviceObject<VkImageView, PFN_vkDestroyImageView>;
using BufferHandle = DeviceObject<VkBuffer, PFN_vkDestroyBuffer>;
using DeviceMemory = DeviceObject<VkDeviceMemory, PFN_vkFreeMemory>;
using ImageHandle = DeviceObject<VkImage, PFN_vkDestroyImage>;

/// A 2D colour view of `image` for use as a storage image.
dmabridge::Result<ImageView> make_storage_view(const DeviceFunctions& vk, VkImage image, VkFormat format);

/// A compute pipeline whose shader reads its resources from one descriptor set (bindings
/// 0, 1, ... of the given types) and takes `push_constant_bytes` of push constants.
/// Owns its pipeline, layouts, and a pool holding `set_count` descriptor sets of that layout, so
/// that work in flight can use one set each (a set must not change while work uses it).
/// Move-only.
/// Keeps a copy of the entry points: it stays valid wherever it is moved.
class ComputePipeline {
public:
    /// Creates the pipeline from SPIR-V words. `name` goes into error messages.
    static dmabridge::Result<ComputePipeline> create(const DeviceFunctions& vk, const char* name,
                                                     std::span<const std::uint32_t> spirv,
                                                     std::span<const VkDescriptorType> bindings,
                                                     std::uint32_t push_constant_bytes,
                                                     std::uint32_t set_count = 1);

    /// Points `binding` of descriptor set `set` at a storage image view in
    /// VK_IMAGE_LAYOUT_GENERAL. The set must not be in use by pending work.
    void set_storage_image(std::uint32_t binding, VkImageView view, std::uint32_t set = 0) const;
    /// Points `binding` of set `set` at the whole of a storage buffer. Same rule as above.
    void set_storage_buffer(std::uint32_t binding, VkBuffer buffer, std::uint32_t set = 0) const;

    /// Records bind (of descriptor set `set`), push constants and a dispatch covering
    /// `width` x `height` invocations.
    void record_dispatch(VkCommandBuffer cmd, std::span<const std::byte> push_constants, std::uint32_t width,
                         std::uint32_t height, std::uint32_t set = 0) const;

    std::uint32_t set_count() const noexcept { return static_cast<std::uint32_t>(sets_.size()); }

    /// The shaders' workgroup size (local_size_x and _y in shaders/*.comp).
    static constexpr std::uint32_t workgroup_size = 16;

private:
    DeviceFunctions vk_;
    DescriptorSetLayout set_layout_;
    PipelineLayout pipeline_layout_;
    Pipeline pipeline_;
    DescriptorPool pool_;
    std::vector<VkDescriptorSet> sets_;  // freed with pool_
};

}  // namespace support
