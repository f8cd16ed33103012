// SPDX-License-Identifier: MIT
// Device A: writes frame `frame`'s pattern into the shared image.
#version 450
#extension GL_GOOGLE_include_directive : require

layout(local_size_x = 16, local_size_y = 16) in;

// rgba8 is R8G8B8A8_UNORM, the layout of DRM's ABGR8888. Declaring the format means the device
// needs no shaderStorageImageWriteWithoutFormat.
layout(set = 0, binding = 0, rgba8) uniform writeonly image2D target;

layout(push_constant) uniform Frame {
    uint frame;
} push;

#include "pattern.glsl"

void main() {
    const uvec2 pixel = gl_GlobalInvocationID.xy;
    if (any(greaterThanEqual(pixel, uvec2(imageSize(target))))) return;
    // k / 255.0 converts back to exactly k when stored as UNORM8.
    imageStore(target, ivec2(pixel), vec4(pattern_texel(pixel, push.frame)) / 255.0);
}
