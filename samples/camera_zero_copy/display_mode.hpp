// SPDX-License-Identifier: MIT
#pragma once
// camera_zero_copy --display: the camera shown on a KMS plane. Direct (no copy, no GPU): each
// V4L2 buffer becomes a framebuffer once (kms::FramebufferCache) and frames are flipped as they
// arrive; a buffer goes back to the camera only after the flip that replaced it on screen
// completed. --copy instead copies every frame with the CPU into one of three scan-out buffers
// (the baseline of the bench's camera_display_copy_over_direct). A camera format no plane takes
// (YUYV on vkms) goes through the GPU: vulkan::FrameConverter writes each frame into one of three
// exported XRGB8888 images, flipped with the conversion's fence as IN_FENCE_FD.
#include <cstdint>
#include <string>

namespace camera {

struct DisplayOptions {
    std::string camera;            // V4L2 node; empty: the first capture device
    std::string card;              // DRM primary node; empty: the first atomic one
    std::uint32_t v4l2_format = 0;  // 0: XR24 (a plane must scan out the camera's format)
    std::uint32_t width = 640, height = 480, fps = 0, ring = 4;
    std::uint64_t frames = 60;
    bool copy = false;   // copy every frame with the CPU instead of scanning the camera's buffers out
    bool check = false;  // capture the screen through writeback at the end and compare every pixel
    bool validate = false;  // the converter path: Vulkan validation layer, any message fails the run
};

// Runs the display loop and prints what it did ("cpu per frame", flips, cache hits, pixels
// checked). Returns the process exit code.
int display(const DisplayOptions& options);

}  // namespace camera
