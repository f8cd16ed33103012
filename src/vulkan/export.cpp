// SPDX-License-Identifier: MIT
// Exporting Vulkan images and buffers as dma-bufs.
#include <dmabridge/vulkan/device.hpp>
#include <dmabridge/vulkan/format.hpp>

#include <algorithm>
#include <string>
#include <vector>

#include "alloc/memory_allocator.hpp"
#include "base/sys.hpp"
#include "vulkan/device_state.hpp"
#include "vulkan/resources_builder.hpp"

namespace dmabridge::vulkan {
namespace {

constexpr VkImageAspectFlagBits memory_plane_aspect[] = {
    VK_IMAGE_ASPECT_MEMORY_PLANE_0_BIT_EXT, VK_IMAGE_ASPECT_MEMORY_PLANE_1_BIT_EXT,
    VK_IMAGE_ASPECT_MEMORY_PLANE_2_BIT_EXT, VK_IMAGE_ASPECT_MEMORY_PLANE_3_BIT_EXT};

std::string list_modifiers(const std::vector<std::uint64_t>& mods) {
    std::string s;
    for (auto m : mods) s += (s.empty() ? "" : ", ") + modifier_to_string(m);
    return s.empty() ? "none" : s;
}

// Exports `memory` as a named dma-buf.
Result<DmaBuf> export_memory(const detail::DeviceState& s, VkDeviceMemory memory, const std::string& name,
                             const std::string& what) {
    VkMemoryGetFdInfoKHR get{};
    get.sType = VK_STRUCTURE_TYPE_MEMORY_GET_FD_INFO_KHR;
    get.memory = memory;
    get.handleType = VK_EXTERNAL_MEMORY_HANDLE_TYPE_DMA_BUF_BIT_EXT;
    int fd = -1;
    if (VkResult r = s.vkGetMemoryFdKHR(s.device(), &get, &fd); r != VK_SUCCESS)
        return detail::vk_error(r, what + ": vkGetMemoryFdKHR");
    // Some drivers (lavapipe among them) hand out the fd without FD_CLOEXEC: it is set before
    // anything else happens to the fd.
    auto owned = detail::adopt_driver_fd(fd, what + ": vkGetMemoryFdKHR");
    if (!owned) return owned.error();
    auto buf = DmaBuf::adopt(std::move(*owned));
    if (!buf) return buf.error().with_context(what);
    // Names are debugging metadata: an export that succeeded does not fail for one.
    const std::string label = name.empty() ? std::string(dmabridge::detail::default_buffer_name) : name;
    if (auto named = buf->set_name(label); !named)
        dmabridge::detail::log_message(LogLevel::warning, what + ": the dma-buf stays unnamed (\"" + label +
                                                              "\"): " + named.error().message());
    return buf;
}

// Allocates memory that can be exported as a dma-buf for `reqs`, dedicated to `image` or
// `buffer` when `dedicated`, preferring memory types with `preferred` properties.
Result<VkDeviceMemory> allocate_exportable(const detail::DeviceState& s, const detail::Requirements& reqs,
                                           VkMemoryPropertyFlags preferred, VkImage image, VkBuffer buffer,
                                           bool dedicated, const std::string& what) {
    auto type = detail::pick_memory_type(s, reqs.memory.memoryTypeBits, preferred);
    if (!type) return Error::library(Errc::unsupported, what + ": no memory type fits");
    VkMemoryDedicatedAllocateInfo dedicated_info{};
    dedicated_info.sType = VK_STRUCTURE_TYPE_MEMORY_DEDICATED_ALLOCATE_INFO;
    dedicated_info.image = image;
    dedicated_info.buffer = buffer;
    VkExportMemoryAllocateInfo export_info{};
    export_info.sType = VK_STRUCTURE_TYPE_EXPORT_MEMORY_ALLOCATE_INFO;
    export_info.pNext = dedicated ? &dedicated_info : nullptr;
    export_info.handleTypes = VK_EXTERNAL_MEMORY_HANDLE_TYPE_DMA_BUF_BIT_EXT;
    VkMemoryAllocateInfo alloc{};
    alloc.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO;
    alloc.pNext = &export_info;
    alloc.allocationSize = reqs.memory.size;
    alloc.memoryTypeIndex = *type;
    VkDeviceMemory memory = VK_NULL_HANDLE;
    if (VkResult r = s.vkAllocateMemory(s.device(), &alloc, nullptr, &memory); r != VK_SUCCESS)
        return detail::vk_error(r, what + ": vkAllocateMemory (" + std::to_string(alloc.allocationSize) + " bytes)");
    return memory;
}

}  // namespace

Result<ExportedImage> Device::export_image(const ImageRequest& request, const ImageOptions& options) const {
    if (!state_) return detail::moved_from("export image " + dmabridge::detail::describe_request(request), "Device");
    const auto& s = *state_;
    const std::string what = "export image on " + name() + ": " + dmabridge::detail::describe_request(request);
    if (auto ok = dmabridge::detail::check_image_request(request, "export image on " + name()); !ok) return ok.error();
    if (!has(Capability::export_memory | Capability::modifiers))
        return Error::library(Errc::unsupported, what + ": the device was not attached with dma-buf export and modifiers");
    // Everything that needs no device is checked before the first Vulkan call.
    auto resolved = detail::resolve_format(request.fourcc, options.format, what);
    if (!resolved) return resolved.error();
    const VkFormat format = *resolved;
    if (auto fits = check_extent_fits(format, request.width, request.height); !fits)
        return fits.error().with_context(what);
    auto support = modifier_support(request.fourcc, options);
    if (!support) return support.error().with_context(what);

    // The modifiers both wanted and exportable at this size, in the request's order.
    std::vector<std::uint64_t> exportable, chosen;
    bool dedicated_only = false;
    for (const auto& m : *support)
        if (m.exportable && request.width <= m.max_extent.width && request.height <= m.max_extent.height)
            exportable.push_back(m.modifier);
    // As everywhere in dmabridge, an empty modifier list means LINEAR only.
    const std::vector<std::uint64_t> wanted =
        request.modifiers.empty() ? std::vector<std::uint64_t>{modifier::linear} : request.modifiers;
    for (auto m : wanted)
        if (std::find(exportable.begin(), exportable.end(), m) != exportable.end()) chosen.push_back(m);
    if (chosen.empty())
        return Error::library(Errc::unsupported, what + ": none of the requested modifiers [" +
                                                     list_modifiers(wanted) +
                                                     "] can be exported for this usage; exportable: [" +
                                                     list_modifiers(exportable) + "]");
    // Modifiers go to the driver as a list; LINEAR through plain linear tiling (formats without
    // modifier support) is used only when nothing else was chosen.
    std::vector<std::uint64_t> explicit_mods;
    for (const auto& m : *support) {
        if (std::find(chosen.begin(), chosen.end(), m.modifier) == chosen.end()) continue;
        dedicated_only |= m.dedicated_only;
        if (!m.linear_tiling) explicit_mods.push_back(m.modifier);
    }
    const bool linear_tiling = explicit_mods.empty();

    VkImageDrmFormatModifierListCreateInfoEXT mod_list{};
    mod_list.sType = VK_STRUCTURE_TYPE_IMAGE_DRM_FORMAT_MODIFIER_LIST_CREATE_INFO_EXT;
    mod_list.drmFormatModifierCount = static_cast<std::uint32_t>(explicit_mods.size());
    mod_list.pDrmFormatModifiers = explicit_mods.data();
    ImageBuilder builder(state_);
    if (auto made = detail::create_dmabuf_image(s, builder, format, {request.width, request.height}, options.usage, 0,
                                                linear_tiling ? nullptr : &mod_list, what);
        !made)
        return made.error();
    const VkImage image = builder.image.handle();

    VkImageDrmFormatModifierPropertiesEXT mod_props{};
    mod_props.sType = VK_STRUCTURE_TYPE_IMAGE_DRM_FORMAT_MODIFIER_PROPERTIES_EXT;
    mod_props.drmFormatModifier = modifier::linear;
    if (!linear_tiling)
        if (VkResult r = s.vkGetImageDrmFormatModifierPropertiesEXT(s.device(), image, &mod_props); r != VK_SUCCESS)
            return detail::vk_error(r, what + ": vkGetImageDrmFormatModifierPropertiesEXT");
    builder.set_modifier(mod_props.drmFormatModifier);
    std::uint32_t planes = 0;
    for (const auto& m : *support)
        if (m.modifier == mod_props.drmFormatModifier) planes = m.plane_count;
    if (planes == 0 || planes > max_planes)
        return Error::library(Errc::unsupported, what + ": the driver chose modifier " +
                                                     modifier_to_string(mod_props.drmFormatModifier) +
                                                     " with an unusable plane count " + std::to_string(planes));

    const auto reqs = detail::image_requirements(s, image);
    const bool dedicated = dedicated_only || reqs.requires_dedicated || reqs.prefers_dedicated;

    auto memory_or = allocate_exportable(s, reqs, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT, image, VK_NULL_HANDLE, dedicated,
                                         what);
    if (!memory_or) return memory_or.error();
    const VkDeviceMemory memory = *memory_or;
    builder.add_memory(memory, reqs.memory.size);
    VkBindImageMemoryInfo bind{};
    bind.sType = VK_STRUCTURE_TYPE_BIND_IMAGE_MEMORY_INFO;
    bind.image = image;
    bind.memory = memory;
    if (VkResult r = s.vkBindImageMemory2(s.device(), 1, &bind); r != VK_SUCCESS)
        return detail::vk_error(r, what + ": vkBindImageMemory2");

    auto dmabuf = export_memory(s, memory, request.name, what);
    if (!dmabuf) return dmabuf.error();
    BufferDesc desc;
    desc.width = request.width;
    desc.height = request.height;
    desc.fourcc = request.fourcc;
    desc.modifier = mod_props.drmFormatModifier;
    for (std::uint32_t p = 0; p < planes; ++p) {
        VkImageSubresource sub{};
        sub.aspectMask = linear_tiling ? detail::format_plane_aspect(p, planes)
                                       : static_cast<VkImageAspectFlags>(memory_plane_aspect[p]);
        VkSubresourceLayout layout{};
        s.vkGetImageSubresourceLayout(s.device(), image, &sub, &layout);
        auto ref = p + 1 == planes ? Result<DmaBuf>(std::move(*dmabuf)) : dmabuf->dup();
        if (!ref) return ref.error().with_context(what);
        desc.planes.push_back({std::move(*ref), layout.offset, layout.rowPitch});
    }
    if (auto ok = desc.validate(); !ok) return ok.error().with_context(what + ": the driver's layout");
    return ExportedImage{builder.finish(), std::move(desc)};
}

Result<ExportedBuffer> Device::export_buffer(std::uint64_t size, VkBufferUsageFlags usage, const std::string& label) const {
    if (!state_) return detail::moved_from("export buffer of " + std::to_string(size) + " bytes", "Device");
    const auto& s = *state_;
    const std::string what = "export buffer of " + std::to_string(size) + " bytes on " + name();
    if (size == 0) return Error::library(Errc::invalid_argument, what + ": the size is zero");
    if (auto ok = check_dmabuf_name(label, what + ": name"); !ok) return ok.error();
    if (!has(Capability::export_memory))
        return Error::library(Errc::unsupported, what + ": the device was not attached with dma-buf export");
    const auto external = detail::query_buffer_support(s, usage);
    if (!external.exportable)
        return Error::library(Errc::unsupported, what + ": the device cannot export dma-buf memory for buffers of usage " +
                                                     std::to_string(usage) +
                                                     " (vkGetPhysicalDeviceExternalBufferProperties)");
    BufferBuilder builder(state_);
    if (auto made = detail::create_dmabuf_buffer(s, builder, size, usage, what); !made) return made.error();
    const VkBuffer buffer = builder.buffer.handle();
    const auto reqs = detail::buffer_requirements(s, buffer);
    auto memory_or = allocate_exportable(s, reqs, VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT, VK_NULL_HANDLE, buffer,
                                         reqs.requires_dedicated || external.dedicated_only, what);
    if (!memory_or) return memory_or.error();
    const VkDeviceMemory memory = *memory_or;
    builder.set_memory(memory);
    VkBindBufferMemoryInfo bind{};
    bind.sType = VK_STRUCTURE_TYPE_BIND_BUFFER_MEMORY_INFO;
    bind.buffer = buffer;
    bind.memory = memory;
    if (VkResult r = s.vkBindBufferMemory2(s.device(), 1, &bind); r != VK_SUCCESS)
        return detail::vk_error(r, what + ": vkBindBufferMemory2");
    auto dmabuf = export_memory(s, memory, label, what);
    if (!dmabuf) return dmabuf.error();
    return ExportedBuffer{builder.finish(), std::move(*dmabuf)};
}

}  // namespace dmabridge::vulkan
