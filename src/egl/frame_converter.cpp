// SPDX-License-Identifier: MIT
#include <dmabridge/egl/frame_converter.hpp>

#include <GLES3/gl31.h>

#include <cstdio>
#include <string>
#include <utility>

#include <dmabridge/egl/context.hpp>
#include <dmabridge/format/fourcc.hpp>

namespace dmabridge::egl {
namespace {

using dmabridge::Errc;
using dmabridge::Error;

// The conversion, a GLES 3.1 compute shader specialized for one camera format (FORMAT, defined
// in front of it by shader_source()). Each invocation converts one pixel pair: a YUYV or UYVY pair
// shares one texel (its four bytes) and one chroma sample, so a pair per invocation halves the
// invocations and texture fetches of a pixel per invocation; NV12 and XRGB8888 pairs are done the
// same way for one code shape. Row y of the target is row y of the frame: glReadPixels returns
// row 0 first, so the frame comes back top row first.
constexpr const char* compute_body = R"(
precision highp float;
precision highp int;
layout(local_size_x = 8, local_size_y = 8) in;
uniform highp sampler2D plane0;
uniform highp sampler2D plane1;
uniform ivec2 size;  // the frame's width and height in pixels
layout(rgba8, binding = 0) writeonly uniform highp image2D target;

// The texel's bytes: UNORM8 k reads as k / 255.0, exactly recovered here.
ivec4 bytes_at(highp sampler2D s, ivec2 p) { return ivec4(texelFetch(s, p, 0) * 255.0 + 0.5); }

// k / 255.0 is stored as exactly k in UNORM8.
vec4 rgba(ivec3 rgb) { return vec4(vec3(rgb) / 255.0, 1.0); }

// BT.601 limited range in 8.8 fixed point, as shaders/camera_to_rgba.comp and dmabridge::yuv_to_rgb.
vec4 yuv(int y, int u, int v) {
    int c = y - 16;
    int d = u - 128;
    int e = v - 128;
    ivec3 rgb = ivec3(298 * c + 409 * e + 128, 298 * c - 100 * d - 208 * e + 128, 298 * c + 516 * d + 128) >> 8;
    return rgba(clamp(rgb, 0, 255));
}

void main() {
    ivec2 pair = ivec2(gl_GlobalInvocationID.xy);
    ivec2 p = ivec2(pair.x * 2, pair.y);  // the pair's first pixel
    if (p.x >= size.x || p.y >= size.y) return;
    ivec2 q = ivec2(min(p.x + 1, size.x - 1), p.y);  // its second (the first again at an odd width's end)
    vec4 first;
    vec4 second;
#if FORMAT == 0  // YUYV: one texel per pair, Y0 U Y1 V
    ivec4 b = bytes_at(plane0, pair);
    first = yuv(b.x, b.y, b.w);
    second = yuv(b.z, b.y, b.w);
#elif FORMAT == 1  // UYVY: U Y0 V Y1
    ivec4 b = bytes_at(plane0, pair);
    first = yuv(b.y, b.x, b.z);
    second = yuv(b.w, b.x, b.z);
#elif FORMAT == 2  // NV12: full-size luma, one U V sample per 2x2 pixels
    ivec4 uv = bytes_at(plane1, p >> 1);
    first = yuv(bytes_at(plane0, p).x, uv.x, uv.y);
    second = yuv(bytes_at(plane0, q).x, uv.x, uv.y);
#else  // XRGB8888: bytes B G R X
    first = rgba(bytes_at(plane0, p).zyx);
    second = rgba(bytes_at(plane0, q).zyx);
#endif
    imageStore(target, p, first);
    if (q.x != p.x) imageStore(target, q, second);
}
)";

constexpr std::uint32_t group_size = 8;  // local_size_x and local_size_y above

std::string shader_source(dmabridge::FrameFormat format) {
    return "#version 310 es\n#define FORMAT " + std::to_string(static_cast<int>(format)) + "\n" + compute_body;
}

std::string hex(unsigned int value) {
    char text[16];
    std::snprintf(text, sizeof text, "0x%04x", value);
    return text;
}

// The first GL error since the last check, as an Error naming `what`.
dmabridge::Status gl_check(const std::string& what) {
    const GLenum e = glGetError();
    if (e == GL_NO_ERROR) return {};
    while (glGetError() != GL_NO_ERROR) {
    }
    return Error::library(Errc::unsupported,
                          "GL frame converter: " + what + ": " + dmabridge::egl::gl_error_name(e) + " (" + hex(e) + ")");
}

dmabridge::Result<GLuint> compile(const std::string& source) {
    const GLuint shader = glCreateShader(GL_COMPUTE_SHADER);
    const char* text = source.c_str();
    glShaderSource(shader, 1, &text, nullptr);
    glCompileShader(shader);
    GLint ok = 0;
    glGetShaderiv(shader, GL_COMPILE_STATUS, &ok);
    if (!ok) {
        char log[2048] = {};
        glGetShaderInfoLog(shader, sizeof log, nullptr, log);
        glDeleteShader(shader);
        return Error::library(Errc::unsupported,
                              std::string("GL frame converter: the compute shader does not compile: ") + log);
    }
    return shader;
}

struct GlFormat {
    GLenum internal, format;
};

GlFormat gl_format_of(const dmabridge::TexelPlane& v) {
    if (v.bytes_per_texel == 1) return {GL_R8, GL_RED};
    if (v.bytes_per_texel == 2) return {GL_RG8, GL_RG};
    return {GL_RGBA8, GL_RGBA};
}

}  // namespace

dmabridge::Result<FrameConverter> FrameConverter::create(const dmabridge::ImageLayout& frame, std::uint32_t slots,
                                                   bool uploads) {
    if (slots == 0 || slots > 64)
        return Error::library(Errc::invalid_argument,
                              "GL frame converter: " + std::to_string(slots) + " slots, outside 1..64");
    auto frame_numbers = dmabridge::frame_layout(frame);
    if (!frame_numbers) return frame_numbers.error().with_context("GL camera converter");
    auto views = dmabridge::texel_planes(frame);
    if (!views) return views.error().with_context("GL camera converter");
    const dmabridge::FrameLayout& layout = *frame_numbers;
    FrameConverter c;
    c.layout_ = layout;
    c.views_ = std::move(*views);
    while (glGetError() != GL_NO_ERROR) {
    }
    GLint major = 0, minor = 0;
    glGetIntegerv(GL_MAJOR_VERSION, &major);
    glGetIntegerv(GL_MINOR_VERSION, &minor);
    if (major < 3 || (major == 3 && minor < 1))
        return Error::library(Errc::unsupported, "GL frame converter: needs OpenGL ES 3.1 (compute shaders); the "
                                                 "context is " + std::to_string(major) + "." + std::to_string(minor));
    auto cs = compile(shader_source(layout.format));
    if (!cs) return cs.error();
    c.program_ = glCreateProgram();
    glAttachShader(c.program_, *cs);
    glLinkProgram(c.program_);
    glDeleteShader(*cs);
    GLint linked = 0;
    glGetProgramiv(c.program_, GL_LINK_STATUS, &linked);
    if (!linked) {
        char log[2048] = {};
        glGetProgramInfoLog(c.program_, sizeof log, nullptr, log);
        return Error::library(Errc::unsupported, std::string("GL frame converter: the program does not link: ") + log);
    }
    glUseProgram(c.program_);
    glUniform1i(glGetUniformLocation(c.program_, "plane0"), 0);
    glUniform1i(glGetUniformLocation(c.program_, "plane1"), 1);
    glUniform2i(glGetUniformLocation(c.program_, "size"), static_cast<GLint>(layout.width),
                static_cast<GLint>(layout.height));
    glUseProgram(0);

    // Immutable RGBA8 targets (glBindImageTexture needs immutable storage), each the colour
    // attachment of a framebuffer that read_back() reads.
    c.targets_.resize(slots);
    c.framebuffers_.resize(slots);
    glGenTextures(static_cast<GLsizei>(slots), c.targets_.data());
    glGenFramebuffers(static_cast<GLsizei>(slots), c.framebuffers_.data());
    for (std::uint32_t s = 0; s < slots; ++s) {
        glBindTexture(GL_TEXTURE_2D, c.targets_[s]);
        glTexStorage2D(GL_TEXTURE_2D, 1, GL_RGBA8, static_cast<GLsizei>(layout.width),
                       static_cast<GLsizei>(layout.height));
        glBindFramebuffer(GL_FRAMEBUFFER, c.framebuffers_[s]);
        glFramebufferTexture2D(GL_FRAMEBUFFER, GL_COLOR_ATTACHMENT0, GL_TEXTURE_2D, c.targets_[s], 0);
        const GLenum status = glCheckFramebufferStatus(GL_FRAMEBUFFER);
        if (status != GL_FRAMEBUFFER_COMPLETE)
            return Error::library(Errc::unsupported, "GL frame converter: the " + std::to_string(layout.width) + "x" +
                                                         std::to_string(layout.height) +
                                                         " RGBA8 target is not a complete framebuffer (status " +
                                                         hex(status) + ")");
    }
    if (uploads) {
        c.uploads_.resize(std::size_t{slots} * c.views_.size());
        glGenTextures(static_cast<GLsizei>(c.uploads_.size()), c.uploads_.data());
        for (std::size_t i = 0; i < c.uploads_.size(); ++i) {
            const dmabridge::TexelPlane& v = c.views_[i % c.views_.size()];
            glBindTexture(GL_TEXTURE_2D, c.uploads_[i]);
            glTexStorage2D(GL_TEXTURE_2D, 1, gl_format_of(v).internal, static_cast<GLsizei>(v.width),
                           static_cast<GLsizei>(v.height));
            glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_MIN_FILTER, GL_NEAREST);
            glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_MAG_FILTER, GL_NEAREST);
        }
    }
    glBindTexture(GL_TEXTURE_2D, 0);
    glBindFramebuffer(GL_FRAMEBUFFER, 0);
    if (auto ok = gl_check("create"); !ok) return ok.error();
    return c;
}

FrameConverter::FrameConverter(FrameConverter&& o) noexcept
    : layout_(o.layout_),
      views_(std::move(o.views_)),
      program_(std::exchange(o.program_, 0)),
      targets_(std::move(o.targets_)),
      framebuffers_(std::move(o.framebuffers_)),
      uploads_(std::move(o.uploads_)) {
    o.targets_.clear();
    o.framebuffers_.clear();
    o.uploads_.clear();
}

FrameConverter& FrameConverter::operator=(FrameConverter&& o) noexcept {
    if (this != &o) {
        release();
        layout_ = o.layout_;
        views_ = std::move(o.views_);
        program_ = std::exchange(o.program_, 0);
        targets_ = std::move(o.targets_);
        framebuffers_ = std::move(o.framebuffers_);
        uploads_ = std::move(o.uploads_);
        o.targets_.clear();
        o.framebuffers_.clear();
        o.uploads_.clear();
    }
    return *this;
}

FrameConverter::~FrameConverter() { release(); }

void FrameConverter::release() noexcept {
    if (!framebuffers_.empty()) glDeleteFramebuffers(static_cast<GLsizei>(framebuffers_.size()), framebuffers_.data());
    if (!targets_.empty()) glDeleteTextures(static_cast<GLsizei>(targets_.size()), targets_.data());
    if (!uploads_.empty()) glDeleteTextures(static_cast<GLsizei>(uploads_.size()), uploads_.data());
    if (program_ != 0) glDeleteProgram(program_);
    framebuffers_.clear();
    targets_.clear();
    uploads_.clear();
    program_ = 0;
}

dmabridge::Status FrameConverter::convert(std::uint32_t slot, unsigned int plane0, unsigned int plane1) {
    if (program_ == 0) return Error::library(Errc::empty_object, "GL frame converter: moved from");
    if (slot >= targets_.size())
        return Error::library(Errc::invalid_argument, "GL frame converter: no slot " + std::to_string(slot));
    glUseProgram(program_);
    glActiveTexture(GL_TEXTURE0);
    glBindTexture(GL_TEXTURE_2D, plane0);
    glActiveTexture(GL_TEXTURE1);
    glBindTexture(GL_TEXTURE_2D, plane1 != 0 ? plane1 : plane0);
    glBindImageTexture(0, targets_[slot], 0, GL_FALSE, 0, GL_WRITE_ONLY, GL_RGBA8);
    const std::uint32_t pairs = (layout_.width + 1) / 2;
    glDispatchCompute((pairs + group_size - 1) / group_size, (layout_.height + group_size - 1) / group_size, 1);
    // What reads the target next (read_back()'s glReadPixels, a renderer sampling target())
    // sees the shader's image stores.
    glMemoryBarrier(GL_FRAMEBUFFER_BARRIER_BIT | GL_TEXTURE_FETCH_BARRIER_BIT | GL_TEXTURE_UPDATE_BARRIER_BIT);
    // The imported textures are unbound at once: nothing keeps a cached import referenced by
    // GL state between frames.
    glBindImageTexture(0, 0, 0, GL_FALSE, 0, GL_WRITE_ONLY, GL_RGBA8);
    glBindTexture(GL_TEXTURE_2D, 0);
    glActiveTexture(GL_TEXTURE0);
    glBindTexture(GL_TEXTURE_2D, 0);
    glUseProgram(0);
    return gl_check("convert into slot " + std::to_string(slot));
}

dmabridge::Result<std::uint64_t> FrameConverter::upload_and_convert(std::uint32_t slot, std::span<const std::byte> plane0,
                                                              std::span<const std::byte> plane1) {
    if (program_ == 0) return Error::library(Errc::empty_object, "GL frame converter: moved from");
    if (slot >= targets_.size() || uploads_.empty())
        return Error::library(Errc::invalid_argument, "GL frame converter: no upload slot " + std::to_string(slot));
    std::uint64_t bytes = 0;
    glPixelStorei(GL_UNPACK_ALIGNMENT, 1);
    for (std::size_t i = 0; i < views_.size(); ++i) {
        const dmabridge::TexelPlane& v = views_[i];
        const auto source = v.plane == 0 ? plane0 : plane1;
        // The caller checked the layout against these buffers (dmabridge::frame_layout()); checked again
        // here because glTexSubImage2D reads exactly this many bytes.
        const std::uint64_t row = std::uint64_t{v.width} * v.bytes_per_texel;
        const std::uint64_t end = v.offset + v.stride * (v.height - 1) + row;
        if (v.stride % v.bytes_per_texel != 0 || end > source.size())
            return Error::library(Errc::invalid_argument,
                                  "GL frame converter: plane " + std::to_string(v.plane) + " upload of " +
                                      std::to_string(end) + " bytes from a buffer of " + std::to_string(source.size()) +
                                      " (stride " + std::to_string(v.stride) + ")");
        glBindTexture(GL_TEXTURE_2D, uploads_[slot * views_.size() + i]);
        glPixelStorei(GL_UNPACK_ROW_LENGTH, static_cast<GLint>(v.stride / v.bytes_per_texel));
        glTexSubImage2D(GL_TEXTURE_2D, 0, 0, 0, static_cast<GLsizei>(v.width), static_cast<GLsizei>(v.height),
                        gl_format_of(v).format, GL_UNSIGNED_BYTE, source.data() + v.offset);
        bytes += row * v.height;
    }
    glPixelStorei(GL_UNPACK_ROW_LENGTH, 0);
    glBindTexture(GL_TEXTURE_2D, 0);
    if (auto ok = gl_check("upload into slot " + std::to_string(slot)); !ok) return ok.error();
    const unsigned int second = views_.size() > 1 ? uploads_[slot * views_.size() + 1] : 0;
    if (auto ok = convert(slot, uploads_[slot * views_.size()], second); !ok) return ok.error();
    return bytes;
}

dmabridge::Status FrameConverter::read_back(std::uint32_t slot, std::vector<std::uint8_t>& rgba) const {
    if (program_ == 0) return Error::library(Errc::empty_object, "GL frame converter: moved from");
    if (slot >= framebuffers_.size())
        return Error::library(Errc::invalid_argument, "GL frame converter: no slot " + std::to_string(slot));
    rgba.resize(std::size_t{layout_.width} * layout_.height * 4);
    glBindFramebuffer(GL_FRAMEBUFFER, framebuffers_[slot]);
    glPixelStorei(GL_PACK_ALIGNMENT, 1);
    glReadPixels(0, 0, static_cast<GLsizei>(layout_.width), static_cast<GLsizei>(layout_.height), GL_RGBA,
                 GL_UNSIGNED_BYTE, rgba.data());
    glBindFramebuffer(GL_FRAMEBUFFER, 0);
    return gl_check("read back slot " + std::to_string(slot));
}

unsigned int FrameConverter::target(std::uint32_t slot) const noexcept {
    return slot < targets_.size() ? targets_[slot] : 0;
}

}  // namespace dmabridge::egl
