// SPDX-License-Identifier: MIT
#pragma once
/// @file vulkan/device.hpp
/// The Vulkan adapter: dmabridge attached to a VkDevice the application already has.
///
/// dmabridge never creates or owns the application's instance or device. The application
/// creates them with the extensions required_device_extensions() lists, then calls
/// Device::attach with its handles and its vkGetInstanceProcAddr (from the loader or a
/// meta-loader such as volk); dmabridge loads every entry point it uses through it.
/// The VkDevice must outlive the Device and every Image and Buffer made through it.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <vulkan/vulkan_core.h>

#include <dmabridge/alloc/allocator.hpp>
#include <dmabridge/base/result.hpp>
#include <dmabridge/format/buffer_desc.hpp>
#include <dmabridge/format/format_set.hpp>
#include <dmabridge/kernel/dmabuf.hpp>
#include <dmabridge/vulkan/resources.hpp>

namespace dmabridge::vulkan {

/// What an application wants to do with dma-bufs on a device. Combine with `|`.
enum class Capability : std::uint32_t {
    none = 0,                  ///< nothing beyond a plain device
    import_memory = 1u << 0,   ///< import dma-bufs as images and buffers
    export_memory = 1u << 1,   ///< export images and buffers as dma-bufs
    modifiers = 1u << 2,       ///< images with explicit DRM format modifiers (needed by both above)
    sync_fd = 1u << 3,         ///< binary semaphores to and from sync_file fds
    foreign_queue = 1u << 4,   ///< ownership transfers with VK_QUEUE_FAMILY_FOREIGN_EXT
    drm_nodes = 1u << 5,       ///< find the device's DRM nodes (VK_EXT_physical_device_drm)
    all = (1u << 6) - 1,       ///< every capability above
};
/// Bitwise or and and of capability sets; any(c) is true when `c` holds at least one.
constexpr Capability operator|(Capability a, Capability b) noexcept {
    return static_cast<Capability>(static_cast<std::uint32_t>(a) | static_cast<std::uint32_t>(b));
}
constexpr Capability operator&(Capability a, Capability b) noexcept {
    return static_cast<Capability>(static_cast<std::uint32_t>(a) & static_cast<std::uint32_t>(b));
}
constexpr bool any(Capability c) noexcept { return c != Capability::none; }

/// The name of a VkResult, e.g. "VK_ERROR_INVALID_EXTERNAL_HANDLE", for messages.
const char* result_name(VkResult result) noexcept;

/// The lowest Vulkan version dmabridge works with (external memory and the *2 queries are core).
inline constexpr std::uint32_t min_api_version = VK_API_VERSION_1_1;

/// The device extensions `caps` needs on a device of `api_version` (extensions promoted to core
/// by that version are left out). For sharing buffers, ask for
/// Capability::import_memory | Capability::export_memory | Capability::modifiers.
std::vector<const char*> required_device_extensions(Capability caps, std::uint32_t api_version);

/// The handles of an application's Vulkan device, as dmabridge needs them.
struct DeviceHandles {
    VkInstance instance = VK_NULL_HANDLE;               ///< the application's instance (borrowed)
    VkPhysicalDevice physical_device = VK_NULL_HANDLE;  ///< the device's physical device
    VkDevice device = VK_NULL_HANDLE;                   ///< the application's device (borrowed)
    std::uint32_t queue_family_index = 0;        ///< the family dmabridge's barriers name
    /// The loader's (or layer chain's) vkGetInstanceProcAddr, from which every entry point is
    /// loaded; required (a null one is Errc::invalid_argument at attach).
    PFN_vkGetInstanceProcAddr get_instance_proc_addr = nullptr;

    std::uint32_t api_version = min_api_version; ///< the apiVersion the instance was created with
    std::vector<std::string> enabled_extensions; ///< the device extensions the device was created with
};

/// The primary and render node of a physical device (VK_EXT_physical_device_drm).
struct DrmNodeIds {
    bool has_primary = false;  ///< the device has a primary node (/dev/dri/cardN)
    bool has_render = false;   ///< the device has a render node (/dev/dri/renderDN)
    std::int64_t primary_major = 0, primary_minor = 0;  ///< the primary node's device number
    std::int64_t render_major = 0, render_minor = 0;    ///< the render node's device number
};

/// What a device can do with one (fourcc, modifier) for one usage.
struct ModifierSupport {
    std::uint64_t modifier = 0;             ///< the DRM format modifier described
    std::uint32_t plane_count = 0;          ///< memory planes (drmFormatModifierPlaneCount)
    VkFormatFeatureFlags features = 0;      ///< tiling features of the modifier
    bool importable = false;                ///< dma-bufs of it import as images for the usage
    bool exportable = false;                ///< images of it export as dma-bufs for the usage
    bool dedicated_only = false;            ///< external memory of this image must be a dedicated allocation
    /// Planes may live in separate dma-bufs: the modifier has VK_FORMAT_FEATURE_DISJOINT_BIT and
    /// the device imports images of it created with VK_IMAGE_CREATE_DISJOINT_BIT (asked with that
    /// flag, not with the flags of a plain image).
    bool disjoint = false;
    /// The DISJOINT query said DEDICATED_ONLY: a disjoint image cannot have a dedicated
    /// allocation, so separate dma-bufs of this modifier cannot be imported (import_image
    /// refuses them).
    bool disjoint_dedicated_only = false;
    /// LINEAR through VK_IMAGE_TILING_LINEAR, for formats the driver offers no DRM-modifier
    /// tiling for (lavapipe's NV12, for one): the driver chooses the layout, so an import
    /// succeeds only when the description's offsets and strides are exactly the driver's.
    bool linear_tiling = false;
    VkExtent3D max_extent{};                ///< the largest image of it for the usage
};

/// Options of an image import or export. The zero value suits sampling and copies.
struct ImageOptions {
    /// How the image will be used. Support is checked for exactly this usage.
    VkImageUsageFlags usage = VK_IMAGE_USAGE_SAMPLED_BIT | VK_IMAGE_USAGE_TRANSFER_SRC_BIT |
                              VK_IMAGE_USAGE_TRANSFER_DST_BIT;
    /// The image's format; VK_FORMAT_UNDEFINED picks to_vk_format(fourcc). An override must have
    /// the fourcc's memory layout (check_format_matches(): plane count, bytes and texels per
    /// block, subsampling), e.g. B8G8R8A8_SRGB for XRGB8888; R32G32B32A32_SFLOAT for R8 is
    /// refused (Errc::invalid_argument, naming both), as its rows would be 16 times longer than
    /// the description's.
    VkFormat format = VK_FORMAT_UNDEFINED;
};

/// An image made by export_image(): the Vulkan image and its description as dma-bufs.
struct ExportedImage {
    Image image;      ///< the Vulkan image, owning its memory
    BufferDesc desc;  ///< the same memory as dma-bufs, with the chosen modifier and layout
};

/// A buffer made by export_buffer(): the Vulkan buffer and its memory as a dma-buf.
struct ExportedBuffer {
    Buffer buffer;   ///< the Vulkan buffer, owning its memory
    DmaBuf dmabuf;   ///< the same memory as a dma-buf
};

/// dmabridge attached to an application's VkDevice. Cheap to copy (shares its state).
/// Thread safety: every member is safe to call from several threads, as the Vulkan calls it
/// makes are (the application must not destroy the device meanwhile).
/// A moved-from Device is empty: valid() is false, handles are null, capabilities() is none,
/// and every operation fails at once with Errc::empty_object, making no Vulkan call.
class Device {
public:
    /// Loads dmabridge's entry points and checks that the device was created with what `needs`
    /// requires. Errors: Errc::invalid_argument for null handles or an api_version below 1.1;
    /// Errc::unsupported naming each missing extension and whether the physical device offers it.
    static Result<Device> attach(const DeviceHandles& handles, Capability needs = Capability::none);

    /// An empty Device, as a moved-from one: valid() is false and every operation fails.
    Device() noexcept = default;

    /// False for a moved-from (or default-made) Device.
    bool valid() const noexcept { return state_ != nullptr; }

    /// The handles given to attach(): the VkDevice, its physical device, and the queue family
    /// dmabridge's barriers name. VK_NULL_HANDLE (and family 0) when empty.
    VkDevice handle() const noexcept;
    VkPhysicalDevice physical_device() const noexcept;
    std::uint32_t queue_family_index() const noexcept;
    /// The capabilities the device's enabled extensions give.
    Capability capabilities() const noexcept;
    /// True when capabilities() holds every bit of `c` (always true for Capability::none).
    bool has(Capability c) const noexcept { return (capabilities() & c) == c; }
    /// The device's name, e.g. "llvmpipe (LLVM 19.1.7, 256 bits)"; "(moved-from Device)" when
    /// empty.
    const std::string& name() const noexcept;

    /// The device's DRM nodes, when VK_EXT_physical_device_drm is supported (nothing otherwise).
    std::optional<DrmNodeIds> drm_nodes() const;

    /// For `fourcc` and the usage in `options`: every modifier the device offers and what it can
    /// do with it as a dma-buf (vkGetPhysicalDeviceFormatProperties2 with the modifier list,
    /// then vkGetPhysicalDeviceImageFormatProperties2 per modifier). Costs a few queries, no
    /// allocation. An unmapped fourcc gives Errc::unknown_format.
    Result<std::vector<ModifierSupport>> modifier_support(std::uint32_t fourcc, const ImageOptions& options = {}) const;

    /// Every (fourcc, modifier) of dmabridge's format table the device can import (or export)
    /// for `options.usage`, as a set to intersect with other participants'.
    /// An empty set for an empty Device (no error: check valid()).
    FormatSet importable_formats(const ImageOptions& options = {}) const;
    FormatSet exportable_formats(const ImageOptions& options = {}) const;


    /// Creates an image the device can export, with a modifier from `request.modifiers` (the
    /// driver picks among those it can export for the usage; empty means LINEAR only), a dedicated
    /// allocation where the driver requires or prefers one, and exports it: the description
    /// carries the chosen modifier and each memory plane's offset and stride. Costs an image,
    /// a memory allocation and one fd per plane (each with FD_CLOEXEC). Refused before any
    /// Vulkan call: an odd width of a _422/_420 format or an odd height of a _420 format
    /// (Vulkan cannot create them, though DRM allows them), and a format override without the
    /// fourcc's layout. A failing DMA_BUF_SET_NAME is logged and does not fail the export.
    Result<ExportedImage> export_image(const ImageRequest& request, const ImageOptions& options = {}) const;

    /// Creates a buffer of `size` bytes backed by exportable memory and exports the memory.
    /// Asks vkGetPhysicalDeviceExternalBufferProperties first: a device that cannot export
    /// dma-buf memory for `usage` gives Errc::unsupported before anything is made; DEDICATED_ONLY
    /// gets a dedicated allocation. The dma-buf fd carries FD_CLOEXEC. A failing DMA_BUF_SET_NAME
    /// (names are debugging metadata) is logged and does not fail the export.
    Result<ExportedBuffer> export_buffer(std::uint64_t size, VkBufferUsageFlags usage,
                                         const std::string& name = {}) const;

    /// Imports a description as an image with its explicit modifier and plane layouts. Checks,
    /// before any Vulkan call: the description (validate()), the format mapping and any format
    /// override (its texel blocks must be the fourcc's), the extent against the format's chroma
    /// subsampling (odd widths of _422/_420 and odd heights of _420 formats are refused). Then,
    /// before any Vulkan object exists: the modifier (INVALID cannot be imported explicitly),
    /// the usage, the extent, the memory plane count, disjoint planes (asked with
    /// VK_IMAGE_CREATE_DISJOINT_BIT; refused where the device wants a dedicated allocation, which
    /// a disjoint image cannot have), and each dma-buf against the memory the image needs. Imports a
    /// dup of each fd (Vulkan takes ownership of what it imports); on failure nothing is left
    /// behind. Costs an image, one memory import per distinct dma-buf, a bind.
    Result<Image> import_image(const BufferDesc& desc, const ImageOptions& options = {}) const;

    /// Imports `size` bytes of a dma-buf (0: all of it) as a buffer. Asks
    /// vkGetPhysicalDeviceExternalBufferProperties first: a device that cannot import dma-buf
    /// memory for `usage` gives Errc::unsupported before anything is made; DEDICATED_ONLY gets a
    /// dedicated allocation.
    Result<Buffer> import_buffer(const DmaBuf& dmabuf, VkBufferUsageFlags usage, std::uint64_t size = 0) const;

    /// Internal state shared with the images and buffers made here.
    const std::shared_ptr<const detail::DeviceState>& state() const noexcept { return state_; }

private:
    explicit Device(std::shared_ptr<const detail::DeviceState> state) noexcept : state_(std::move(state)) {}
    std::shared_ptr<const detail::DeviceState> state_;
};

}  // namespace dmabridge::vulkan
