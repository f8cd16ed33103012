// SPDX-License-Identifier: MIT
#pragma once
// The state behind a vulkan::Device: the application's handles and the entry points dmabridge
// loaded through its vkGetInstanceProcAddr. Shared (read-only) by every Image and Buffer.

#include <cstdint>
#include <string>

#include <dmabridge/base/access.hpp>
#include <dmabridge/base/result.hpp>
#include <dmabridge/base/unique_fd.hpp>
#include <dmabridge/vulkan/device.hpp>

namespace dmabridge::vulkan::detail {

// Instance-level entry points (core 1.1 names; dmabridge requires 1.1).
#define DMABRIDGE_VK_INSTANCE_FUNCTIONS(X)         \
    X(vkGetDeviceProcAddr)                         \
    X(vkGetPhysicalDeviceProperties)               \
    X(vkGetPhysicalDeviceProperties2)              \
    X(vkGetPhysicalDeviceFormatProperties2)        \
    X(vkGetPhysicalDeviceImageFormatProperties2)   \
    X(vkGetPhysicalDeviceMemoryProperties)         \
    X(vkGetPhysicalDeviceExternalBufferProperties) \
    X(vkGetPhysicalDeviceExternalSemaphoreProperties) \
    X(vkEnumerateDeviceExtensionProperties)

// Device-level entry points.
#define DMABRIDGE_VK_DEVICE_FUNCTIONS(X)       \
    X(vkCreateImage)                           \
    X(vkDestroyImage)                          \
    X(vkCreateBuffer)                          \
    X(vkDestroyBuffer)                         \
    X(vkAllocateMemory)                        \
    X(vkFreeMemory)                            \
    X(vkGetImageMemoryRequirements2)           \
    X(vkGetBufferMemoryRequirements2)          \
    X(vkBindImageMemory2)                      \
    X(vkBindBufferMemory2)                     \
    X(vkGetImageSubresourceLayout)             \
    X(vkWaitForFences)                         \
    X(vkGetFenceStatus)                        \
    X(vkCreateSemaphore)                       \
    X(vkDestroySemaphore)                      \
    X(vkCreateShaderModule)                    \
    X(vkDestroyShaderModule)                   \
    X(vkCreateDescriptorSetLayout)             \
    X(vkDestroyDescriptorSetLayout)            \
    X(vkCreatePipelineLayout)                  \
    X(vkDestroyPipelineLayout)                 \
    X(vkCreateComputePipelines)                \
    X(vkDestroyPipeline)                       \
    X(vkCreateDescriptorPool)                  \
    X(vkDestroyDescriptorPool)                 \
    X(vkAllocateDescriptorSets)                \
    X(vkUpdateDescriptorSets)                  \
    X(vkCmdPipelineBarrier)                    \
    X(vkCmdBindPipeline)                       \
    X(vkCmdBindDescriptorSets)                 \
    X(vkCmdPushConstants)                      \
    X(vkCmdDispatch)                           \
    X(vkMapMemory)                             \
    X(vkCreateImageView)                       \
    X(vkDestroyImageView)                      \
    X(vkCmdCopyImageToBuffer)

// Extension entry points: null when the extension is not enabled.
#define DMABRIDGE_VK_EXTENSION_FUNCTIONS(X)    \
    X(vkGetMemoryFdKHR)                        \
    X(vkGetMemoryFdPropertiesKHR)              \
    X(vkGetImageDrmFormatModifierPropertiesEXT) \
    X(vkImportSemaphoreFdKHR)                  \
    X(vkGetSemaphoreFdKHR)

struct DeviceState {
    DeviceHandles handles;
    Capability capabilities = Capability::none;
    std::string name;
    VkPhysicalDeviceMemoryProperties memory_properties{};
#define DMABRIDGE_VK_MEMBER(fn) PFN_##fn fn = nullptr;
    DMABRIDGE_VK_INSTANCE_FUNCTIONS(DMABRIDGE_VK_MEMBER)
    DMABRIDGE_VK_DEVICE_FUNCTIONS(DMABRIDGE_VK_MEMBER)
    DMABRIDGE_VK_EXTENSION_FUNCTIONS(DMABRIDGE_VK_MEMBER)
    // Timeline waits (core 1.2 or VK_KHR_timeline_semaphore); null when unavailable.
    PFN_vkWaitSemaphores vkWaitSemaphores = nullptr;
    PFN_vkGetSemaphoreCounterValue vkGetSemaphoreCounterValue = nullptr;
#undef DMABRIDGE_VK_MEMBER

    VkDevice device() const noexcept { return handles.device; }
};

/// An Error from a VkResult: "<context>: VK_ERROR_...".
Error vk_error(VkResult result, const std::string& context);

/// The name of a VkResult, e.g. "VK_ERROR_INVALID_EXTERNAL_HANDLE".
const char* vk_result_name(VkResult result) noexcept;

/// The error of a call on an object that was moved from (or never made): Errc::empty_object,
/// "<operation>: the <type> is empty (moved from)". Such calls fail at once and touch nothing.
Error moved_from(const std::string& operation, const char* type);

/// The VkFormat an image of `fourcc` gets: `override_format` when set (it must have the fourcc's
/// texel blocks: check_format_matches), else to_vk_format(fourcc). No Vulkan call.
Result<VkFormat> resolve_format(std::uint32_t fourcc, VkFormat override_format, const std::string& what);

/// Asks whether a 2D image of `format` for `usage`, created with `flags`, can live in dma-buf
/// memory, with DRM-modifier tiling and `*modifier`, or plain linear tiling when `modifier` is
/// null; fills in importable, exportable, dedicated_only and max_extent. False when the device
/// refuses the combination.
bool query_dmabuf_support(const DeviceState& s, VkFormat format, VkImageUsageFlags usage, const std::uint64_t* modifier,
                          VkImageCreateFlags flags, ModifierSupport& support);

/// What a device can do with dma-buf memory behind a buffer of `usage`
/// (vkGetPhysicalDeviceExternalBufferProperties).
struct BufferSupport {
    bool importable = false;
    bool exportable = false;
    bool dedicated_only = false;
};
BufferSupport query_buffer_support(const DeviceState& s, VkBufferUsageFlags usage);

/// Takes ownership of an fd a Vulkan driver returned (vkGetMemoryFdKHR, vkGetSemaphoreFdKHR) and
/// sets FD_CLOEXEC on it at once: drivers hand them out without it, and a fork+exec elsewhere in
/// the process would leak the buffer or fence into the child. On failure the fd is closed.
Result<UniqueFd> adopt_driver_fd(int fd, const std::string& what);

/// A Timeout as the nanoseconds of a Vulkan wait: negative (forever) and anything beyond
/// UINT64_MAX ns saturate to UINT64_MAX, which Vulkan treats as no limit.
std::uint64_t timeout_ns(Timeout timeout) noexcept;

}  // namespace dmabridge::vulkan::detail
