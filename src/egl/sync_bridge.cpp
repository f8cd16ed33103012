// SPDX-License-Identifier: MIT
// egl::SyncBridge: a dma-buf's implicit fences as server-side waits in GL
// (EXPORT_SYNC_FILE -> EGL_SYNC_NATIVE_FENCE_ANDROID -> eglWaitSyncKHR), and GL work as fences on
// the dma-bufs (eglDupNativeFenceFDANDROID -> IMPORT_SYNC_FILE); CPU waits where either side
// is missing.
#include <dmabridge/egl/sync_bridge.hpp>

#include <atomic>
#include <cerrno>
#include <mutex>
#include <string>
#include <unordered_set>

#include <dmabridge/base/log.hpp>

#include "kernel/sync_file_probe.hpp"
#include "base/sys.hpp"
#include "egl/egl_state.hpp"

namespace dmabridge::egl {

namespace {

// A completion that has already ended (the CPU waited for the work).
class Ended final : public Completion {
public:
    bool done() const override { return true; }
    Result<WaitStatus> wait(Timeout) const override { return WaitStatus::ready; }
    std::string describe() const override { return "GL work finished (glFinish)"; }
};

}  // namespace

const char* to_string(SyncMode mode) noexcept { return mode == SyncMode::native_fence ? "native_fence" : "cpu_wait"; }

struct SyncBridge::State {
    Context context;
    SyncBridgeOptions options;
    mutable std::mutex mutex;
    SyncMode mode = SyncMode::native_fence;
    std::string reason;
    std::atomic<bool> probed{false};

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
        ::dmabridge::detail::log_message(LogLevel::warning, "egl sync bridge: falling back to CPU waits: " + why);
    }

    // The kernel's EXPORT/IMPORT_SYNC_FILE, asked with the real ioctls on `buf` (a read snapshot
    // exported and imported back as a read fence changes nothing anyone waits for). ENOTTY means
    // Linux < 6.0: CPU waits from then on.
    Status probe(const DmaBuf& buf) {
        if (probed.load(std::memory_order_acquire) || current_mode() == SyncMode::cpu_wait) return {};
        auto unsupported = ::dmabridge::detail::probe_sync_file_ioctls(buf);
        if (!unsupported) return unsupported.error().with_context("egl sync bridge: probe the kernel");
        if (!unsupported->empty()) fall_back("probed: " + *unsupported);
        probed.store(true, std::memory_order_release);
        return {};
    }

    // Makes GL wait (server side) for `fence`; EGL owns the fd once the sync is made.
    Status gpu_wait(SyncFile fence) {
        auto& s = *detail::ContextAccess::state(context);
        const int fd = fence.fd();
        const EGLint attribs[] = {EGL_SYNC_NATIVE_FENCE_FD_ANDROID, fd, EGL_NONE};
        EGLSyncKHR sync = s.eglCreateSyncKHR(s.display, EGL_SYNC_NATIVE_FENCE_ANDROID, attribs);
        if (sync == EGL_NO_SYNC_KHR)
            return detail::egl_error("egl acquire: eglCreateSyncKHR(EGL_SYNC_NATIVE_FENCE_ANDROID, sync_file fd " +
                                     std::to_string(fd) + ")");
        (void)fence.release().release();  // EGL closes it with the sync
        const EGLint waited = s.eglWaitSyncKHR(s.display, sync, 0);
        const EGLint err = waited ? EGL_SUCCESS : eglGetError();
        s.eglDestroySyncKHR(s.display, sync);
        if (!waited) return detail::egl_error("egl acquire: eglWaitSyncKHR", err);
        return {};
    }

    Status acquire_one(const DmaBuf& buf, Access access) {
        if (auto p = probe(buf); !p) return p;
        if (current_mode() == SyncMode::cpu_wait) {
            auto w = buf.wait(access, options.cpu_wait_timeout);
            if (!w) return w.error().with_context("egl acquire (cpu wait)");
            if (*w == WaitStatus::timed_out)
                return Error::library(Errc::limit_exceeded, "egl acquire (cpu wait): the dma-buf's fences did not "
                                                            "signal within " +
                                                                std::to_string(options.cpu_wait_timeout.count()) + " ms");
            return {};
        }
        // An idle buffer costs one poll().
        auto idle = buf.wait(access, Timeout{0});
        if (!idle) return idle.error().with_context("egl acquire");
        if (*idle == WaitStatus::ready) return {};
        auto fence = buf.export_sync_file(access);
        if (!fence) return fence.error().with_context("egl acquire");
        return gpu_wait(std::move(*fence));
    }

    Result<std::shared_ptr<const Completion>> release_all(const std::vector<const DmaBuf*>& bufs, Access access) {
        auto& s = *detail::ContextAccess::state(context);
        for (const auto* b : bufs)
            if (auto p = probe(*b); !p) return p.error();
        if (current_mode() == SyncMode::cpu_wait) {
            s.glFinish();
            return std::shared_ptr<const Completion>(std::make_shared<Ended>());
        }
        auto fence = context.native_fence();
        if (!fence) return fence.error().with_context("egl release");
        for (const auto* b : bufs) {
            if (auto added = b->import_sync_file(*fence, access); !added)
                return added.error().with_context("egl release: add GL's fence to the dma-buf");
        }
        return completion_of(std::move(*fence));
    }
};

Result<SyncBridge> SyncBridge::create(const Context& context, SyncBridgeOptions options) {
    if (context.empty()) return Error::library(Errc::empty_object, "egl sync bridge: the Context is empty");
    auto state = std::make_shared<State>();
    state->context = context;
    state->options = options;
    if (options.force_cpu_wait) {
        state->mode = SyncMode::cpu_wait;
        state->reason = "forced (SyncBridgeOptions::force_cpu_wait)";
    } else if (!has(context.features(), Feature::native_fence_sync)) {
        state->mode = SyncMode::cpu_wait;
        state->reason = "the display lacks EGL_ANDROID_native_fence_sync, EGL_KHR_wait_sync or EGL_KHR_fence_sync";
    }
    if (state->mode == SyncMode::cpu_wait)
        ::dmabridge::detail::log_message(LogLevel::info, "egl sync bridge: CPU waits: " + state->reason);
    return SyncBridge(std::move(state));
}

SyncMode SyncBridge::mode() const { return state_ ? state_->current_mode() : SyncMode::cpu_wait; }

std::string SyncBridge::reason() const {
    if (!state_) return "the SyncBridge is empty (moved from)";
    std::lock_guard lock(state_->mutex);
    return state_->reason;
}

Status SyncBridge::acquire(const BufferDesc& desc, Access access) {
    if (!state_) return Error::library(Errc::empty_object, "egl acquire: the SyncBridge is empty (moved from)");
    if (auto c = desc.check_planes("egl acquire"); !c) return c;
    if (auto c = detail::require_current(detail::ContextAccess::state(state_->context).get(), "egl acquire"); !c) return c;
    for (const auto* b : desc.distinct_buffers())
        if (auto a = state_->acquire_one(*b, access); !a) return a;
    return {};
}

Status SyncBridge::acquire(const DmaBuf& dmabuf, Access access) {
    if (!state_) return Error::library(Errc::empty_object, "egl acquire: the SyncBridge is empty (moved from)");
    if (dmabuf.fd() < 0) return Error::library(Errc::empty_object, "egl acquire: the dma-buf was moved from");
    if (auto c = detail::require_current(detail::ContextAccess::state(state_->context).get(), "egl acquire"); !c) return c;
    return state_->acquire_one(dmabuf, access);
}

Result<std::shared_ptr<const Completion>> SyncBridge::release(const BufferDesc& desc, Access access) {
    if (!state_) return Error::library(Errc::empty_object, "egl release: the SyncBridge is empty (moved from)");
    if (auto c = desc.check_planes("egl release"); !c) return c.error();
    if (auto c = detail::require_current(detail::ContextAccess::state(state_->context).get(), "egl release"); !c) return c.error();
    return state_->release_all(desc.distinct_buffers(), access);
}

Result<std::shared_ptr<const Completion>> SyncBridge::release(const DmaBuf& dmabuf, Access access) {
    if (!state_) return Error::library(Errc::empty_object, "egl release: the SyncBridge is empty (moved from)");
    if (dmabuf.fd() < 0) return Error::library(Errc::empty_object, "egl release: the dma-buf was moved from");
    if (auto c = detail::require_current(detail::ContextAccess::state(state_->context).get(), "egl release"); !c) return c.error();
    return state_->release_all({&dmabuf}, access);
}

Status SyncBridge::acquire_point(const Timeline& timeline, std::uint64_t point, Timeout submit_timeout) {
    const std::string what = "egl acquire point " + std::to_string(point) + " of a syncobj timeline";
    if (!state_) return Error::library(Errc::empty_object, what + ": the SyncBridge is empty (moved from)");
    if (!timeline.valid()) return Error::library(Errc::empty_object, what + ": the Timeline is empty (moved from)");
    State& st = *state_;
    if (auto c = detail::require_current(detail::ContextAccess::state(st.context).get(), what.c_str()); !c) return c;
    if (st.current_mode() == SyncMode::cpu_wait) {
        auto w = timeline.wait(point, st.options.cpu_wait_timeout);
        if (!w) return w.error().with_context(what + " (cpu wait)");
        if (*w == WaitStatus::timed_out)
            return Error::library(Errc::limit_exceeded, what + " (cpu wait): the point did not signal within " +
                                                            std::to_string(st.options.cpu_wait_timeout.count()) + " ms");
        return {};
    }
    auto submitted = timeline.wait(point, submit_timeout, PointState::submitted);
    if (!submitted) return submitted.error().with_context(what);
    if (*submitted == WaitStatus::timed_out)
        return Error::from_errno(ETIMEDOUT, what + ": nothing was submitted for the point within " +
                                                std::to_string(submit_timeout.count()) + " ms");
    auto fence = timeline.export_sync_file(point);
    if (!fence) return fence.error().with_context(what);
    if (auto status = fence->status(); status && *status == FenceStatus::signaled) return {};
    return st.gpu_wait(std::move(*fence));
}

Result<std::shared_ptr<const Completion>> SyncBridge::release_point(Timeline& timeline, std::uint64_t point) {
    const std::string what = "egl release to point " + std::to_string(point) + " of a syncobj timeline";
    if (!state_) return Error::library(Errc::empty_object, what + ": the SyncBridge is empty (moved from)");
    if (!timeline.valid()) return Error::library(Errc::empty_object, what + ": the Timeline is empty (moved from)");
    State& st = *state_;
    if (auto c = detail::require_current(detail::ContextAccess::state(st.context).get(), what.c_str()); !c) return c.error();
    // Checked before the GL work's completion is spent on it.
    auto last = timeline.last_submitted();
    if (!last) return last.error().with_context(what);
    if (point <= *last)
        return Error::library(Errc::invalid_argument, what + ": point " + std::to_string(*last) +
                                                          " is submitted already; points are reached in order");
    if (st.current_mode() == SyncMode::cpu_wait) {
        detail::ContextAccess::state(st.context)->glFinish();
        if (auto ok = timeline.signal(point); !ok) return ok.error().with_context(what);
        return std::shared_ptr<const Completion>(std::make_shared<Ended>());
    }
    auto fence = st.context.native_fence();
    if (!fence) return fence.error().with_context(what);
    if (auto ok = timeline.import_sync_file(point, *fence); !ok) return ok.error().with_context(what);
    return completion_of(std::move(*fence));
}

}  // namespace dmabridge::egl
