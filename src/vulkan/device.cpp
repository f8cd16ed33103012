// SPDX-License-Identifier: MIT
// Attaching to an application's device: extension requirements, entry points, capabilities,
// and what the device can do with each format and modifier.
#include <dmabridge/format/format.hpp>
#include <dmabridge/vulkan/device.hpp>
#include <dmabridge/vulkan/format.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include <fcntl.h>

#include "vulkan/device_state.hpp"

namespace dmabridge::vulkan {
namespace detail {

const char* vk_result_name(VkResult r) noexcept {
    switch (r) {
#define DMABRIDGE_CASE(x) case x: return #x;
        DMABRIDGE_CASE(VK_SUCCESS)
        DMABRIDGE_CASE(VK_NOT_READY)
        DMABRIDGE_CASE(VK_TIMEOUT)
        DMABRIDGE_CASE(VK_INCOMPLETE)
        DMABRIDGE_CASE(VK_ERROR_OUT_OF_HOST_MEMORY)
        DMABRIDGE_CASE(VK_ERROR_OUT_OF_DEVICE_MEMORY)
        DMABRIDGE_CASE(VK_ERROR_INITIALIZATION_FAILED)
        DMABRIDGE_CASE(VK_ERROR_DEVICE_LOST)
        DMABRIDGE_CASE(VK_ERROR_MEMORY_MAP_FAILED)
        DMABRIDGE_CASE(VK_ERROR_LAYER_NOT_PRESENT)
        DMABRIDGE_CASE(VK_ERROR_EXTENSION_NOT_PRESENT)
        DMABRIDGE_CASE(VK_ERROR_FEATURE_NOT_PRESENT)
        DMABRIDGE_CASE(VK_ERROR_INCOMPATIBLE_DRIVER)
        DMABRIDGE_CASE(VK_ERROR_TOO_MANY_OBJECTS)
        DMABRIDGE_CASE(VK_ERROR_FORMAT_NOT_SUPPORTED)
        DMABRIDGE_CASE(VK_ERROR_FRAGMENTED_POOL)
        DMABRIDGE_CASE(VK_ERROR_UNKNOWN)
        DMABRIDGE_CASE(VK_ERROR_OUT_OF_POOL_MEMORY)
        DMABRIDGE_CASE(VK_ERROR_INVALID_EXTERNAL_HANDLE)
        DMABRIDGE_CASE(VK_ERROR_FRAGMENTATION)
        DMABRIDGE_CASE(VK_ERROR_INVALID_OPAQUE_CAPTURE_ADDRESS)
        DMABRIDGE_CASE(VK_ERROR_INVALID_DRM_FORMAT_MODIFIER_PLANE_LAYOUT_EXT)
#undef DMABRIDGE_CASE
    default: return "VkResult(unknown)";
    }
}

Error vk_error(VkResult result, const std::string& context) {
    return Error(ErrorDomain::vulkan, static_cast<int>(result), context + ": " + vk_result_name(result));
}

Error moved_from(const std::string& operation, const char* type) {
    return Error::library(Errc::empty_object, operation + ": the " + type + " is empty (moved from)");
}

Result<VkFormat> resolve_format(std::uint32_t fourcc, VkFormat override_format, const std::string& what) {
    if (override_format == VK_FORMAT_UNDEFINED) {
        const VkFormat format = to_vk_format(fourcc);
        if (format == VK_FORMAT_UNDEFINED)
            return Error::library(Errc::unknown_format, what + ": Vulkan has no format for " + fourcc_to_string(fourcc));
        return format;
    }
    // An override re-reads the same bytes: its texel blocks must be the fourcc's, or the
    // explicit row pitch would not cover a row and the driver would read past the dma-buf.
    if (auto ok = check_format_matches(override_format, fourcc); !ok)
        return ok.error().with_context(what + ": ImageOptions::format");
    return override_format;
}

bool query_dmabuf_support(const DeviceState& s, VkFormat format, VkImageUsageFlags usage, const std::uint64_t* modifier,
                          VkImageCreateFlags flags, ModifierSupport& support) {
    VkPhysicalDeviceImageDrmFormatModifierInfoEXT mod_info{};
    mod_info.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_IMAGE_DRM_FORMAT_MODIFIER_INFO_EXT;
    mod_info.drmFormatModifier = modifier ? *modifier : 0;
    mod_info.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
    VkPhysicalDeviceExternalImageFormatInfo ext_info{};
    ext_info.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_EXTERNAL_IMAGE_FORMAT_INFO;
    ext_info.pNext = modifier ? &mod_info : nullptr;
    ext_info.handleType = VK_EXTERNAL_MEMORY_HANDLE_TYPE_DMA_BUF_BIT_EXT;
    VkPhysicalDeviceImageFormatInfo2 info{};
    info.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_IMAGE_FORMAT_INFO_2;
    info.pNext = &ext_info;
    info.format = format;
    info.type = VK_IMAGE_TYPE_2D;
    info.tiling = modifier ? VK_IMAGE_TILING_DRM_FORMAT_MODIFIER_EXT : VK_IMAGE_TILING_LINEAR;
    info.usage = usage;
    info.flags = flags;
    VkExternalImageFormatProperties ext_props{};
    ext_props.sType = VK_STRUCTURE_TYPE_EXTERNAL_IMAGE_FORMAT_PROPERTIES;
    VkImageFormatProperties2 props{};
    props.sType = VK_STRUCTURE_TYPE_IMAGE_FORMAT_PROPERTIES_2;
    props.pNext = &ext_props;
    if (s.vkGetPhysicalDeviceImageFormatProperties2(s.handles.physical_device, &info, &props) != VK_SUCCESS) return false;
    const auto features = ext_props.externalMemoryProperties.externalMemoryFeatures;
    support.importable = (features & VK_EXTERNAL_MEMORY_FEATURE_IMPORTABLE_BIT) != 0;
    support.exportable = (features & VK_EXTERNAL_MEMORY_FEATURE_EXPORTABLE_BIT) != 0;
    support.dedicated_only = (features & VK_EXTERNAL_MEMORY_FEATURE_DEDICATED_ONLY_BIT) != 0;
    support.max_extent = props.imageFormatProperties.maxExtent;
    return true;
}

BufferSupport query_buffer_support(const DeviceState& s, VkBufferUsageFlags usage) {
    VkPhysicalDeviceExternalBufferInfo info{};
    info.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_EXTERNAL_BUFFER_INFO;
    info.usage = usage;
    info.handleType = VK_EXTERNAL_MEMORY_HANDLE_TYPE_DMA_BUF_BIT_EXT;
    VkExternalBufferProperties props{};
    props.sType = VK_STRUCTURE_TYPE_EXTERNAL_BUFFER_PROPERTIES;
    s.vkGetPhysicalDeviceExternalBufferProperties(s.handles.physical_device, &info, &props);
    const auto features = props.externalMemoryProperties.externalMemoryFeatures;
    return {(features & VK_EXTERNAL_MEMORY_FEATURE_IMPORTABLE_BIT) != 0,
            (features & VK_EXTERNAL_MEMORY_FEATURE_EXPORTABLE_BIT) != 0,
            (features & VK_EXTERNAL_MEMORY_FEATURE_DEDICATED_ONLY_BIT) != 0};
}

Result<UniqueFd> adopt_driver_fd(int fd, const std::string& what) {
    UniqueFd owned(fd);
    if (!owned) return Error::library(Errc::invalid_argument, what + ": the driver returned no fd");
    if (::fcntl(owned.get(), F_SETFD, FD_CLOEXEC) != 0) return Error::from_errno(errno, what + ": set FD_CLOEXEC");
    return owned;
}

std::uint64_t timeout_ns(Timeout timeout) noexcept {
    const auto ms = timeout.count();
    constexpr std::uint64_t limit_ms = UINT64_MAX / 1000000u;
    if (ms < 0 || static_cast<std::uint64_t>(ms) > limit_ms) return UINT64_MAX;
    return static_cast<std::uint64_t>(ms) * 1000000u;
}

}  // namespace detail

namespace {

struct ExtensionRow {
    Capability capability;
    const char* name;
    std::uint32_t core_since;  // 0: never promoted
};

// Which extension each capability needs; adding a requirement is adding a row.
constexpr ExtensionRow extension_rows[] = {
    {Capability::import_memory, VK_KHR_EXTERNAL_MEMORY_FD_EXTENSION_NAME, 0},
    {Capability::import_memory, VK_EXT_EXTERNAL_MEMORY_DMA_BUF_EXTENSION_NAME, 0},
    {Capability::export_memory, VK_KHR_EXTERNAL_MEMORY_FD_EXTENSION_NAME, 0},
    {Capability::export_memory, VK_EXT_EXTERNAL_MEMORY_DMA_BUF_EXTENSION_NAME, 0},
    {Capability::modifiers, VK_EXT_IMAGE_DRM_FORMAT_MODIFIER_EXTENSION_NAME, 0},
    {Capability::modifiers, VK_KHR_IMAGE_FORMAT_LIST_EXTENSION_NAME, VK_API_VERSION_1_2},
    {Capability::sync_fd, VK_KHR_EXTERNAL_SEMAPHORE_FD_EXTENSION_NAME, 0},
    {Capability::foreign_queue, VK_EXT_QUEUE_FAMILY_FOREIGN_EXTENSION_NAME, 0},
    {Capability::drm_nodes, VK_EXT_PHYSICAL_DEVICE_DRM_EXTENSION_NAME, 0},
};

bool needed(const ExtensionRow& row, std::uint32_t api_version) {
    return row.core_since == 0 || VK_API_VERSION_MINOR(api_version) < VK_API_VERSION_MINOR(row.core_since);
}

template <typename T>
T load(PFN_vkVoidFunction f) {
    return reinterpret_cast<T>(f);
}

}  // namespace

const char* result_name(VkResult result) noexcept { return detail::vk_result_name(result); }

std::vector<const char*> required_device_extensions(Capability caps, std::uint32_t api_version) {
    std::vector<const char*> out;
    for (const auto& row : extension_rows) {
        if (!any(caps & row.capability) || !needed(row, api_version)) continue;
        if (std::none_of(out.begin(), out.end(), [&](const char* n) { return std::strcmp(n, row.name) == 0; }))
            out.push_back(row.name);
    }
    return out;
}

Result<Device> Device::attach(const DeviceHandles& h, Capability needs) {
    if (!h.instance || !h.physical_device || !h.device || !h.get_instance_proc_addr)
        return Error::library(Errc::invalid_argument,
                              "attach to Vulkan device: instance, physical device, device and "
                              "vkGetInstanceProcAddr are all needed");
    if (VK_API_VERSION_MAJOR(h.api_version) != 1 || VK_API_VERSION_MINOR(h.api_version) < 1)
        return Error::library(Errc::invalid_argument, "attach to Vulkan device: dmabridge needs Vulkan 1.1 or later");
    auto state = std::make_shared<detail::DeviceState>();
    state->handles = h;
    auto gipa = h.get_instance_proc_addr;
#define DMABRIDGE_LOAD_INSTANCE(fn)                                                                  \
    state->fn = load<PFN_##fn>(gipa(h.instance, #fn));                                               \
    if (!state->fn) return Error::library(Errc::unsupported, "attach to Vulkan device: " #fn " is missing");
    DMABRIDGE_VK_INSTANCE_FUNCTIONS(DMABRIDGE_LOAD_INSTANCE)
#undef DMABRIDGE_LOAD_INSTANCE
    auto gdpa = state->vkGetDeviceProcAddr;
#define DMABRIDGE_LOAD_DEVICE(fn)                                                                    \
    state->fn = load<PFN_##fn>(gdpa(h.device, #fn));                                                 \
    if (!state->fn) return Error::library(Errc::unsupported, "attach to Vulkan device: " #fn " is missing");
    DMABRIDGE_VK_DEVICE_FUNCTIONS(DMABRIDGE_LOAD_DEVICE)
#undef DMABRIDGE_LOAD_DEVICE
#define DMABRIDGE_LOAD_OPTIONAL(fn) state->fn = load<PFN_##fn>(gdpa(h.device, #fn));
    DMABRIDGE_VK_EXTENSION_FUNCTIONS(DMABRIDGE_LOAD_OPTIONAL)
#undef DMABRIDGE_LOAD_OPTIONAL
    state->vkWaitSemaphores = load<PFN_vkWaitSemaphores>(gdpa(h.device, "vkWaitSemaphores"));
    if (!state->vkWaitSemaphores)
        state->vkWaitSemaphores = load<PFN_vkWaitSemaphores>(gdpa(h.device, "vkWaitSemaphoresKHR"));
    state->vkGetSemaphoreCounterValue = load<PFN_vkGetSemaphoreCounterValue>(gdpa(h.device, "vkGetSemaphoreCounterValue"));
    if (!state->vkGetSemaphoreCounterValue)
        state->vkGetSemaphoreCounterValue =
            load<PFN_vkGetSemaphoreCounterValue>(gdpa(h.device, "vkGetSemaphoreCounterValueKHR"));

    VkPhysicalDeviceProperties props{};
    state->vkGetPhysicalDeviceProperties(h.physical_device, &props);
    state->name = props.deviceName;
    if (VK_API_VERSION_MINOR(props.apiVersion) < 1 && VK_API_VERSION_MAJOR(props.apiVersion) == 1)
        return Error::library(Errc::unsupported, "attach to Vulkan device " + state->name + ": it supports only Vulkan 1.0");
    state->vkGetPhysicalDeviceMemoryProperties(h.physical_device, &state->memory_properties);

    // Capabilities from what the application enabled.
    auto enabled = [&](const char* name) {
        return std::find(h.enabled_extensions.begin(), h.enabled_extensions.end(), name) != h.enabled_extensions.end();
    };
    std::uint32_t caps = static_cast<std::uint32_t>(Capability::all);
    for (const auto& row : extension_rows)
        if (needed(row, h.api_version) && !enabled(row.name)) caps &= ~static_cast<std::uint32_t>(row.capability);
    state->capabilities = static_cast<Capability>(caps);

    if (any(needs) && (state->capabilities & needs) != needs) {
        std::uint32_t count = 0;
        state->vkEnumerateDeviceExtensionProperties(h.physical_device, nullptr, &count, nullptr);
        std::vector<VkExtensionProperties> offered(count);
        state->vkEnumerateDeviceExtensionProperties(h.physical_device, nullptr, &count, offered.data());
        std::string missing;
        for (const char* name : required_device_extensions(needs, h.api_version)) {
            if (enabled(name)) continue;
            bool has = std::any_of(offered.begin(), offered.end(),
                                   [&](const VkExtensionProperties& e) { return std::strcmp(e.extensionName, name) == 0; });
            missing += std::string(missing.empty() ? "" : "; ") + name +
                       (has ? " (offered by the device: enable it at vkCreateDevice)" : " (not supported by the device)");
        }
        return Error::library(Errc::unsupported, "attach to Vulkan device " + state->name + ": missing " + missing);
    }
    return Device(std::move(state));
}

VkDevice Device::handle() const noexcept { return state_ ? state_->handles.device : VK_NULL_HANDLE; }
VkPhysicalDevice Device::physical_device() const noexcept {
    return state_ ? state_->handles.physical_device : VK_NULL_HANDLE;
}
std::uint32_t Device::queue_family_index() const noexcept { return state_ ? state_->handles.queue_family_index : 0; }
Capability Device::capabilities() const noexcept { return state_ ? state_->capabilities : Capability::none; }
const std::string& Device::name() const noexcept {
    static const std::string empty_name = "(moved-from Device)";
    return state_ ? state_->name : empty_name;
}

std::optional<DrmNodeIds> Device::drm_nodes() const {
    if (!state_ || !has(Capability::drm_nodes)) return std::nullopt;
    VkPhysicalDeviceDrmPropertiesEXT drm{};
    drm.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRM_PROPERTIES_EXT;
    VkPhysicalDeviceProperties2 props{};
    props.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2;
    props.pNext = &drm;
    state_->vkGetPhysicalDeviceProperties2(state_->handles.physical_device, &props);
    return DrmNodeIds{drm.hasPrimary == VK_TRUE, drm.hasRender == VK_TRUE, drm.primaryMajor, drm.primaryMinor,
                      drm.renderMajor,         drm.renderMinor};
}

Result<std::vector<ModifierSupport>> Device::modifier_support(std::uint32_t fourcc, const ImageOptions& options) const {
    if (!state_) return detail::moved_from("query modifiers of " + fourcc_to_string(fourcc), "Device");
    auto resolved = detail::resolve_format(fourcc, options.format, "query modifiers of " + fourcc_to_string(fourcc));
    if (!resolved) return resolved.error();
    const VkFormat format = *resolved;
    if (!has(Capability::modifiers))
        return Error::library(Errc::unsupported, "query modifiers: " VK_EXT_IMAGE_DRM_FORMAT_MODIFIER_EXTENSION_NAME
                                                 " is not enabled on " + name());
    const auto& s = *state_;
    VkDrmFormatModifierPropertiesListEXT list{};
    list.sType = VK_STRUCTURE_TYPE_DRM_FORMAT_MODIFIER_PROPERTIES_LIST_EXT;
    VkFormatProperties2 fp{};
    fp.sType = VK_STRUCTURE_TYPE_FORMAT_PROPERTIES_2;
    fp.pNext = &list;
    s.vkGetPhysicalDeviceFormatProperties2(s.handles.physical_device, format, &fp);
    std::vector<VkDrmFormatModifierPropertiesEXT> mods(list.drmFormatModifierCount);
    list.pDrmFormatModifierProperties = mods.data();
    s.vkGetPhysicalDeviceFormatProperties2(s.handles.physical_device, format, &fp);
    mods.resize(list.drmFormatModifierCount);

    std::vector<ModifierSupport> out;
    for (const auto& m : mods) {
        ModifierSupport support;
        support.modifier = m.drmFormatModifier;
        support.plane_count = m.drmFormatModifierPlaneCount;
        support.features = m.drmFormatModifierTilingFeatures;
        detail::query_dmabuf_support(s, format, options.usage, &m.drmFormatModifier, 0, support);
        // Disjoint images need the DISJOINT feature, and support asked with the flag they will
        // be created with: a device may refuse DISJOINT images of a modifier it otherwise takes.
        if ((m.drmFormatModifierTilingFeatures & VK_FORMAT_FEATURE_DISJOINT_BIT) != 0) {
            ModifierSupport split;
            if (detail::query_dmabuf_support(s, format, options.usage, &m.drmFormatModifier,
                                             VK_IMAGE_CREATE_DISJOINT_BIT, split) &&
                split.importable) {
                support.disjoint = true;
                support.disjoint_dedicated_only = split.dedicated_only;
            }
        }
        out.push_back(support);
    }
    // Without DRM-modifier support for this format and usage, LINEAR may still be shared
    // through plain linear tiling.
    auto linear = std::find_if(out.begin(), out.end(), [](const ModifierSupport& m) { return m.modifier == modifier::linear; });
    if (linear == out.end() || !(linear->importable || linear->exportable)) {
        ModifierSupport support;
        support.modifier = modifier::linear;
        const FormatInfo* fmt = find_format(fourcc);
        support.plane_count = fmt ? fmt->plane_count : 1;
        support.linear_tiling = true;
        if (detail::query_dmabuf_support(s, format, options.usage, nullptr, 0, support)) {
            if (linear != out.end()) *linear = support;
            else out.push_back(support);
        }
    }
    return out;
}

namespace {
FormatSet formats_where(const Device& device, const ImageOptions& options, bool ModifierSupport::*flag) {
    FormatSet set;
    for (std::uint32_t code : {fourcc::XRGB8888, fourcc::ARGB8888, fourcc::XBGR8888, fourcc::ABGR8888,
                               fourcc::XRGB2101010, fourcc::ARGB2101010, fourcc::XBGR2101010, fourcc::ABGR2101010,
                               fourcc::RGB888, fourcc::BGR888, fourcc::RGB565, fourcc::R8, fourcc::R16, fourcc::GR88,
                               fourcc::NV12, fourcc::NV16, fourcc::P010, fourcc::YUV420, fourcc::YUYV, fourcc::UYVY}) {
        ImageOptions o = options;
        o.format = VK_FORMAT_UNDEFINED;
        auto support = device.modifier_support(code, o);
        if (!support) continue;
        for (const auto& m : *support)
            if (m.*flag) set.add(code, m.modifier);
    }
    return set;
}
}  // namespace

FormatSet Device::importable_formats(const ImageOptions& options) const {
    if (!state_) return {};
    return formats_where(*this, options, &ModifierSupport::importable);
}

FormatSet Device::exportable_formats(const ImageOptions& options) const {
    if (!state_) return {};
    return formats_where(*this, options, &ModifierSupport::exportable);
}

}  // namespace dmabridge::vulkan
