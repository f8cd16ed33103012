// SPDX-License-Identifier: MIT
// A self-made instance and device for programs without their own: samples, tests and tools.
#include <dmabridge/vulkan/context.hpp>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <utility>
#include <optional>
#include <string>
#include <vector>

#include <dlfcn.h>

#include "vulkan/device_state.hpp"

namespace dmabridge::vulkan {

struct Context::Impl {
    void* loader = nullptr;
    PFN_vkGetInstanceProcAddr gipa = nullptr;
    VkInstance instance = VK_NULL_HANDLE;
    VkDebugUtilsMessengerEXT messenger = VK_NULL_HANDLE;
    VkDevice device = VK_NULL_HANDLE;
    VkQueue queue = VK_NULL_HANDLE;
    VkCommandPool pool = VK_NULL_HANDLE;
    DeviceHandles handles;
    std::optional<Device> attached;
    // Guards the queue and the command pool. Recursive: a failed submit_async releases its
    // Submission while holding it.
    mutable std::recursive_mutex submit_mutex;
    mutable std::mutex messages_mutex;  // guards messages (the layer calls back during submits)
    std::vector<std::string> messages;
    std::function<void(const std::string&)> on_message_hook;

    PFN_vkGetDeviceProcAddr gdpa = nullptr;
    PFN_vkDestroyInstance destroy_instance = nullptr;
    PFN_vkDestroyDebugUtilsMessengerEXT destroy_messenger = nullptr;
    PFN_vkDestroyDevice destroy_device = nullptr;
    PFN_vkDeviceWaitIdle wait_idle = nullptr;
    PFN_vkDestroyCommandPool destroy_pool = nullptr;
    // What submits and Submissions call, looked up once: vkGetDeviceProcAddr is a string lookup,
    // which costs more than the call itself under emulation.
    PFN_vkAllocateCommandBuffers allocate_command_buffers = nullptr;
    PFN_vkFreeCommandBuffers free_command_buffers = nullptr;
    PFN_vkBeginCommandBuffer begin_command_buffer = nullptr;
    PFN_vkEndCommandBuffer end_command_buffer = nullptr;
    PFN_vkQueueSubmit queue_submit = nullptr;
    PFN_vkCreateFence create_fence = nullptr;
    PFN_vkDestroyFence destroy_fence = nullptr;
    PFN_vkGetFenceStatus get_fence_status = nullptr;
    PFN_vkWaitForFences wait_for_fences = nullptr;
    PFN_vkResetFences reset_fences = nullptr;
    // Fences of completed Submissions, reset, for the next submits (guarded by submit_mutex):
    // a frame loop then creates no fence per frame. A frame's fence comes back only once every
    // holder let go: a FrameConverter and an ImportCache keep up to 8 uses per set and per import
    // before pruning, so fences return in batches of about that many per slot; 16 ran dry and a
    // camera pipeline made a fence for about one submit in three (on a kernel driver that is a
    // DRM syncobj ioctl each, and one to destroy it). Idle, 64 reset fences cost next to nothing.
    mutable std::vector<VkFence> free_fences;
    static constexpr std::size_t max_free_fences = 64;

    ~Impl() {
        if (device) {
            wait_idle(device);
            for (VkFence f : free_fences) destroy_fence(device, f, nullptr);
            attached.reset();
            if (pool) destroy_pool(device, pool, nullptr);
            destroy_device(device, nullptr);
        }
        if (messenger) destroy_messenger(instance, messenger, nullptr);
        if (instance) destroy_instance(instance, nullptr);
        if (loader) dlclose(loader);
    }

    template <typename T>
    T instance_fn(const char* name) const {
        return reinterpret_cast<T>(gipa(instance, name));
    }
    template <typename T>
    T device_fn(const char* name) const {
        return reinterpret_cast<T>(gdpa(device, name));
    }

    static VKAPI_ATTR VkBool32 VKAPI_CALL on_message(VkDebugUtilsMessageSeverityFlagBitsEXT,
                                                     VkDebugUtilsMessageTypeFlagsEXT,
                                                     const VkDebugUtilsMessengerCallbackDataEXT* data, void* user) {
        auto* self = static_cast<Impl*>(user);
        const std::string text = data && data->pMessage ? data->pMessage : "(no message)";
        if (self->on_message_hook) self->on_message_hook(text);
        std::lock_guard lock(self->messages_mutex);
        self->messages.push_back(text);
        return VK_FALSE;
    }
};

namespace {

bool has_extension(const std::vector<VkExtensionProperties>& list, const char* name) {
    return std::any_of(list.begin(), list.end(),
                       [&](const VkExtensionProperties& e) { return std::strcmp(e.extensionName, name) == 0; });
}

}  // namespace

Result<Context> Context::create(const ContextOptions& options) {
    auto impl = std::make_unique<Impl>();
    impl->on_message_hook = options.on_validation_message;
    impl->loader = dlopen("libvulkan.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!impl->loader) return Error::library(Errc::not_found, std::string("open the Vulkan loader: ") + dlerror());
    impl->gipa = reinterpret_cast<PFN_vkGetInstanceProcAddr>(dlsym(impl->loader, "vkGetInstanceProcAddr"));
    if (!impl->gipa) return Error::library(Errc::not_found, "the Vulkan loader has no vkGetInstanceProcAddr");

    auto create_instance = impl->instance_fn<PFN_vkCreateInstance>("vkCreateInstance");
    VkApplicationInfo app{};
    app.sType = VK_STRUCTURE_TYPE_APPLICATION_INFO;
    app.pApplicationName = "dmabridge";
    app.pEngineName = "dmabridge";
    app.apiVersion = std::max(options.api_version, min_api_version);
    std::vector<const char*> layers, instance_exts;
    VkDebugUtilsMessengerCreateInfoEXT messenger_info{};
    messenger_info.sType = VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT;
    messenger_info.messageSeverity =
        VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT;
    messenger_info.messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT |
                                 VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT |
                                 VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT;
    messenger_info.pfnUserCallback = &Impl::on_message;
    messenger_info.pUserData = impl.get();
    if (options.validation) {
        layers.push_back("VK_LAYER_KHRONOS_validation");
        instance_exts.push_back(VK_EXT_DEBUG_UTILS_EXTENSION_NAME);
    }
    VkInstanceCreateInfo info{};
    info.sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO;
    info.pNext = options.validation ? &messenger_info : nullptr;  // also covers vkCreateInstance itself
    info.pApplicationInfo = &app;
    info.enabledLayerCount = static_cast<std::uint32_t>(layers.size());
    info.ppEnabledLayerNames = layers.data();
    info.enabledExtensionCount = static_cast<std::uint32_t>(instance_exts.size());
    info.ppEnabledExtensionNames = instance_exts.data();
    if (VkResult r = create_instance(&info, nullptr, &impl->instance); r != VK_SUCCESS)
        return detail::vk_error(r, options.validation ? "vkCreateInstance with VK_LAYER_KHRONOS_validation"
                                                      : "vkCreateInstance");
    impl->destroy_instance = impl->instance_fn<PFN_vkDestroyInstance>("vkDestroyInstance");
    if (options.validation) {
        auto create_messenger = impl->instance_fn<PFN_vkCreateDebugUtilsMessengerEXT>("vkCreateDebugUtilsMessengerEXT");
        impl->destroy_messenger = impl->instance_fn<PFN_vkDestroyDebugUtilsMessengerEXT>("vkDestroyDebugUtilsMessengerEXT");
        if (VkResult r = create_messenger(impl->instance, &messenger_info, nullptr, &impl->messenger); r != VK_SUCCESS)
            return detail::vk_error(r, "vkCreateDebugUtilsMessengerEXT");
    }

    auto enumerate = impl->instance_fn<PFN_vkEnumeratePhysicalDevices>("vkEnumeratePhysicalDevices");
    auto props_fn = impl->instance_fn<PFN_vkGetPhysicalDeviceProperties>("vkGetPhysicalDeviceProperties");
    auto ext_fn = impl->instance_fn<PFN_vkEnumerateDeviceExtensionProperties>("vkEnumerateDeviceExtensionProperties");
    auto queues_fn = impl->instance_fn<PFN_vkGetPhysicalDeviceQueueFamilyProperties>("vkGetPhysicalDeviceQueueFamilyProperties");
    std::uint32_t count = 0;
    enumerate(impl->instance, &count, nullptr);
    std::vector<VkPhysicalDevice> physical(count);
    enumerate(impl->instance, &count, physical.data());

    std::string rejected;
    for (VkPhysicalDevice pd : physical) {
        VkPhysicalDeviceProperties props{};
        props_fn(pd, &props);
        const std::string name = props.deviceName;
        if (!options.device_name.empty() && name.find(options.device_name) == std::string::npos) {
            rejected += "; " + name + " does not match \"" + options.device_name + "\"";
            continue;
        }
        std::uint32_t n = 0;
        ext_fn(pd, nullptr, &n, nullptr);
        std::vector<VkExtensionProperties> offered(n);
        ext_fn(pd, nullptr, &n, offered.data());
        const std::uint32_t api = std::min(app.apiVersion, props.apiVersion);
        std::string missing;
        for (const char* e : required_device_extensions(options.required, api))
            if (!has_extension(offered, e)) missing += std::string(missing.empty() ? "" : ", ") + e;
        if (!missing.empty()) {
            rejected += "; " + name + " lacks " + missing;
            continue;
        }
        std::vector<const char*> enable = required_device_extensions(options.required, api);
        for (const char* e : required_device_extensions(options.optional, api))
            if (has_extension(offered, e) && std::none_of(enable.begin(), enable.end(), [&](const char* x) { return std::strcmp(x, e) == 0; }))
                enable.push_back(e);

        std::uint32_t families = 0;
        queues_fn(pd, &families, nullptr);
        std::vector<VkQueueFamilyProperties> family_props(families);
        queues_fn(pd, &families, family_props.data());
        std::uint32_t family = 0;
        while (family < families && !(family_props[family].queueFlags & (VK_QUEUE_GRAPHICS_BIT | VK_QUEUE_COMPUTE_BIT))) ++family;
        if (family == families) {
            rejected += "; " + name + " has no graphics or compute queue";
            continue;
        }
        const float priority = 1.0f;
        VkDeviceQueueCreateInfo queue_info{};
        queue_info.sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO;
        queue_info.queueFamilyIndex = family;
        queue_info.queueCount = 1;
        queue_info.pQueuePriorities = &priority;
        VkPhysicalDeviceSamplerYcbcrConversionFeatures ycbcr{};
        ycbcr.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SAMPLER_YCBCR_CONVERSION_FEATURES;
        ycbcr.samplerYcbcrConversion = VK_TRUE;  // multi-planar (NV12) images
        VkDeviceCreateInfo device_info{};
        device_info.sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO;
        device_info.pNext = &ycbcr;
        device_info.queueCreateInfoCount = 1;
        device_info.pQueueCreateInfos = &queue_info;
        device_info.enabledExtensionCount = static_cast<std::uint32_t>(enable.size());
        device_info.ppEnabledExtensionNames = enable.data();
        auto create_device = impl->instance_fn<PFN_vkCreateDevice>("vkCreateDevice");
        if (VkResult r = create_device(pd, &device_info, nullptr, &impl->device); r != VK_SUCCESS)
            return detail::vk_error(r, "vkCreateDevice on " + name);
        impl->gdpa = impl->instance_fn<PFN_vkGetDeviceProcAddr>("vkGetDeviceProcAddr");
        impl->destroy_device = impl->device_fn<PFN_vkDestroyDevice>("vkDestroyDevice");
        impl->wait_idle = impl->device_fn<PFN_vkDeviceWaitIdle>("vkDeviceWaitIdle");
        impl->destroy_pool = impl->device_fn<PFN_vkDestroyCommandPool>("vkDestroyCommandPool");
        impl->allocate_command_buffers = impl->device_fn<PFN_vkAllocateCommandBuffers>("vkAllocateCommandBuffers");
        impl->free_command_buffers = impl->device_fn<PFN_vkFreeCommandBuffers>("vkFreeCommandBuffers");
        impl->begin_command_buffer = impl->device_fn<PFN_vkBeginCommandBuffer>("vkBeginCommandBuffer");
        impl->end_command_buffer = impl->device_fn<PFN_vkEndCommandBuffer>("vkEndCommandBuffer");
        impl->queue_submit = impl->device_fn<PFN_vkQueueSubmit>("vkQueueSubmit");
        impl->create_fence = impl->device_fn<PFN_vkCreateFence>("vkCreateFence");
        impl->destroy_fence = impl->device_fn<PFN_vkDestroyFence>("vkDestroyFence");
        impl->get_fence_status = impl->device_fn<PFN_vkGetFenceStatus>("vkGetFenceStatus");
        impl->wait_for_fences = impl->device_fn<PFN_vkWaitForFences>("vkWaitForFences");
        impl->reset_fences = impl->device_fn<PFN_vkResetFences>("vkResetFences");
        impl->device_fn<PFN_vkGetDeviceQueue>("vkGetDeviceQueue")(impl->device, family, 0, &impl->queue);
        VkCommandPoolCreateInfo pool_info{};
        pool_info.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO;
        pool_info.flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT;
        pool_info.queueFamilyIndex = family;
        if (VkResult r = impl->device_fn<PFN_vkCreateCommandPool>("vkCreateCommandPool")(impl->device, &pool_info,
                                                                                         nullptr, &impl->pool);
            r != VK_SUCCESS)
            return detail::vk_error(r, "vkCreateCommandPool");

        impl->handles.instance = impl->instance;
        impl->handles.physical_device = pd;
        impl->handles.device = impl->device;
        impl->handles.queue_family_index = family;
        impl->handles.get_instance_proc_addr = impl->gipa;
        impl->handles.api_version = api;
        for (const char* e : enable) impl->handles.enabled_extensions.emplace_back(e);
        auto attached = Device::attach(impl->handles, options.required);
        if (!attached) return attached.error();
        impl->attached = std::move(*attached);
        return Context(std::move(impl));
    }
    return Error::library(Errc::not_found, "no Vulkan device can share dma-bufs" +
                                               (rejected.empty() ? std::string(" (no devices)") : rejected));
}

Result<std::vector<PhysicalDeviceInfo>> list_physical_devices() {
    // A Context without a device: the loader and an instance are all that enumeration needs.
    auto impl = std::make_unique<Context::Impl>();
    impl->loader = dlopen("libvulkan.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!impl->loader) return Error::library(Errc::not_found, std::string("open the Vulkan loader: ") + dlerror());
    impl->gipa = reinterpret_cast<PFN_vkGetInstanceProcAddr>(dlsym(impl->loader, "vkGetInstanceProcAddr"));
    if (!impl->gipa) return Error::library(Errc::not_found, "the Vulkan loader has no vkGetInstanceProcAddr");
    VkApplicationInfo app{};
    app.sType = VK_STRUCTURE_TYPE_APPLICATION_INFO;
    app.pApplicationName = "dmabridge";
    app.apiVersion = VK_API_VERSION_1_3;
    VkInstanceCreateInfo info{};
    info.sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO;
    info.pApplicationInfo = &app;
    if (VkResult r = impl->instance_fn<PFN_vkCreateInstance>("vkCreateInstance")(&info, nullptr, &impl->instance);
        r != VK_SUCCESS)
        return detail::vk_error(r, "vkCreateInstance");
    impl->destroy_instance = impl->instance_fn<PFN_vkDestroyInstance>("vkDestroyInstance");
    auto enumerate = impl->instance_fn<PFN_vkEnumeratePhysicalDevices>("vkEnumeratePhysicalDevices");
    auto props2 = impl->instance_fn<PFN_vkGetPhysicalDeviceProperties2>("vkGetPhysicalDeviceProperties2");
    auto ext_fn = impl->instance_fn<PFN_vkEnumerateDeviceExtensionProperties>("vkEnumerateDeviceExtensionProperties");
    std::uint32_t count = 0;
    enumerate(impl->instance, &count, nullptr);
    std::vector<VkPhysicalDevice> devices(count);
    enumerate(impl->instance, &count, devices.data());
    std::vector<PhysicalDeviceInfo> out;
    for (VkPhysicalDevice pd : devices) {
        VkPhysicalDeviceDriverProperties driver{};
        driver.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES;
        VkPhysicalDeviceProperties2 props{};
        props.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2;
        props.pNext = &driver;
        props2(pd, &props);
        PhysicalDeviceInfo d;
        d.name = props.properties.deviceName;
        d.driver = driver.driverName;
        d.driver_info = driver.driverInfo;
        d.api_version = props.properties.apiVersion;
        std::uint32_t n = 0;
        ext_fn(pd, nullptr, &n, nullptr);
        std::vector<VkExtensionProperties> offered(n);
        ext_fn(pd, nullptr, &n, offered.data());
        std::uint32_t caps = 0;
        for (std::uint32_t bit = 1; bit < static_cast<std::uint32_t>(Capability::all); bit <<= 1) {
            const auto cap = static_cast<Capability>(bit);
            bool all_there = true;
            for (const char* e : required_device_extensions(cap, d.api_version)) all_there &= has_extension(offered, e);
            if (all_there) caps |= bit;
        }
        d.offered = static_cast<Capability>(caps);
        out.push_back(std::move(d));
    }
    return out;
}

Context::Context(std::unique_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}
Context::Context(Context&&) noexcept = default;
Context& Context::operator=(Context&&) noexcept = default;
Context::~Context() = default;

const Device& Context::device() const noexcept {
    static const Device empty;
    return impl_ && impl_->attached ? *impl_->attached : empty;
}
const DeviceHandles& Context::handles() const noexcept {
    static const DeviceHandles empty;
    return impl_ ? impl_->handles : empty;
}
VkQueue Context::queue() const noexcept { return impl_ ? impl_->queue : VK_NULL_HANDLE; }
PFN_vkVoidFunction Context::device_proc(const char* name) const {
    return impl_ ? impl_->gdpa(impl_->device, name) : nullptr;
}

Result<Submission> Context::submit_async(const std::function<void(VkCommandBuffer)>& record, VkSemaphore wait,
                                         VkPipelineStageFlags wait_stage, VkSemaphore signal) const {
    if (!impl_) return detail::moved_from("submit", "Context");
    return submit_async(record, SubmitSemaphores{{wait}, {wait_stage}, {signal}});
}

namespace {

// A command buffer from the context's pool, begun with `flags`, recorded and ended. The caller
// holds the submit mutex (the pool is not thread-safe).
Result<VkCommandBuffer> record_into_new(const Context::Impl& d, VkCommandBufferUsageFlags flags,
                                        const std::function<void(VkCommandBuffer)>& record) {
    VkCommandBufferAllocateInfo alloc{};
    alloc.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO;
    alloc.commandPool = d.pool;
    alloc.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
    alloc.commandBufferCount = 1;
    VkCommandBuffer cmd = VK_NULL_HANDLE;
    if (VkResult r = d.allocate_command_buffers(d.device, &alloc, &cmd); r != VK_SUCCESS)
        return detail::vk_error(r, "vkAllocateCommandBuffers");
    VkCommandBufferBeginInfo begin{};
    begin.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO;
    begin.flags = flags;
    d.begin_command_buffer(cmd, &begin);
    record(cmd);
    if (VkResult r = d.end_command_buffer(cmd); r != VK_SUCCESS) {
        d.free_command_buffers(d.device, d.pool, 1, &cmd);
        return detail::vk_error(r, "vkEndCommandBuffer");
    }
    return cmd;
}

}  // namespace

Result<Submission> Context::submit_async(const std::function<void(VkCommandBuffer)>& record,
                                         const SubmitSemaphores& semaphores) const {
    if (!impl_) return detail::moved_from("submit", "Context");
    auto& d = *impl_;
    std::lock_guard lock(d.submit_mutex);
    auto cmd = record_into_new(d, VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT, record);
    if (!cmd) return cmd.error();
    return submit_command_buffer(*cmd, true, semaphores);
}

Result<RecordedCommands> Context::record(const std::function<void(VkCommandBuffer)>& record) const {
    if (!impl_) return detail::moved_from("record commands", "Context");
    auto& d = *impl_;
    std::lock_guard lock(d.submit_mutex);
    auto cmd = record_into_new(d, 0, record);
    if (!cmd) return cmd.error();
    RecordedCommands out;
    out.context_ = impl_.get();
    out.cmd_ = *cmd;
    return out;
}

Result<Submission> Context::submit_async(const RecordedCommands& commands, const SubmitSemaphores& semaphores) const {
    if (!impl_) return detail::moved_from("submit", "Context");
    if (commands.context_ != impl_.get() || !commands.cmd_)
        return Error::library(Errc::invalid_argument, "submit: the commands were not recorded by this context");
    std::lock_guard lock(impl_->submit_mutex);
    return submit_command_buffer(commands.cmd_, false, semaphores);
}

Result<Submission> Context::submit_command_buffer(VkCommandBuffer cmd, bool owns,
                                                  const SubmitSemaphores& semaphores) const {
    if (!impl_) return detail::moved_from("submit", "Context");
    auto& d = *impl_;
    // The non-null semaphores; kept in the thread's own buffers so a frame loop allocates nothing.
    thread_local std::vector<VkSemaphore> waits, signals;
    thread_local std::vector<VkPipelineStageFlags> stages;
    waits.clear();
    signals.clear();
    stages.clear();
    for (std::size_t i = 0; i < semaphores.wait.size(); ++i) {
        if (!semaphores.wait[i]) continue;
        waits.push_back(semaphores.wait[i]);
        stages.push_back(i < semaphores.wait_stages.size() ? semaphores.wait_stages[i]
                                                           : VkPipelineStageFlags{VK_PIPELINE_STAGE_ALL_COMMANDS_BIT});
    }
    for (VkSemaphore sem : semaphores.signal)
        if (sem) signals.push_back(sem);
    Submission sub;
    sub.context_ = impl_.get();
    if (owns) sub.cmd_ = cmd;  // freed with the Submission, also on the failures below
    VkFence fence = VK_NULL_HANDLE;
    if (!d.free_fences.empty()) {
        fence = d.free_fences.back();
        d.free_fences.pop_back();
    } else {
        VkFenceCreateInfo fence_info{};
        fence_info.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO;
        if (VkResult r = d.create_fence(d.device, &fence_info, nullptr, &fence); r != VK_SUCCESS)
            return detail::vk_error(r, "vkCreateFence");
    }
    VkSubmitInfo submit{};
    submit.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO;
    submit.waitSemaphoreCount = static_cast<std::uint32_t>(waits.size());
    submit.pWaitSemaphores = waits.data();
    submit.pWaitDstStageMask = stages.data();
    submit.commandBufferCount = 1;
    submit.pCommandBuffers = &cmd;
    submit.signalSemaphoreCount = static_cast<std::uint32_t>(signals.size());
    submit.pSignalSemaphores = signals.data();
    if (VkResult r = d.queue_submit(d.queue, 1, &submit, fence); r != VK_SUCCESS) {
        // Not submitted: nothing will signal the fence, so nobody may wait for it.
        d.destroy_fence(d.device, fence, nullptr);
        return detail::vk_error(r, "vkQueueSubmit");
    }
    sub.fence_ = std::make_shared<Submission::SharedFence>(impl_.get(), fence);
    return sub;
}

RecordedCommands::RecordedCommands(RecordedCommands&& o) noexcept
    : context_(std::exchange(o.context_, nullptr)), cmd_(std::exchange(o.cmd_, VK_NULL_HANDLE)) {}

RecordedCommands& RecordedCommands::operator=(RecordedCommands&& o) noexcept {
    if (this != &o) {
        release();
        context_ = std::exchange(o.context_, nullptr);
        cmd_ = std::exchange(o.cmd_, VK_NULL_HANDLE);
    }
    return *this;
}

RecordedCommands::~RecordedCommands() { release(); }

void RecordedCommands::release() noexcept {
    if (context_ && cmd_) {
        auto& d = *static_cast<const Context::Impl*>(context_);
        std::lock_guard lock(d.submit_mutex);
        d.free_command_buffers(d.device, d.pool, 1, &cmd_);
    }
    context_ = nullptr;
    cmd_ = VK_NULL_HANDLE;
}

Status Context::submit(const std::function<void(VkCommandBuffer)>& record, VkSemaphore wait,
                       VkPipelineStageFlags wait_stage, VkSemaphore signal) const {
    auto sub = submit_async(record, wait, wait_stage, signal);
    if (!sub) return sub.error();
    auto done = sub->wait();
    if (!done) return done.error();
    return {};
}

// The fence of a submitted batch, shared by its Submission and the completions made from it.
// The last owner returns it, reset, to the Context's pool; by then the work has completed
// (whoever held it waited for it, or it was seen done).
struct Submission::SharedFence final : Completion {
    SharedFence(const Context::Impl* context, VkFence f) noexcept : d(*context), fence(f) {}
    ~SharedFence() override {
        // Every holder waits or has seen the fence signalled before letting go; this wait is for
        // the case where none did (a completion dropped unwaited) and returns at once otherwise.
        d.wait_for_fences(d.device, 1, &fence, VK_TRUE, UINT64_MAX);
        std::lock_guard lock(d.submit_mutex);  // the pool is shared with other submits
        if (d.free_fences.size() < Context::Impl::max_free_fences && d.reset_fences(d.device, 1, &fence) == VK_SUCCESS)
            d.free_fences.push_back(fence);
        else
            d.destroy_fence(d.device, fence, nullptr);
    }
    bool done() const override {
        // Anything but VK_NOT_READY (signalled, or the device lost) means nothing runs any more.
        return d.get_fence_status(d.device, fence) != VK_NOT_READY;
    }
    Result<WaitStatus> wait(Timeout timeout) const override {
        // Saturated: Timeout::max() and other huge values wait, they never wrap into a short wait.
        VkResult r = d.wait_for_fences(d.device, 1, &fence, VK_TRUE, detail::timeout_ns(timeout));
        if (r == VK_TIMEOUT) return WaitStatus::timed_out;
        if (r != VK_SUCCESS) return detail::vk_error(r, "wait for submission");
        return WaitStatus::ready;
    }
    std::string describe() const override {
        char text[64];
        std::snprintf(text, sizeof text, "submission fence 0x%llx",
                      static_cast<unsigned long long>(reinterpret_cast<std::uintptr_t>(fence)));
        return text;
    }

    const Context::Impl& d;
    VkFence fence;
};

Submission::Submission(Submission&& o) noexcept
    : context_(std::exchange(o.context_, nullptr)), fence_(std::move(o.fence_)),
      cmd_(std::exchange(o.cmd_, VK_NULL_HANDLE)) {}

Submission& Submission::operator=(Submission&& o) noexcept {
    if (this != &o) {
        release();
        context_ = std::exchange(o.context_, nullptr);
        fence_ = std::move(o.fence_);
        cmd_ = std::exchange(o.cmd_, VK_NULL_HANDLE);
    }
    return *this;
}

Submission::~Submission() { release(); }

void Submission::release() noexcept {
    if (!context_) return;
    auto& d = *static_cast<const Context::Impl*>(context_);
    if (fence_) (void)fence_->wait(forever);  // the command buffer may be freed only after the work
    if (cmd_) {
        std::lock_guard lock(d.submit_mutex);  // the pool is shared with other submits
        d.free_command_buffers(d.device, d.pool, 1, &cmd_);
    }
    fence_.reset();  // pooled here, or by the last completion() holder
    context_ = nullptr;
    cmd_ = VK_NULL_HANDLE;
}

VkFence Submission::fence() const noexcept { return fence_ ? fence_->fence : VK_NULL_HANDLE; }

bool Submission::done() const { return !fence_ || fence_->done(); }

Result<WaitStatus> Submission::wait(Timeout timeout) const {
    if (!context_ || !fence_) return detail::moved_from("wait for submission", "Submission");
    return fence_->wait(timeout);
}

std::shared_ptr<const Completion> Submission::completion() const { return fence_; }

std::vector<std::string> Context::validation_messages() const {
    if (!impl_) return {};
    std::lock_guard lock(impl_->messages_mutex);
    return impl_->messages;
}

}  // namespace dmabridge::vulkan
