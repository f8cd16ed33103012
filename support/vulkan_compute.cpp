// SPDX-License-Identifier: MIT
#include "vulkan_compute.hpp"

#include <optional>

namespace support {

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

}  // namespace support
