// SPDX-License-Identifier: MIT
// Draws a YUYV test picture into a storage buffer (a Vulkan buffer exported as a dma-buf that a
// V4L2 output device then reads): for GPU -> V4L2 tests and samples.
#version 450

layout(local_size_x = 16, local_size_y = 16) in;

// One word per two pixels: Y0 U Y1 V, little-endian.
layout(set = 0, binding = 0, std430) writeonly buffer Target { uint words[]; } target;

layout(push_constant) uniform Picture {
    uint width;   // in pixels, even
    uint height;
    uint stride;  // bytes per row, a multiple of 4
    uint frame;
} pic;

// Must match draw_yuyv_pair() in tests/kernel/draw_yuyv.hpp.
uvec4 pair_at(uint x2, uint y, uint frame) {
    const uint y0 = 16u + ((x2 * 2u + y + frame) % 220u);
    const uint y1 = 16u + ((x2 * 2u + 1u + y + frame) % 220u);
    const uint u = 16u + ((x2 * 3u + frame) % 225u);
    const uint v = 16u + ((y * 5u + frame) % 225u);
    return uvec4(y0, u, y1, v);
}

void main() {
    const uint x2 = gl_GlobalInvocationID.x;  // pair index
    const uint y = gl_GlobalInvocationID.y;
    if (x2 * 2u >= pic.width || y >= pic.height) return;
    const uvec4 b = pair_at(x2, y, pic.frame);
    target.words[(y * pic.stride) / 4u + x2] = b.x | (b.y << 8) | (b.z << 16) | (b.w << 24);
}
