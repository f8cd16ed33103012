// SPDX-License-Identifier: MIT
#pragma once
// GlCameraPipeline: the camera pipeline on OpenGL ES (camera_zero_copy --api gl), with the same
// two paths, options, callback and statistics as the Vulkan CameraPipeline.
//
// The camera is a dmabridge::v4l2::CaptureSource, as for CameraPipeline: the driver's exported buffers served
// through a buffer queue to one consumer in this process.
//
// zero_copy: each buffer the consumer receives is imported into EGL once through
//   egl::ImportCache, as 8-bit texel views of its bytes (gl_converter.hpp). Per frame: acquire
//   from the queue, cached import, acquire the buffer's fences (egl::SyncBridge: a GPU-side wait),
//   convert (a compute dispatch), add the GL work's native fence to the buffer and release it to
//   the queue with that fence: the driver has it back once it signalled. No pixel is touched by
//   the CPU.
// copy: the CPU uploads each frame from a mapping of the V4L2 buffer (glTexSubImage2D, inside a
//   DMA_BUF_IOCTL_SYNC bracket), releases the buffer at once, and the same shader converts it.
//
// One thread drives everything, with the context current on it.

#include <memory>
#include <string>

#include <dmabridge/base/result.hpp>
#include <dmabridge/egl/context.hpp>

#include "camera_pipeline.hpp"

namespace camera {

class GlCameraPipeline {
public:
    /// Opens the device, sets the format (exactly), allocates the ring and the GL side.
    /// `context` must be current on the calling thread, and outlive the pipeline. Errors: as
    /// CameraPipeline::create, and the GL side's (shader, framebuffers).
    static dmabridge::Result<GlCameraPipeline> create(const dmabridge::egl::Context& context,
                                                      const PipelineOptions& options);
    GlCameraPipeline(GlCameraPipeline&&) noexcept;
    GlCameraPipeline& operator=(GlCameraPipeline&&) noexcept;
    /// Destroys the GL objects: the context must be current.
    ~GlCameraPipeline();

    /// As CameraPipeline::run: streams until `frames` frames were converted, calling `on_frame`
    /// as the GPU finishes each; leaves nothing on the GPU or streaming, on error too.
    dmabridge::Result<PipelineStats> run(std::uint64_t frames, const FrameCallback& on_frame = {});

    const dmabridge::FrameLayout& layout() const noexcept;
    const std::string& device_path() const noexcept;

    struct State;

private:
    explicit GlCameraPipeline(std::unique_ptr<State> state) noexcept;
    std::unique_ptr<State> state_;
};

}  // namespace camera
