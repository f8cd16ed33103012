// SPDX-License-Identifier: MIT
// Implicit sync <-> Vulkan: sync_files exported from dma-bufs become semaphores a submit waits
// on; semaphores a submit signals become fences on the dma-bufs.
#include <dmabridge/vulkan/sync_bridge.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "kernel/sync_file_probe.hpp"
#include "base/sys.hpp"
#include "vulkan/device_state.hpp"

namespace dmabridge::vulkan {

const char* to_string(SyncMode mode) noexcept { return mode == SyncMode::sync_file ? "sync_file" : "cpu_wait"; }

const char* to_string(ReleaseMode mode) noexcept {
    switch (mode) {
        case ReleaseMode::automatic: return "automatic";
        case ReleaseMode::export_fence: return "export_fence";
        case ReleaseMode::wait_for_submit: return "wait_for_submit";
    }
    return "unknown";
}

void Semaphore::reset() noexcept {
    if (!handle_) return;
    device_->vkDestroySemaphore(device_->device(), handle_, nullptr);
    handle_ = VK_NULL_HANDLE;
}

Semaphore& Semaphore::operator=(Semaphore&& o) noexcept {
    if (this != &o) {
        reset();
        device_ = std::move(o.device_);
        handle_ = std::exchange(o.handle_, VK_NULL_HANDLE);
    }
    return *this;
}

Semaphore::~Semaphore() { reset(); }

namespace {
// Waits for `buf`'s fences for `access`. A huge timeout (Timeout::max(), the usual "no limit")
// is waited for in day-long slices, so that no deadline computed below can overflow: it waits,
// it never times out at once.
Result<WaitStatus> wait_sliced(const DmaBuf& buf, Access access, Timeout timeout) {
    if (timeout.count() < 0) return buf.wait(access, forever);
    constexpr Timeout slice = std::chrono::hours(24);
    while (timeout > slice) {
        auto waited = buf.wait(access, slice);
        if (!waited || *waited == WaitStatus::ready) return waited;
        timeout -= slice;
    }
    return buf.wait(access, timeout);
}

std::string hex(std::uint32_t v) {
    char text[16];
    std::snprintf(text, sizeof text, "0x%x", v);
    return text;
}
}  // namespace

struct SyncBridge::State {
    explicit State(Device d) : device(std::move(d)) {}
    Device device;
    SyncBridgeOptions options;
    mutable std::mutex mutex;
    SyncMode mode = SyncMode::sync_file;
    std::string reason;
    // sync_file mode: releases get no semaphore, publish waits for the submit (ReleaseMode).
    bool release_waits = false;
    // Set once the kernel's sync_file ioctls were probed on a real dma-buf. No lock: two
    // threads that probe at once both run the (harmless, idempotent) probe.
    std::atomic<bool> probed{false};

    bool release_has_semaphore() const { return !release_waits && current_mode() == SyncMode::sync_file; }

    std::uint32_t foreign_family() const {
        // FOREIGN also covers other drivers and devices; EXTERNAL (core) only the same driver.
        return device.has(Capability::foreign_queue) ? VK_QUEUE_FAMILY_FOREIGN_EXT : VK_QUEUE_FAMILY_EXTERNAL;
    }

    SyncMode current_mode() const {
        std::lock_guard lock(mutex);
        return mode;
    }

    void fall_back(const std::string& why) {
        {
            std::lock_guard lock(mutex);
            if (mode == SyncMode::cpu_wait) return;
            mode = SyncMode::cpu_wait;
            reason = why;
        }
        // Never under the lock: the application's handler may call back into the bridge.
        dmabridge::detail::log_message(LogLevel::warning, "sync bridge on " + device.name() +
                                                              ": falling back to CPU waits: " + why);
    }

    // Asks the kernel, with real ioctls on `buf`, whether dma-bufs can export and import
    // sync_files (DMA_BUF_IOCTL_EXPORT/IMPORT_SYNC_FILE, Linux 6.0+): a read snapshot is exported
    // and imported back as a read fence, which changes nothing a reader or writer waits for.
    // ENOTTY (or ENOSYS) means an older kernel: the bridge falls back to CPU waits and says why.
    Status probe(const DmaBuf& buf) {
        if (probed.load(std::memory_order_acquire) || current_mode() == SyncMode::cpu_wait) return {};
        auto unsupported = ::dmabridge::detail::probe_sync_file_ioctls(buf);
        if (!unsupported) return unsupported.error().with_context("sync bridge: probe the kernel");
        if (!unsupported->empty()) fall_back("probed: " + *unsupported);
        probed.store(true, std::memory_order_release);
        return {};
    }

    Result<Semaphore> make_semaphore(bool exportable) const {
        const auto& s = *device.state();
        VkExportSemaphoreCreateInfo export_info{};
        export_info.sType = VK_STRUCTURE_TYPE_EXPORT_SEMAPHORE_CREATE_INFO;
        export_info.handleTypes = VK_EXTERNAL_SEMAPHORE_HANDLE_TYPE_SYNC_FD_BIT;
        VkSemaphoreCreateInfo info{};
        info.sType = VK_STRUCTURE_TYPE_SEMAPHORE_CREATE_INFO;
        info.pNext = exportable ? &export_info : nullptr;
        VkSemaphore handle = VK_NULL_HANDLE;
        if (VkResult r = s.vkCreateSemaphore(s.device(), &info, nullptr, &handle); r != VK_SUCCESS)
            return detail::vk_error(r, "sync bridge: vkCreateSemaphore");
        return Semaphore(device.state(), handle);
    }

    // The fences `access` must wait for on every distinct dma-buf, merged; nothing when all are
    // signalled already. Falls back to CPU waits when the kernel cannot export sync_files.
    Result<std::optional<SyncFile>> pending_fences(std::span<const DmaBuf* const> bufs, Access access) {
        std::optional<SyncFile> merged;
        for (const DmaBuf* buf : bufs) {
            // One poll() tells an idle buffer (a camera's, most of the time) apart without making
            // a sync_file: exporting one costs a file and three syscalls.
            if (auto idle = buf->wait(access, Timeout{0}); idle && *idle == WaitStatus::ready) continue;
            auto fence = buf->export_sync_file(access);
            if (!fence) {
                if (fence.error().is(Errc::unsupported)) {
                    fall_back(fence.error().message());
                    return std::optional<SyncFile>{};
                }
                return fence.error().with_context("sync bridge: acquire");
            }
            auto status = fence->status();
            if (status && *status == FenceStatus::signaled) continue;  // nothing to wait for
            if (!merged) {
                merged = std::move(*fence);
                continue;
            }
            auto both = SyncFile::merge(*merged, *fence, "dmabridge-acquire");
            if (!both) return both.error().with_context("sync bridge: acquire");
            merged = std::move(*both);
        }
        return merged;
    }

    // Makes `out` wait for `fences`: a binary semaphore with the sync_file imported (temporarily:
    // SYNC_FD imports must be), and a second reference kept in out.fences for later releases.
    Status wait_on(Acquire& out, SyncFile fences) {
        auto sem = make_semaphore(false);
        if (!sem) return sem.error();
        const auto& s = *device.state();
        auto copy = fences.dup();
        if (!copy) return copy.error();
        UniqueFd fd = fences.release();
        VkImportSemaphoreFdInfoKHR import{};
        import.sType = VK_STRUCTURE_TYPE_IMPORT_SEMAPHORE_FD_INFO_KHR;
        import.semaphore = sem->handle();
        import.flags = VK_SEMAPHORE_IMPORT_TEMPORARY_BIT;
        import.handleType = VK_EXTERNAL_SEMAPHORE_HANDLE_TYPE_SYNC_FD_BIT;
        import.fd = fd.get();
        if (VkResult r = s.vkImportSemaphoreFdKHR(s.device(), &import); r != VK_SUCCESS)
            return detail::vk_error(r, "vkImportSemaphoreFdKHR");  // fd still ours: closed
        (void)fd.release();  // the semaphore owns it now
        out.semaphore = std::move(*sem);
        out.fences = std::move(*copy);
        return {};
    }

    Result<Acquire> acquire(std::span<const DmaBuf* const> bufs, Access access, VkPipelineStageFlags stage) {
        Acquire out;
        out.wait_stage = stage;
        if (auto ok = probe(*bufs.front()); !ok) return ok.error();
        if (current_mode() == SyncMode::sync_file) {
            auto fences = pending_fences(bufs, access);
            if (!fences) return fences.error();
            if (current_mode() == SyncMode::sync_file) {
                if (!*fences) return out;  // idle: the submit waits for nothing
                if (auto ok = wait_on(out, std::move(**fences)); !ok) return ok.error().with_context("sync bridge: acquire");
                return out;
            }
        }
        // cpu_wait: the fences are waited for here, so the submit needs no semaphore.
        for (const DmaBuf* buf : bufs) {
            auto waited = wait_sliced(*buf, access, options.cpu_wait_timeout);
            if (!waited) return waited.error().with_context("sync bridge: acquire (CPU wait)");
            if (*waited == WaitStatus::timed_out)
                return Error::library(Errc::limit_exceeded, "sync bridge: acquire (CPU wait): the buffer's fences did "
                                                            "not signal within the timeout");
        }
        out.waited_on_cpu = true;
        return out;
    }
};

namespace {

VkImageMemoryBarrier image_barrier(const Image& image, VkImageLayout from, VkImageLayout to, std::uint32_t src_family,
                                   std::uint32_t dst_family, VkAccessFlags src_access, VkAccessFlags dst_access) {
    VkImageMemoryBarrier b{};
    b.sType = VK_STRUCTURE_TYPE_IMAGE_MEMORY_BARRIER;
    b.srcAccessMask = src_access;
    b.dstAccessMask = dst_access;
    b.oldLayout = from;
    b.newLayout = to;
    b.srcQueueFamilyIndex = src_family;
    b.dstQueueFamilyIndex = dst_family;
    b.image = image.handle();
    b.subresourceRange = {VK_IMAGE_ASPECT_COLOR_BIT, 0, 1, 0, 1};
    return b;
}

VkBufferMemoryBarrier buffer_barrier(const Buffer& buffer, std::uint32_t src_family, std::uint32_t dst_family,
                                     VkAccessFlags src_access, VkAccessFlags dst_access) {
    VkBufferMemoryBarrier b{};
    b.sType = VK_STRUCTURE_TYPE_BUFFER_MEMORY_BARRIER;
    b.srcAccessMask = src_access;
    b.dstAccessMask = dst_access;
    b.srcQueueFamilyIndex = src_family;
    b.dstQueueFamilyIndex = dst_family;
    b.buffer = buffer.handle();
    b.offset = 0;
    b.size = VK_WHOLE_SIZE;
    return b;
}

}  // namespace

namespace {
// A driver that runs the GPU's work on CPU threads (lavapipe) has no kernel fence to export: its
// SYNC_FD export waits until the queue is idle.
bool without_kernel_fences(const detail::DeviceState& s) {
    VkPhysicalDeviceProperties props{};
    s.vkGetPhysicalDeviceProperties(s.handles.physical_device, &props);
    return props.vendorID == VK_VENDOR_ID_MESA && props.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU;
}
}  // namespace

Result<SyncBridge> SyncBridge::create(const Device& device, SyncBridgeOptions options) {
    if (!device.valid()) return detail::moved_from("create a sync bridge", "Device");
    auto state = std::make_shared<State>(device);
    state->options = options;
    const auto& s = *device.state();
    std::string release_note;
    bool can_export = false;
    if (options.force_cpu_wait) {
        state->mode = SyncMode::cpu_wait;
        state->reason = "forced by SyncBridgeOptions::force_cpu_wait";
    } else if (!device.has(Capability::sync_fd)) {
        state->mode = SyncMode::cpu_wait;
        state->reason = "the device was not attached with SYNC_FD semaphores (" VK_KHR_EXTERNAL_SEMAPHORE_FD_EXTENSION_NAME ")";
    } else {
        // The extension says nothing about SYNC_FD: ask for it, import and export separately.
        VkPhysicalDeviceExternalSemaphoreInfo info{};
        info.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_EXTERNAL_SEMAPHORE_INFO;
        info.handleType = VK_EXTERNAL_SEMAPHORE_HANDLE_TYPE_SYNC_FD_BIT;
        VkExternalSemaphoreProperties props{};
        props.sType = VK_STRUCTURE_TYPE_EXTERNAL_SEMAPHORE_PROPERTIES;
        s.vkGetPhysicalDeviceExternalSemaphoreProperties(s.handles.physical_device, &info, &props);
        const auto features = props.externalSemaphoreFeatures;
        const bool can_import = (features & VK_EXTERNAL_SEMAPHORE_FEATURE_IMPORTABLE_BIT) != 0;
        can_export = (features & VK_EXTERNAL_SEMAPHORE_FEATURE_EXPORTABLE_BIT) != 0 &&
                     (props.compatibleHandleTypes & VK_EXTERNAL_SEMAPHORE_HANDLE_TYPE_SYNC_FD_BIT) != 0;
        const std::string asked = " (vkGetPhysicalDeviceExternalSemaphoreProperties for SYNC_FD: features " +
                                  hex(features) + ", compatible handle types " + hex(props.compatibleHandleTypes) + ")";
        if (!can_import) {
            state->mode = SyncMode::cpu_wait;
            state->reason = device.name() + " cannot import SYNC_FD semaphores" +
                            (can_export ? std::string() : " nor export them") + asked;
        } else if (!can_export) {
            release_note = device.name() + " cannot export SYNC_FD semaphores" + asked +
                           ": releases wait for their submit (ReleaseMode::wait_for_submit)";
        }
    }
    state->release_waits = options.release == ReleaseMode::wait_for_submit ||
                           (options.release == ReleaseMode::automatic && without_kernel_fences(s)) ||
                           (state->mode == SyncMode::sync_file && !can_export);
    if (state->mode == SyncMode::cpu_wait)
        dmabridge::detail::log_message(LogLevel::info, "sync bridge on " + device.name() + ": CPU waits: " + state->reason);
    else if (!release_note.empty())
        dmabridge::detail::log_message(LogLevel::info, "sync bridge: " + release_note);
    return SyncBridge(std::move(state));
}

ReleaseMode SyncBridge::release_mode() const {
    if (!state_) return ReleaseMode::wait_for_submit;
    return state_->release_has_semaphore() ? ReleaseMode::export_fence : ReleaseMode::wait_for_submit;
}

SyncMode SyncBridge::mode() const { return state_ ? state_->current_mode() : SyncMode::cpu_wait; }

std::string SyncBridge::mode_reason() const {
    if (!state_) return "the SyncBridge is empty (moved from)";
    std::lock_guard lock(state_->mutex);
    return state_->reason;
}

Status SyncBridge::probe_kernel(const DmaBuf& dmabuf) {
    if (!state_) return detail::moved_from("sync bridge: probe the kernel", "SyncBridge");
    if (dmabuf.fd() < 0) return Error::library(Errc::empty_object, "sync bridge: probe the kernel: the dma-buf holds no fd (moved from or released)");
    return state_->probe(dmabuf);
}

namespace {
// What every entry point checks first: an empty (moved-from) bridge, image or buffer, or a
// description whose planes have no dma-buf, fails at once.
Status check_buffers(const char* what, std::span<const DmaBuf* const> bufs) {
    if (bufs.empty()) return Error::library(Errc::empty_object, std::string(what) + ": the description has no planes (moved from?)");
    for (const DmaBuf* b : bufs)
        if (b->fd() < 0) return Error::library(Errc::empty_object, std::string(what) + ": a plane's dma-buf holds no fd (moved from or released)");
    return {};
}
}  // namespace

Result<Acquire> SyncBridge::acquire_image(const BufferDesc& desc, const Image& image, Access access, const ImageUse& use,
                                          VkImageLayout old_layout) {
    if (!state_) return detail::moved_from("sync bridge: acquire", "SyncBridge");
    if (!image.valid()) return detail::moved_from("sync bridge: acquire", "Image");
    const auto bufs = desc.distinct_buffers();
    if (auto ok = check_buffers("sync bridge: acquire", bufs); !ok) return ok.error();
    auto out = state_->acquire(bufs, access, use.stage);
    if (!out) return out.error();
    out->image_barrier = image_barrier(image, old_layout, use.layout, state_->foreign_family(),
                                       state_->device.queue_family_index(), 0, use.access);
    return out;
}

Result<Acquire> SyncBridge::acquire_buffer(const DmaBuf& dmabuf, const Buffer& buffer, Access access, const BufferUse& use) {
    if (!state_) return detail::moved_from("sync bridge: acquire", "SyncBridge");
    if (!buffer.valid()) return detail::moved_from("sync bridge: acquire", "Buffer");
    const DmaBuf* const one[] = {&dmabuf};  // no allocation on this per-frame path
    if (auto ok = check_buffers("sync bridge: acquire", one); !ok) return ok.error();
    auto out = state_->acquire(one, access, use.stage);
    if (!out) return out.error();
    out->buffer_barrier = buffer_barrier(buffer, state_->foreign_family(), state_->device.queue_family_index(), 0, use.access);
    return out;
}

namespace {
Status carry_forward(Release& out, std::initializer_list<const Acquire*> after) {
    for (const Acquire* a : after) {
        if (!a || !a->fences) continue;
        auto copy = a->fences->dup();
        if (!copy) return copy.error().with_context("sync bridge: release");
        out.depends_on.push_back(std::move(*copy));
    }
    return {};
}
}  // namespace

Result<Release> SyncBridge::prepare_release_image(const Image& image, const ImageUse& use,
                                                  std::initializer_list<const Acquire*> after) {
    if (!state_) return detail::moved_from("sync bridge: release", "SyncBridge");
    if (!image.valid()) return detail::moved_from("sync bridge: release", "Image");
    Release out;
    if (auto ok = carry_forward(out, after); !ok) return ok.error();
    if (state_->release_has_semaphore()) {
        auto sem = state_->make_semaphore(true);
        if (!sem) return sem.error();
        out.semaphore = std::move(*sem);
    }
    out.image_barrier = image_barrier(image, use.layout, VK_IMAGE_LAYOUT_GENERAL, state_->device.queue_family_index(),
                                      state_->foreign_family(), use.access, 0);
    return out;
}

Result<Release> SyncBridge::prepare_release_buffer(const Buffer& buffer, const BufferUse& use,
                                                   std::initializer_list<const Acquire*> after) {
    if (!state_) return detail::moved_from("sync bridge: release", "SyncBridge");
    if (!buffer.valid()) return detail::moved_from("sync bridge: release", "Buffer");
    Release out;
    if (auto ok = carry_forward(out, after); !ok) return ok.error();
    if (state_->release_has_semaphore()) {
        auto sem = state_->make_semaphore(true);
        if (!sem) return sem.error();
        out.semaphore = std::move(*sem);
    }
    out.buffer_barrier = buffer_barrier(buffer, state_->device.queue_family_index(), state_->foreign_family(), use.access, 0);
    return out;
}

namespace {

// The release semaphore's completion as a sync_file (std::nullopt: signalled already). Valid only
// once a signal of the semaphore was submitted; exporting resets it, so a Release publishes once.
// publish()'s CPU wait for the submit's fence, bounded by options.cpu_wait_timeout: a submit
// that waits for a fence nobody signals (a peer's acquire fence) must not hang the caller. On a
// timeout nothing was handed off: the error says the buffer is still in use by the GPU.
Status wait_for_submit(const detail::DeviceState& s, VkFence fence, Timeout timeout, const std::string& what) {
    VkResult r = s.vkWaitForFences(s.device(), 1, &fence, VK_TRUE, detail::timeout_ns(timeout));
    if (r == VK_TIMEOUT)
        return Error::library(Errc::limit_exceeded,
                              what + " (CPU wait for the GPU): the submit did not complete within " +
                                  std::to_string(timeout.count()) +
                                  " ms (options.cpu_wait_timeout); the buffer is still in use and was not handed off");
    if (r != VK_SUCCESS) return detail::vk_error(r, what + " (CPU wait for the GPU)");
    return {};
}

Result<std::optional<SyncFile>> export_release(const detail::DeviceState& s, Release& release) {
    VkSemaphoreGetFdInfoKHR get{};
    get.sType = VK_STRUCTURE_TYPE_SEMAPHORE_GET_FD_INFO_KHR;
    get.semaphore = release.semaphore.handle();
    get.handleType = VK_EXTERNAL_SEMAPHORE_HANDLE_TYPE_SYNC_FD_BIT;
    int fd = -1;
    if (VkResult r = s.vkGetSemaphoreFdKHR(s.device(), &get, &fd); r != VK_SUCCESS)
        return detail::vk_error(r, "sync bridge: publish: vkGetSemaphoreFdKHR (was the submit queued?)");
    if (fd < 0) return std::optional<SyncFile>{};  // -1 means "already signalled"
    // FD_CLOEXEC before anything else: the fd must not leak into a child of a fork+exec.
    auto cloexec = detail::adopt_driver_fd(fd, "sync bridge: publish: vkGetSemaphoreFdKHR");
    if (!cloexec) return cloexec.error();
    auto adopted = SyncFile::adopt(std::move(*cloexec));
    if (!adopted) return adopted.error().with_context("sync bridge: publish");
    return std::optional<SyncFile>(std::move(*adopted));
}

Status publish_to(SyncBridge::State& st, Release& release, std::span<const DmaBuf* const> bufs, Access access,
                  VkFence submit_fence) {
    const auto& s = *st.device.state();
    if (release.semaphore.handle() && st.current_mode() == SyncMode::sync_file) {
        if (auto ok = st.probe(*bufs.front()); !ok) return ok.error().with_context("sync bridge: publish");
    }
    if (release.semaphore.handle() && st.current_mode() == SyncMode::sync_file) {
        // What the work waits for goes onto the buffers first: exporting the semaphore below may
        // block until those fences signal (lavapipe), and the buffers must not look idle meanwhile.
        for (const SyncFile& dependency : release.depends_on)
            for (const DmaBuf* buf : bufs)
                if (auto added = buf->import_sync_file(dependency, access); !added)
                    return added.error().with_context("sync bridge: publish");
        auto exported = export_release(s, release);
        if (!exported) return exported.error();
        std::optional<SyncFile> fence = std::move(*exported);
        if (!fence) return {};
        for (const DmaBuf* buf : bufs) {
            auto added = buf->import_sync_file(*fence, access);
            if (!added) {
                if (!added.error().is(Errc::unsupported)) return added.error().with_context("sync bridge: publish");
                st.fall_back(added.error().message());
                // Nothing was added: make the hand-off safe by waiting for the GPU here.
                auto waited = fence->wait(st.options.cpu_wait_timeout);
                if (!waited) return waited.error().with_context("sync bridge: publish (CPU wait)");
                if (*waited == WaitStatus::timed_out)
                    return Error::library(Errc::limit_exceeded,
                                          "sync bridge: publish (CPU wait): the GPU's release fence did not signal within " +
                                              std::to_string(st.options.cpu_wait_timeout.count()) +
                                              " ms (options.cpu_wait_timeout); the buffer was not handed off");
                return {};
            }
        }
        return {};
    }
    // No semaphore (wait_for_submit, cpu_wait): the buffer is handed off only once the GPU is
    // done with it.
    if (submit_fence == VK_NULL_HANDLE)
        return Error::library(Errc::invalid_argument,
                              "sync bridge: publish without a release semaphore needs the submit's fence");
    return wait_for_submit(s, submit_fence, st.options.cpu_wait_timeout, "sync bridge: publish");
}

}  // namespace

Status SyncBridge::publish(Release& release, const BufferDesc& desc, Access access, VkFence submit_fence) {
    if (!state_) return detail::moved_from("sync bridge: publish", "SyncBridge");
    const auto bufs = desc.distinct_buffers();
    if (auto ok = check_buffers("sync bridge: publish", bufs); !ok) return ok.error();
    return publish_to(*state_, release, bufs, access, submit_fence);
}

Status SyncBridge::publish(Release& release, const DmaBuf& dmabuf, Access access, VkFence submit_fence) {
    if (!state_) return detail::moved_from("sync bridge: publish", "SyncBridge");
    const DmaBuf* const one[] = {&dmabuf};
    if (auto ok = check_buffers("sync bridge: publish", one); !ok) return ok.error();
    return publish_to(*state_, release, one, access, submit_fence);
}

Result<Acquire> SyncBridge::acquire_point(const Timeline& timeline, std::uint64_t point, VkPipelineStageFlags stage,
                                          Timeout submit_timeout) {
    const std::string what = "sync bridge: acquire point " + std::to_string(point) + " of a syncobj timeline";
    if (!state_) return detail::moved_from(what, "SyncBridge");
    if (!timeline.valid()) return Error::library(Errc::empty_object, what + ": the Timeline is empty (moved from)");
    State& st = *state_;
    Acquire out;
    out.wait_stage = stage;
    if (st.current_mode() == SyncMode::cpu_wait) {
        auto waited = timeline.wait(point, st.options.cpu_wait_timeout);
        if (!waited) return waited.error().with_context(what + " (CPU wait)");
        if (*waited == WaitStatus::timed_out)
            return Error::library(Errc::limit_exceeded, what + " (CPU wait): the point did not signal within the timeout");
        out.waited_on_cpu = true;
        return out;
    }
    auto submitted = timeline.wait(point, submit_timeout, PointState::submitted);
    if (!submitted) return submitted.error().with_context(what);
    if (*submitted == WaitStatus::timed_out)
        return Error::from_errno(ETIMEDOUT, what + ": nothing was submitted for the point within " +
                                                std::to_string(submit_timeout.count()) + " ms");
    auto fence = timeline.export_sync_file(point);
    if (!fence) return fence.error().with_context(what);
    if (auto status = fence->status(); status && *status == FenceStatus::signaled) return out;  // nothing to wait for
    if (auto ok = st.wait_on(out, std::move(*fence)); !ok) return ok.error().with_context(what);
    return out;
}

Status SyncBridge::publish_point(Release& release, Timeline& timeline, std::uint64_t point, VkFence submit_fence) {
    const std::string what = "sync bridge: publish to point " + std::to_string(point) + " of a syncobj timeline";
    if (!state_) return detail::moved_from(what, "SyncBridge");
    if (!timeline.valid()) return Error::library(Errc::empty_object, what + ": the Timeline is empty (moved from)");
    State& st = *state_;
    const auto& s = *st.device.state();
    // Checked before the completion is spent (an export consumes the semaphore's payload).
    auto last = timeline.last_submitted();
    if (!last) return last.error().with_context(what);
    if (point <= *last)
        return Error::library(Errc::invalid_argument, what + ": point " + std::to_string(*last) +
                                                          " is submitted already; points are reached in order");
    if (release.semaphore.handle() && st.current_mode() == SyncMode::sync_file) {
        // A timeline point is not "idle" before its fence arrives (waiters wait for the submit),
        // so nothing has to be added first even where the export below blocks (lavapipe).
        auto exported = export_release(s, release);
        if (!exported) return exported.error().with_context(what);
        if (!*exported) return timeline.signal(point);  // signalled already
        if (auto ok = timeline.import_sync_file(point, **exported); !ok) return ok.error().with_context(what);
        return {};
    }
    if (submit_fence == VK_NULL_HANDLE)
        return Error::library(Errc::invalid_argument, what + ": a release without a semaphore needs the submit's fence");
    if (auto waited = wait_for_submit(s, submit_fence, st.options.cpu_wait_timeout, what); !waited) return waited;
    if (auto ok = timeline.signal(point); !ok) return ok.error().with_context(what);
    return {};
}

}  // namespace dmabridge::vulkan
