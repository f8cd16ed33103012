// SPDX-License-Identifier: MIT
#pragma once
/// @file vulkan/sync_bridge.hpp
/// SyncBridge: implicit sync (the fences a dma-buf carries) bridged both ways to Vulkan.
///
/// Per submit that touches a shared buffer:
///   1. acquire_image()/acquire_buffer(): the buffer's fences for the access the GPU will do,
///      exported as a sync_file and imported (temporarily) into a binary semaphore for the
///      submit to wait on, and the barrier that acquires the buffer from the foreign queue
///      family. Record the barrier first.
///   2. prepare_release_image()/prepare_release_buffer(): a semaphore for the submit to signal
///      and the barrier that releases the buffer to the foreign queue family. Record it last.
///   3. Submit: wait on the acquire's semaphore, signal the release's.
///   4. publish(): the release semaphore exported as a sync_file and added to every plane's
///      dma-buf as a write (or read) fence. Consumers that know nothing of dmabridge (a
///      compositor, a V4L2 driver, another process) now wait for the GPU by themselves.
/// Keep the Acquire and Release objects until the submit completed: they own the semaphores.
///
/// Convention: dmabridge hands buffers over in VK_IMAGE_LAYOUT_GENERAL.
///
/// Drivers that run submissions on a CPU thread (lavapipe, measured here) can export a
/// semaphore's sync_file only once the submit's waits have resolved: there publish() blocks
/// until the acquired fences signal. To keep released buffers from looking idle meanwhile, a
/// Release made with `after` (the submit's Acquires) first adds those fences to the buffers.
/// On drivers that hand submits to the kernel at once, publish() never blocks.
///
/// Releases on drivers without kernel fences (ReleaseMode): lavapipe can export a semaphore's
/// sync_file only once its queue has gone idle, which would stall the submits queued after the
/// released one. There the release carries no semaphore and publish() waits for the submit's
/// fence instead (measured: a 1080p frame loop kept the queue busy that way, instead of draining
/// it every frame). The buffers end in the same state: the GPU's work on them is complete.
///
/// Fallback (SyncMode::cpu_wait), chosen when the device was attached without
/// VK_KHR_external_semaphore_fd, when it cannot import SYNC_FD semaphores (asked with
/// vkGetPhysicalDeviceExternalSemaphoreProperties: the extension alone promises nothing), when
/// the kernel lacks DMA_BUF_IOCTL_EXPORT/IMPORT_SYNC_FILE (Linux < 6.0: found by probing with
/// the real ioctls on the first buffer the bridge sees, or on the one given to probe_kernel();
/// ENOTTY decides, never a kernel version), or when forced: acquire waits for the fences on the
/// CPU (poll) and gives no semaphore; publish waits for the submit's fence before returning, so
/// the buffer is idle when it is handed off. Slower, but the ordering is the same. A device that
/// imports but cannot export SYNC_FD semaphores keeps sync_file acquires and publishes with
/// ReleaseMode::wait_for_submit. Every choice is logged (outside any lock of the bridge) and
/// kept in mode_reason().

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <vector>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include <vulkan/vulkan_core.h>

#include <dmabridge/base/access.hpp>
#include <dmabridge/base/result.hpp>
#include <dmabridge/format/buffer_desc.hpp>
#include <dmabridge/kernel/sync_file.hpp>
#include <dmabridge/kernel/timeline.hpp>
#include <dmabridge/vulkan/device.hpp>

namespace dmabridge::vulkan {

/// How fences cross between the kernel and Vulkan.
enum class SyncMode : std::uint8_t {
    sync_file,  ///< as sync_files and SYNC_FD semaphores: nothing blocks the CPU
    cpu_wait,   ///< fallback: the CPU waits (acquire: for the buffer's fences; publish: for the GPU)
};

/// "sync_file" or "cpu_wait".
const char* to_string(SyncMode mode) noexcept;

/// How publish() hands the GPU's completion to the dma-bufs in SyncMode::sync_file.
enum class ReleaseMode : std::uint8_t {
    automatic,        ///< wait_for_submit on drivers without kernel fences (lavapipe), else export_fence
    export_fence,     ///< the release semaphore's sync_file goes onto the buffers; nothing waits
    wait_for_submit,  ///< no release semaphore: publish() waits for the submit's fence on the CPU
};

/// "automatic", "export_fence" or "wait_for_submit".
const char* to_string(ReleaseMode mode) noexcept;

/// Options of a SyncBridge.
struct SyncBridgeOptions {
    /// Use SyncMode::cpu_wait even where sync_files would work (for tests and for drivers whose
    /// sync_file support is broken).
    bool force_cpu_wait = false;
    /// How long the CPU waits, wherever the bridge waits on the CPU: in cpu_wait mode, acquire's
    /// wait for the buffer's fences; in every mode, publish()'s and publish_point()'s wait for the
    /// submit's fence when the release carries no semaphore (ReleaseMode::wait_for_submit,
    /// cpu_wait, or a kernel that refused the release fence). A submit gated on a fence nobody
    /// signals then gives Errc::limit_exceeded, and the buffer was not handed off (it is still
    /// the GPU's). `forever`, and any large value up to Timeout::max(), waits (large values
    /// never overflow into a short wait).
    Timeout cpu_wait_timeout = forever;
    /// How releases are published in sync_file mode (cpu_wait mode always waits for the submit).
    ReleaseMode release = ReleaseMode::automatic;
};

/// How the GPU will use (or has used) an image around a submit.
struct ImageUse {
    VkImageLayout layout = VK_IMAGE_LAYOUT_GENERAL;  ///< the layout the work uses the image in
    /// The stages and accesses of the work, for the barriers' dst (acquire) or src (release)
    /// masks. The defaults are the safe and slow "everything".
    VkPipelineStageFlags stage = VK_PIPELINE_STAGE_ALL_COMMANDS_BIT;
    VkAccessFlags access = VK_ACCESS_MEMORY_READ_BIT | VK_ACCESS_MEMORY_WRITE_BIT;
};

/// How the GPU will use (or has used) a buffer around a submit.
struct BufferUse {
    /// The stages and accesses of the work, as in ImageUse.
    VkPipelineStageFlags stage = VK_PIPELINE_STAGE_ALL_COMMANDS_BIT;
    VkAccessFlags access = VK_ACCESS_MEMORY_READ_BIT | VK_ACCESS_MEMORY_WRITE_BIT;
};

/// A binary semaphore owned by dmabridge. Move-only; destroyed with the object (after the
/// submits that use it completed: that is the owner's duty). Never reused: a release semaphore
/// whose payload publish() exported as a sync_file is destroyed with its Release, and the next
/// release gets a new one. (Reusing exported semaphores let one thread's submit signal a
/// semaphore whose earlier signal, from another thread, the validation layer had not yet seen
/// consumed by the export: a QueueForwardProgress error under load. A new semaphore has no
/// history to confuse; it costs one vkCreateSemaphore and one vkDestroySemaphore a release.)
class Semaphore {
public:
    /// No semaphore (handle() VK_NULL_HANDLE).
    Semaphore() = default;
    /// Takes ownership of `handle`, made on `device` (the library makes these).
    Semaphore(std::shared_ptr<const detail::DeviceState> device, VkSemaphore handle) noexcept
        : device_(std::move(device)), handle_(handle) {}
    /// Moves: the semaphore goes with the new object; the moved-from one holds none.
    /// Assignment first destroys the semaphore the target held.
    Semaphore(Semaphore&& o) noexcept
        : device_(std::move(o.device_)), handle_(std::exchange(o.handle_, VK_NULL_HANDLE)) {}
    Semaphore& operator=(Semaphore&& o) noexcept;
    Semaphore(const Semaphore&) = delete;
    Semaphore& operator=(const Semaphore&) = delete;
    /// vkDestroySemaphore at once, without waiting for the submits that use it.
    ~Semaphore();
    /// The semaphore; VK_NULL_HANDLE when none (Context::SubmitSemaphores skips null handles).
    VkSemaphore handle() const noexcept { return handle_; }

private:
    void reset() noexcept;
    std::shared_ptr<const detail::DeviceState> device_;
    VkSemaphore handle_ = VK_NULL_HANDLE;
};

/// What a submit needs before it touches a shared buffer.
struct Acquire {
    /// Wait on it at `wait_stage` (VK_NULL_HANDLE: nothing to wait for, or the CPU waited).
    Semaphore semaphore;
    VkPipelineStageFlags wait_stage = VK_PIPELINE_STAGE_ALL_COMMANDS_BIT;  ///< where the submit waits
    /// Record before the work: acquires from the foreign (or external) queue family. For a
    /// buffer acquire, image_barrier is unused, and the other way round.
    VkImageMemoryBarrier image_barrier{};
    VkBufferMemoryBarrier buffer_barrier{};  ///< see image_barrier
    /// True when the fences had to be waited for on the CPU (cpu_wait mode).
    bool waited_on_cpu = false;
    /// The fences the semaphore carries (a second reference), for releases that follow.
    std::optional<SyncFile> fences;
};

/// What a submit needs to hand a shared buffer back.
struct Release {
    /// Signal it in the submit; publish() exports it.
    Semaphore semaphore;
    /// Fences the work waits for (from the Acquires given to prepare_release_*): publish() adds
    /// them to the buffers before anything that may block.
    std::vector<SyncFile> depends_on;
    /// Record after the work: releases to the foreign (or external) queue family in GENERAL.
    /// For a buffer release, image_barrier is unused, and the other way round.
    VkImageMemoryBarrier image_barrier{};
    VkBufferMemoryBarrier buffer_barrier{};  ///< see image_barrier
};

/// The bridge for one device. Thread-safe; the log handler is never called under the bridge's
/// lock, so a handler may call back into the bridge.
/// A moved-from SyncBridge is empty: mode() is cpu_wait, mode_reason() says it is empty, and
/// every operation fails at once with Errc::empty_object. Acquires, releases and publishes
/// given an empty (moved-from) Image or Buffer, or a description without planes (moved from)
/// or with a plane whose dma-buf holds no fd, fail the same way before anything is done.
class SyncBridge {
public:
    /// Chooses the mode: sync_file when the device has Capability::sync_fd and can import
    /// SYNC_FD semaphores (vkGetPhysicalDeviceExternalSemaphoreProperties, one query), else
    /// cpu_wait (the reason is logged and kept in mode_reason()). Errors: an empty Device.
    static Result<SyncBridge> create(const Device& device, SyncBridgeOptions options = {});

    /// The mode in use. It can change from sync_file to cpu_wait once, when probing shows that
    /// the kernel lacks the sync_file ioctls (probe_kernel(), or the first acquire or publish).
    SyncMode mode() const;
    /// Why the bridge is in cpu_wait mode (empty in sync_file mode).
    std::string mode_reason() const;
    /// How publish() works now: export_fence, or wait_for_submit (chosen, a device that cannot
    /// export SYNC_FD semaphores, or cpu_wait mode).
    ReleaseMode release_mode() const;

    /// Probes the kernel's DMA_BUF_IOCTL_EXPORT_SYNC_FILE and IMPORT_SYNC_FILE on `dmabuf` with
    /// the real ioctls: a read snapshot is exported and imported back as a read fence (which
    /// changes nothing anyone waits for). When either answers ENOTTY the bridge switches to
    /// cpu_wait and mode_reason() says which ioctl failed. Runs once per bridge (the first
    /// acquire or publish runs it too); later calls return at once. Costs two ioctls and a
    /// short-lived sync_file. Errors: other failures of the ioctls (EBADF, ...), an empty bridge
    /// or dma-buf.
    Status probe_kernel(const DmaBuf& dmabuf);

    /// Before the GPU reads (Access::read) or writes (write, read_write) `image`, whose planes
    /// are the dma-bufs of `desc`: a semaphore carrying the planes' fences for that access
    /// (merged), and the acquire barrier from `old_layout` to `use.layout`. Costs one poll()
    /// per distinct dma-buf; for a buffer with a pending fence also a
    /// DMA_BUF_IOCTL_EXPORT_SYNC_FILE, and a semaphore and its import. old_layout VK_IMAGE_LAYOUT_UNDEFINED discards the contents.
    Result<Acquire> acquire_image(const BufferDesc& desc, const Image& image, Access access, const ImageUse& use,
                                  VkImageLayout old_layout = VK_IMAGE_LAYOUT_GENERAL);
    /// The same for a buffer imported from (or exported as) `dmabuf`.
    Result<Acquire> acquire_buffer(const DmaBuf& dmabuf, const Buffer& buffer, Access access, const BufferUse& use);

    /// A semaphore (exportable as SYNC_FD) for the submit to signal (none in wait_for_submit
    /// release mode), and the barrier that releases `image` from `use` to the foreign queue
    /// family in GENERAL. `after` lists the submit's Acquires, whose fences the release carries
    /// forward (see publish()).
    Result<Release> prepare_release_image(const Image& image, const ImageUse& use,
                                          std::initializer_list<const Acquire*> after = {});
    /// The same for a buffer (the barrier in buffer_barrier).
    Result<Release> prepare_release_buffer(const Buffer& buffer, const BufferUse& use,
                                           std::initializer_list<const Acquire*> after = {});

    /// After the submit that signals `release.semaphore` was queued: adds the GPU's completion
    /// to every distinct dma-buf of `desc` as a fence for `access` (write: everyone waits; read:
    /// only writers wait). `submit_fence` is the submit's fence, which a Release without a
    /// semaphore (wait_for_submit, cpu_wait) waits for before returning: null is an error there.
    Status publish(Release& release, const BufferDesc& desc, Access access, VkFence submit_fence);
    /// The same for one dma-buf (a buffer's).
    Status publish(Release& release, const DmaBuf& dmabuf, Access access, VkFence submit_fence);


    /// Explicit sync with a DRM syncobj timeline, the portable way (SYNC_FD, whichever device
    /// the timeline lives on; no OPAQUE_FD timeline semaphore, which only the same device and
    /// driver could share). Before a submit that must wait for `point` of `timeline`: the
    /// point's fence as a semaphore to wait on at `stage` (the point exported as a sync_file and
    /// imported, temporarily, into a binary semaphore). The point must be submitted for that:
    /// up to `submit_timeout` is waited for a submit (Timeout{0}: none; ETIMEDOUT after it,
    /// naming the point). A point already signalled gives no semaphore. In cpu_wait mode the CPU
    /// waits for the point (options.cpu_wait_timeout) and no semaphore is given. No barrier is
    /// filled: acquire the buffers the submit touches as usual.
    /// Errors: Errc::empty_object for an empty bridge or Timeline; the timeline's; Vulkan's.
    Result<Acquire> acquire_point(const Timeline& timeline, std::uint64_t point, VkPipelineStageFlags stage,
                                  Timeout submit_timeout);
    /// After the submit that signals `release.semaphore` was queued: its completion becomes the
    /// fence of `point` (the semaphore's sync_file imported into the point), without waiting. A
    /// Release without a semaphore (wait_for_submit, cpu_wait) waits for `submit_fence` on the
    /// CPU, then signals the point. A Release publishes once (exporting its semaphore consumes
    /// the signal): to give the same completion to buffers too, publish it to the point and
    /// then Timeline::attach_to() each buffer. Errors: Errc::empty_object for an empty bridge or
    /// Timeline; Timeline::import_sync_file()'s and signal()'s (a point not above the last
    /// submitted one); Errc::invalid_argument for a null fence where one is needed.
    Status publish_point(Release& release, Timeline& timeline, std::uint64_t point, VkFence submit_fence);

    struct State;

private:
    explicit SyncBridge(std::shared_ptr<State> state) noexcept : state_(std::move(state)) {}
    std::shared_ptr<State> state_;
};

}  // namespace dmabridge::vulkan
