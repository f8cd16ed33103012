// SPDX-License-Identifier: MIT
#pragma once
// The GPU half of the camera pipeline: shaders/camera_to_rgba.comp with one descriptor set per
// frame in flight, the RGBA image the application owns, and optional read-back buffers so the
// converted frames can be checked or saved.

#include <cstdint>
#include <span>
#include <vector>

#include <vulkan/vulkan_core.h>

#include <dmabridge/base/result.hpp>
#include <dmabridge/format/frame_layout.hpp>

#include "vulkan_compute.hpp"

namespace camera {

class GpuConverter {
public:
    /// A converter for frames of `width` x `height` with `slots` frames in flight at most. With
    /// `readback`, each slot also gets a host-visible buffer the converted frame is copied to.
    static dmabridge::Result<GpuConverter> create(const sample::DeviceFunctions& vk, std::uint32_t width,
                                                  std::uint32_t height, std::uint32_t slots, bool readback);

    /// Points slot `slot`'s descriptor set at the frame's buffers (plane1 = plane0 for one-buffer
    /// frames). Only while no work of that slot is pending; skipped when nothing changed.
    /// Returns true when the binding changed.
    bool bind(std::uint32_t slot, VkBuffer plane0, VkBuffer plane1);

    /// Records the conversion of the frame `layout` describes in slot `slot`'s buffers, and, with
    /// `read_back` (only when the converter was created with read-back buffers), the copy into
    /// slot `slot`'s read-back buffer. The caller records the barriers
    /// that make the source buffers readable by the compute shader. The commands depend only on
    /// the arguments and the slot's binding: they can be recorded once and submitted many times.
    void record(VkCommandBuffer cmd, std::uint32_t slot, const dmabridge::FrameLayout& layout, bool read_back) const;

    /// Slot `slot`'s last converted frame (RGBA, width * height * 4 bytes), once its work has
    /// completed (its fence waited for). Empty without read-back.
    std::span<const std::uint8_t> readback(std::uint32_t slot) const;

    /// The application's RGBA image: GENERAL after a conversion, TRANSFER_SRC_OPTIMAL after a
    /// conversion with read-back.
    VkImage image() const noexcept { return image_.handle(); }

private:
    sample::DeviceFunctions vk_;
    std::uint32_t width_ = 0, height_ = 0;
    sample::ComputePipeline pipeline_;
    sample::DeviceImage image_;
    std::vector<sample::HostBuffer> readback_;
    std::vector<std::pair<VkBuffer, VkBuffer>> bound_;
};

}  // namespace camera
