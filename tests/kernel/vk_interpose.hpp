// SPDX-License-Identifier: MIT
#pragma once
// A thin layer between dmabridge and the Vulkan loader, made the way an application hands
// dmabridge its entry points: a vkGetInstanceProcAddr of its own (as a meta-loader would).
// Tests attach a second vulkan::Device to a real device through it, to count what dmabridge
// calls and to answer a few capability queries as a device with other capabilities would:
//   - SYNC_FD semaphore features (vkGetPhysicalDeviceExternalSemaphoreProperties),
//   - dma-buf buffer features (vkGetPhysicalDeviceExternalBufferProperties),
//   - a fake DRM-modifier format (LINEAR, two memory planes, DISJOINT feature) whose queries
//     are answered here and whose vkCreateImage never reaches the driver.
// Everything else goes to the driver unchanged (and through the validation layer).
// One interposer exists at a time (plain function pointers carry no state).

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include <dmabridge/vulkan/device.hpp>

namespace dmabridge::test {

struct VkInterposer {
    // --- Scripted answers (set before the calls they change) ---
    /// Replaces the driver's SYNC_FD semaphore features.
    std::optional<VkExternalSemaphoreFeatureFlags> sync_fd_features;
    /// Replaces the driver's dma-buf features for buffers.
    std::optional<VkExternalMemoryFeatureFlags> buffer_features;
    /// A format whose DRM-modifier queries are answered here: LINEAR only, 2 memory planes,
    /// tiling features SAMPLED | TRANSFER_SRC | TRANSFER_DST | DISJOINT, importable dma-bufs.
    /// vkCreateImage of it is counted and refused with VK_ERROR_FORMAT_NOT_SUPPORTED.
    VkFormat fake_format = VK_FORMAT_UNDEFINED;
    /// For the fake format, queries with VK_IMAGE_CREATE_DISJOINT_BIT fail ...
    bool fake_disjoint_refused = false;
    /// ... or answer DEDICATED_ONLY.
    bool fake_disjoint_dedicated_only = false;
    /// Memory planes of the fake format's LINEAR modifier (2: NV12-like; 3: YUV420-like).
    std::uint32_t fake_plane_count = 2;
    /// vkCreateImage of the fake format succeeds with a handle that never reaches the driver:
    /// its memory requirements are answered here (4096 bytes a plane, every memory type), its
    /// vkBindImageMemory2 is recorded in `fake_binds` and succeeds, its vkDestroyImage is a no-op.
    /// The memory bound to it is real (imported by the driver).
    bool fake_image_accepted = false;
    struct Bind {
        VkDeviceMemory memory;
        VkImageAspectFlagBits plane;  ///< 0 when the bind has no plane info
    };
    std::vector<Bind> fake_binds;
    /// Called on the calling thread before every vkCreateImage reaches the driver: a test holds
    /// an import inside the driver here (a gate) to see what other threads can do meanwhile.
    std::function<void()> before_create_image;

    // --- What dmabridge called ---
    std::atomic<int> format_queries{0};         ///< vkGetPhysicalDevice(Image)FormatProperties2
    std::atomic<int> disjoint_queries{0};       ///< image format queries with the DISJOINT flag
    std::atomic<int> create_image_calls{0};     ///< all vkCreateImage calls
    std::atomic<int> fake_create_image_calls{0};
    std::atomic<int> create_buffer_calls{0};
    std::atomic<int> allocate_calls{0};
    std::atomic<int> dedicated_allocations{0};  ///< vkAllocateMemory with VkMemoryDedicatedAllocateInfo
    std::atomic<int> buffer_queries{0};         ///< vkGetPhysicalDeviceExternalBufferProperties
    std::atomic<int> semaphore_queries{0};      ///< vkGetPhysicalDeviceExternalSemaphoreProperties

    /// Every Vulkan call counted above.
    int vulkan_calls() const {
        return format_queries + create_image_calls + create_buffer_calls + allocate_calls + buffer_queries +
               semaphore_queries;
    }
    void reset_counts();

    /// Installs this interposer (replacing any other) in front of `real`'s entry points and
    /// returns handles to attach with. The object must outlive every Device attached so.
    vulkan::DeviceHandles wrap(const vulkan::DeviceHandles& real);
    ~VkInterposer();
};

/// A Device attached to `real` through `interposer`, with `caps` required; counts reset after.
vulkan::Device attach_interposed(VkInterposer& interposer, const vulkan::DeviceHandles& real,
                                 vulkan::Capability caps = vulkan::Capability::none);

}  // namespace dmabridge::test
