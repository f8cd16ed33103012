// SPDX-License-Identifier: MIT
#pragma once
/// @file vulkan/frame_converter.hpp
/// FrameConverter: camera frames (YUYV, UYVY, NV12 in one or two buffers, XRGB8888) converted to
/// RGBA by a Vulkan compute shader, recorded into the application's command buffers. The
/// shader's SPIR-V is built into the library: an installed libdmabridge needs no shader files.
///
/// The life cycle of one frame in flight, on descriptor set `s` (one set per frame the
/// application keeps on the GPU at once, FrameConverterOptions::frames_in_flight):
///
///     auto conv = vulkan::FrameConverter::create(device, {.frames_in_flight = 3});
///     auto in = cache.import_buffer(dmabuf, FrameConverter::source_usage);  // the frame's dma-buf
///     auto layout = dmabridge::frame_layout(desc);        // validated against the dma-buf
///     conv->bind(s, FrameSource::of(**in), FrameSource::of(**in), target);  // when the buffer changes
///     conv->record(cmd, s, *layout);   // recorded once, submitted every frame if nothing changes
///     auto work = context.submit_async(commands, semaphores);       // the application's submit
///     conv->set_last_use(s, *work);    // set s is rebound / the converter destroyed only after it
///
/// Inputs: storage buffers holding the frame's planes, typically dma-bufs imported through
/// vulkan::ImportCache (made with FrameConverter::source_usage), acquired from the camera with
/// SyncBridge barriers and semaphores, which the application records around record().
/// Output: the application's 2D target image through an R8G8B8A8_UNORM storage view (the
/// shader's rgba8 layout; SPIR-V has no BGRA storage format). For an XRGB8888 / ARGB8888
/// scan-out buffer, export the image as XRGB8888 with the Vulkan format R8G8B8A8_UNORM and set
/// FrameConverterOptions::bgra_bytes. The image is left in VK_IMAGE_LAYOUT_GENERAL with the
/// shader's writes done at VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT / VK_ACCESS_SHADER_WRITE_BIT.
/// A frame smaller than the target leaves the rest of the target undefined.
/// Fence out: the converter submits nothing; the application's submit carries the fence (a
/// Submission's VkFence from Context::submit_async), and an exported target gets its sync_file
/// from the application's SyncBridge release of the target, as for any other image it writes.
///
/// Every input is checked before anything is recorded: the layout against the bound buffers'
/// sizes and the target's extent, the set number, the handles. Nothing the GPU may still use is
/// destroyed: the pipeline, layouts and descriptor sets stay alive (also after the
/// FrameConverter and the vulkan::Device object are gone) until every use recorded with
/// set_last_use() completed, or, when one never completes within
/// FrameConverterOptions::destroy_timeout, are leaked with a LogLevel::error message.
///
/// Thread safety: one FrameConverter is used by one thread at a time (descriptor sets are
/// externally synchronized in Vulkan); distinct converters are independent.

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>

#include <vulkan/vulkan_core.h>

#include <dmabridge/base/access.hpp>
#include <dmabridge/base/result.hpp>
#include <dmabridge/format/frame_layout.hpp>
#include <dmabridge/kernel/completion.hpp>
#include <dmabridge/vulkan/device.hpp>
#include <dmabridge/vulkan/resources.hpp>

namespace dmabridge::vulkan {

class Submission;

/// Options of a FrameConverter. The zero value suits double buffering.
struct FrameConverterOptions {
    /// Descriptor sets: frames the application keeps on the GPU at once (each in its own set,
    /// since a set must not change while work uses it). 1 to 64.
    std::uint32_t frames_in_flight = 2;
    /// How long the destruction waits, in all, for the recorded uses of the sets. Objects whose
    /// use did not complete by then are leaked, never destroyed. `forever` waits without limit.
    Timeout destroy_timeout = std::chrono::seconds(5);
    /// Store each pixel's bytes as B, G, R, A instead of R, G, B, A. An R8G8B8A8 target then
    /// holds DRM XRGB8888 (or ARGB8888: alpha is 255) bytes, the format every KMS plane scans
    /// out (vkms and many display engines take no XBGR8888): describe its export as XRGB8888
    /// when giving it to KMS. A specialization constant: no cost per pixel.
    bool bgra_bytes = false;
};

/// A storage buffer the converter reads one plane (or both planes) of a frame from.
struct FrameSource {
    VkBuffer buffer = VK_NULL_HANDLE;
    /// Bytes of the buffer the shader may read (the whole buffer is bound). The frame layout
    /// is checked against it.
    std::uint64_t size = 0;
    /// What keeps `buffer` alive while a set is bound to it (may be null).
    std::shared_ptr<const Buffer> owner;
    /// A cached import (vulkan::ImportCache): the set holds it while bound, so its handle can
    /// never be freed and reused by another buffer under a set that bind() would think unchanged.
    static FrameSource of(std::shared_ptr<const Buffer> buffer) noexcept {
        const VkBuffer handle = buffer ? buffer->handle() : VK_NULL_HANDLE;
        const std::uint64_t bytes = buffer ? buffer->size() : 0;
        return {handle, bytes, std::move(buffer)};
    }
    /// A buffer the caller owns: it must stay alive as long as a set is bound to it (until
    /// bind() points the set elsewhere or the converter is gone), since bind() compares handles
    /// and a freed handle reused by a new buffer would look unchanged.
    static FrameSource of(const Buffer& buffer) noexcept { return {buffer.handle(), buffer.size(), nullptr}; }
};

/// The image the converter writes: `view` must be a 2D colour view of `image` (mip 0, layer 0)
/// made with VK_IMAGE_USAGE_STORAGE_BIT. `extent` is the image's size; frames larger than it
/// are refused.
struct FrameTarget {
    VkImage image = VK_NULL_HANDLE;
    VkImageView view = VK_NULL_HANDLE;
    VkExtent2D extent{};
};

/// The compute conversion of camera frames to RGBA. Move-only; a moved-from converter is empty
/// and every call on it fails at once with Errc::empty_object.
class FrameConverter {
public:
    /// The usage the source buffers need (import them with it).
    static constexpr VkBufferUsageFlags source_usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT;
    /// The usage the target image needs.
    static constexpr VkImageUsageFlags target_usage = VK_IMAGE_USAGE_STORAGE_BIT;
    /// The shader's workgroup size in x and y: record() dispatches ceil(width / 16) x
    /// ceil(height / 16) groups.
    static constexpr std::uint32_t workgroup_size = 16;

    /// Creates the shader module, the pipeline and its layouts, and a pool with
    /// `options.frames_in_flight` descriptor sets on `device` (a handful of Vulkan object
    /// creations; the pipeline compile is the costly one, tens of ms on a CPU device). The
    /// VkDevice must outlive the converter; the Device object need not.
    /// Errors: Errc::empty_object for an empty Device, Errc::invalid_argument for a set count
    /// outside 1..64, ErrorDomain::vulkan for a failed creation (naming which).
    static Result<FrameConverter> create(const Device& device, const FrameConverterOptions& options = {});

    /// An empty converter (valid() false).
    FrameConverter() noexcept;
    /// Moves: everything goes with the new object; the moved-from one is empty. Assignment
    /// first releases what the target held, as the destructor does.
    FrameConverter(FrameConverter&&) noexcept;
    FrameConverter& operator=(FrameConverter&&) noexcept;
    FrameConverter(const FrameConverter&) = delete;
    FrameConverter& operator=(const FrameConverter&) = delete;
    /// Waits (at most FrameConverterOptions::destroy_timeout, in all) for the uses recorded with
    /// set_last_use(), then destroys the pipeline, layouts, pool and shader module. Uses still
    /// pending then leave those objects leaked, with a LogLevel::error message.
    ~FrameConverter();

    /// Points descriptor set `set` at the frame's plane buffers (plane1 = plane0 for one-buffer
    /// frames and one-plane formats) and at `target`. No Vulkan call when nothing changed (a
    /// camera ring's buffers come back in the same sets): returns false then, true when the set
    /// was rewritten (vkUpdateDescriptorSets) and command buffers recorded with it must be
    /// recorded again.
    /// Errors: Errc::invalid_argument for a set out of range, a null buffer, view or image, a
    /// plane size of 0 or above the device's maxStorageBufferRange (128 MiB on many GPUs; bind a
    /// frame's planes as separate buffers there), an empty extent, or a set whose last recorded use has not completed (a set must not change
    /// under pending work; naming what is pending); Errc::empty_object when empty.
    Result<bool> bind(std::uint32_t set, FrameSource plane0, FrameSource plane1, const FrameTarget& target);

    /// Records into `cmd` the conversion of the frame `layout` describes from set `set`'s
    /// buffers into its target: a barrier that discards the target's old contents (UNDEFINED to
    /// GENERAL, after earlier compute writes and transfer reads of it), push constants, and the
    /// dispatch. The application records the barriers that make the source buffers readable by
    /// the compute shader (SyncBridge's acquire) before, and its own uses of the target after.
    /// The commands depend only on the arguments and the set's binding: record once, submit
    /// many times while the binding stays. No syscall.
    /// Errors: Errc::invalid_argument for a set out of range or not bound, a layout that does
    /// not fit the bound buffers (check_frame_fits(): "plane 1: offset ... > N bytes") or is
    /// larger than the target, a null command buffer; Errc::empty_object when empty.
    Status record(VkCommandBuffer cmd, std::uint32_t set, const FrameLayout& layout) const;
    /// The same, with `acquire` (the source buffers' barriers: SyncBridge Acquire::buffer_barrier,
    /// a queue family ownership transfer from the camera) recorded in the conversion's own barrier
    /// before the dispatch rather than in one of the application's: one pipeline barrier where
    /// there would be two, each of which drains the queue on many GPUs. Their source stage is
    /// the conversion barrier's (all commands), their destination the compute shader.
    Status record(VkCommandBuffer cmd, std::uint32_t set, const FrameLayout& layout,
                  std::span<const VkBufferMemoryBarrier> acquire) const;

    /// Records that submitted work uses set `set` (and the converter's pipeline) until `done`
    /// completes: bind() refuses to change the set, and the destructor waits, until then. Uses
    /// add up; completed ones are dropped. Errors: a set out of range, a null completion,
    /// Errc::empty_object when empty.
    Status set_last_use(std::uint32_t set, std::shared_ptr<const Completion> done);
    /// The same for a Submission (its completion(): the fence is kept from reuse meanwhile).
    Status set_last_use(std::uint32_t set, const Submission& work);

    /// The number of descriptor sets (FrameConverterOptions::frames_in_flight); 0 when empty.
    std::uint32_t frames_in_flight() const noexcept;
    /// True unless default-made or moved from.
    bool valid() const noexcept { return state_ != nullptr; }

    struct State;

private:
    explicit FrameConverter(std::shared_ptr<State> state) noexcept;
    void release() noexcept;
    std::shared_ptr<State> state_;
};

}  // namespace dmabridge::vulkan
