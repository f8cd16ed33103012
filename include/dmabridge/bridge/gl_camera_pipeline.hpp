// SPDX-License-Identifier: MIT
#pragma once
/// @file bridge/gl_camera_pipeline.hpp
/// camera::GlCameraPipeline: the camera pipeline on OpenGL ES, with the same two paths,
/// options, callback and statistics as the Vulkan camera::CameraPipeline (bridge/camera_pipeline.hpp;
/// the GL copy path counts each dma-buf whole in bytes_copied_by_cpu, since it uploads from it).
///
/// The camera is a v4l2::CaptureSource, as for CameraPipeline: the driver's exported buffers
/// served through a buffer queue to one consumer in this process.
///
/// Path::zero_copy: each buffer the consumer receives is imported into EGL once through
///   egl::ImportCache, as 8-bit texel views of its bytes (egl/frame_converter.hpp). Per frame:
///   acquire from the queue, cached import, acquire the buffer's fences (egl::SyncBridge: a
///   GPU-side wait), convert (a compute dispatch), add the GL work's native fence to the buffer
///   and release it to the queue with that fence: the driver has it back once it signalled. No
///   pixel is touched by the CPU.
/// Path::copy: the CPU uploads each frame from a mapping of the V4L2 buffer (glTexSubImage2D,
///   inside a DMA_BUF_IOCTL_SYNC bracket), releases the buffer at once, and the same shader
///   converts it.
///
/// One thread drives everything, with the context current on it. FrameInfo::image is not set
/// (GL has no VkImage); FrameInfo::gl_texture names the slot's RGBA texture.

#include <memory>
#include <string>

#include <dmabridge/base/result.hpp>
#include <dmabridge/egl/context.hpp>

#include <dmabridge/bridge/camera_pipeline.hpp>

namespace dmabridge::camera {

/// The GL pipeline. Move-only; a moved-from pipeline fails run() with Errc::empty_object.
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

    /// The negotiated frame layout of the ring's buffers (all zero when moved from).
    const dmabridge::FrameLayout& layout() const noexcept;
    /// The V4L2 device's node (empty when moved from).
    const std::string& device_path() const noexcept;

    struct State;  ///< the implementation's (src/bridge/gl_camera_pipeline.cpp)

private:
    explicit GlCameraPipeline(std::unique_ptr<State> state) noexcept;
    std::unique_ptr<State> state_;
};

}  // namespace dmabridge::camera
