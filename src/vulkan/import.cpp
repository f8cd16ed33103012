// SPDX-License-Identifier: MIT
// Importing dma-bufs as Vulkan images and buffers. Everything that can be checked is checked
// before the first Vulkan object exists; what is made is owned by a builder from the moment it
// exists, so any later failure destroys it.
#include <dmabridge/vulkan/device.hpp>
#include <dmabridge/vulkan/format.hpp>

#include <algorithm>
#include <array>
#include <cstdio>
#include <string>
#include <vector>

#include "vulkan/device_state.hpp"
#include "vulkan/resources_builder.hpp"
#include "base/sys.hpp"

namespace dmabridge::vulkan {
namespace {

constexpr VkImageAspectFlagBits memory_plane_aspect[] = {
    VK_IMAGE_ASPECT_MEMORY_PLANE_0_BIT_EXT, VK_IMAGE_ASPECT_MEMORY_PLANE_1_BIT_EXT,
    VK_IMAGE_ASPECT_MEMORY_PLANE_2_BIT_EXT, VK_IMAGE_ASPECT_MEMORY_PLANE_3_BIT_EXT};

std::string n(std::uint64_t v) { return std::to_string(v); }

std::string hex(std::uint32_t v) {
    char text[16];
    std::snprintf(text, sizeof text, "0x%x", v);
    return text;
}

// Imports a dup of `buf` as memory of `size` bytes for `type_bits`, dedicated to `image` or
// `buffer` when asked. The dup belongs to Vulkan only once the allocation succeeded.
Result<VkDeviceMemory> import_memory(const detail::DeviceState& s, const DmaBuf& buf, std::uint64_t size,
                                     std::uint32_t type_bits, VkImage image, VkBuffer buffer, bool dedicated,
                                     const std::string& what) {
    if (size > buf.size())
        return Error::library(Errc::invalid_argument, what + ": the driver needs " + n(size) +
                                                          " bytes of memory, the dma-buf has " + n(buf.size()));
    VkMemoryFdPropertiesKHR fd_props{};
    fd_props.sType = VK_STRUCTURE_TYPE_MEMORY_FD_PROPERTIES_KHR;
    if (VkResult r = s.vkGetMemoryFdPropertiesKHR(s.device(), VK_EXTERNAL_MEMORY_HANDLE_TYPE_DMA_BUF_BIT_EXT, buf.fd(),
                                                  &fd_props);
        r != VK_SUCCESS)
        return detail::vk_error(r, what + ": vkGetMemoryFdPropertiesKHR");
    auto type = detail::pick_memory_type(s, fd_props.memoryTypeBits & type_bits);
    if (!type)
        return Error::library(Errc::unsupported, what + ": no memory type both fits (bits " +
                                                     dmabridge::detail::hex(type_bits) + ") and can hold this dma-buf (bits " +
                                                     dmabridge::detail::hex(fd_props.memoryTypeBits) + ")");
    auto fd = UniqueFd::dup_of(buf.fd());
    if (!fd) return fd.error().with_context(what);
    VkMemoryDedicatedAllocateInfo dedicated_info{};
    dedicated_info.sType = VK_STRUCTURE_TYPE_MEMORY_DEDICATED_ALLOCATE_INFO;
    dedicated_info.image = image;
    dedicated_info.buffer = buffer;
    VkImportMemoryFdInfoKHR import{};
    import.sType = VK_STRUCTURE_TYPE_IMPORT_MEMORY_FD_INFO_KHR;
    import.pNext = dedicated ? &dedicated_info : nullptr;
    import.handleType = VK_EXTERNAL_MEMORY_HANDLE_TYPE_DMA_BUF_BIT_EXT;
    import.fd = fd->get();
    VkMemoryAllocateInfo alloc{};
    alloc.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO;
    alloc.pNext = &import;
    alloc.allocationSize = size;
    alloc.memoryTypeIndex = *type;
    VkDeviceMemory memory = VK_NULL_HANDLE;
    if (VkResult r = s.vkAllocateMemory(s.device(), &alloc, nullptr, &memory); r != VK_SUCCESS)
        return detail::vk_error(r, what + ": vkAllocateMemory importing a " + n(buf.size()) + "-byte dma-buf as " +
                                       n(size) + " bytes");  // the dup is still ours and closes here
    (void)fd->release();  // Vulkan owns it now
    return memory;
}

std::string list_modifiers(const std::vector<ModifierSupport>& support, bool importable_only) {
    std::string s;
    for (const auto& m : support)
        if (!importable_only || m.importable) s += (s.empty() ? "" : ", ") + modifier_to_string(m.modifier);
    return s.empty() ? "none" : s;
}

}  // namespace

Result<Image> Device::import_image(const BufferDesc& desc, const ImageOptions& options) const {
    if (!state_) return detail::moved_from("import " + desc.describe(), "Device");
    const auto& s = *state_;
    const std::string what = "import " + desc.describe() + " on " + name();
    if (!has(Capability::import_memory | Capability::modifiers))
        return Error::library(Errc::unsupported, what + ": the device was not attached with dma-buf import and modifiers");
    if (auto ok = desc.validate(); !ok) return ok.error().with_context("import on " + name());
    if (desc.modifier == modifier::invalid)
        return Error::library(Errc::unsupported,
                              what + ": the modifier is INVALID (implicit, known only to the exporting driver) and "
                                     "cannot be imported explicitly; ask the exporter for an explicit modifier "
                                     "(LINEAR where it guarantees a linear layout)");
    // Everything that needs no device is checked before the first Vulkan call.
    auto resolved = detail::resolve_format(desc.fourcc, options.format, what);
    if (!resolved) {
        // A fourcc Vulkan cannot express (NV21) is a limit of the device API, not an unknown format.
        if (options.format == VK_FORMAT_UNDEFINED && resolved.error().is(Errc::unknown_format))
            return Error::library(Errc::unsupported, resolved.error().message());
        return resolved.error();
    }
    const VkFormat format = *resolved;
    if (auto fits = check_extent_fits(format, desc.width, desc.height); !fits) return fits.error().with_context(what);
    auto support = modifier_support(desc.fourcc, options);
    if (!support) return support.error().with_context(what);
    auto entry = std::find_if(support->begin(), support->end(), [&](const ModifierSupport& m) { return m.modifier == desc.modifier; });
    if (entry == support->end() || !entry->importable)
        return Error::library(Errc::unsupported, what + ": modifier " + modifier_to_string(desc.modifier) +
                                                     " cannot be imported for this usage; importable: " +
                                                     list_modifiers(*support, true));
    if (desc.planes.size() != entry->plane_count)
        return Error::library(Errc::invalid_argument, what + ": " + n(desc.planes.size()) + " planes, modifier " +
                                                          modifier_to_string(desc.modifier) + " has " +
                                                          n(entry->plane_count) + " memory planes");
    if (desc.width > entry->max_extent.width || desc.height > entry->max_extent.height)
        return Error::library(Errc::unsupported, what + ": larger than the device's maximum " +
                                                     n(entry->max_extent.width) + "x" + n(entry->max_extent.height));
    bool disjoint = false;
    for (const auto& p : desc.planes) disjoint |= !(p.buffer.id() == desc.planes[0].buffer.id());
    if (disjoint && (!entry->disjoint || entry->linear_tiling))
        return Error::library(Errc::unsupported, what + ": its planes are in separate dma-bufs, and the device cannot "
                                                     "import DISJOINT images of this modifier for this usage");
    if (disjoint && entry->disjoint_dedicated_only)
        return Error::library(Errc::unsupported,
                              what + ": its planes are in separate dma-bufs, but the device imports this modifier only "
                                     "as a dedicated allocation (DEDICATED_ONLY), which a disjoint image cannot have; "
                                     "put the planes in one dma-buf");

    std::array<VkSubresourceLayout, max_planes> layouts{};
    for (std::size_t p = 0; p < desc.planes.size(); ++p) {
        layouts[p].offset = desc.planes[p].offset;
        layouts[p].rowPitch = desc.planes[p].stride;
    }
    VkImageDrmFormatModifierExplicitCreateInfoEXT explicit_info{};
    explicit_info.sType = VK_STRUCTURE_TYPE_IMAGE_DRM_FORMAT_MODIFIER_EXPLICIT_CREATE_INFO_EXT;
    explicit_info.drmFormatModifier = desc.modifier;
    explicit_info.drmFormatModifierPlaneCount = static_cast<std::uint32_t>(desc.planes.size());
    explicit_info.pPlaneLayouts = layouts.data();
    ImageBuilder builder(state_);
    if (auto made = detail::create_dmabuf_image(s, builder, format, {desc.width, desc.height}, options.usage,
                                                disjoint ? VK_IMAGE_CREATE_DISJOINT_BIT : 0,
                                                entry->linear_tiling ? nullptr : &explicit_info, what);
        !made)
        return made.error();
    const VkImage image = builder.image.handle();
    builder.set_modifier(desc.modifier);

    // One dma-buf is imported once per image, whatever number of planes it holds: a disjoint image
    // whose planes are {A, A, B} gets two memories, A's bound to planes 0 and 1 (at memory offset 0:
    // the explicit layouts carry the planes' offsets). Importing A twice would make two memory objects
    // of one buffer object on one device, which is safe only on drivers that reference-count their
    // imports of one buffer (shared/PITFALLS.md), so the library does not rely on it.
    const std::uint32_t bind_count = disjoint ? static_cast<std::uint32_t>(desc.planes.size()) : 1;
    // validate() bounds the planes already; said again here so that the arrays below visibly hold
    // bind_count entries (GCC 12 at -O3 otherwise warns of a write past them, -Wstringop-overflow).
    if (bind_count > max_planes)
        return Error::library(Errc::invalid_argument, what + ": " + n(bind_count) + " planes, at most " + n(max_planes));
    std::array<VkBindImageMemoryInfo, max_planes> binds{};
    std::array<VkBindImagePlaneMemoryInfo, max_planes> plane_binds{};
    std::array<detail::Requirements, max_planes> reqs{};
    for (std::uint32_t i = 0; i < bind_count; ++i) {
        reqs[i] = detail::image_requirements(s, image, disjoint ? static_cast<int>(i) : -1);
        if (disjoint && reqs[i].requires_dedicated)
            return Error::library(Errc::unsupported, what + ": plane " + n(i) +
                                                         " of the disjoint image requires a dedicated allocation, which "
                                                         "a disjoint image cannot have; put the planes in one dma-buf");
    }
    const std::vector<std::size_t> buffer_of =
        disjoint ? desc.plane_buffer_indices() : std::vector<std::size_t>(1, 0);
    const std::size_t buffers = 1 + *std::max_element(buffer_of.begin(), buffer_of.end());
    for (std::size_t b = 0; b < buffers; ++b) {
        // What every plane in this dma-buf needs: the largest size, the memory types all accept.
        std::uint64_t size = 0;
        std::uint32_t type_bits = ~0u;
        std::string planes_text;
        std::size_t first = bind_count;
        for (std::uint32_t i = 0; i < bind_count; ++i) {
            if (buffer_of[i] != b) continue;
            if (first == bind_count) first = i;
            size = std::max<std::uint64_t>(size, reqs[i].memory.size);
            type_bits &= reqs[i].memory.memoryTypeBits;
            planes_text += (planes_text.empty() ? "" : ", ") + n(i);
        }
        const bool dedicated = !disjoint && (reqs[0].requires_dedicated || reqs[0].prefers_dedicated || entry->dedicated_only);
        auto memory = import_memory(s, desc.planes[first].buffer, size, type_bits, image, VK_NULL_HANDLE, dedicated,
                                    what + (disjoint ? ": the dma-buf of plane " + planes_text : std::string()));
        if (!memory) return memory.error();
        builder.add_memory(*memory, size);
        for (std::uint32_t i = 0; i < bind_count; ++i) {
            if (buffer_of[i] != b) continue;
            binds[i].sType = VK_STRUCTURE_TYPE_BIND_IMAGE_MEMORY_INFO;
            binds[i].image = image;
            binds[i].memory = *memory;
            if (disjoint) {
                plane_binds[i].sType = VK_STRUCTURE_TYPE_BIND_IMAGE_PLANE_MEMORY_INFO;
                plane_binds[i].planeAspect = memory_plane_aspect[i];
                binds[i].pNext = &plane_binds[i];
            }
        }
    }
    if (VkResult r = s.vkBindImageMemory2(s.device(), bind_count, binds.data()); r != VK_SUCCESS)
        return detail::vk_error(r, what + ": vkBindImageMemory2");
    // Plain linear tiling cannot be told a layout: the driver's must be the description's. It is
    // read after binding, as drivers (lavapipe) place planes only then.
    if (entry->linear_tiling) {
        const auto planes = static_cast<std::uint32_t>(desc.planes.size());
        for (std::uint32_t p = 0; p < planes; ++p) {
            VkImageSubresource sub{};
            sub.aspectMask = detail::format_plane_aspect(p, planes);
            VkSubresourceLayout layout{};
            s.vkGetImageSubresourceLayout(s.device(), image, &sub, &layout);
            if (layout.offset != desc.planes[p].offset || layout.rowPitch != desc.planes[p].stride)
                return Error::library(Errc::unsupported,
                                      what + ": the device has no DRM-modifier support for this format, and its own "
                                             "linear layout of plane " + n(p) + " (offset " + n(layout.offset) +
                                             ", stride " + n(layout.rowPitch) + ") differs from the description's");
        }
    }

    return builder.finish();
}

Result<Buffer> Device::import_buffer(const DmaBuf& dmabuf, VkBufferUsageFlags usage, std::uint64_t size) const {
    if (!state_) return detail::moved_from("import a dma-buf as a buffer", "Device");
    const auto& s = *state_;
    if (size == 0) size = dmabuf.size();
    const std::string what = "import " + n(size) + " bytes of a " + n(dmabuf.size()) + "-byte dma-buf as a buffer on " + name();
    if (!has(Capability::import_memory))
        return Error::library(Errc::unsupported, what + ": the device was not attached with dma-buf import");
    if (dmabuf.fd() < 0) return Error::library(Errc::empty_object, what + ": the dma-buf holds no fd (moved from or released)");
    if (size > dmabuf.size()) return Error::library(Errc::invalid_argument, what + ": larger than the dma-buf");
    const auto external = detail::query_buffer_support(s, usage);
    if (!external.importable)
        return Error::library(Errc::unsupported, what + ": the device cannot import dma-buf memory for buffers of usage " +
                                                     hex(usage) + " (vkGetPhysicalDeviceExternalBufferProperties)");
    BufferBuilder builder(state_);
    if (auto made = detail::create_dmabuf_buffer(s, builder, size, usage, what); !made) return made.error();
    const VkBuffer buffer = builder.buffer.handle();
    const auto reqs = detail::buffer_requirements(s, buffer);
    auto memory = import_memory(s, dmabuf, reqs.memory.size, reqs.memory.memoryTypeBits, VK_NULL_HANDLE, buffer,
                                reqs.requires_dedicated || external.dedicated_only, what);
    if (!memory) return memory.error();
    builder.set_memory(*memory);
    VkBindBufferMemoryInfo bind{};
    bind.sType = VK_STRUCTURE_TYPE_BIND_BUFFER_MEMORY_INFO;
    bind.buffer = buffer;
    bind.memory = *memory;
    if (VkResult r = s.vkBindBufferMemory2(s.device(), 1, &bind); r != VK_SUCCESS)
        return detail::vk_error(r, what + ": vkBindBufferMemory2");
    return builder.finish();
}

}  // namespace dmabridge::vulkan
