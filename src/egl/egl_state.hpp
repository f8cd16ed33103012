// SPDX-License-Identifier: MIT
#pragma once
// The shared state of an egl::Context: the display and context handles, every entry point the
// adapter uses (loaded through eglGetProcAddress), the optional features, object counters and the
// queue of GL objects dropped on threads where the context was not current.

#include <atomic>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <EGL/egl.h>
#include <EGL/eglext.h>
#include <GLES2/gl2.h>
#include <GLES2/gl2ext.h>

#include <dmabridge/egl/context.hpp>

namespace dmabridge::egl {

struct Context::State {
    EGLDisplay display = EGL_NO_DISPLAY;
    EGLContext context = EGL_NO_CONTEXT;
    Feature features = Feature::none;

    // EGL extensions.
    PFNEGLCREATEIMAGEKHRPROC eglCreateImageKHR = nullptr;
    PFNEGLDESTROYIMAGEKHRPROC eglDestroyImageKHR = nullptr;
    PFNEGLQUERYDMABUFFORMATSEXTPROC eglQueryDmaBufFormatsEXT = nullptr;
    PFNEGLQUERYDMABUFMODIFIERSEXTPROC eglQueryDmaBufModifiersEXT = nullptr;
    PFNEGLEXPORTDMABUFIMAGEQUERYMESAPROC eglExportDMABUFImageQueryMESA = nullptr;
    PFNEGLEXPORTDMABUFIMAGEMESAPROC eglExportDMABUFImageMESA = nullptr;
    PFNEGLCREATESYNCKHRPROC eglCreateSyncKHR = nullptr;
    PFNEGLDESTROYSYNCKHRPROC eglDestroySyncKHR = nullptr;
    PFNEGLCLIENTWAITSYNCKHRPROC eglClientWaitSyncKHR = nullptr;
    PFNEGLGETSYNCATTRIBKHRPROC eglGetSyncAttribKHR = nullptr;
    PFNEGLWAITSYNCKHRPROC eglWaitSyncKHR = nullptr;
    PFNEGLDUPNATIVEFENCEFDANDROIDPROC eglDupNativeFenceFDANDROID = nullptr;
    // GL (core entry points come through eglGetProcAddress too: EGL_KHR_get_all_proc_addresses).
    PFNGLGETERRORPROC glGetError = nullptr;
    PFNGLGETSTRINGPROC glGetString = nullptr;
    PFNGLGETINTEGERVPROC glGetIntegerv = nullptr;
    PFNGLGENTEXTURESPROC glGenTextures = nullptr;
    PFNGLDELETETEXTURESPROC glDeleteTextures = nullptr;
    PFNGLBINDTEXTUREPROC glBindTexture = nullptr;
    PFNGLTEXPARAMETERIPROC glTexParameteri = nullptr;
    PFNGLFLUSHPROC glFlush = nullptr;
    PFNGLFINISHPROC glFinish = nullptr;
    PFNGLEGLIMAGETARGETTEXTURE2DOESPROC glEGLImageTargetTexture2DOES = nullptr;
    void (*glGetTexLevelParameteriv)(GLenum, GLint, GLenum, GLint*) = nullptr;  // GLES 3.1

    std::atomic<std::uint64_t> live_images{0};
    std::atomic<std::uint64_t> live_textures{0};
    std::atomic<std::uint64_t> create_image_calls{0};

    // Objects of Images dropped where the context was not current: destroyed by collect().
    std::mutex queue_mutex;
    std::vector<std::pair<EGLImageKHR, GLuint>> queue;

    // formats(), queried once.
    std::mutex formats_mutex;
    std::optional<DmaBufFormats> formats;

    bool current() const noexcept { return context != EGL_NO_CONTEXT && eglGetCurrentContext() == context; }

    // eglCreateImageKHR, counted.
    EGLImageKHR create_image(EGLContext ctx, EGLenum target, EGLClientBuffer buffer, const EGLint* attribs) {
        create_image_calls.fetch_add(1, std::memory_order_relaxed);
        EGLImageKHR image = eglCreateImageKHR(display, ctx, target, buffer, attribs);
        if (image != EGL_NO_IMAGE_KHR) live_images.fetch_add(1, std::memory_order_relaxed);
        return image;
    }
    void destroy_image(EGLImageKHR image) {
        if (image == EGL_NO_IMAGE_KHR) return;
        eglDestroyImageKHR(display, image);
        live_images.fetch_sub(1, std::memory_order_relaxed);
    }
    // With the context current.
    void delete_texture(GLuint texture) {
        if (texture == 0) return;
        glDeleteTextures(1, &texture);
        live_textures.fetch_sub(1, std::memory_order_relaxed);
    }
    // Destroys the queued objects; the context must be current.
    std::size_t drain_queue();
};

// The owner an Image keeps: destroys the EGLImage and the texture, or queues them.
struct Image::Owner {
    std::shared_ptr<Context::State> state;
};

namespace detail {
// "<what> failed: EGL_BAD_MATCH (0x3009)" in ErrorDomain::egl with the current eglGetError().
Error egl_error(const std::string& what);
Error egl_error(const std::string& what, EGLint code);
// The first pending GL error after `what`, or success; drains every pending error.
Status gl_check(const Context::State& s, const std::string& what);
// The display's dma-buf formats (eglQueryDmaBufFormatsEXT / ModifiersEXT).
Result<DmaBufFormats> query_formats(EGLDisplay display, PFNEGLQUERYDMABUFFORMATSEXTPROC query_formats_fn,
                                    PFNEGLQUERYDMABUFMODIFIERSEXTPROC query_modifiers);
// An error unless the context is current on this thread.
Status require_current(const Context::State* s, const char* operation);
// True when the space-separated extension string `list` (EGL's, GL's, a device's; null allowed)
// names `name` as a whole word.
bool has_extension(const char* list, std::string_view name);
}  // namespace detail

namespace detail {
// The library's access to a Context's shared state, kept out of the installed header.
struct ContextAccess {
    static const std::shared_ptr<Context::State>& state(const Context& c) noexcept { return c.state_; }
};
}  // namespace detail

}  // namespace dmabridge::egl
