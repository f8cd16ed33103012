// SPDX-License-Identifier: MIT
#include "egl_harness.hpp"

#include <memory>
#include <utility>

#include <doctest/doctest.h>

namespace dmabridge::test {

std::vector<std::string>& egl_debug_log() {
    static std::vector<std::string> log;
    return log;
}

egl::Headless& egl_headless() {
    static std::unique_ptr<egl::Headless> headless = [] {
        egl::HeadlessOptions options;
        options.on_debug_message = [](std::string_view m) { egl_debug_log().emplace_back(m); };
        auto h = egl::Headless::create(options);
        REQUIRE_MESSAGE(h, (h ? "" : h.error().message()));
        // Counted: every message but Mesa's performance notes ("Compiling fragment shader
        // variant ..." when a sampler's state needs a new shader) and notifications.
        auto control =
            reinterpret_cast<PFNGLDEBUGMESSAGECONTROLKHRPROC>(eglGetProcAddress("glDebugMessageControlKHR"));
        REQUIRE(static_cast<bool>(control));
        control(GL_DONT_CARE, GL_DEBUG_TYPE_PERFORMANCE_KHR, GL_DONT_CARE, 0, nullptr, GL_FALSE);
        control(GL_DONT_CARE, GL_DONT_CARE, GL_DEBUG_SEVERITY_NOTIFICATION_KHR, 0, nullptr, GL_FALSE);
        REQUIRE(glGetError() == GL_NO_ERROR);
        return std::make_unique<egl::Headless>(std::move(*h));
    }();
    return *headless;
}

void gl_ok(const char* what, const char* file, int line) {
    const GLenum e = glGetError();
    CHECK_MESSAGE(e == GL_NO_ERROR, file << ":" << line << ": " << what << ": " << egl::gl_error_name(e));
}

namespace {

bool sampled_test_texture = false;  // a draw sampled a test's texture since the last unbind

// Gallium keeps the last framebuffer and sampler views bound inside the driver, and with them
// the last imported dma-buf (its fd) open: rebind harness-owned objects so that every test starts
// and ends with none of its buffers referenced by the driver.
void unbind_driver_state() {
    static GLuint texture = 0, fbo = 0, program = 0, compute = 0, storage = 0;
    if (texture == 0) {
        glGenTextures(1, &texture);
        glBindTexture(GL_TEXTURE_2D, texture);
        glTexStorage2D(GL_TEXTURE_2D, 1, GL_RGBA8, 4, 4);
        glBindTexture(GL_TEXTURE_2D, 0);
        glGenFramebuffers(1, &fbo);
        glBindFramebuffer(GL_FRAMEBUFFER, fbo);
        glFramebufferTexture2D(GL_FRAMEBUFFER, GL_COLOR_ATTACHMENT0, GL_TEXTURE_2D, texture, 0);
        glBindFramebuffer(GL_FRAMEBUFFER, 0);
        const char* vs = "attribute vec2 pos;\nvoid main() { gl_Position = vec4(pos, 0.0, 1.0); }\n";
        const char* fs = "precision mediump float;\nuniform sampler2D tex;\n"
                         "void main() { gl_FragColor = texture2D(tex, vec2(0.5)); }\n";
        program = glCreateProgram();
        for (auto [kind, src] : {std::pair{GL_VERTEX_SHADER, vs}, std::pair{GL_FRAGMENT_SHADER, fs}}) {
            GLuint sh = glCreateShader(kind);
            glShaderSource(sh, 1, &src, nullptr);
            glCompileShader(sh);
            glAttachShader(program, sh);
            glDeleteShader(sh);
        }
        glBindAttribLocation(program, 0, "pos");
        glLinkProgram(program);
        // The compute stage has sampler views of its own (the GL camera converter samples there).
        const char* cs = "#version 310 es\nlayout(local_size_x = 1) in;\nuniform highp sampler2D tex;\n"
                         "layout(std430, binding = 0) buffer Out { vec4 v; } o;\n"
                         "void main() { o.v = texelFetch(tex, ivec2(0), 0); }\n";
        compute = glCreateProgram();
        GLuint sh = glCreateShader(GL_COMPUTE_SHADER);
        glShaderSource(sh, 1, &cs, nullptr);
        glCompileShader(sh);
        glAttachShader(compute, sh);
        glDeleteShader(sh);
        glLinkProgram(compute);
        GLint linked = 0;
        glGetProgramiv(compute, GL_LINK_STATUS, &linked);
        CHECK_MESSAGE(linked, "the harness's compute shader links");
        glGenBuffers(1, &storage);
        glBindBuffer(GL_SHADER_STORAGE_BUFFER, storage);
        glBufferData(GL_SHADER_STORAGE_BUFFER, 16, nullptr, GL_DYNAMIC_DRAW);
        glBindBuffer(GL_SHADER_STORAGE_BUFFER, 0);
        gl_ok("harness objects", __FILE__, __LINE__);
    }
    // Rebind the scratch framebuffer and clear it (no shader: cheap under emulation); after a
    // draw that sampled a test's texture, also draw once sampling the scratch texture, so that
    // the driver's bound sampler views let go of the test's buffer.
    GLC(glBindFramebuffer(GL_FRAMEBUFFER, fbo));
    GLC(glViewport(0, 0, 4, 4));
    GLC(glClearColor(0.f, 0.f, 0.f, 0.f));
    GLC(glClear(GL_COLOR_BUFFER_BIT));
    if (sampled_test_texture) {
        sampled_test_texture = false;
        GLC(glUseProgram(program));
        GLC(glActiveTexture(GL_TEXTURE0));
        GLC(glBindTexture(GL_TEXTURE_EXTERNAL_OES, 0));
        GLC(glBindTexture(GL_TEXTURE_2D, texture));
        static const GLfloat tri[] = {-1.f, -1.f, 3.f, -1.f, -1.f, 3.f};
        GLC(glEnableVertexAttribArray(0));
        GLC(glVertexAttribPointer(0, 2, GL_FLOAT, GL_FALSE, 0, tri));
        GLC(glDrawArrays(GL_TRIANGLES, 0, 3));
        GLC(glDisableVertexAttribArray(0));
        GLC(glUseProgram(compute));
        GLC(glBindBufferBase(GL_SHADER_STORAGE_BUFFER, 0, storage));
        GLC(glDispatchCompute(1, 1, 1));
        GLC(glBindBufferBase(GL_SHADER_STORAGE_BUFFER, 0, 0));
        GLC(glBindTexture(GL_TEXTURE_2D, 0));
        GLC(glUseProgram(0));
    }
    GLC(glBindFramebuffer(GL_FRAMEBUFFER, 0));
    GLC(glFinish());
}

}  // namespace

void egl_note_sampled() { sampled_test_texture = true; }

EglReady::EglReady() {
    egl_headless();
    unbind_driver_state();
}

EglTest::EglTest() {
    CHECK(egl_context().is_current());
    baseline = egl_context().counts();
    egl_debug_log().clear();
}

EglTest::~EglTest() {
    if (!egl_context().is_current()) (void)egl_headless().make_current();
    unbind_driver_state();
    egl_context().collect();
    const auto now = egl_context().counts();
    CHECK_MESSAGE(now.images == baseline.images, "EGLImages leaked: " << now.images << " live, " << baseline.images
                                                                       << " at the start");
    CHECK_MESSAGE(now.textures == baseline.textures, "textures leaked: " << now.textures << " live, "
                                                                         << baseline.textures << " at the start");
    CHECK(now.queued == 0);
    for (const auto& m : egl_debug_log()) CHECK_MESSAGE(false, "GL_KHR_debug: " << m);
    egl_debug_log().clear();
}

namespace {

GLuint compile(GLenum kind, const char* source) {
    GLuint shader = glCreateShader(kind);
    glShaderSource(shader, 1, &source, nullptr);
    glCompileShader(shader);
    GLint ok = 0;
    glGetShaderiv(shader, GL_COMPILE_STATUS, &ok);
    if (!ok) {
        char log[1024] = {};
        glGetShaderInfoLog(shader, sizeof log, nullptr, log);
        FAIL("shader: " << log);
    }
    return shader;
}

// A program drawing an external texture over the whole target (made once).
GLuint external_program() {
    static GLuint program = [] {
        const char* vs = "attribute vec2 pos;\nvarying vec2 uv;\n"
                         "void main() { uv = pos * 0.5 + 0.5; gl_Position = vec4(pos, 0.0, 1.0); }\n";
        const char* fs = "#extension GL_OES_EGL_image_external : require\nprecision highp float;\n"
                         "uniform samplerExternalOES tex;\nvarying vec2 uv;\n"
                         "void main() { gl_FragColor = texture2D(tex, uv); }\n";
        GLuint p = glCreateProgram();
        GLuint v = compile(GL_VERTEX_SHADER, vs), f = compile(GL_FRAGMENT_SHADER, fs);
        glAttachShader(p, v);
        glAttachShader(p, f);
        glBindAttribLocation(p, 0, "pos");
        glLinkProgram(p);
        glDeleteShader(v);
        glDeleteShader(f);
        GLint ok = 0;
        glGetProgramiv(p, GL_LINK_STATUS, &ok);
        REQUIRE(ok);
        gl_ok("external program", __FILE__, __LINE__);
        return p;
    }();
    return program;
}

std::vector<std::uint8_t> read_framebuffer(std::uint32_t w, std::uint32_t h) {
    std::vector<std::uint8_t> out(std::size_t{w} * h * 4);
    GLC(glPixelStorei(GL_PACK_ALIGNMENT, 1));
    GLC(glReadPixels(0, 0, static_cast<GLsizei>(w), static_cast<GLsizei>(h), GL_RGBA, GL_UNSIGNED_BYTE, out.data()));
    return out;
}

}  // namespace

std::vector<std::uint8_t> read_rgba(const egl::Image& image) {
    const auto w = image.width(), h = image.height();
    GLuint fbo = 0;
    GLC(glGenFramebuffers(1, &fbo));
    GLC(glBindFramebuffer(GL_FRAMEBUFFER, fbo));
    std::vector<std::uint8_t> out;
    if (!image.external()) {
        GLC(glFramebufferTexture2D(GL_FRAMEBUFFER, GL_COLOR_ATTACHMENT0, GL_TEXTURE_2D, image.texture(), 0));
        CHECK(glCheckFramebufferStatus(GL_FRAMEBUFFER) == GL_FRAMEBUFFER_COMPLETE);
        out = read_framebuffer(w, h);
    } else {
        GLuint target = 0;
        GLC(glGenTextures(1, &target));
        GLC(glBindTexture(GL_TEXTURE_2D, target));
        GLC(glTexStorage2D(GL_TEXTURE_2D, 1, GL_RGBA8, static_cast<GLsizei>(w), static_cast<GLsizei>(h)));
        GLC(glFramebufferTexture2D(GL_FRAMEBUFFER, GL_COLOR_ATTACHMENT0, GL_TEXTURE_2D, target, 0));
        CHECK(glCheckFramebufferStatus(GL_FRAMEBUFFER) == GL_FRAMEBUFFER_COMPLETE);
        GLC(glViewport(0, 0, static_cast<GLsizei>(w), static_cast<GLsizei>(h)));
        GLC(glUseProgram(external_program()));
        GLC(glActiveTexture(GL_TEXTURE0));
        GLC(glBindTexture(GL_TEXTURE_EXTERNAL_OES, image.texture()));
        GLC(glTexParameteri(GL_TEXTURE_EXTERNAL_OES, GL_TEXTURE_MIN_FILTER, GL_NEAREST));
        GLC(glTexParameteri(GL_TEXTURE_EXTERNAL_OES, GL_TEXTURE_MAG_FILTER, GL_NEAREST));
        GLC(glUniform1i(glGetUniformLocation(external_program(), "tex"), 0));
        static const GLfloat tri[] = {-1.f, -1.f, 3.f, -1.f, -1.f, 3.f};
        GLC(glBindBuffer(GL_ARRAY_BUFFER, 0));
        GLC(glEnableVertexAttribArray(0));
        GLC(glVertexAttribPointer(0, 2, GL_FLOAT, GL_FALSE, 0, tri));
        GLC(glDrawArrays(GL_TRIANGLES, 0, 3));
        sampled_test_texture = true;
        GLC(glDisableVertexAttribArray(0));
        GLC(glBindTexture(GL_TEXTURE_EXTERNAL_OES, 0));
        GLC(glUseProgram(0));
        out = read_framebuffer(w, h);
        GLC(glBindTexture(GL_TEXTURE_2D, 0));
        GLC(glDeleteTextures(1, &target));
    }
    GLC(glBindFramebuffer(GL_FRAMEBUFFER, 0));
    GLC(glDeleteFramebuffers(1, &fbo));
    return out;
}

std::vector<std::uint8_t> fill_quadrants(const egl::Image& image, std::uint8_t seed) {
    REQUIRE_FALSE(image.external());
    return fill_quadrants(image.texture(), image.width(), image.height(), seed);
}

std::vector<std::uint8_t> fill_quadrants(GLuint texture, std::uint32_t w, std::uint32_t h, std::uint8_t seed) {
    GLuint fbo = 0;
    GLC(glGenFramebuffers(1, &fbo));
    GLC(glBindFramebuffer(GL_FRAMEBUFFER, fbo));
    GLC(glFramebufferTexture2D(GL_FRAMEBUFFER, GL_COLOR_ATTACHMENT0, GL_TEXTURE_2D, texture, 0));
    REQUIRE(glCheckFramebufferStatus(GL_FRAMEBUFFER) == GL_FRAMEBUFFER_COMPLETE);
    GLC(glViewport(0, 0, static_cast<GLsizei>(w), static_cast<GLsizei>(h)));
    GLC(glEnable(GL_SCISSOR_TEST));
    std::vector<std::uint8_t> expected(std::size_t{w} * h * 4);
    for (int q = 0; q < 4; ++q) {
        const std::uint8_t c[4] = {static_cast<std::uint8_t>(seed + 40 * q), static_cast<std::uint8_t>(seed * 3 + 17 * q),
                                   static_cast<std::uint8_t>(255 - seed - 29 * q), 255};
        const std::uint32_t x0 = (q & 1) ? w / 2 : 0, y0 = (q & 2) ? h / 2 : 0;
        const std::uint32_t x1 = (q & 1) ? w : w / 2, y1 = (q & 2) ? h : h / 2;
        GLC(glScissor(static_cast<GLint>(x0), static_cast<GLint>(y0), static_cast<GLsizei>(x1 - x0),
                      static_cast<GLsizei>(y1 - y0)));
        GLC(glClearColor(c[0] / 255.f, c[1] / 255.f, c[2] / 255.f, c[3] / 255.f));
        GLC(glClear(GL_COLOR_BUFFER_BIT));
        for (std::uint32_t y = y0; y < y1; ++y)
            for (std::uint32_t x = x0; x < x1; ++x)
                for (int k = 0; k < 4; ++k) expected[(std::size_t{y} * w + x) * 4 + static_cast<std::size_t>(k)] = c[k];
    }
    GLC(glDisable(GL_SCISSOR_TEST));
    GLC(glBindFramebuffer(GL_FRAMEBUFFER, 0));
    GLC(glDeleteFramebuffers(1, &fbo));
    return expected;
}

std::vector<std::uint8_t> rgba_of(std::uint32_t fourcc, const std::vector<std::uint8_t>& packed, bool opaque) {
    std::vector<std::uint8_t> out(packed.size());
    const bool bgr = fourcc == 0x34325258 /* XR24 */ || fourcc == 0x34325241 /* AR24 */;
    for (std::size_t i = 0; i + 3 < packed.size(); i += 4) {
        out[i + 0] = bgr ? packed[i + 2] : packed[i + 0];
        out[i + 1] = packed[i + 1];
        out[i + 2] = bgr ? packed[i + 0] : packed[i + 2];
        out[i + 3] = opaque ? 255 : packed[i + 3];
    }
    return out;
}

}  // namespace dmabridge::test
