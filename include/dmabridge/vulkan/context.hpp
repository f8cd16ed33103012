// SPDX-License-Identifier: MIT
#pragma once
/// @file vulkan/context.hpp
/// Context: a Vulkan instance and device made by dmabridge, for programs that have none of their
/// own (samples, tests, tools). Renderers attach dmabridge to their own device instead
/// (Device::attach). The loader is opened at run time (libvulkan.so.1).

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <vulkan/vulkan_core.h>

#include <dmabridge/base/access.hpp>
#include <dmabridge/base/result.hpp>
#include <dmabridge/kernel/completion.hpp>
#include <dmabridge/vulkan/device.hpp>

namespace dmabridge::vulkan {

/// How to make a Context. The zero value makes a device that can share dma-bufs.
struct ContextOptions {
    /// Enable VK_LAYER_KHRONOS_validation and keep its messages (warnings and errors).
    bool validation = false;
    /// Called with every validation message, also those the layer sends while the Context is
    /// destroyed (leaked objects are reported then). Called from whichever thread made the call,
    /// from inside that Vulkan call: during a submit the context's submit lock is held (the queue
    /// must be externally synchronized), so the hook must not wait for another thread that submits.
    std::function<void(const std::string&)> on_validation_message;
    /// What the device must be able to do; devices that cannot are skipped.
    Capability required = Capability::import_memory | Capability::export_memory | Capability::modifiers;
    /// What to enable as well where the device offers it.
    Capability optional = Capability::sync_fd | Capability::foreign_queue | Capability::drm_nodes;
    /// Only devices whose name contains this (e.g. "llvmpipe"); empty for any.
    std::string device_name;
    /// The Vulkan version to ask for (at least 1.1).
    std::uint32_t api_version = VK_API_VERSION_1_3;
};

/// What a physical device offers, without creating a device on it.
struct PhysicalDeviceInfo {
    std::string name;          ///< e.g. "llvmpipe (LLVM 15.0.6, 256 bits)"
    std::string driver;        ///< VkPhysicalDeviceDriverProperties::driverName, e.g. "llvmpipe"
    std::string driver_info;   ///< e.g. "Mesa 25.0.7"
    std::uint32_t api_version = 0;  ///< VkPhysicalDeviceProperties::apiVersion (VK_MAKE_API_VERSION)
    /// The capabilities whose extensions the device offers (see required_device_extensions()).
    Capability offered = Capability::none;
};

/// The physical devices the loader sees (opens the loader and makes a short-lived instance).
/// Errors name what was missing: the loader, or a failing vkCreateInstance.
Result<std::vector<PhysicalDeviceInfo>> list_physical_devices();

/// Work submitted by Context::submit_async: its fence and command buffer. Move-only; the
/// destructor waits for the work to complete, then frees both.
class Submission {
public:
    /// An empty Submission: nothing pending.
    Submission() = default;
    /// Moves: the fence and command buffer go with the new object; the moved-from one is
    /// empty. Assignment first releases what the target held, as the destructor does (waiting
    /// for its work).
    Submission(Submission&&) noexcept;
    Submission& operator=(Submission&&) noexcept;
    Submission(const Submission&) = delete;
    Submission& operator=(const Submission&) = delete;
    /// Waits for the work without a time limit (the command buffer may be freed only after
    /// it), then frees the command buffer; the fence returns to the Context's pool once no
    /// completion() holds it. Wait with a bounded wait() first where the work may never end
    /// (a wait semaphore nothing signals).
    ~Submission();

    /// The fence the submit signals, owned by this object (VK_NULL_HANDLE when empty). Once the
    /// Submission and every completion() of it are gone, the Context resets the fence and reuses
    /// it for a later submit: keep completion(), not the handle, to wait for the work later.
    VkFence fence() const noexcept;
    /// True once the work completed (vkGetFenceStatus; never blocks). True for an empty
    /// (moved-from or default-made) Submission: there is nothing pending.
    bool done() const;
    /// Waits for the work; WaitStatus::timed_out when `timeout` passes first. `forever` and any
    /// large timeout up to Timeout::max() wait (saturated, never wrapped into a short wait).
    /// An empty (moved-from or default-made) Submission fails at once with Errc::empty_object.
    Result<WaitStatus> wait(Timeout timeout = forever) const;
    /// The work's completion, sharing the fence: while it is held the fence is neither reset nor
    /// reused, whatever happens to the Submission. Null for an empty (moved-from) Submission.
    /// The Context must outlive it.
    std::shared_ptr<const Completion> completion() const;

    struct SharedFence;

private:
    friend class Context;
    const void* context_ = nullptr;  // the Context::Impl
    std::shared_ptr<SharedFence> fence_;
    VkCommandBuffer cmd_ = VK_NULL_HANDLE;
    void release() noexcept;
};

/// Commands recorded once by Context::record() and submitted any number of times with
/// Context::submit_async(), each time after the previous submit of them completed: a frame loop
/// whose commands do not change saves recording them per frame. Move-only; frees its command
/// buffer when destroyed, which must be after its last submit completed (the owner's duty). The
/// Context must outlive it.
class RecordedCommands {
public:
    /// Holds no command buffer.
    RecordedCommands() = default;
    /// Moves: the command buffer goes with the new object; the moved-from one holds none.
    /// Assignment first frees the target's command buffer (its submits must have completed).
    RecordedCommands(RecordedCommands&&) noexcept;
    RecordedCommands& operator=(RecordedCommands&&) noexcept;
    RecordedCommands(const RecordedCommands&) = delete;
    RecordedCommands& operator=(const RecordedCommands&) = delete;
    /// Frees the command buffer (under the pool's lock); does not wait for its submits.
    ~RecordedCommands();

    /// The recorded command buffer; VK_NULL_HANDLE when empty.
    VkCommandBuffer handle() const noexcept { return cmd_; }

private:
    friend class Context;
    const void* context_ = nullptr;  // the Context::Impl
    VkCommandBuffer cmd_ = VK_NULL_HANDLE;
    void release() noexcept;
};

/// An instance, a physical device, a device with one queue, and dmabridge attached to it.
/// Move-only. Destroying it waits for the device to be idle and destroys everything.
/// Thread safety: submit() serializes itself; other members are const. The `record` callbacks
/// of submit(), submit_async() and record() run under the lock of the context's command pool
/// (Vulkan requires recording into one pool to be serialized): they may call the Context from
/// the same thread, but must not wait for another thread that submits to it.
/// A moved-from Context is empty: device() is an empty Device, handles() are null, and every
/// submit or record fails at once with Errc::empty_object.
class Context {
public:
    /// Opens the loader, creates an instance (with the validation layer if asked), picks the
    /// first physical device that has `required` (and `device_name`), creates a device with the
    /// extensions required_device_extensions() lists for what it picked, and attaches.
    /// Errors name what was missing: the loader, the layer, or a device with the capabilities.
    static Result<Context> create(const ContextOptions& options = {});

    /// Moves: the instance, device and queue go with the new object; the moved-from Context is
    /// empty. Assignment first destroys what the target held, as the destructor does.
    Context(Context&&) noexcept;
    Context& operator=(Context&&) noexcept;
    /// Waits for the device to be idle, then destroys the adapter, the command pool and fences,
    /// the device and the instance. Submissions and RecordedCommands must be gone before.
    ~Context();

    /// dmabridge's adapter on this context's device.
    const Device& device() const noexcept;
    /// The handles, as an application would pass them to Device::attach.
    const DeviceHandles& handles() const noexcept;
    /// The one queue of the device (family DeviceHandles::queue_family_index, index 0);
    /// VK_NULL_HANDLE when empty. Submit to it only through the Context (or under the
    /// application's own lock that also covers the Context's submits: Vulkan queues are
    /// externally synchronized).
    VkQueue queue() const noexcept;
    /// An entry point of the device (vkGetDeviceProcAddr), for recording commands; nullptr when
    /// empty or unknown.
    PFN_vkVoidFunction device_proc(const char* name) const;

    /// Records commands with `record` into a one-time command buffer, submits it to the queue,
    /// and waits for it to complete, without a time limit. `wait` (if not null) is a binary
    /// semaphore the submit waits on at `wait_stage`; `signal` (if not null) one it signals.
    /// Use submit_async() and a bounded Submission::wait() when `wait` may never signal.
    Status submit(const std::function<void(VkCommandBuffer)>& record, VkSemaphore wait = VK_NULL_HANDLE,
                  VkPipelineStageFlags wait_stage = VK_PIPELINE_STAGE_ALL_COMMANDS_BIT,
                  VkSemaphore signal = VK_NULL_HANDLE) const;

    /// Like submit(), without waiting: the returned Submission completes when the GPU is done.
    /// The Context must outlive it.
    Result<Submission> submit_async(const std::function<void(VkCommandBuffer)>& record,
                                    VkSemaphore wait = VK_NULL_HANDLE,
                                    VkPipelineStageFlags wait_stage = VK_PIPELINE_STAGE_ALL_COMMANDS_BIT,
                                    VkSemaphore signal = VK_NULL_HANDLE) const;

    /// Semaphores of a submit: null handles are skipped, so that an Acquire or Release without a
    /// semaphore (idle buffer, cpu_wait mode) can be passed as it is.
    struct SubmitSemaphores {
        std::vector<VkSemaphore> wait;                  ///< binary semaphores to wait on
        std::vector<VkPipelineStageFlags> wait_stages;  ///< one per wait semaphore
        std::vector<VkSemaphore> signal;                ///< binary semaphores to signal

    };
    /// Like submit_async() with any number of semaphores.
    Result<Submission> submit_async(const std::function<void(VkCommandBuffer)>& record,
                                    const SubmitSemaphores& semaphores) const;

    /// Records `record` once into a command buffer that can be submitted many times.
    Result<RecordedCommands> record(const std::function<void(VkCommandBuffer)>& record) const;
    /// Submits commands made by record(), with any number of semaphores (null handles skipped).
    /// Their previous submit must have completed. The Submission owns only its fence.
    Result<Submission> submit_async(const RecordedCommands& commands, const SubmitSemaphores& semaphores) const;

    /// The validation layer's messages so far (warnings and errors), when validation is on.
    std::vector<std::string> validation_messages() const;

    struct Impl;

private:
    explicit Context(std::unique_ptr<Impl> impl) noexcept;
    // Submits `cmd` with `semaphores` and a new fence; the Submission frees `cmd` if `owns`.
    Result<Submission> submit_command_buffer(VkCommandBuffer cmd, bool owns, const SubmitSemaphores& semaphores) const;
    std::unique_ptr<Impl> impl_;
};

}  // namespace dmabridge::vulkan
