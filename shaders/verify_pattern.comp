// SPDX-License-Identifier: MIT
// Device B: counts the pixels of the shared image that differ from frame `frame`'s pattern.
#version 450
#extension GL_GOOGLE_include_directive : require

layout(local_size_x = 16, local_size_y = 16) in;

layout(set = 0, binding = 0, rgba8) uniform readonly image2D source;

// Zeroed by the host before the dispatch, read back by the host after it.
layout(set = 0, binding = 1, std430) buffer Result {
    uint mismatches;
} result;

layout(push_constant) uniform Frame {
    uint frame;
} push;

#include "pattern.glsl"

void main() {
    const uvec2 pixel = gl_GlobalInvocationID.xy;
    if (any(greaterThanEqual(pixel, uvec2(imageSize(source))))) return;
    // UNORM8 loads as k / 255.0; rounding recovers k exactly.
    const uvec4 texel = uvec4(round(imageLoad(source, ivec2(pixel)) * 255.0));
    if (any(notEqual(texel, pattern_texel(pixel, push.frame)))) atomicAdd(result.mismatches, 1u);
}
