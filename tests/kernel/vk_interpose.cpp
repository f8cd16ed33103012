// SPDX-License-Identifier: MIT
#include "vk_interpose.hpp"

#include <cstdint>
#include <cstring>

#include <doctest/doctest.h>

namespace dmabridge::test {
namespace {

VkInterposer* active = nullptr;
PFN_vkGetInstanceProcAddr real_gipa = nullptr;
PFN_vkGetDeviceProcAddr real_gdpa = nullptr;
PFN_vkGetPhysicalDeviceFormatProperties2 real_format_props = nullptr;
PFN_vkGetPhysicalDeviceImageFormatProperties2 real_image_format_props = nullptr;
PFN_vkGetPhysicalDeviceExternalSemaphoreProperties real_semaphore_props = nullptr;
PFN_vkGetPhysicalDeviceExternalBufferProperties real_buffer_props = nullptr;
PFN_vkCreateImage real_create_image = nullptr;
PFN_vkCreateBuffer real_create_buffer = nullptr;
PFN_vkAllocateMemory real_allocate = nullptr;
PFN_vkGetImageMemoryRequirements2 real_image_requirements = nullptr;
PFN_vkBindImageMemory2 real_bind_image = nullptr;
PFN_vkDestroyImage real_destroy_image = nullptr;

// The handle of an accepted image of the fake format (the driver never sees it).
const VkImage fake_image = reinterpret_cast<VkImage>(std::uintptr_t{0xfa4e0001});

template <typename T>
T* find_in_chain(void* next, VkStructureType type) {
    for (auto* s = static_cast<VkBaseOutStructure*>(next); s; s = s->pNext)
        if (s->sType == type) return reinterpret_cast<T*>(s);
    return nullptr;
}

template <typename T>
const T* find_in_chain(const void* next, VkStructureType type) {
    for (auto* s = static_cast<const VkBaseInStructure*>(next); s; s = s->pNext)
        if (s->sType == type) return reinterpret_cast<const T*>(s);
    return nullptr;
}

constexpr VkFormatFeatureFlags fake_features = VK_FORMAT_FEATURE_SAMPLED_IMAGE_BIT | VK_FORMAT_FEATURE_TRANSFER_SRC_BIT |
                                               VK_FORMAT_FEATURE_TRANSFER_DST_BIT | VK_FORMAT_FEATURE_DISJOINT_BIT;

VKAPI_ATTR void VKAPI_CALL format_props(VkPhysicalDevice pd, VkFormat format, VkFormatProperties2* props) {
    ++active->format_queries;
    if (format != active->fake_format) return real_format_props(pd, format, props);
    props->formatProperties = {};
    if (auto* list = find_in_chain<VkDrmFormatModifierPropertiesListEXT>(
            props->pNext, VK_STRUCTURE_TYPE_DRM_FORMAT_MODIFIER_PROPERTIES_LIST_EXT)) {
        if (list->pDrmFormatModifierProperties && list->drmFormatModifierCount >= 1)
            list->pDrmFormatModifierProperties[0] = {0 /* LINEAR */, active->fake_plane_count, fake_features};
        list->drmFormatModifierCount = 1;
    }
}

VKAPI_ATTR VkResult VKAPI_CALL image_format_props(VkPhysicalDevice pd, const VkPhysicalDeviceImageFormatInfo2* info,
                                                  VkImageFormatProperties2* props) {
    ++active->format_queries;
    if ((info->flags & VK_IMAGE_CREATE_DISJOINT_BIT) != 0) ++active->disjoint_queries;
    if (info->format != active->fake_format) return real_image_format_props(pd, info, props);
    if (info->tiling != VK_IMAGE_TILING_DRM_FORMAT_MODIFIER_EXT) return VK_ERROR_FORMAT_NOT_SUPPORTED;
    const bool disjoint = (info->flags & VK_IMAGE_CREATE_DISJOINT_BIT) != 0;
    if (disjoint && active->fake_disjoint_refused) return VK_ERROR_FORMAT_NOT_SUPPORTED;
    props->imageFormatProperties = {{16384, 16384, 1}, 1, 1, VK_SAMPLE_COUNT_1_BIT, 1ull << 32};
    if (auto* ext = find_in_chain<VkExternalImageFormatProperties>(props->pNext,
                                                                   VK_STRUCTURE_TYPE_EXTERNAL_IMAGE_FORMAT_PROPERTIES)) {
        ext->externalMemoryProperties.externalMemoryFeatures =
            VK_EXTERNAL_MEMORY_FEATURE_IMPORTABLE_BIT |
            (disjoint && active->fake_disjoint_dedicated_only ? VK_EXTERNAL_MEMORY_FEATURE_DEDICATED_ONLY_BIT : 0);
        ext->externalMemoryProperties.compatibleHandleTypes = VK_EXTERNAL_MEMORY_HANDLE_TYPE_DMA_BUF_BIT_EXT;
        ext->externalMemoryProperties.exportFromImportedHandleTypes = VK_EXTERNAL_MEMORY_HANDLE_TYPE_DMA_BUF_BIT_EXT;
    }
    return VK_SUCCESS;
}

VKAPI_ATTR void VKAPI_CALL semaphore_props(VkPhysicalDevice pd, const VkPhysicalDeviceExternalSemaphoreInfo* info,
                                           VkExternalSemaphoreProperties* props) {
    ++active->semaphore_queries;
    real_semaphore_props(pd, info, props);
    if (active->sync_fd_features && info->handleType == VK_EXTERNAL_SEMAPHORE_HANDLE_TYPE_SYNC_FD_BIT)
        props->externalSemaphoreFeatures = *active->sync_fd_features;
}

VKAPI_ATTR void VKAPI_CALL buffer_props(VkPhysicalDevice pd, const VkPhysicalDeviceExternalBufferInfo* info,
                                        VkExternalBufferProperties* props) {
    ++active->buffer_queries;
    real_buffer_props(pd, info, props);
    if (active->buffer_features && info->handleType == VK_EXTERNAL_MEMORY_HANDLE_TYPE_DMA_BUF_BIT_EXT)
        props->externalMemoryProperties.externalMemoryFeatures = *active->buffer_features;
}

VKAPI_ATTR VkResult VKAPI_CALL create_image(VkDevice device, const VkImageCreateInfo* info,
                                            const VkAllocationCallbacks* alloc, VkImage* image) {
    ++active->create_image_calls;
    if (active->before_create_image) active->before_create_image();
    if (info->format == active->fake_format) {
        ++active->fake_create_image_calls;
        if (!active->fake_image_accepted) return VK_ERROR_FORMAT_NOT_SUPPORTED;  // the driver never sees it
        *image = fake_image;
        return VK_SUCCESS;
    }
    return real_create_image(device, info, alloc, image);
}

VKAPI_ATTR void VKAPI_CALL image_requirements(VkDevice device, const VkImageMemoryRequirementsInfo2* info,
                                              VkMemoryRequirements2* reqs) {
    if (info->image != fake_image) return real_image_requirements(device, info, reqs);
    reqs->memoryRequirements = {4096, 4096, ~0u};
}

VKAPI_ATTR VkResult VKAPI_CALL bind_image(VkDevice device, std::uint32_t count, const VkBindImageMemoryInfo* binds) {
    if (count == 0 || binds[0].image != fake_image) return real_bind_image(device, count, binds);
    for (std::uint32_t i = 0; i < count; ++i) {
        const auto* plane =
            find_in_chain<VkBindImagePlaneMemoryInfo>(binds[i].pNext, VK_STRUCTURE_TYPE_BIND_IMAGE_PLANE_MEMORY_INFO);
        active->fake_binds.push_back({binds[i].memory, plane ? plane->planeAspect : VkImageAspectFlagBits{}});
    }
    return VK_SUCCESS;
}

VKAPI_ATTR void VKAPI_CALL destroy_image(VkDevice device, VkImage image, const VkAllocationCallbacks* alloc) {
    if (image != fake_image) real_destroy_image(device, image, alloc);
}

VKAPI_ATTR VkResult VKAPI_CALL create_buffer(VkDevice device, const VkBufferCreateInfo* info,
                                             const VkAllocationCallbacks* alloc, VkBuffer* buffer) {
    ++active->create_buffer_calls;
    return real_create_buffer(device, info, alloc, buffer);
}

VKAPI_ATTR VkResult VKAPI_CALL allocate(VkDevice device, const VkMemoryAllocateInfo* info,
                                        const VkAllocationCallbacks* alloc, VkDeviceMemory* memory) {
    ++active->allocate_calls;
    if (auto* d = find_in_chain<VkMemoryDedicatedAllocateInfo>(info->pNext,
                                                               VK_STRUCTURE_TYPE_MEMORY_DEDICATED_ALLOCATE_INFO);
        d && (d->image || d->buffer))
        ++active->dedicated_allocations;
    return real_allocate(device, info, alloc, memory);
}

PFN_vkVoidFunction as_void(auto fn) { return reinterpret_cast<PFN_vkVoidFunction>(fn); }

VKAPI_ATTR PFN_vkVoidFunction VKAPI_CALL device_proc(VkDevice device, const char* name) {
    if (std::strcmp(name, "vkCreateImage") == 0) return as_void(&create_image);
    if (std::strcmp(name, "vkCreateBuffer") == 0) return as_void(&create_buffer);
    if (std::strcmp(name, "vkAllocateMemory") == 0) return as_void(&allocate);
    if (std::strcmp(name, "vkGetImageMemoryRequirements2") == 0) return as_void(&image_requirements);
    if (std::strcmp(name, "vkBindImageMemory2") == 0) return as_void(&bind_image);
    if (std::strcmp(name, "vkDestroyImage") == 0) return as_void(&destroy_image);
    if (std::strcmp(name, "vkGetDeviceProcAddr") == 0) return as_void(&device_proc);
    return real_gdpa(device, name);
}

VKAPI_ATTR PFN_vkVoidFunction VKAPI_CALL instance_proc(VkInstance instance, const char* name) {
    if (std::strcmp(name, "vkGetDeviceProcAddr") == 0) return as_void(&device_proc);
    if (std::strcmp(name, "vkGetPhysicalDeviceFormatProperties2") == 0) return as_void(&format_props);
    if (std::strcmp(name, "vkGetPhysicalDeviceImageFormatProperties2") == 0) return as_void(&image_format_props);
    if (std::strcmp(name, "vkGetPhysicalDeviceExternalSemaphoreProperties") == 0) return as_void(&semaphore_props);
    if (std::strcmp(name, "vkGetPhysicalDeviceExternalBufferProperties") == 0) return as_void(&buffer_props);
    return real_gipa(instance, name);
}

template <typename T>
T load(VkInstance instance, const char* name) {
    return reinterpret_cast<T>(real_gipa(instance, name));
}

}  // namespace

void VkInterposer::reset_counts() {
    for (auto* c : {&format_queries, &disjoint_queries, &create_image_calls, &fake_create_image_calls,
                    &create_buffer_calls, &allocate_calls, &dedicated_allocations, &buffer_queries, &semaphore_queries})
        c->store(0);
}

vulkan::DeviceHandles VkInterposer::wrap(const vulkan::DeviceHandles& real) {
    active = this;
    real_gipa = real.get_instance_proc_addr;
    const VkInstance i = real.instance;
    real_gdpa = load<PFN_vkGetDeviceProcAddr>(i, "vkGetDeviceProcAddr");
    real_format_props = load<PFN_vkGetPhysicalDeviceFormatProperties2>(i, "vkGetPhysicalDeviceFormatProperties2");
    real_image_format_props =
        load<PFN_vkGetPhysicalDeviceImageFormatProperties2>(i, "vkGetPhysicalDeviceImageFormatProperties2");
    real_semaphore_props =
        load<PFN_vkGetPhysicalDeviceExternalSemaphoreProperties>(i, "vkGetPhysicalDeviceExternalSemaphoreProperties");
    real_buffer_props =
        load<PFN_vkGetPhysicalDeviceExternalBufferProperties>(i, "vkGetPhysicalDeviceExternalBufferProperties");
    real_create_image = reinterpret_cast<PFN_vkCreateImage>(real_gdpa(real.device, "vkCreateImage"));
    real_create_buffer = reinterpret_cast<PFN_vkCreateBuffer>(real_gdpa(real.device, "vkCreateBuffer"));
    real_allocate = reinterpret_cast<PFN_vkAllocateMemory>(real_gdpa(real.device, "vkAllocateMemory"));
    real_image_requirements =
        reinterpret_cast<PFN_vkGetImageMemoryRequirements2>(real_gdpa(real.device, "vkGetImageMemoryRequirements2"));
    real_bind_image = reinterpret_cast<PFN_vkBindImageMemory2>(real_gdpa(real.device, "vkBindImageMemory2"));
    real_destroy_image = reinterpret_cast<PFN_vkDestroyImage>(real_gdpa(real.device, "vkDestroyImage"));
    vulkan::DeviceHandles out = real;
    out.get_instance_proc_addr = &instance_proc;
    return out;
}

VkInterposer::~VkInterposer() {
    if (active == this) active = nullptr;
}

vulkan::Device attach_interposed(VkInterposer& interposer, const vulkan::DeviceHandles& real, vulkan::Capability caps) {
    auto device = vulkan::Device::attach(interposer.wrap(real), caps);
    REQUIRE_MESSAGE(device, (device ? "" : device.error().message()));
    interposer.reset_counts();
    return *device;
}

}  // namespace dmabridge::test
