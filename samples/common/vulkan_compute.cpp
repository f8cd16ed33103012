// SPDX-License-Identifier: MIT
#include "vulkan_compute.hpp"

#include <optional>

namespace sample {

using dmabridge::Error;
using dmabridge::Result;

Error vk_failure(VkResult result, const std::string& what) {
    return Error(dmabridge::ErrorDomain::vulkan, static_cast<int>(result), what + ": VkResult " + std::to_string(result));
}

namespace {

template <typename Pfn>
bool load_device_proc(const dmabridge::vulkan::Context& context, const char* name, Pfn& out) {
    out = reinterpret_cast<Pfn>(context.device_proc(name));
    return out != nullptr;
}

}  // namespace

Result<DeviceFunctions> DeviceFunctions::load(const dmabridge::vulkan::Context& context) {
    DeviceFunctions f;
    const auto& handles = context.handles();
    f.device = handles.device;
    f.physical_device = handles.physical_device;
    f.GetPhysicalDeviceMemoryProperties = reinterpret_cast<PFN_vkGetPhysicalDeviceMemoryProperties>(
        handles.get_instance_proc_addr(handles.instance, "vkGetPhysicalDeviceMemoryProperties"));
    if (!f.GetPhysicalDeviceMemoryProperties)
        return Error::library(dmabridge::Errc::unsupported, "no vkGetPhysicalDeviceMemoryProperties");

    // The member is named after the entry point without its "vk", so the name is written once.
#define SAMPLE_LOAD(fn) \
    if (!load_device_proc(context, "vk" #fn, f.fn)) \
        return Error::library(dmabridge::Errc::unsupported, "the device has no vk" #fn);
    SAMPLE_LOAD(CreateShaderModule)
    SAMPLE_LOAD(DestroyShaderModule)
    SAMPLE_LOAD(CreateDescriptorSetLayout)
    SAMPLE_LOAD(DestroyDescriptorSetLayout)
    SAMPLE_LOAD(CreatePipelineLayout)
    SAMPLE_LOAD(DestroyPipelineLayout)
    SAMPLE_LOAD(CreateComputePipelines)
    SAMPLE_LOAD(DestroyPipeline)
    SAMPLE_LOAD(CreateDescriptorPool)
    SAMPLE_LOAD(DestroyDescriptorPool)
    SAMPLE_LOAD(AllocateDescriptorSets)
    SAMPLE_LOAD(UpdateDescriptorSets)
    SAMPLE_LOAD(CreateImageView)
    SAMPLE_LOAD(DestroyImageView)
    SAMPLE_LOAD(CreateBuffer)
    SAMPLE_LOAD(DestroyBuffer)
    SAMPLE_LOAD(GetBufferMemoryRequirements)
    SAMPLE_LOAD(AllocateMemory)
    SAMPLE_LOAD(FreeMemory)
    SAMPLE_LOAD(BindBufferMemory)
    SAMPLE_LOAD(MapMemory)
    SAMPLE_LOAD(CreateImage)
    SAMPLE_LOAD(DestroyImage)
    SAMPLE_LOAD(GetImageMemoryRequirements)
    SAMPLE_LOAD(BindImageMemory)
    SAMPLE_LOAD(CmdCopyImageToBuffer)
    SAMPLE_LOAD(CmdPipelineBarrier)
    SAMPLE_LOAD(CmdBindPipeline)
    SAMPLE_LOAD(CmdBindDescriptorSets)
    SAMPLE_LOAD(CmdPushConstants)
    SAMPLE_LOAD(CmdDispatch)
#undef SAMPLE_LOAD
    return f;
}

Result<ImageView> make_storage_view(const DeviceFunctions& vk, VkImage image, VkFormat format) {
    VkImageViewCreateInfo info{};
    info.sType = VK_STRUCTURE_TYPE_IMAGE_VIEW_CREATE_INFO;
    info.image = image;
    info.viewType = VK_IMAGE_VIEW_TYPE_2D;
    info.format = format;
    info.subresourceRange = {VK_IMAGE_ASPECT_COLOR_BIT, 0, 1, 0, 1};
    VkImageView view = VK_NULL_HANDLE;
    if (VkResult r = vk.CreateImageView(vk.device, &info, nullptr, &view); r != VK_SUCCESS)
        return vk_failure(r, "vkCreateImageView");
    return ImageView(vk.DestroyImageView, vk.device, view);
}

// --- ComputePipeline ---

namespace {

Result<DescriptorSetLayout> make_set_layout(const DeviceFunctions& vk, std::span<const VkDescriptorType> types) {
    std::vector<VkDescriptorSetLayoutBinding> bindings;
    for (std::uint32_t i = 0; i < types.size(); ++i)
        bindings.push_back({i, types[i], 1, VK_SHADER_STAGE_COMPUTE_BIT, nullptr});
    VkDescriptorSetLayoutCreateInfo info{};
    info.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO;
    info.bindingCount = static_cast<std::uint32_t>(bindings.size());
    info.pBindings = bindings.data();
    VkDescriptorSetLayout layout = VK_NULL_HANDLE;
    if (VkResult r = vk.CreateDescriptorSetLayout(vk.device, &info, nullptr, &layout); r != VK_SUCCESS)
        return vk_failure(r, "vkCreateDescriptorSetLayout");
    return DescriptorSetLayout(vk.DestroyDescriptorSetLayout, vk.device, layout);
}

Result<PipelineLayout> make_pipeline_layout(const DeviceFunctions& vk, VkDescriptorSetLayout set_layout,
                                            std::uint32_t push_constant_bytes) {
    const VkPushConstantRange push{VK_SHADER_STAGE_COMPUTE_BIT, 0, push_constant_bytes};
    VkPipelineLayoutCreateInfo info{};
    info.sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO;
    info.setLayoutCount = 1;
    info.pSetLayouts = &set_layout;
    info.pushConstantRangeCount = push_constant_bytes > 0 ? 1 : 0;
    info.pPushConstantRanges = &push;
    VkPipelineLayout layout = VK_NULL_HANDLE;
    if (VkResult r = vk.CreatePipelineLayout(vk.device, &info, nullptr, &layout); r != VK_SUCCESS)
        return vk_failure(r, "vkCreatePipelineLayout");
    return PipelineLayout(vk.DestroyPipelineLayout, vk.device, layout);
}

Result<Pipeline> make_pipeline(const DeviceFunctions& vk, const char* name, std::span<const std::uint32_t> spirv,
                               VkPipelineLayout layout) {
    VkShaderModuleCreateInfo module_info{};
    module_info.sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO;
    module_info.codeSize = spirv.size_bytes();
    module_info.pCode = spirv.data();
    VkShaderModule raw_module = VK_NULL_HANDLE;
    if (VkResult r = vk.CreateShaderModule(vk.device, &module_info, nullptr, &raw_module); r != VK_SUCCESS)
        return vk_failure(r, std::string("vkCreateShaderModule ") + name);
    // The pipeline keeps what it needs of the module: the module goes when this function returns.
    const ShaderModule module(vk.DestroyShaderModule, vk.device, raw_module);

    VkComputePipelineCreateInfo info{};
    info.sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO;
    info.stage.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO;
    info.stage.stage = VK_SHADER_STAGE_COMPUTE_BIT;
    info.stage.module = module.get();
    info.stage.pName = "main";
    info.layout = layout;
    VkPipeline pipeline = VK_NULL_HANDLE;
    if (VkResult r = vk.CreateComputePipelines(vk.device, VK_NULL_HANDLE, 1, &info, nullptr, &pipeline);
        r != VK_SUCCESS)
        return vk_failure(r, std::string("vkCreateComputePipelines ") + name);
    return Pipeline(vk.DestroyPipeline, vk.device, pipeline);
}

// A pool with exactly the descriptors of `set_count` sets of `types`.
Result<DescriptorPool> make_pool(const DeviceFunctions& vk, std::span<const VkDescriptorType> types,
                                 std::uint32_t set_count) {
    std::vector<VkDescriptorPoolSize> sizes;
    for (VkDescriptorType t : types) sizes.push_back({t, set_count});
    VkDescriptorPoolCreateInfo info{};
    info.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO;
    info.maxSets = set_count;
    info.poolSizeCount = static_cast<std::uint32_t>(sizes.size());
    info.pPoolSizes = sizes.data();
    VkDescriptorPool pool = VK_NULL_HANDLE;
    if (VkResult r = vk.CreateDescriptorPool(vk.device, &info, nullptr, &pool); r != VK_SUCCESS)
        return vk_failure(r, "vkCreateDescriptorPool");
    return DescriptorPool(vk.DestroyDescriptorPool, vk.device, pool);
}

}  // namespace

Result<ComputePipeline> ComputePipeline::create(const DeviceFunctions& vk, const char* name,
                                                std::span<const std::uint32_t> spirv,
                                                std::span<const VkDescriptorType> bindings,
                                                std::uint32_t push_constant_bytes, std::uint32_t set_count) {
    if (set_count == 0) return Error::library(dmabridge::Errc::invalid_argument, "a pipeline needs a descriptor set");
    ComputePipeline p;
    p.vk_ = vk;
    auto set_layout = make_set_layout(vk, bindings);
    if (!set_layout) return set_layout.error();
    p.set_layout_ = std::move(*set_layout);
    auto pipeline_layout = make_pipeline_layout(vk, p.set_layout_.get(), push_constant_bytes);
    if (!pipeline_layout) return pipeline_layout.error();
    p.pipeline_layout_ = std::move(*pipeline_layout);
    auto pipeline = make_pipeline(vk, name, spirv, p.pipeline_layout_.get());
    if (!pipeline) return pipeline.error();
    p.pipeline_ = std::move(*pipeline);
    auto pool = make_pool(vk, bindings, set_count);
    if (!pool) return pool.error();
    p.pool_ = std::move(*pool);

    const std::vector<VkDescriptorSetLayout> layouts(set_count, p.set_layout_.get());
    VkDescriptorSetAllocateInfo alloc{};
    alloc.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO;
    alloc.descriptorPool = p.pool_.get();
    alloc.descriptorSetCount = set_count;
    alloc.pSetLayouts = layouts.data();
    p.sets_.resize(set_count);
    if (VkResult r = vk.AllocateDescriptorSets(vk.device, &alloc, p.sets_.data()); r != VK_SUCCESS)
        return vk_failure(r, "vkAllocateDescriptorSets");
    return p;
}

void ComputePipeline::set_storage_image(std::uint32_t binding, VkImageView view, std::uint32_t set) const {
    const VkDescriptorImageInfo image{VK_NULL_HANDLE, view, VK_IMAGE_LAYOUT_GENERAL};
    VkWriteDescriptorSet write{};
    write.sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET;
    write.dstSet = sets_.at(set);
    write.dstBinding = binding;
    write.descriptorCount = 1;
    write.descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_IMAGE;
    write.pImageInfo = &image;
    vk_.UpdateDescriptorSets(vk_.device, 1, &write, 0, nullptr);
}

void ComputePipeline::set_storage_buffer(std::uint32_t binding, VkBuffer buffer, std::uint32_t set) const {
    const VkDescriptorBufferInfo info{buffer, 0, VK_WHOLE_SIZE};
    VkWriteDescriptorSet write{};
    write.sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET;
    write.dstSet = sets_.at(set);
    write.dstBinding = binding;
    write.descriptorCount = 1;
    write.descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
    write.pBufferInfo = &info;
    vk_.UpdateDescriptorSets(vk_.device, 1, &write, 0, nullptr);
}

void ComputePipeline::record_dispatch(VkCommandBuffer cmd, std::span<const std::byte> push_constants,
                                      std::uint32_t width, std::uint32_t height, std::uint32_t set) const {
    vk_.CmdBindPipeline(cmd, VK_PIPELINE_BIND_POINT_COMPUTE, pipeline_.get());
    vk_.CmdBindDescriptorSets(cmd, VK_PIPELINE_BIND_POINT_COMPUTE, pipeline_layout_.get(), 0, 1, &sets_.at(set), 0,
                             nullptr);
    if (!push_constants.empty())
        vk_.CmdPushConstants(cmd, pipeline_layout_.get(), VK_SHADER_STAGE_COMPUTE_BIT, 0,
                             static_cast<std::uint32_t>(push_constants.size()), push_constants.data());
    // The shaders return early outside the image, so rounding the groups up is safe.
    vk_.CmdDispatch(cmd, (width + workgroup_size - 1) / workgroup_size, (height + workgroup_size - 1) / workgroup_size,
                    1);
}

// --- HostBuffer ---

namespace {

// The first memory type in `allowed` with all of `wanted`, or nothing.
std::optional<std::uint32_t> find_memory_type(const DeviceFunctions& vk, std::uint32_t allowed,
                                              VkMemoryPropertyFlags wanted) {
    VkPhysicalDeviceMemoryProperties props{};
    vk.GetPhysicalDeviceMemoryProperties(vk.physical_device, &props);
    for (std::uint32_t i = 0; i < props.memoryTypeCount; ++i)
        if ((allowed & (1u << i)) && (props.memoryTypes[i].propertyFlags & wanted) == wanted) return i;
    return std::nullopt;
}

// Allocates memory for `reqs` with `wanted` properties.
Result<DeviceMemory> allocate(const DeviceFunctions& vk, const VkMemoryRequirements& reqs, VkMemoryPropertyFlags wanted,
                              const char* what) {
    const auto type = find_memory_type(vk, reqs.memoryTypeBits, wanted);
    if (!type)
        return Error::library(dmabridge::Errc::unsupported, std::string("no suitable memory type for ") + what + " of " +
                                                                std::to_string(reqs.size) + " bytes");
    VkMemoryAllocateInfo alloc{};
    alloc.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO;
    alloc.allocationSize = reqs.size;
    alloc.memoryTypeIndex = *type;
    VkDeviceMemory memory = VK_NULL_HANDLE;
    if (VkResult r = vk.AllocateMemory(vk.device, &alloc, nullptr, &memory); r != VK_SUCCESS)
        return vk_failure(r, "vkAllocateMemory " + std::to_string(reqs.size) + " bytes");
    return DeviceMemory(vk.FreeMemory, vk.device, memory);
}

}  // namespace

Result<HostBuffer> HostBuffer::create(const DeviceFunctions& vk, VkDeviceSize size, VkBufferUsageFlags usage) {
    HostBuffer b;
    VkBufferCreateInfo info{};
    info.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO;
    info.size = size;
    info.usage = usage;
    info.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
    VkBuffer buffer = VK_NULL_HANDLE;
    if (VkResult r = vk.CreateBuffer(vk.device, &info, nullptr, &buffer); r != VK_SUCCESS)
        return vk_failure(r, "vkCreateBuffer");
    b.buffer_ = BufferHandle(vk.DestroyBuffer, vk.device, buffer);

    VkMemoryRequirements reqs{};
    vk.GetBufferMemoryRequirements(vk.device, buffer, &reqs);
    // Coherent memory needs no flush or invalidate around the host's accesses.
    auto memory = allocate(vk, reqs, VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT,
                           "a host-visible buffer");
    if (!memory) return memory.error();
    b.memory_ = std::move(*memory);
    if (VkResult r = vk.BindBufferMemory(vk.device, buffer, b.memory_.get(), 0); r != VK_SUCCESS)
        return vk_failure(r, "vkBindBufferMemory");
    if (VkResult r = vk.MapMemory(vk.device, b.memory_.get(), 0, VK_WHOLE_SIZE, 0, &b.data_); r != VK_SUCCESS)
        return vk_failure(r, "vkMapMemory");
    return b;
}

Result<DeviceImage> DeviceImage::create(const DeviceFunctions& vk, VkFormat format, std::uint32_t width,
                                        std::uint32_t height, VkImageUsageFlags usage) {
    DeviceImage img;
    VkImageCreateInfo info{};
    info.sType = VK_STRUCTURE_TYPE_IMAGE_CREATE_INFO;
    info.imageType = VK_IMAGE_TYPE_2D;
    info.format = format;
    info.extent = {width, height, 1};
    info.mipLevels = 1;
    info.arrayLayers = 1;
    info.samples = VK_SAMPLE_COUNT_1_BIT;
    info.tiling = VK_IMAGE_TILING_OPTIMAL;
    info.usage = usage;
    info.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
    info.initialLayout = VK_IMAGE_LAYOUT_UNDEFINED;
    VkImage image = VK_NULL_HANDLE;
    if (VkResult r = vk.CreateImage(vk.device, &info, nullptr, &image); r != VK_SUCCESS)
        return vk_failure(r, "vkCreateImage " + std::to_string(width) + "x" + std::to_string(height));
    img.image_ = ImageHandle(vk.DestroyImage, vk.device, image);
    VkMemoryRequirements reqs{};
    vk.GetImageMemoryRequirements(vk.device, image, &reqs);
    auto memory = allocate(vk, reqs, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT, "an image");
    if (!memory) return memory.error();
    img.memory_ = std::move(*memory);
    if (VkResult r = vk.BindImageMemory(vk.device, image, img.memory_.get(), 0); r != VK_SUCCESS)
        return vk_failure(r, "vkBindImageMemory");
    auto view = make_storage_view(vk, image, format);
    if (!view) return view.error();
    img.view_ = std::move(*view);
    return img;
}

}  // namespace sample
