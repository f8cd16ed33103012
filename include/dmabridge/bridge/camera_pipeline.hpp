// SPDX-License-Identifier: MIT
#pragma once
/// @file bridge/camera_pipeline.hpp
/// camera::CameraPipeline: a V4L2 camera's frames converted to RGBA on a Vulkan device, with no
/// CPU copy: what a camera preview, a recorder's colour conversion or a vision pipeline's input
/// stage writes by hand, built from the library's parts.
///
/// The camera is a v4l2::CaptureSource: the driver's buffers, exported (VIDIOC_EXPBUF), served
/// through a buffer queue (dmabridge/queue) to one consumer in this process. The queue does the
/// ring's bookkeeping: a buffer goes back to the driver once the consumer released it and its
/// release fence signalled, never while the GPU may still read it.
///
/// Path::zero_copy: each buffer is imported into Vulkan once through a vulkan::ImportCache (a
///   miss the first time each V4L2 buffer comes, a hit ever after, in later run()s too). Per
///   frame: acquire from the queue, cached import, acquire the buffer's fences (SyncBridge),
///   convert (vulkan::FrameConverter, into the slot's own RGBA image), publish the GPU's read
///   fence on the buffer and release the buffer to the queue with that fence. The CPU touches
///   no pixel.
/// Path::copy: the CPU copies each frame (through a mapping, inside a DMA_BUF_IOCTL_SYNC
///   bracket) into a host-visible Vulkan buffer, releases the buffer at once, and the same
///   shader converts the copy. For a device that cannot import the camera's buffers, and the
///   baseline the zero-copy path is measured against (bench/bench_camera.cpp); every byte it
///   copies is counted (PipelineStats::bytes_copied_by_cpu).
///
/// One thread drives everything: run() polls the V4L2 device and the queue's producer together
/// (CaptureSource::pump) and returns when the frames asked for were converted. Every wait is
/// bounded by PipelineOptions::timeout. Nothing the GPU may still use is destroyed: run() waits
/// for every frame's work before it returns (on error, or when on_frame throws, too), work that
/// never completes makes the pipeline leak rather than destroy what it uses (see run()), and the
/// import cache waits for recorded uses when the pipeline is destroyed.
///
/// Thread safety: one pipeline is used by one thread at a time.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <linux/videodev2.h>

#include <dmabridge/base/access.hpp>
#include <dmabridge/base/result.hpp>
#include <dmabridge/bridge/capture_source.hpp>
#include <dmabridge/format/buffer_desc.hpp>
#include <dmabridge/format/frame_layout.hpp>
#include <dmabridge/vulkan/context.hpp>

namespace dmabridge::camera {

/// How frames reach the GPU: imported as they are (zero_copy), or copied by the CPU first (copy).
enum class Path : std::uint8_t { zero_copy, copy };

/// "zero-copy" or "copy".
const char* to_string(Path p) noexcept;

/// What CameraPipeline::create opens and how run() streams.
struct PipelineOptions {
    std::string device;               ///< a V4L2 node; empty: the first capture device
    std::uint32_t pixel_format = 0;   ///< a V4L2 fourcc (YUYV, UYVY, NV12, NM12, XR24); 0: YUYV
    std::uint32_t width = 640;        ///< pixels; the driver must take it exactly
    std::uint32_t height = 480;       ///< rows; the driver must take it exactly
    /// Frames per second to ask of the driver (VIDIOC_S_PARM); 0 keeps the driver's rate. The
    /// driver may round it: PipelineStats::camera_fps says what it chose.
    std::uint32_t fps = 0;
    std::uint32_t ring_size = 4;      ///< buffers asked of the driver
    Path path = Path::zero_copy;      ///< imported (zero_copy) or copied by the CPU (copy)
    /// Which converted frames to copy back into host memory for the on_frame callback (tests,
    /// PNGs), by frame number (0, 1, ...); empty: none. Only the frames it selects pay for the
    /// copy (width * height * 4 bytes on the GPU, then read by the host): the others are
    /// submitted without it. Use read_back_all() where every frame must be checked.
    std::function<bool(std::uint64_t number)> read_back;
    /// How long to wait for the driver's next frame or the GPU before giving up.
    dmabridge::Timeout timeout = std::chrono::seconds(10);
};

/// A converted frame, given to the on_frame callback once the GPU has finished with it.
struct FrameInfo {
    std::uint64_t number = 0;      ///< 0, 1, ... in capture order
    std::uint32_t slot = 0;        ///< the V4L2 buffer index the frame was captured in
    std::uint32_t sequence = 0;    ///< the driver's frame counter
    dmabridge::FrameLayout layout; ///< the frame's format, size and plane layout (as layout())
    /// zero_copy: the V4L2 buffer the GPU read (as the queue's consumer received it), not yet
    /// given back to the driver.
    const dmabridge::BufferDesc* source = nullptr;
    /// copy: the bytes the GPU read (the staging copy), plane 0 and plane 1.
    std::span<const std::byte> staged0, staged1;
    /// The converted frame (RGBA), when PipelineOptions::read_back selected this frame; else empty.
    std::span<const std::uint8_t> rgba;
    /// CameraPipeline: the RGBA image the frame was converted into (VK_FORMAT_R8G8B8A8_UNORM,
    /// optimal tiling, in VK_IMAGE_LAYOUT_GENERAL; the conversion's fence has signalled). Each
    /// frame in flight has an image of its own: zero_copy, one per V4L2 buffer (`slot`); copy, one
    /// per staging slot, used round robin. The next frame converted into it overwrites it, so:
    ///   - read it only with commands the application submits from on_frame to the Context's own
    ///     queue (Context::submit / submit_async): submission order on that queue puts them
    ///     before the next conversion, whose barrier waits for all earlier commands;
    ///   - record a barrier first from VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT /
    ///     VK_ACCESS_SHADER_WRITE_BIT (the fence makes the writes visible to the host only), and
    ///     leave the image in VK_IMAGE_LAYOUT_GENERAL or let the next conversion discard it (it
    ///     transitions from UNDEFINED);
    ///   - make sure that work completed before the pipeline is destroyed: it does not know of it.
    /// VK_NULL_HANDLE for GlCameraPipeline.
    VkImage image = VK_NULL_HANDLE;
    /// GlCameraPipeline: the RGBA texture the frame was converted into (GL_TEXTURE_2D, RGBA8,
    /// one per frame in flight as for `image`; the conversion complete). GL orders the
    /// application's commands issued from on_frame on the same context before the next
    /// conversion. 0 for CameraPipeline.
    unsigned int gl_texture = 0;
};

using FrameCallback = std::function<void(const FrameInfo&)>;

/// A PipelineOptions::read_back that selects every frame.
inline bool read_back_all(std::uint64_t) { return true; }

/// What the pipelines open their camera with: the capture part of `options`.
inline dmabridge::v4l2::CaptureOptions capture_options(const PipelineOptions& options) {
    return {options.device, options.pixel_format ? options.pixel_format : V4L2_PIX_FMT_YUYV, options.width,
            options.height, options.fps, options.ring_size};
}

/// What one run() did: frames, the driver's errors, timing, the import cache and the CPU's share.
struct PipelineStats {
    std::uint64_t frames = 0;              ///< frames converted and handed to on_frame
    std::uint64_t driver_errors = 0;       ///< buffers the driver flagged V4L2_BUF_FLAG_ERROR (skipped)
    /// Buffers the driver filled short of the frame, or elsewhere (v4l2::Dequeued::incomplete):
    /// skipped, never converted.
    std::uint64_t incomplete_frames = 0;
    double seconds = 0;                    ///< from stream on to the last frame's completion
    double fps = 0;                        ///< frames / seconds
    /// zero_copy: a frame's imports that existed already (found in the import cache, or kept
    /// from the buffer's previous frame of this run), and imports made anew (one per dma-buf of
    /// each V4L2 buffer the first time it comes; none in later runs).
    std::uint64_t cache_hits = 0;
    std::uint64_t cache_misses = 0;
    /// copy: bytes the CPU copied out of the camera's buffers (Vulkan: each buffer plane's
    /// sizeimage, at most its dma-buf; GL: each dma-buf whole). 0 on zero_copy.
    std::uint64_t bytes_copied_by_cpu = 0;
    double fence_wait_ms = 0;              ///< time the thread was blocked on the GPU (fences, publish)
    /// CPU time of the thread (CLOCK_THREAD_CPUTIME_ID) per frame from the queue's acquire to
    /// the submit: the mean, and the median (which one-off stalls such as page faults do not move).
    double cpu_us_dequeue_to_submit = 0;
    double cpu_us_dequeue_to_submit_median = 0;
    /// CPU time of the thread per frame outside acquire -> submit: pumping the camera,
    /// publishing the GPU's fence, releasing the buffer, preparing the slot's next release. The
    /// run's thread CPU time less the acquire -> submit samples, over the frames: two clock reads
    /// per run, none per frame (CLOCK_THREAD_CPUTIME_ID is a system call).
    double cpu_us_after_submit = 0;
    /// zero_copy: buffers the queue gave back (their release fence signalled) while the submit's
    /// VkFence had not signalled yet. The frame is finished only after that fence anyway; 0 is
    /// expected.
    std::uint64_t released_before_gpu_done = 0;
    std::uint32_t ring_size = 0;           ///< buffers the driver gave
    double camera_fps = 0;                 ///< the driver's frame rate (0: unknown)
    std::uint32_t max_in_flight = 0;       ///< most frames on the GPU at once
    std::string sync_mode;                 ///< the SyncBridge's mode and release mode (zero_copy)
};

/// What the copy path copies: for each V4L2 buffer and each of its distinct dma-bufs, the
/// bytes (that buffer plane's sizeimage, at most the dma-buf), and for each dma-buf position the
/// staging size (the largest such dma-buf of the ring, so every buffer's copy fits).
struct CopySizes {
    std::vector<std::vector<std::uint32_t>> bytes;  ///< [V4L2 buffer][dma-buf]: bytes to copy
    std::vector<std::uint64_t> staging;             ///< [dma-buf position]: staging buffer size
};
/// CopySizes from each V4L2 buffer's dma-buf sizes and the format's sizeimage per buffer
/// plane. Errc::invalid_argument when the buffers have different numbers of dma-bufs.
dmabridge::Result<CopySizes> copy_sizes(const std::vector<std::vector<std::uint64_t>>& dmabuf_sizes,
                                        std::span<const std::uint32_t> size_image);

/// The pipeline: a camera, its queue, and the GPU side of the chosen Path. Move-only; a
/// moved-from pipeline fails run() with Errc::empty_object.
class CameraPipeline {
public:
    /// Opens the device, sets the format (exactly; an adjusted format is an error naming what
    /// the driver offers), allocates the ring and the GPU side. `context` must outlive it.
    static dmabridge::Result<CameraPipeline> create(const dmabridge::vulkan::Context& context,
                                                    const PipelineOptions& options);
    CameraPipeline(CameraPipeline&&) noexcept;
    CameraPipeline& operator=(CameraPipeline&&) noexcept;
    ~CameraPipeline();

    /// Streams until `frames` frames were converted, calling `on_frame` for each as the GPU
    /// finishes it (before a zero-copy buffer goes back to the driver), then stops streaming. On
    /// error too, and when on_frame throws, the camera stops streaming and every frame's GPU work
    /// is waited for (each wait bounded by PipelineOptions::timeout). Should a frame's work not
    /// complete in that time (a hung GPU, a fence that never signals), run() fails with ETIMEDOUT,
    /// later run()s fail, and the pipeline's Vulkan objects that work may use are never destroyed:
    /// the destructor leaks them, with a LogLevel::error message. May be called again (a new
    /// queue consumer each time; the import cache stays, so later runs only hit). Errors: the
    /// camera's, the GPU's, the callback's exceptions (passed through), Errc::empty_object when
    /// moved from.
    dmabridge::Result<PipelineStats> run(std::uint64_t frames, const FrameCallback& on_frame = {});

    /// The negotiated frame layout of the ring's buffers (all zero when moved from).
    const dmabridge::FrameLayout& layout() const noexcept;
    /// The V4L2 device's node (empty when moved from).
    const std::string& device_path() const noexcept;

    struct State;  ///< the implementation's (src/bridge/camera_pipeline.cpp)

private:
    explicit CameraPipeline(std::unique_ptr<State> state) noexcept;
    std::unique_ptr<State> state_;
};

}  // namespace dmabridge::camera
