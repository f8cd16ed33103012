// SPDX-License-Identifier: MIT
#pragma once
// Test harness for the EGL tests: one EGL display on the device platform (Mesa's software device,
// never vgem's: see DESIGN.md) and one OpenGL ES 3 surfaceless debug context per test process
// (starting them takes seconds under emulation), GL error checks after GL calls, a count of
// GL_KHR_debug messages, and helpers that read an image's pixels through a framebuffer.
#include <cstdint>
#include <string>
#include <vector>

#include <EGL/egl.h>
#include <GLES3/gl31.h>
#include <GLES2/gl2ext.h>

#include <dmabridge/egl/context.hpp>

#include "fd_count.hpp"

namespace dmabridge::test {

/// The process's Headless display and context (made on first use, on the calling thread).
egl::Headless& egl_headless();
inline const egl::Context& egl_context() { return egl_headless().context(); }

/// Tells the harness that GL sampled a test's texture outside its helpers (a pipeline under
/// test): llvmpipe's bound sampler views keep the last sampled buffer (and its dma-buf fd) until
/// the next draw or dispatch, so the fixture draws and dispatches once from its own texture
/// before counting fds.
void egl_note_sampled();

/// Every GL_KHR_debug message received so far.
std::vector<std::string>& egl_debug_log();

/// Checks (doctest CHECK) that glGetError() reports nothing after `what`.
void gl_ok(const char* what, const char* file, int line);
/// Runs a GL call and checks glGetError() right after it.
#define GLC(call)                                   \
    do {                                            \
        call;                                       \
        ::dmabridge::test::gl_ok(#call, __FILE__, __LINE__); \
    } while (0)

/// Fixture of the EGL tests: the display exists before FdLeakCheck takes its baseline; at the end
/// no GL error is pending, no debug message arrived, and the context holds as many EGLImages and
/// textures as at the start (after collect()).
struct EglReady {
    EglReady();
};
struct EglTest : EglReady, FdLeakCheck {
    EglTest();
    ~EglTest();
    egl::ObjectCounts baseline;
};

/// The pixels of a GL_TEXTURE_2D or GL_TEXTURE_EXTERNAL_OES texture of `width` x `height`, read
/// as RGBA8 rows (width * 4 bytes each): a 2D texture straight through a framebuffer, an external
/// one drawn with a samplerExternalOES shader into an RGBA8 target first.
std::vector<std::uint8_t> read_rgba(const egl::Image& image);
/// Fills the 2D texture of `image` through a framebuffer: four quadrants of solid colours (RGBA,
/// 0..255) with glScissor + glClear, exact in every 8-bit format. Returns the expected RGBA bytes.
std::vector<std::uint8_t> fill_quadrants(const egl::Image& image, std::uint8_t seed);
/// The same for a GL_TEXTURE_2D `texture` of `width` x `height` that the test owns.
std::vector<std::uint8_t> fill_quadrants(GLuint texture, std::uint32_t width, std::uint32_t height, std::uint8_t seed);
/// The RGBA bytes GL reads from `bytes` laid out as `fourcc` (XR24, AR24, XB24, AB24), packed.
std::vector<std::uint8_t> rgba_of(std::uint32_t fourcc, const std::vector<std::uint8_t>& packed, bool opaque);

}  // namespace dmabridge::test
