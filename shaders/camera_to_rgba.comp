// SPDX-License-Identifier: MIT
// Converts one camera frame, read as raw bytes from storage buffers (a V4L2 buffer imported as a
// dma-buf, or a staging copy of one), to RGBA in an image the application owns.
//
// Reading bytes rather than sampling an image keeps every camera format importable on every
// device: lavapipe, for one, cannot make a storage or sampled view of YUYV without a sampler
// Y'CbCr conversion. The host checks each plane's offset, stride and size against the buffer
// before it dispatches (dmabridge::frame_layout(), src/format/frame_layout.cpp); the shader trusts them.
#version 450
#extension GL_GOOGLE_include_directive : require

layout(local_size_x = 16, local_size_y = 16) in;

layout(set = 0, binding = 0, rgba8) uniform writeonly image2D target;
// Plane 0, and plane 1 (NV12's chroma; the same buffer as plane 0 when the format has one plane
// or both planes share a dma-buf).
layout(set = 0, binding = 1, std430) readonly buffer Plane0 { uint words[]; } plane0;
layout(set = 0, binding = 2, std430) readonly buffer Plane1 { uint words[]; } plane1;

// Specialization constant 0 (FrameConverterOptions::bgra_bytes): store B, G, R, A instead of R, G,
// B, A, so that an R8G8B8A8 target holds DRM XRGB8888 / ARGB8888 bytes, the formats every KMS
// plane scans out (vkms takes no XBGR8888).
layout(constant_id = 0) const bool bgra_bytes = false;

// Must match dmabridge::FrameFormat in include/dmabridge/format/frame_layout.hpp.
const uint format_yuyv = 0u;
const uint format_uyvy = 1u;
const uint format_nv12 = 2u;
const uint format_xrgb8888 = 3u;

layout(push_constant) uniform Source {
    uint format;
    uint width;
    uint height;
    uint offset0;
    uint stride0;
    uint offset1;
    uint stride1;
} src;

uint byte0(uint address) { return (plane0.words[address >> 2] >> ((address & 3u) * 8u)) & 0xffu; }
uint byte1(uint address) { return (plane1.words[address >> 2] >> ((address & 3u) * 8u)) & 0xffu; }

// BT.601, limited range, in 8.8 fixed point: the same integer arithmetic as the CPU reference
// (dmabridge::yuv_to_rgb in src/format/frame_layout.cpp), so both give identical bytes.
uvec3 yuv_to_rgb(uint y, uint u, uint v) {
    const int c = int(y) - 16;
    const int d = int(u) - 128;
    const int e = int(v) - 128;
    const ivec3 rgb = ivec3(298 * c + 409 * e + 128, 298 * c - 100 * d - 208 * e + 128, 298 * c + 516 * d + 128) >> 8;
    return uvec3(clamp(rgb, 0, 255));
}

void main() {
    const uvec2 p = gl_GlobalInvocationID.xy;
    if (p.x >= src.width || p.y >= src.height) return;
    uvec4 rgba = uvec4(0u, 0u, 0u, 255u);
    if (src.format == format_yuyv || src.format == format_uyvy) {
        // Two pixels per 4 bytes: Y0 U Y1 V (YUYV) or U Y0 V Y1 (UYVY).
        const uint pair = src.offset0 + p.y * src.stride0 + (p.x & ~1u) * 2u;
        const bool yuyv = src.format == format_yuyv;
        const uint y = byte0(pair + (yuyv ? 0u : 1u) + (p.x & 1u) * 2u);
        const uint u = byte0(pair + (yuyv ? 1u : 0u));
        const uint v = byte0(pair + (yuyv ? 3u : 2u));
        rgba.rgb = yuv_to_rgb(y, u, v);
    } else if (src.format == format_nv12) {
        // Full-size luma, then interleaved U V at half resolution in both directions.
        const uint y = byte0(src.offset0 + p.y * src.stride0 + p.x);
        const uint uv = src.offset1 + (p.y >> 1) * src.stride1 + (p.x & ~1u);
        rgba.rgb = yuv_to_rgb(y, byte1(uv), byte1(uv + 1u));
    } else if (src.format == format_xrgb8888) {
        // DRM XRGB8888: a little-endian 32-bit word, bytes B G R X.
        const uint texel = src.offset0 + p.y * src.stride0 + p.x * 4u;
        rgba.rgb = uvec3(byte0(texel + 2u), byte0(texel + 1u), byte0(texel));
    }
    if (bgra_bytes) rgba.rgb = rgba.bgr;
    // k / 255.0 is stored as exactly k in UNORM8.
    imageStore(target, ivec2(p), vec4(rgba) / 255.0);
}
