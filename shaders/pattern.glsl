// SPDX-License-Identifier: MIT
// The pattern device A writes and device B checks. Both shaders include this one definition, so
// they cannot disagree about it.
//
// Red and green move with the frame number at every pixel, so a frame that was never written,
// or the previous frame's contents, fail the check everywhere; alpha is always 255, so memory
// still zero from its allocation fails it too.

uvec4 pattern_texel(uvec2 pixel, uint frame) {
    return uvec4((pixel.x + 61u * frame) & 255u,
                 (pixel.y + 97u * frame) & 255u,
                 (pixel.x ^ pixel.y ^ (29u * frame)) & 255u,
                 255u);
}
