// SPDX-License-Identifier: MIT
#pragma once
/// @file egl/sync_bridge.hpp
/// SyncBridge: implicit sync (the fences a dma-buf carries) bridged both ways to OpenGL ES, the GL
/// twin of vulkan::SyncBridge.
///
/// Around GL work that touches shared dma-bufs:
///   1. acquire(desc, access): the buffers' fences for that access, exported as a sync_file
///      (DMA_BUF_IOCTL_EXPORT_SYNC_FILE), imported as an EGL_SYNC_NATIVE_FENCE_ANDROID and waited
///      for by the GPU (eglWaitSyncKHR: a server-side wait, the CPU does not block). Buffers
///      without pending fences cost one poll() and nothing else.
///   2. the GL work.
///   3. release(desc, access): glFlush, a native fence of the work (eglDupNativeFenceFDANDROID)
///      added to every distinct dma-buf as a write (or read) fence (DMA_BUF_IOCTL_IMPORT_SYNC_FILE).
///      Consumers that know nothing of dmabridge (Vulkan, V4L2, a compositor) now wait for GL by
///      themselves. It returns the work's Completion, fit for ImportCache::set_last_use.
///
/// Fallback (SyncMode::cpu_wait), chosen at create() when the display lacks
/// EGL_ANDROID_native_fence_sync or EGL_KHR_wait_sync, when forced, or later when the kernel
/// answers ENOTTY to the sync_file ioctls (Linux < 6.0; probed with the real ioctls on the first
/// buffer, never by version): acquire waits for the fences on the CPU (poll), release waits for
/// the GL work (glFinish) so the buffers are idle when handed off. The same ordering, slower.
/// reason() says why; the choice is logged.
///
/// Threads: acquire() and release() are GL (the context current on the calling thread); mode()
/// and reason() any thread.

#include <cstdint>
#include <memory>
#include <string>

#include <dmabridge/base/access.hpp>
#include <dmabridge/base/result.hpp>
#include <dmabridge/egl/context.hpp>
#include <dmabridge/kernel/timeline.hpp>
#include <dmabridge/format/buffer_desc.hpp>
#include <dmabridge/kernel/completion.hpp>

namespace dmabridge::egl {

/// How fences cross between the kernel and GL.
enum class SyncMode : std::uint8_t {
    native_fence,  ///< sync_files as EGL native fences: nothing blocks the CPU
    cpu_wait,      ///< fallback: poll() before the work, glFinish() after it
};

/// "native_fence" or "cpu_wait".
const char* to_string(SyncMode mode) noexcept;

/// Options of a SyncBridge.
struct SyncBridgeOptions {
    /// Use SyncMode::cpu_wait even where native fences would work.
    bool force_cpu_wait = false;
    /// In cpu_wait mode, how long acquire waits for the buffers' fences.
    Timeout cpu_wait_timeout = forever;
};

/// The bridge for one Context. Thread-safe (see the file comment for GL calls). A moved-from
/// SyncBridge is empty: every operation fails with Errc::empty_object.
class SyncBridge {
public:
    /// Chooses the mode from the context's features and `options`. Errors: an empty Context.
    static Result<SyncBridge> create(const Context& context, SyncBridgeOptions options = {});

    /// The mode in use; it can change once from native_fence to cpu_wait (kernel probe).
    SyncMode mode() const;
    /// Why the bridge is in cpu_wait mode; empty in native_fence mode.
    std::string reason() const;

    /// GL. Makes the GL commands issued after it wait for the fences of every distinct dma-buf
    /// of `desc` for `access` (read: the writers; write, read_write: all). Costs per buffer one
    /// poll(); for a busy buffer an EXPORT_SYNC_FILE ioctl, eglCreateSync, eglWaitSync and
    /// eglDestroySync. Errors: an empty description or plane, the context not current, the
    /// ioctls' and EGL's errors; cpu_wait: WaitStatus::timed_out becomes Errc::limit_exceeded.
    Status acquire(const BufferDesc& desc, Access access);
    /// GL. The same for one dma-buf (an empty one: Errc::empty_object).
    Status acquire(const DmaBuf& dmabuf, Access access);

    /// GL. After the GL work on `desc`: adds the work's completion to every distinct dma-buf of
    /// `desc` as a fence for `access` (write: everyone waits; read: writers wait), and returns
    /// that completion. native_fence: glFlush and one native fence (no CPU wait); cpu_wait:
    /// glFinish, and an already-complete completion.
    Result<std::shared_ptr<const Completion>> release(const BufferDesc& desc, Access access);
    /// GL. The same for one dma-buf (an empty one: Errc::empty_object).
    Result<std::shared_ptr<const Completion>> release(const DmaBuf& dmabuf, Access access);


    /// GL. Explicit sync with a DRM syncobj timeline: makes the GL commands issued after it wait
    /// for `point` of `timeline` (server side: the point's sync_file as a native fence and
    /// eglWaitSyncKHR). The point must be submitted for that: up to `submit_timeout` is waited
    /// for a submit (ETIMEDOUT after it, naming the point). A signalled point costs nothing
    /// more. cpu_wait: the CPU waits for the point (options.cpu_wait_timeout).
    /// Errors: Errc::empty_object for an empty bridge or Timeline; the context not current; the
    /// timeline's and EGL's.
    Status acquire_point(const Timeline& timeline, std::uint64_t point, Timeout submit_timeout);
    /// GL. After the GL work: its completion becomes the fence of `point` (glFlush, a native
    /// fence imported into the point; no CPU wait), and is returned. cpu_wait: glFinish, then the
    /// point is signalled. Errors: as acquire_point(); Timeline::import_sync_file()'s and
    /// signal()'s (a point not above the last submitted one).
    Result<std::shared_ptr<const Completion>> release_point(Timeline& timeline, std::uint64_t point);

    struct State;

private:
    explicit SyncBridge(std::shared_ptr<State> state) noexcept : state_(std::move(state)) {}
    std::shared_ptr<State> state_;
};

}  // namespace dmabridge::egl
