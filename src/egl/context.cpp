// SPDX-License-Identifier: MIT
// egl::Context: attach to the application's display and context, entry points, extensions,
// formats, import of BufferDescs as EGLImages + textures, export, fences, and the queue of
// objects dropped off the GL thread.
#include "egl/egl_state.hpp"

#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <algorithm>
#include <cstring>
#include <string_view>

#include <unistd.h>

#include <dmabridge/base/log.hpp>
#include <dmabridge/format/format.hpp>
#include <dmabridge/format/fourcc.hpp>

#include "base/sys.hpp"

namespace dmabridge::egl {

namespace {

// GLES 3.1 values, so that this file needs only the GLES 2 headers.
constexpr GLenum kTextureWidth = 0x1000;   // GL_TEXTURE_WIDTH
constexpr GLenum kTextureHeight = 0x1001;  // GL_TEXTURE_HEIGHT
constexpr GLenum kMajorVersion = 0x821B;   // GL_MAJOR_VERSION
constexpr GLenum kMinorVersion = 0x821C;   // GL_MINOR_VERSION


template <typename F>
bool load(F& fn, const char* name) {
    fn = reinterpret_cast<F>(eglGetProcAddress(name));
    return fn != nullptr;
}

// The identity marker of Context::State (see egl_state.hpp): a GLES 3 sync object labelled with
// a name no other state has. Without GLES 3 or GL_KHR_debug there is none and the handle is
// trusted, as the header says.
Status make_marker(Context::State& s) {
    GLint major = 0;
    s.glGetIntegerv(kMajorVersion, &major);
    (void)s.glGetError();
    if (major < 3 || !has(s.features, Feature::debug)) return {};
    if (!load(s.glFenceSync, "glFenceSync") || !load(s.glIsSync, "glIsSync") || !load(s.glDeleteSync, "glDeleteSync") ||
        !load(s.glObjectPtrLabelKHR, "glObjectPtrLabelKHR") || !load(s.glGetObjectPtrLabelKHR, "glGetObjectPtrLabelKHR"))
        return {};
    static std::atomic<std::uint64_t> serial{0};
    s.marker_label = "dmabridge-context-" + std::to_string(static_cast<long long>(::getpid())) + "-" +
                     std::to_string(serial.fetch_add(1, std::memory_order_relaxed));
    s.marker = s.glFenceSync(GL_SYNC_GPU_COMMANDS_COMPLETE, 0);
    if (s.marker == nullptr) return detail::gl_check(s, "egl attach: glFenceSync (context marker)");
    s.glObjectPtrLabelKHR(s.marker, static_cast<GLsizei>(s.marker_label.size()), s.marker_label.c_str());
    if (auto e = detail::gl_check(s, "egl attach: label the context marker"); !e) {
        s.glDeleteSync(s.marker);
        s.marker = nullptr;
        return e;
    }
    return {};
}

Status empty_error(const char* operation) {
    return Error::library(Errc::empty_object, std::string(operation) + ": the egl::Context is empty (moved from)");
}

}  // namespace

namespace detail {

bool has_extension(const char* list, std::string_view name) {
    if (!list) return false;
    std::string_view rest(list);
    while (!rest.empty()) {
        const auto space = rest.find(' ');
        const auto word = rest.substr(0, space);
        if (word == name) return true;
        if (space == std::string_view::npos) break;
        rest.remove_prefix(space + 1);
    }
    return false;
}


Error egl_error(const std::string& what, EGLint code) {
    char hex[16];
    std::snprintf(hex, sizeof hex, "0x%04x", static_cast<unsigned>(code));
    return Error(ErrorDomain::egl, code, what + " failed: " + egl_error_name(code) + " (" + hex + ")");
}
Error egl_error(const std::string& what) { return egl_error(what, eglGetError()); }

Status gl_check(const Context::State& s, const std::string& what) {
    GLenum first = GL_NO_ERROR;
    // Drain: GL keeps one flag per error kind.
    for (int i = 0; i < 16; ++i) {
        const GLenum e = s.glGetError();
        if (e == GL_NO_ERROR) break;
        if (first == GL_NO_ERROR) first = e;
    }
    if (first == GL_NO_ERROR) return {};
    char hex[16];
    std::snprintf(hex, sizeof hex, "0x%04x", first);
    return Error(ErrorDomain::gl, static_cast<int>(first), what + ": " + gl_error_name(first) + " (" + hex + ")");
}

Status require_current(const Context::State* s, const char* operation) {
    if (!s) return empty_error(operation);
    if (s->detached.load(std::memory_order_acquire))
        return Error::library(Errc::empty_object, std::string(operation) + ": the egl::Context was detached");
    if (s->lost.load(std::memory_order_acquire))
        return Error::library(Errc::empty_object,
                              std::string(operation) +
                                  ": the attached EGLContext was destroyed (another context now has its handle); "
                                  "call egl::Context::detach() before eglDestroyContext");
    if (!s->current())
        return Error::library(Errc::invalid_argument,
                              std::string(operation) +
                                  ": the attached EGLContext is not current on this thread (call it on the GL "
                                  "thread, after eglMakeCurrent)");
    return {};
}

}  // namespace detail

const char* egl_error_name(int error) noexcept {
    switch (error) {
    case EGL_SUCCESS: return "EGL_SUCCESS";
    case EGL_NOT_INITIALIZED: return "EGL_NOT_INITIALIZED";
    case EGL_BAD_ACCESS: return "EGL_BAD_ACCESS";
    case EGL_BAD_ALLOC: return "EGL_BAD_ALLOC";
    case EGL_BAD_ATTRIBUTE: return "EGL_BAD_ATTRIBUTE";
    case EGL_BAD_CONFIG: return "EGL_BAD_CONFIG";
    case EGL_BAD_CONTEXT: return "EGL_BAD_CONTEXT";
    case EGL_BAD_CURRENT_SURFACE: return "EGL_BAD_CURRENT_SURFACE";
    case EGL_BAD_DISPLAY: return "EGL_BAD_DISPLAY";
    case EGL_BAD_MATCH: return "EGL_BAD_MATCH";
    case EGL_BAD_NATIVE_PIXMAP: return "EGL_BAD_NATIVE_PIXMAP";
    case EGL_BAD_NATIVE_WINDOW: return "EGL_BAD_NATIVE_WINDOW";
    case EGL_BAD_PARAMETER: return "EGL_BAD_PARAMETER";
    case EGL_BAD_SURFACE: return "EGL_BAD_SURFACE";
    case EGL_CONTEXT_LOST: return "EGL_CONTEXT_LOST";
    case EGL_BAD_DEVICE_EXT: return "EGL_BAD_DEVICE_EXT";
    default: return "EGL error";
    }
}

const char* gl_error_name(unsigned int error) noexcept {
    switch (error) {
    case GL_NO_ERROR: return "GL_NO_ERROR";
    case GL_INVALID_ENUM: return "GL_INVALID_ENUM";
    case GL_INVALID_VALUE: return "GL_INVALID_VALUE";
    case GL_INVALID_OPERATION: return "GL_INVALID_OPERATION";
    case GL_OUT_OF_MEMORY: return "GL_OUT_OF_MEMORY";
    case GL_INVALID_FRAMEBUFFER_OPERATION: return "GL_INVALID_FRAMEBUFFER_OPERATION";
    default: return "GL error";
    }
}

std::string to_string(Feature features) {
    static constexpr std::pair<Feature, const char*> names[] = {
        {Feature::external_texture, "external_texture"}, {Feature::dmabuf_export, "dmabuf_export"},
        {Feature::native_fence_sync, "native_fence_sync"}, {Feature::texture_image, "texture_image"},
        {Feature::debug, "debug"},                        {Feature::fence_sync, "fence_sync"},
    };
    std::string out;
    for (const auto& [f, name] : names) {
        if (!has(features, f)) continue;
        if (!out.empty()) out += '|';
        out += name;
    }
    return out.empty() ? "none" : out;
}

bool Context::State::owns_current() noexcept {
    if (!current()) return false;
    if (marker == nullptr) return true;  // no GLES 3 sync objects or GL_KHR_debug: the handle is all we have
    char label[64] = {};
    GLsizei length = 0;
    const bool known = glIsSync(marker) == GL_TRUE;
    if (known) glGetObjectPtrLabelKHR(marker, static_cast<GLsizei>(sizeof label), &length, label);
    (void)glGetError();  // a foreign context may answer GL_INVALID_VALUE for our marker
    if (known && length >= 0 && std::string_view(label, static_cast<std::size_t>(length)) == marker_label) return true;
    lost.store(true, std::memory_order_release);
    return false;
}

std::size_t Context::State::drain_queue() {
    std::vector<std::pair<EGLImageKHR, GLuint>> doomed;
    {
        std::lock_guard lock(queue_mutex);
        doomed.swap(queue);
    }
    for (auto& [image, texture] : doomed) {
        delete_texture(texture);
        destroy_image(image);
    }
    return doomed.size();
}

void Context::State::drop_lost_queue() {
    std::vector<std::pair<EGLImageKHR, GLuint>> doomed;
    {
        std::lock_guard lock(queue_mutex);
        doomed.swap(queue);
    }
    for (auto& [image, texture] : doomed) {
        destroy_image(image);
        if (texture != 0) live_textures.fetch_sub(1, std::memory_order_relaxed);  // died with the context
    }
}

Context::State::~State() {
    if (owns_current()) {
        drain_queue();
        if (marker != nullptr) glDeleteSync(marker);
        return;
    }
    // Images dropped off the GL thread and never collected: their EGLImages belong to the display
    // and go now, from any thread; their textures stay in the application's context (or went with
    // it), as does the marker.
    for (auto& [image, texture] : queue) destroy_image(image);
}

Image::Image(std::shared_ptr<Owner> owner, ImageHandle image, Texture texture, Target target, std::uint32_t width,
             std::uint32_t height, std::uint32_t fourcc, std::uint64_t modifier) noexcept
    : owner_(std::move(owner)), image_(image), texture_(texture), target_(target), width_(width), height_(height),
      fourcc_(fourcc), modifier_(modifier) {
    if (!owner_ || !owner_->state) return;
    std::lock_guard lock(owner_->state->queue_mutex);
    owner_->state->live.emplace(this, std::pair<EGLImageKHR, GLuint>(image_, texture_));
}

Image::~Image() {
    if (!owner_ || !owner_->state) return;
    auto& s = *owner_->state;
    // owns_current() makes GL calls: only where the handle is current, i.e. on the GL thread,
    // where detach() cannot run at the same time.
    const bool here = s.current() && s.owns_current();
    {
        std::lock_guard lock(s.queue_mutex);
        s.live.erase(this);
        if (s.detached.load(std::memory_order_acquire)) return;  // destroyed by detach()
        if (!here && !s.lost.load(std::memory_order_acquire)) {
            s.queue.emplace_back(image_, texture_);
            return;
        }
    }
    if (here) {
        s.delete_texture(texture_);
        s.destroy_image(image_);
        return;
    }
    // Lost: the texture died with the application's context; the EGLImage belongs to the display.
    s.destroy_image(image_);
    if (texture_ != 0) s.live_textures.fetch_sub(1, std::memory_order_relaxed);
}

Context::~Context() = default;

DisplayHandle Context::display() const noexcept { return state_ ? state_->display : nullptr; }
ContextHandle Context::context() const noexcept { return state_ ? state_->context : nullptr; }
Feature Context::features() const noexcept { return state_ ? state_->features : Feature::none; }
bool Context::is_current() const noexcept { return state_ && state_->current(); }

Result<Context> Context::attach(DisplayHandle display, ContextHandle context, const AttachOptions& options) {
    if (display == EGL_NO_DISPLAY || context == EGL_NO_CONTEXT)
        return Error::library(Errc::invalid_argument, "egl attach: null EGLDisplay or EGLContext");
    if (eglGetCurrentContext() != context || eglGetCurrentDisplay() != display)
        return Error::library(Errc::invalid_argument,
                              "egl attach: the EGLContext is not current on this thread with this display "
                              "(eglMakeCurrent first)");
    auto s = std::make_shared<State>();
    s->display = display;
    s->context = context;
    const char* egl_ext = eglQueryString(display, EGL_EXTENSIONS);
    if (!egl_ext) return detail::egl_error("egl attach: eglQueryString(EGL_EXTENSIONS)");
    for (const char* need : {"EGL_KHR_image_base", "EGL_EXT_image_dma_buf_import",
                             "EGL_EXT_image_dma_buf_import_modifiers"}) {
        if (!detail::has_extension(egl_ext, need))
            return Error::library(Errc::unsupported, std::string("egl attach: the display lacks ") + need);
    }

    bool ok = true;
    std::string missing;
    auto need = [&](auto& fn, const char* name) {
        if (!load(fn, name) && ok) {
            ok = false;
            missing = name;
        }
    };
    need(s->eglCreateImageKHR, "eglCreateImageKHR");
    need(s->eglDestroyImageKHR, "eglDestroyImageKHR");
    need(s->eglQueryDmaBufFormatsEXT, "eglQueryDmaBufFormatsEXT");
    need(s->eglQueryDmaBufModifiersEXT, "eglQueryDmaBufModifiersEXT");
    need(s->glGetError, "glGetError");
    need(s->glGetString, "glGetString");
    need(s->glGetIntegerv, "glGetIntegerv");
    need(s->glGenTextures, "glGenTextures");
    need(s->glDeleteTextures, "glDeleteTextures");
    need(s->glBindTexture, "glBindTexture");
    need(s->glTexParameteri, "glTexParameteri");
    need(s->glFlush, "glFlush");
    need(s->glFinish, "glFinish");
    need(s->glEGLImageTargetTexture2DOES, "glEGLImageTargetTexture2DOES");
    if (!ok) return Error::library(Errc::unsupported, "egl attach: eglGetProcAddress found no " + missing);

    const auto* gl_ext = reinterpret_cast<const char*>(s->glGetString(GL_EXTENSIONS));
    if (!gl_ext) return Error::library(Errc::unsupported, "egl attach: glGetString(GL_EXTENSIONS) returned null");
    if (!detail::has_extension(gl_ext, "GL_OES_EGL_image"))
        return Error::library(Errc::unsupported, "egl attach: the context lacks GL_OES_EGL_image");

    Feature f = Feature::none;
    if (detail::has_extension(gl_ext, "GL_OES_EGL_image_external")) f = f | Feature::external_texture;
    if (detail::has_extension(gl_ext, "GL_KHR_debug")) f = f | Feature::debug;
    if (detail::has_extension(egl_ext, "EGL_MESA_image_dma_buf_export") &&
        load(s->eglExportDMABUFImageQueryMESA, "eglExportDMABUFImageQueryMESA") &&
        load(s->eglExportDMABUFImageMESA, "eglExportDMABUFImageMESA"))
        f = f | Feature::dmabuf_export;
    if (detail::has_extension(egl_ext, "EGL_KHR_fence_sync") && load(s->eglCreateSyncKHR, "eglCreateSyncKHR") &&
        load(s->eglDestroySyncKHR, "eglDestroySyncKHR") && load(s->eglClientWaitSyncKHR, "eglClientWaitSyncKHR") &&
        load(s->eglGetSyncAttribKHR, "eglGetSyncAttribKHR")) {
        f = f | Feature::fence_sync;
        if (detail::has_extension(egl_ext, "EGL_ANDROID_native_fence_sync") && detail::has_extension(egl_ext, "EGL_KHR_wait_sync") &&
            load(s->eglWaitSyncKHR, "eglWaitSyncKHR") &&
            load(s->eglDupNativeFenceFDANDROID, "eglDupNativeFenceFDANDROID"))
            f = f | Feature::native_fence_sync;
    }
    if (detail::has_extension(egl_ext, "EGL_KHR_gl_texture_2D_image")) {
        // glGetTexLevelParameteriv is GLES 3.1 core.
        GLint major = 0, minor = 0;
        s->glGetIntegerv(kMajorVersion, &major);
        s->glGetIntegerv(kMinorVersion, &minor);
        (void)s->glGetError();  // GLES 2 contexts do not know these queries
        if ((major > 3 || (major == 3 && minor >= 1)) && load(s->glGetTexLevelParameteriv, "glGetTexLevelParameteriv"))
            f = f | Feature::texture_image;
    }
    s->features = f;
    if (auto marked = make_marker(*s); !marked) return marked.error();
    if (!has(f, options.required) && options.required != Feature::none) {
        const Feature lacking = static_cast<Feature>(static_cast<std::uint32_t>(options.required) &
                                                     ~static_cast<std::uint32_t>(f));
        return Error::library(Errc::unsupported, "egl attach: required features missing: " + to_string(lacking));
    }
    if (auto e = detail::gl_check(*s, "egl attach"); !e) return e.error();
    return Context(std::move(s));
}

namespace detail {

Result<DmaBufFormats> query_formats(EGLDisplay display, PFNEGLQUERYDMABUFFORMATSEXTPROC query_formats_fn,
                                    PFNEGLQUERYDMABUFMODIFIERSEXTPROC query_modifiers) {
    EGLint count = 0;
    if (!query_formats_fn(display, 0, nullptr, &count)) return egl_error("eglQueryDmaBufFormatsEXT (count)");
    std::vector<EGLint> fourccs(static_cast<std::size_t>(count > 0 ? count : 0));
    if (count > 0 && !query_formats_fn(display, count, fourccs.data(), &count))
        return egl_error("eglQueryDmaBufFormatsEXT");
    fourccs.resize(std::min(fourccs.size(), static_cast<std::size_t>(count > 0 ? count : 0)));
    DmaBufFormats out;
    for (EGLint fourcc : fourccs) {
        const auto code = static_cast<std::uint32_t>(fourcc);
        EGLint n = 0;
        if (!query_modifiers(display, fourcc, 0, nullptr, nullptr, &n))
            return egl_error("eglQueryDmaBufModifiersEXT (count) for " + fourcc_to_string(code));
        if (n <= 0) {
            out.importable.add(code, modifier::invalid);
            continue;
        }
        std::vector<EGLuint64KHR> mods(static_cast<std::size_t>(n));
        std::vector<EGLBoolean> external(static_cast<std::size_t>(n));
        if (!query_modifiers(display, fourcc, n, mods.data(), external.data(), &n))
            return egl_error("eglQueryDmaBufModifiersEXT for " + fourcc_to_string(code));
        for (std::size_t i = 0; i < static_cast<std::size_t>(n) && i < mods.size(); ++i) {
            out.importable.add(code, mods[i]);
            if (external[i]) out.external_only.add(code, mods[i]);
        }
    }
    return out;
}

}  // namespace detail

Result<DmaBufFormats> Context::formats() const {
    if (!state_) return empty_error("egl formats").error();
    auto& s = *state_;
    std::lock_guard lock(s.formats_mutex);
    if (s.formats) return *s.formats;
    auto out = detail::query_formats(s.display, s.eglQueryDmaBufFormatsEXT, s.eglQueryDmaBufModifiersEXT);
    if (!out) return out.error();
    s.formats = *out;
    return out;
}

namespace {

// The target an import of (fourcc, modifier) needs, or an error.
Result<GLenum> choose_target(const Context::State& s, const DmaBufFormats& formats, const BufferDesc& desc,
                             const ImportOptions& options, const std::string& what) {
    bool external_only = false;
    if (desc.modifier == modifier::invalid) {
        // Implicit modifier: external-only when every listed modifier of the fourcc is.
        const auto all = formats.importable.modifiers(desc.fourcc);
        const auto ext = formats.external_only.modifiers(desc.fourcc);
        external_only = !ext.empty() && ext.size() == all.size();
    } else {
        external_only = formats.external_only.contains(desc.fourcc, desc.modifier);
    }
    GLenum target = options.target;
    if (target == 0) target = external_only ? GL_TEXTURE_EXTERNAL_OES : GL_TEXTURE_2D;
    if (target != GL_TEXTURE_2D && target != GL_TEXTURE_EXTERNAL_OES) {
        char hex[16];
        std::snprintf(hex, sizeof hex, "0x%04x", target);
        return Error::library(Errc::invalid_argument,
                              what + ": target " + hex + " is neither GL_TEXTURE_2D nor GL_TEXTURE_EXTERNAL_OES");
    }
    if (target == GL_TEXTURE_2D && external_only)
        return Error::library(Errc::unsupported, what + ": the display samples " + fourcc_to_string(desc.fourcc) + " " +
                                                     modifier_to_string(desc.modifier) +
                                                     " only as GL_TEXTURE_EXTERNAL_OES, GL_TEXTURE_2D was asked");
    if (target == GL_TEXTURE_EXTERNAL_OES && !has(s.features, Feature::external_texture))
        return Error::library(Errc::unsupported, what + ": GL_TEXTURE_EXTERNAL_OES needs GL_OES_EGL_image_external, "
                                                        "which the context lacks");
    return target;
}

// Every check an import makes before EGL sees the description.
Status check_import(const DmaBufFormats& formats, const BufferDesc& desc, const std::string& what) {
    if (auto v = desc.validate(); !v) return v.error().with_context(what);
    if (desc.planes.empty() || desc.planes.size() > 4)
        return Error::library(Errc::invalid_argument,
                              what + ": " + std::to_string(desc.planes.size()) + " planes; EGL takes 1 to 4");
    constexpr std::uint64_t egl_max = INT32_MAX;
    if (desc.width > egl_max || desc.height > egl_max)
        return Error::library(Errc::invalid_argument, what + ": " + std::to_string(desc.width) + "x" +
                                                          std::to_string(desc.height) + " does not fit an EGLint");
    for (std::size_t i = 0; i < desc.planes.size(); ++i) {
        const auto& p = desc.planes[i];
        if (p.offset > egl_max || p.stride > egl_max)
            return Error::library(Errc::invalid_argument, what + ": plane " + std::to_string(i) + " offset " +
                                                              std::to_string(p.offset) + " or pitch " +
                                                              std::to_string(p.stride) + " does not fit an EGLint");
    }
    const auto mods = formats.importable.modifiers(desc.fourcc);
    if (mods.empty())
        return Error::library(Errc::unsupported,
                              what + ": the display does not import " + fourcc_to_string(desc.fourcc) + " dma-bufs");
    if (desc.modifier != modifier::invalid && !formats.importable.contains(desc.fourcc, desc.modifier)) {
        std::string offered;
        for (auto m : mods) offered += (offered.empty() ? "" : ", ") + modifier_to_string(m);
        return Error::library(Errc::unsupported, what + ": the display does not offer modifier " +
                                                     modifier_to_string(desc.modifier) + " for " +
                                                     fourcc_to_string(desc.fourcc) + " (it offers " + offered + ")");
    }
    return {};
}

constexpr EGLint plane_attr[4][5] = {
    {EGL_DMA_BUF_PLANE0_FD_EXT, EGL_DMA_BUF_PLANE0_OFFSET_EXT, EGL_DMA_BUF_PLANE0_PITCH_EXT,
     EGL_DMA_BUF_PLANE0_MODIFIER_LO_EXT, EGL_DMA_BUF_PLANE0_MODIFIER_HI_EXT},
    {EGL_DMA_BUF_PLANE1_FD_EXT, EGL_DMA_BUF_PLANE1_OFFSET_EXT, EGL_DMA_BUF_PLANE1_PITCH_EXT,
     EGL_DMA_BUF_PLANE1_MODIFIER_LO_EXT, EGL_DMA_BUF_PLANE1_MODIFIER_HI_EXT},
    {EGL_DMA_BUF_PLANE2_FD_EXT, EGL_DMA_BUF_PLANE2_OFFSET_EXT, EGL_DMA_BUF_PLANE2_PITCH_EXT,
     EGL_DMA_BUF_PLANE2_MODIFIER_LO_EXT, EGL_DMA_BUF_PLANE2_MODIFIER_HI_EXT},
    {EGL_DMA_BUF_PLANE3_FD_EXT, EGL_DMA_BUF_PLANE3_OFFSET_EXT, EGL_DMA_BUF_PLANE3_PITCH_EXT,
     EGL_DMA_BUF_PLANE3_MODIFIER_LO_EXT, EGL_DMA_BUF_PLANE3_MODIFIER_HI_EXT},
};

// Makes a texture of `target` bound to `image`, restoring the application's binding.
Result<GLuint> bind_texture(Context::State& s, EGLImageKHR image, GLenum target, const std::string& what) {
    GLint previous = 0;
    s.glGetIntegerv(target == GL_TEXTURE_2D ? GL_TEXTURE_BINDING_2D : GL_TEXTURE_BINDING_EXTERNAL_OES, &previous);
    GLuint texture = 0;
    s.glGenTextures(1, &texture);
    if (texture != 0) s.live_textures.fetch_add(1, std::memory_order_relaxed);
    s.glBindTexture(target, texture);
    s.glTexParameteri(target, GL_TEXTURE_MIN_FILTER, GL_LINEAR);
    s.glTexParameteri(target, GL_TEXTURE_MAG_FILTER, GL_LINEAR);
    s.glTexParameteri(target, GL_TEXTURE_WRAP_S, GL_CLAMP_TO_EDGE);
    s.glTexParameteri(target, GL_TEXTURE_WRAP_T, GL_CLAMP_TO_EDGE);
    s.glEGLImageTargetTexture2DOES(target, static_cast<GLeglImageOES>(image));
    auto err = detail::gl_check(s, what + ": glEGLImageTargetTexture2DOES");
    s.glBindTexture(target, static_cast<GLuint>(previous));
    if (!err) {
        s.delete_texture(texture);
        return err.error();
    }
    if (texture == 0) return Error::library(Errc::unsupported, what + ": glGenTextures gave no texture");
    return texture;
}

}  // namespace

Result<SharedImage> Context::import(const BufferDesc& desc, const ImportOptions& options) const {
    if (auto c = detail::require_current(state_.get(), "egl import"); !c) return c.error();
    auto& s = *state_;
    const std::string what = "egl import " + desc.describe();
    auto formats = this->formats();
    if (!formats) return formats.error().with_context(what);
    if (auto ok = check_import(*formats, desc, what); !ok) return ok.error();
    auto target = choose_target(s, *formats, desc, options, what);
    if (!target) return target.error();

    std::vector<EGLint> attribs;
    attribs.reserve(64);
    auto push = [&](EGLint key, EGLint value) {
        attribs.push_back(key);
        attribs.push_back(value);
    };
    push(EGL_WIDTH, static_cast<EGLint>(desc.width));
    push(EGL_HEIGHT, static_cast<EGLint>(desc.height));
    push(EGL_LINUX_DRM_FOURCC_EXT, static_cast<EGLint>(desc.fourcc));
    for (std::size_t i = 0; i < desc.planes.size(); ++i) {
        const auto& p = desc.planes[i];
        push(plane_attr[i][0], p.buffer.fd());
        push(plane_attr[i][1], static_cast<EGLint>(p.offset));
        push(plane_attr[i][2], static_cast<EGLint>(p.stride));
        // The same modifier on every plane; none at all means "implicit", which is not LINEAR.
        if (desc.modifier != modifier::invalid) {
            push(plane_attr[i][3], static_cast<EGLint>(desc.modifier & 0xffffffffu));
            push(plane_attr[i][4], static_cast<EGLint>(desc.modifier >> 32));
        }
    }
    if (options.yuv_color_space != 0) push(EGL_YUV_COLOR_SPACE_HINT_EXT, options.yuv_color_space);
    if (options.sample_range != 0) push(EGL_SAMPLE_RANGE_HINT_EXT, options.sample_range);
    attribs.push_back(EGL_NONE);

    if (!s.owns_current()) {
        s.drop_lost_queue();
        return detail::require_current(&s, what.c_str()).error();
    }
    s.drain_queue();
    EGLImageKHR image = s.create_image(EGL_NO_CONTEXT, EGL_LINUX_DMA_BUF_EXT, nullptr, attribs.data());
    if (image == EGL_NO_IMAGE_KHR) return detail::egl_error(what + ": eglCreateImageKHR(EGL_LINUX_DMA_BUF_EXT)");
    auto texture = bind_texture(s, image, *target, what);
    if (!texture) {
        s.destroy_image(image);
        return texture.error();
    }
    auto owner = std::make_shared<Image::Owner>(Image::Owner{state_});
    return SharedImage(std::make_shared<Image>(std::move(owner), image, *texture, *target, desc.width, desc.height,
                                               desc.fourcc, desc.modifier));
}

Result<AllocatedImage> Context::allocate(Allocator& allocator, const ImageRequest& request) const {
    if (auto c = detail::require_current(state_.get(), "egl allocate"); !c) return c.error();
    auto desc = allocator.allocate(request);
    if (!desc) return desc.error().with_context("egl allocate with " + allocator.backend_name());
    ImportOptions options;
    options.target = texture_2d;
    auto image = import(*desc, options);
    if (!image) return image.error().with_context("egl allocate with " + allocator.backend_name());
    return AllocatedImage{std::move(*desc), std::move(*image)};
}

Result<BufferDesc> Context::export_image(ImageHandle image, std::uint32_t width, std::uint32_t height) const {
    if (!state_) return empty_error("egl export").error();
    auto& s = *state_;
    char what_buf[96];
    std::snprintf(what_buf, sizeof what_buf, "egl export of EGLImage %p (%ux%u)", image, width, height);
    const std::string what = what_buf;
    if (!has(s.features, Feature::dmabuf_export))
        return Error::library(Errc::unsupported, what + ": the display lacks EGL_MESA_image_dma_buf_export");
    if (image == EGL_NO_IMAGE_KHR || width == 0 || height == 0)
        return Error::library(Errc::invalid_argument, what + ": null image or zero size");
    int fourcc = 0, count = 0;
    EGLuint64KHR mod = 0;
    if (!s.eglExportDMABUFImageQueryMESA(s.display, image, &fourcc, &count, &mod))
        return detail::egl_error(what + ": eglExportDMABUFImageQueryMESA");
    if (count < 1 || count > 4)
        return Error::library(Errc::unsupported, what + ": EGL reports " + std::to_string(count) + " planes");
    int fds[4] = {-1, -1, -1, -1};
    EGLint strides[4] = {}, offsets[4] = {};
    if (!s.eglExportDMABUFImageMESA(s.display, image, fds, strides, offsets))
        return detail::egl_error(what + ": eglExportDMABUFImageMESA");
    // Own every distinct fd at once, so that none leaks on an error below.
    UniqueFd owned[4];
    for (int i = 0; i < count; ++i) {
        bool seen = false;
        for (int j = 0; j < i; ++j) seen = seen || (fds[j] == fds[i]);
        if (fds[i] >= 0 && !seen) owned[i] = UniqueFd(fds[i]);
    }
    BufferDesc desc;
    desc.width = width;
    desc.height = height;
    desc.fourcc = static_cast<std::uint32_t>(fourcc);
    desc.modifier = mod;
    for (int i = 0; i < count; ++i) {
        const auto offset = static_cast<std::uint64_t>(offsets[i] < 0 ? 0 : offsets[i]);
        const auto stride = static_cast<std::uint64_t>(strides[i] < 0 ? 0 : strides[i]);
        Result<DmaBuf> buf = Error::library(Errc::unsupported, what + ": plane " + std::to_string(i) + " has no fd");
        if (owned[i].valid()) {
            buf = DmaBuf::adopt(std::move(owned[i]));
        } else {
            // -1 or a repeated fd: the plane lives in an earlier plane's buffer (plane 0 for -1).
            int from = fds[i] < 0 ? 0 : -1;
            for (int j = 0; j < i && from < 0; ++j)
                if (fds[j] == fds[i]) from = j;
            if (i > 0 && from >= 0) buf = desc.planes[static_cast<std::size_t>(from)].buffer.dup();
        }
        if (!buf) return buf.error().with_context(what + ": plane " + std::to_string(i));
        desc.planes.push_back(PlaneDesc{std::move(*buf), offset, stride});
    }
    if (auto v = desc.validate(); !v) return v.error().with_context(what + ": EGL's description");
    return desc;
}

Result<BufferDesc> Context::export_texture(Texture texture) const {
    if (auto c = detail::require_current(state_.get(), "egl export_texture"); !c) return c.error();
    auto& s = *state_;
    const std::string what = "egl export of texture " + std::to_string(texture);
    if (!has(s.features, Feature::texture_image))
        return Error::library(Errc::unsupported,
                              what + ": needs EGL_KHR_gl_texture_2D_image and GLES 3.1 (glGetTexLevelParameteriv)");
    GLint previous = 0;
    s.glGetIntegerv(GL_TEXTURE_BINDING_2D, &previous);
    s.glBindTexture(GL_TEXTURE_2D, texture);
    GLint w = 0, h = 0;
    s.glGetTexLevelParameteriv(GL_TEXTURE_2D, 0, kTextureWidth, &w);
    s.glGetTexLevelParameteriv(GL_TEXTURE_2D, 0, kTextureHeight, &h);
    s.glBindTexture(GL_TEXTURE_2D, static_cast<GLuint>(previous));
    if (auto e = detail::gl_check(s, what + ": glGetTexLevelParameteriv"); !e) return e.error();
    if (w <= 0 || h <= 0) return Error::library(Errc::invalid_argument, what + ": level 0 has no storage");
    const EGLint attribs[] = {EGL_GL_TEXTURE_LEVEL_KHR, 0, EGL_NONE};
    EGLImageKHR image = s.create_image(s.context, EGL_GL_TEXTURE_2D_KHR,
                                       reinterpret_cast<EGLClientBuffer>(static_cast<std::uintptr_t>(texture)), attribs);
    if (image == EGL_NO_IMAGE_KHR) return detail::egl_error(what + ": eglCreateImageKHR(EGL_GL_TEXTURE_2D_KHR)");
    auto desc = export_image(image, static_cast<std::uint32_t>(w), static_cast<std::uint32_t>(h));
    s.destroy_image(image);
    return desc;
}

namespace {

class FenceCompletion final : public Completion {
public:
    FenceCompletion(std::shared_ptr<Context::State> state, EGLSyncKHR sync) : state_(std::move(state)), sync_(sync) {}
    ~FenceCompletion() override { state_->eglDestroySyncKHR(state_->display, sync_); }
    bool done() const override {
        EGLint value = 0;
        // An error reads as done: nothing will signal it any more.
        if (!state_->eglGetSyncAttribKHR(state_->display, sync_, EGL_SYNC_STATUS_KHR, &value)) return true;
        return value == EGL_SIGNALED_KHR;
    }
    Result<WaitStatus> wait(Timeout timeout) const override {
        // Negative and huge timeouts wait without limit (never wrapped into a short wait).
        EGLTimeKHR ns = EGL_FOREVER_KHR;
        constexpr long long max_ms = 1000LL * 3600 * 24 * 365;
        if (timeout.count() >= 0 && timeout.count() < max_ms)
            ns = static_cast<EGLTimeKHR>(timeout.count()) * 1000000u;
        const EGLint r = state_->eglClientWaitSyncKHR(state_->display, sync_, 0, ns);
        if (r == EGL_TIMEOUT_EXPIRED_KHR) return WaitStatus::timed_out;
        if (r == EGL_FALSE) return detail::egl_error("eglClientWaitSyncKHR on " + describe());
        return WaitStatus::ready;
    }
    std::string describe() const override {
        char text[64];
        std::snprintf(text, sizeof text, "EGL fence sync %p", sync_);
        return text;
    }

private:
    std::shared_ptr<Context::State> state_;
    EGLSyncKHR sync_;
};

}  // namespace

Result<std::shared_ptr<const Completion>> Context::fence() const {
    if (auto c = detail::require_current(state_.get(), "egl fence"); !c) return c.error();
    auto& s = *state_;
    if (!has(s.features, Feature::fence_sync))
        return Error::library(Errc::unsupported, "egl fence: the display lacks EGL_KHR_fence_sync");
    EGLSyncKHR sync = s.eglCreateSyncKHR(s.display, EGL_SYNC_FENCE_KHR, nullptr);
    if (sync == EGL_NO_SYNC_KHR) return detail::egl_error("egl fence: eglCreateSyncKHR(EGL_SYNC_FENCE_KHR)");
    s.glFlush();
    return std::shared_ptr<const Completion>(std::make_shared<FenceCompletion>(state_, sync));
}

Result<SyncFile> Context::native_fence() const {
    if (auto c = detail::require_current(state_.get(), "egl native fence"); !c) return c.error();
    auto& s = *state_;
    if (!has(s.features, Feature::native_fence_sync))
        return Error::library(Errc::unsupported, "egl native fence: the display lacks EGL_ANDROID_native_fence_sync");
    const EGLint attribs[] = {EGL_SYNC_NATIVE_FENCE_FD_ANDROID, EGL_NO_NATIVE_FENCE_FD_ANDROID, EGL_NONE};
    EGLSyncKHR sync = s.eglCreateSyncKHR(s.display, EGL_SYNC_NATIVE_FENCE_ANDROID, attribs);
    if (sync == EGL_NO_SYNC_KHR)
        return detail::egl_error("egl native fence: eglCreateSyncKHR(EGL_SYNC_NATIVE_FENCE_ANDROID)");
    // The fence exists in the command stream only once flushed.
    s.glFlush();
    const EGLint fd = s.eglDupNativeFenceFDANDROID(s.display, sync);
    const EGLint err = fd < 0 ? eglGetError() : EGL_SUCCESS;
    s.eglDestroySyncKHR(s.display, sync);
    if (fd < 0) return detail::egl_error("egl native fence: eglDupNativeFenceFDANDROID", err);
    auto file = SyncFile::adopt(UniqueFd(fd));
    if (!file) return file.error().with_context("egl native fence");
    return file;
}

std::size_t Context::collect() const {
    if (!state_ || !state_->current()) return 0;
    if (!state_->owns_current()) {
        state_->drop_lost_queue();
        return 0;
    }
    return state_->drain_queue();
}

Result<std::size_t> Context::detach() {
    if (auto c = detail::require_current(state_.get(), "egl detach"); !c) return c.error();
    State& s = *state_;
    if (!s.owns_current()) return detail::require_current(&s, "egl detach").error();
    std::vector<std::pair<EGLImageKHR, GLuint>> doomed;
    {
        std::lock_guard lock(s.queue_mutex);
        doomed.swap(s.queue);
        for (const auto& [image, objects] : s.live) doomed.push_back(objects);
        s.live.clear();
        s.detached.store(true, std::memory_order_release);
    }
    for (auto& [image, texture] : doomed) {
        s.delete_texture(texture);
        s.destroy_image(image);
    }
    if (s.marker != nullptr) {
        s.glDeleteSync(s.marker);
        s.marker = nullptr;
    }
    return doomed.size();
}

ObjectCounts Context::counts() const {
    ObjectCounts c;
    if (!state_) return c;
    c.images = state_->live_images.load();
    c.textures = state_->live_textures.load();
    c.create_image_calls = state_->create_image_calls.load();
    std::lock_guard lock(state_->queue_mutex);
    c.queued = state_->queue.size();
    return c;
}

}  // namespace dmabridge::egl
