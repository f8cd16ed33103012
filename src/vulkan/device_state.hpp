// SPDX-License-Identifier: MIT
#pragma once
// The state behind a vulkan::Device: the application's handles and the entry points dmabridge
// loaded through its vkGetInstanceProcAddr. Shared (read-only) by every Image and Buffer.

#include <string>

#include <dmabridge/result.hpp>
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
    X(vkDestroySemaphore)

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

}  // namespace dmabridge::vulkan::detail
