// SPDX-License-Identifier: MIT
#include <dmabridge/vulkan/frame_converter.hpp>

#include <algorithm>
#include <array>
#include <mutex>
#include <string>
#include <vector>

#include <dmabridge/vulkan/context.hpp>
#include <dmabridge_shaders/camera_to_rgba.hpp>

#include "base/sys.hpp"
#include "vulkan/device_state.hpp"

namespace dmabridge::vulkan {

namespace {

std::string n(std::uint64_t v) { return std::to_string(v); }

constexpr std::uint32_t max_sets = 64;
constexpr std::size_t max_uses_kept = 8;

// Converters destroyed while work still used them: never destroyed (see ~FrameConverter), not even
// at exit, when the application's VkDevice may be gone: allocated once and never freed.
std::mutex& leaked_mutex() {
    static auto* const m = new std::mutex;
    return *m;
}
std::vector<std::shared_ptr<FrameConverter::State>>& leaked() {
    static auto* const l = new std::vector<std::shared_ptr<FrameConverter::State>>;
    return *l;
}

}  // namespace

struct FrameConverter::State {
    std::shared_ptr<const detail::DeviceState> device;
    Timeout destroy_timeout{};
    // VkPhysicalDeviceLimits::maxStorageBufferRange: a descriptor may not bind more (lavapipe
    // 2^31, many GPUs 2^27 = 128 MiB, the spec's minimum 2^27).
    std::uint64_t max_range = 0;
    VkShaderModule shader = VK_NULL_HANDLE;
    VkDescriptorSetLayout set_layout = VK_NULL_HANDLE;
    VkPipelineLayout pipeline_layout = VK_NULL_HANDLE;
    VkPipeline pipeline = VK_NULL_HANDLE;
    VkDescriptorPool pool = VK_NULL_HANDLE;  // frees the sets with it
    struct Set {
        VkDescriptorSet handle = VK_NULL_HANDLE;
        FrameSource plane0, plane1;
        FrameTarget target;
        bool bound = false;
        std::vector<std::shared_ptr<const Completion>> uses;
    };
    std::vector<Set> sets;

    ~State() {
        const auto& s = *device;
        const VkDevice d = s.device();
        if (pipeline) s.vkDestroyPipeline(d, pipeline, nullptr);
        if (pipeline_layout) s.vkDestroyPipelineLayout(d, pipeline_layout, nullptr);
        if (pool) s.vkDestroyDescriptorPool(d, pool, nullptr);
        if (set_layout) s.vkDestroyDescriptorSetLayout(d, set_layout, nullptr);
        if (shader) s.vkDestroyShaderModule(d, shader, nullptr);
    }

    Status check_set(const char* op, std::uint32_t set) const {
        if (set >= sets.size())
            return Error::library(Errc::invalid_argument, std::string("frame converter: ") + op + ": set " + n(set) +
                                                              " >= " + n(sets.size()) + " sets");
        return {};
    }
};

FrameConverter::FrameConverter() noexcept = default;
FrameConverter::FrameConverter(std::shared_ptr<State> state) noexcept : state_(std::move(state)) {}
FrameConverter::FrameConverter(FrameConverter&& other) noexcept : state_(std::move(other.state_)) {}
FrameConverter& FrameConverter::operator=(FrameConverter&& other) noexcept {
    if (this != &other) {
        release();
        state_ = std::move(other.state_);
    }
    return *this;
}
FrameConverter::~FrameConverter() { release(); }

void FrameConverter::release() noexcept {
    if (!state_) return;
    auto state = std::move(state_);
    // The GPU may still run recorded conversions: their pipeline and descriptor sets stay until
    // each recorded use completed, within one deadline for them all.
    const auto start = std::chrono::steady_clock::now();
    const bool unlimited = state->destroy_timeout < Timeout{0};
    for (auto& set : state->sets)
        for (const auto& use : set.uses) {
            Timeout left = Timeout{-1};
            if (!unlimited) {
                const auto spent = std::chrono::duration_cast<Timeout>(std::chrono::steady_clock::now() - start);
                left = std::max(Timeout{0}, state->destroy_timeout - spent);
            }
            auto waited = use->wait(left);
            if (!waited) continue;  // the wait itself failed (a lost device): nothing more runs
            if (*waited != WaitStatus::ready) {
                dmabridge::detail::log_message(LogLevel::error,
                                    "frame converter destroyed while " + use->describe() + " still uses it after " +
                                        n(static_cast<std::uint64_t>(state->destroy_timeout.count())) +
                                        " ms: leaking its pipeline and descriptor sets rather than freeing what the "
                                        "GPU may still use");
                std::lock_guard lock(leaked_mutex());
                leaked().push_back(std::move(state));
                return;
            }
        }
}

Result<FrameConverter> FrameConverter::create(const Device& device, const FrameConverterOptions& options) {
    if (!device.valid()) return detail::moved_from("create frame converter", "Device");
    if (options.frames_in_flight == 0 || options.frames_in_flight > max_sets)
        return Error::library(Errc::invalid_argument, "create frame converter: frames_in_flight " +
                                                          n(options.frames_in_flight) + " outside 1.." + n(max_sets));
    auto st = std::make_shared<State>();
    st->device = device.state();
    st->destroy_timeout = options.destroy_timeout;
    const auto& s = *st->device;
    const VkDevice d = s.device();
    VkPhysicalDeviceProperties properties{};
    s.vkGetPhysicalDeviceProperties(s.handles.physical_device, &properties);
    st->max_range = properties.limits.maxStorageBufferRange;

    VkShaderModuleCreateInfo module_info{};

    module_info.sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO;
    module_info.codeSize = sizeof(shaders::camera_to_rgba);
    module_info.pCode = shaders::camera_to_rgba;
    if (VkResult r = s.vkCreateShaderModule(d, &module_info, nullptr, &st->shader); r != VK_SUCCESS)
        return detail::vk_error(r, "create frame converter: vkCreateShaderModule");

    // Binding 0: the target image; 1 and 2: the planes (shaders/camera_to_rgba.comp).
    std::array<VkDescriptorSetLayoutBinding, 3> bindings{};
    for (std::uint32_t b = 0; b < bindings.size(); ++b) {
        bindings[b].binding = b;
        bindings[b].descriptorType = b == 0 ? VK_DESCRIPTOR_TYPE_STORAGE_IMAGE : VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
        bindings[b].descriptorCount = 1;
        bindings[b].stageFlags = VK_SHADER_STAGE_COMPUTE_BIT;
    }
    VkDescriptorSetLayoutCreateInfo set_info{};
    set_info.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO;
    set_info.bindingCount = static_cast<std::uint32_t>(bindings.size());
    set_info.pBindings = bindings.data();
    if (VkResult r = s.vkCreateDescriptorSetLayout(d, &set_info, nullptr, &st->set_layout); r != VK_SUCCESS)
        return detail::vk_error(r, "create frame converter: vkCreateDescriptorSetLayout");

    const VkPushConstantRange push{VK_SHADER_STAGE_COMPUTE_BIT, 0, sizeof(FrameLayout)};
    VkPipelineLayoutCreateInfo layout_info{};
    layout_info.sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO;
    layout_info.setLayoutCount = 1;
    layout_info.pSetLayouts = &st->set_layout;
    layout_info.pushConstantRangeCount = 1;
    layout_info.pPushConstantRanges = &push;
    if (VkResult r = s.vkCreatePipelineLayout(d, &layout_info, nullptr, &st->pipeline_layout); r != VK_SUCCESS)
        return detail::vk_error(r, "create frame converter: vkCreatePipelineLayout");

    VkComputePipelineCreateInfo pipeline_info{};

    pipeline_info.sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO;
    pipeline_info.stage.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO;
    pipeline_info.stage.stage = VK_SHADER_STAGE_COMPUTE_BIT;
    pipeline_info.stage.module = st->shader;
    pipeline_info.stage.pName = "main";
    pipeline_info.layout = st->pipeline_layout;
    // Specialization constant 0: bgra_bytes (shaders/camera_to_rgba.comp), a 32-bit VkBool32.
    const VkBool32 bgra_bytes = options.bgra_bytes ? VK_TRUE : VK_FALSE;
    const VkSpecializationMapEntry bgra_entry{0, 0, sizeof(VkBool32)};
    VkSpecializationInfo specialization{};
    specialization.mapEntryCount = 1;
    specialization.pMapEntries = &bgra_entry;
    specialization.dataSize = sizeof(bgra_bytes);
    specialization.pData = &bgra_bytes;
    pipeline_info.stage.pSpecializationInfo = &specialization;
    if (VkResult r = s.vkCreateComputePipelines(d, VK_NULL_HANDLE, 1, &pipeline_info, nullptr, &st->pipeline);
        r != VK_SUCCESS)
        return detail::vk_error(r, "create frame converter: vkCreateComputePipelines");

    const std::uint32_t count = options.frames_in_flight;
    const std::array<VkDescriptorPoolSize, 2> sizes{{{VK_DESCRIPTOR_TYPE_STORAGE_IMAGE, count},
                                                     {VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, 2 * count}}};
    VkDescriptorPoolCreateInfo pool_info{};
    pool_info.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO;
    pool_info.maxSets = count;
    pool_info.poolSizeCount = static_cast<std::uint32_t>(sizes.size());
    pool_info.pPoolSizes = sizes.data();
    if (VkResult r = s.vkCreateDescriptorPool(d, &pool_info, nullptr, &st->pool); r != VK_SUCCESS)
        return detail::vk_error(r, "create frame converter: vkCreateDescriptorPool");
    std::vector<VkDescriptorSetLayout> layouts(count, st->set_layout);
    std::vector<VkDescriptorSet> handles(count);
    VkDescriptorSetAllocateInfo alloc{};
    alloc.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO;
    alloc.descriptorPool = st->pool;
    alloc.descriptorSetCount = count;
    alloc.pSetLayouts = layouts.data();
    if (VkResult r = s.vkAllocateDescriptorSets(d, &alloc, handles.data()); r != VK_SUCCESS)
        return detail::vk_error(r, "create frame converter: vkAllocateDescriptorSets (" + n(count) + " sets)");
    st->sets.resize(count);
    for (std::uint32_t i = 0; i < count; ++i) st->sets[i].handle = handles[i];
    return FrameConverter(std::move(st));
}

Result<bool> FrameConverter::bind(std::uint32_t set, FrameSource plane0, FrameSource plane1, const FrameTarget& target) {
    if (!state_) return detail::moved_from("bind frame converter set", "FrameConverter");
    State& st = *state_;
    if (auto ok = st.check_set("bind", set); !ok) return ok.error();
    // Built only for an error: a frame loop binds every frame, and most binds change nothing.
    const auto what = [set] { return "frame converter: bind set " + n(set); };
    if (plane0.buffer == VK_NULL_HANDLE || plane1.buffer == VK_NULL_HANDLE)
        return Error::library(Errc::invalid_argument,
                              what() + ": plane " + (plane0.buffer == VK_NULL_HANDLE ? "0" : "1") + " has no buffer");
    for (const auto& [index, plane] : {std::pair{0, &plane0}, std::pair{1, &plane1}})
        if (plane->size == 0 || plane->size > st.max_range)
            return Error::library(Errc::invalid_argument,
                                  what() + ": plane " + n(static_cast<std::uint64_t>(index)) + " binds " + n(plane->size) +
                                      " bytes; a storage buffer descriptor takes 1.." + n(st.max_range) +
                                      " (maxStorageBufferRange)");
    if (target.image == VK_NULL_HANDLE || target.view == VK_NULL_HANDLE || target.extent.width == 0 ||
        target.extent.height == 0)
        return Error::library(Errc::invalid_argument, what() + ": target image " + n(target.extent.width) + "x" +
                                                          n(target.extent.height) + " without " +
                                                          (target.image == VK_NULL_HANDLE ? "an image" : "a view") +
                                                          " or without pixels");
    auto& s = st.sets[set];
    if (s.bound && s.plane0.buffer == plane0.buffer && s.plane0.size == plane0.size &&
        s.plane1.buffer == plane1.buffer && s.plane1.size == plane1.size && s.target.image == target.image &&
        s.target.view == target.view && s.target.extent.width == target.extent.width &&
        s.target.extent.height == target.extent.height)
        return false;
    std::erase_if(s.uses, [](const auto& use) { return use->done(); });
    if (!s.uses.empty())
        return Error::library(Errc::invalid_argument,
                              what() + ": the set is still in use by " + s.uses.front()->describe());
    const VkDescriptorImageInfo image{VK_NULL_HANDLE, target.view, VK_IMAGE_LAYOUT_GENERAL};
    // The range is the size the caller gave, which record() checks the layout against: a size
    // that claims more than the buffer has is then the validation layer's error, not a read past
    // the end.
    const std::array<VkDescriptorBufferInfo, 2> buffers{{{plane0.buffer, 0, plane0.size},
                                                         {plane1.buffer, 0, plane1.size}}};
    std::array<VkWriteDescriptorSet, 3> writes{};
    for (std::uint32_t b = 0; b < writes.size(); ++b) {
        writes[b].sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET;
        writes[b].dstSet = s.handle;
        writes[b].dstBinding = b;
        writes[b].descriptorCount = 1;
        writes[b].descriptorType = b == 0 ? VK_DESCRIPTOR_TYPE_STORAGE_IMAGE : VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
        if (b == 0)
            writes[b].pImageInfo = &image;
        else
            writes[b].pBufferInfo = &buffers[b - 1];
    }
    st.device->vkUpdateDescriptorSets(st.device->device(), static_cast<std::uint32_t>(writes.size()), writes.data(), 0,
                                      nullptr);
    s.plane0 = plane0;
    s.plane1 = plane1;
    s.target = target;
    s.bound = true;
    return true;
}

Status FrameConverter::record(VkCommandBuffer cmd, std::uint32_t set, const FrameLayout& layout) const {
    return record(cmd, set, layout, {});
}

Status FrameConverter::record(VkCommandBuffer cmd, std::uint32_t set, const FrameLayout& layout,
                              std::span<const VkBufferMemoryBarrier> acquire) const {
    if (!state_) return detail::moved_from("record frame conversion", "FrameConverter");
    const State& st = *state_;
    if (auto ok = st.check_set("record", set); !ok) return ok;
    const std::string what = "frame converter: record set " + n(set);
    if (cmd == VK_NULL_HANDLE) return Error::library(Errc::invalid_argument, what + ": no command buffer");
    const auto& s = st.sets[set];
    if (!s.bound) return Error::library(Errc::invalid_argument, what + ": the set is not bound");
    // The shader trusts the layout: every byte it reads must lie in the bound buffers. It reads
    // whole 32-bit words, so the word holding the last byte must fit too: the sizes are taken
    // rounded down to a multiple of 4.
    if (auto ok = check_frame_fits(layout, s.plane0.size & ~std::uint64_t{3}, s.plane1.size & ~std::uint64_t{3}); !ok)
        return ok.error().with_context(what + ": " + to_string(layout.format) + " " + n(layout.width) + "x" +
                                       n(layout.height));
    if (layout.width > s.target.extent.width || layout.height > s.target.extent.height)
        return Error::library(Errc::invalid_argument, what + ": frame " + n(layout.width) + "x" + n(layout.height) +
                                                          " larger than the target " + n(s.target.extent.width) + "x" +
                                                          n(s.target.extent.height));
    const auto& d = *st.device;
    // The old contents are overwritten, so the old layout is UNDEFINED: the commands do not
    // depend on what ran before and can be submitted again and again. The barrier orders these
    // writes after every earlier use of the target in this queue (conversions, copies, a
    // fragment shader sampling it), whatever stage it was.
    VkImageMemoryBarrier before{};
    before.sType = VK_STRUCTURE_TYPE_IMAGE_MEMORY_BARRIER;
    before.srcAccessMask = VK_ACCESS_MEMORY_WRITE_BIT;  // reads need only the execution dependency
    before.dstAccessMask = VK_ACCESS_SHADER_WRITE_BIT;
    before.oldLayout = VK_IMAGE_LAYOUT_UNDEFINED;
    before.newLayout = VK_IMAGE_LAYOUT_GENERAL;
    before.srcQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED;
    before.dstQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED;
    before.image = s.target.image;
    before.subresourceRange = {VK_IMAGE_ASPECT_COLOR_BIT, 0, 1, 0, 1};
    d.vkCmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_ALL_COMMANDS_BIT, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, 0, 0, nullptr,
                           static_cast<std::uint32_t>(acquire.size()), acquire.data(), 1, &before);
    d.vkCmdBindPipeline(cmd, VK_PIPELINE_BIND_POINT_COMPUTE, st.pipeline);
    d.vkCmdBindDescriptorSets(cmd, VK_PIPELINE_BIND_POINT_COMPUTE, st.pipeline_layout, 0, 1, &s.handle, 0, nullptr);
    d.vkCmdPushConstants(cmd, st.pipeline_layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, sizeof(FrameLayout), &layout);
    d.vkCmdDispatch(cmd, (layout.width + workgroup_size - 1) / workgroup_size,
                    (layout.height + workgroup_size - 1) / workgroup_size, 1);
    return {};
}

Status FrameConverter::set_last_use(std::uint32_t set, std::shared_ptr<const Completion> done) {
    if (!state_) return detail::moved_from("record a frame converter use", "FrameConverter");
    if (auto ok = state_->check_set("set_last_use", set); !ok) return ok;
    if (!done)
        return Error::library(Errc::empty_object, "frame converter: set_last_use of set " + n(set) + ": no completion");
    auto& uses = state_->sets[set].uses;
    // Completed uses are dropped only once a few have gathered: asking each one costs an API
    // call (vkGetFenceStatus), which a frame loop need not pay every frame.
    if (uses.size() >= max_uses_kept) std::erase_if(uses, [](const auto& use) { return use->done(); });
    uses.push_back(std::move(done));
    return {};
}

Status FrameConverter::set_last_use(std::uint32_t set, const Submission& work) {
    return set_last_use(set, work.completion());
}

std::uint32_t FrameConverter::frames_in_flight() const noexcept {
    return state_ ? static_cast<std::uint32_t>(state_->sets.size()) : 0;
}

}  // namespace dmabridge::vulkan
