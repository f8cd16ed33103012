// SPDX-License-Identifier: MIT
#include "vk_object_count.hpp"

#include <atomic>
#include <cstring>

namespace dmabridge::test {
namespace {

std::atomic<std::int64_t> live{0};
PFN_vkGetInstanceProcAddr real_gipa = nullptr;
PFN_vkGetDeviceProcAddr real_gdpa = nullptr;
PFN_vkCreateImage real_create_image = nullptr;
PFN_vkDestroyImage real_destroy_image = nullptr;
PFN_vkCreateBuffer real_create_buffer = nullptr;
PFN_vkDestroyBuffer real_destroy_buffer = nullptr;
PFN_vkAllocateMemory real_allocate_memory = nullptr;
PFN_vkFreeMemory real_free_memory = nullptr;
PFN_vkCreateSemaphore real_create_semaphore = nullptr;
PFN_vkDestroySemaphore real_destroy_semaphore = nullptr;

template <typename Handle>
void count_created(VkResult r, const Handle* h) {
    if (r == VK_SUCCESS && h && *h != VK_NULL_HANDLE) ++live;
}
template <typename Handle>
void count_destroyed(Handle h) {
    if (h != VK_NULL_HANDLE) --live;
}

VkResult VKAPI_PTR create_image(VkDevice d, const VkImageCreateInfo* i, const VkAllocationCallbacks* a, VkImage* out) {
    VkResult r = real_create_image(d, i, a, out);
    count_created(r, out);
    return r;
}
void VKAPI_PTR destroy_image(VkDevice d, VkImage h, const VkAllocationCallbacks* a) {
    count_destroyed(h);
    real_destroy_image(d, h, a);
}
VkResult VKAPI_PTR create_buffer(VkDevice d, const VkBufferCreateInfo* i, const VkAllocationCallbacks* a, VkBuffer* out) {
    VkResult r = real_create_buffer(d, i, a, out);
    count_created(r, out);
    return r;
}
void VKAPI_PTR destroy_buffer(VkDevice d, VkBuffer h, const VkAllocationCallbacks* a) {
    count_destroyed(h);
    real_destroy_buffer(d, h, a);
}
VkResult VKAPI_PTR allocate_memory(VkDevice d, const VkMemoryAllocateInfo* i, const VkAllocationCallbacks* a,
                                   VkDeviceMemory* out) {
    VkResult r = real_allocate_memory(d, i, a, out);
    count_created(r, out);
    return r;
}
void VKAPI_PTR free_memory(VkDevice d, VkDeviceMemory h, const VkAllocationCallbacks* a) {
    count_destroyed(h);
    real_free_memory(d, h, a);
}
VkResult VKAPI_PTR create_semaphore(VkDevice d, const VkSemaphoreCreateInfo* i, const VkAllocationCallbacks* a,
                                    VkSemaphore* out) {
    VkResult r = real_create_semaphore(d, i, a, out);
    count_created(r, out);
    return r;
}
void VKAPI_PTR destroy_semaphore(VkDevice d, VkSemaphore h, const VkAllocationCallbacks* a) {
    count_destroyed(h);
    real_destroy_semaphore(d, h, a);
}

PFN_vkVoidFunction VKAPI_PTR counting_gdpa(VkDevice device, const char* name) {
    PFN_vkVoidFunction real = real_gdpa(device, name);
    if (!real) return nullptr;
#define COUNTED(vkname, wrapper, slot)                                  \
    if (std::strcmp(name, vkname) == 0) {                               \
        slot = reinterpret_cast<decltype(slot)>(real);                  \
        return reinterpret_cast<PFN_vkVoidFunction>(&wrapper);          \
    }
    COUNTED("vkCreateImage", create_image, real_create_image)
    COUNTED("vkDestroyImage", destroy_image, real_destroy_image)
    COUNTED("vkCreateBuffer", create_buffer, real_create_buffer)
    COUNTED("vkDestroyBuffer", destroy_buffer, real_destroy_buffer)
    COUNTED("vkAllocateMemory", allocate_memory, real_allocate_memory)
    COUNTED("vkFreeMemory", free_memory, real_free_memory)
    COUNTED("vkCreateSemaphore", create_semaphore, real_create_semaphore)
    COUNTED("vkDestroySemaphore", destroy_semaphore, real_destroy_semaphore)
#undef COUNTED
    return real;
}

PFN_vkVoidFunction VKAPI_PTR counting_gipa(VkInstance instance, const char* name) {
    if (std::strcmp(name, "vkGetDeviceProcAddr") == 0) {
        real_gdpa = reinterpret_cast<PFN_vkGetDeviceProcAddr>(real_gipa(instance, name));
        return reinterpret_cast<PFN_vkVoidFunction>(&counting_gdpa);
    }
    return real_gipa(instance, name);
}

}  // namespace

vulkan::DeviceHandles counted_handles(const vulkan::Context& ctx) {
    vulkan::DeviceHandles h = ctx.handles();
    real_gipa = h.get_instance_proc_addr;  // every Context here uses the same loader
    h.get_instance_proc_addr = &counting_gipa;
    return h;
}

std::int64_t live_vulkan_objects() { return live.load(); }

}  // namespace dmabridge::test
