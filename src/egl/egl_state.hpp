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
#include <unordered_map>
#include <utility>
#include <vector>

#include <EGL/egl.h>
#include <EGL/eglext.h>
#include <GLES3/gl3.h>
#include <GLES2/gl2ext.h>

#include <dmabridge/egl/context.hpp>

namespace dmabridge::egl {

struct Context::State {
    ~State();
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
    // The identity marker (GLES 3 sync objects with a GL_KHR_debug label); null without them.
    PFNGLFENCESYNCPROC glFenceSync = nullptr;
    PFNGLISSYNCPROC glIsSync = nullptr;
    PFNGLDELETESYNCPROC glDeleteSync = nullptr;
    PFNGLOBJECTPTRLABELKHRPROC glObjectPtrLabelKHR = nullptr;
    PFNGLGETOBJECTPTRLABELKHRPROC glGetObjectPtrLabelKHR = nullptr;

    // EGL hands out context handles that are pointers inside the driver: after the application
    // destroys its context, a new context may get the same handle value. Comparing handles alone
    // would then delete textures of a context that is not ours (same texture names). The marker
    // is a GL sync object made at attach and labelled with a name unique to this state; the
    // context current on the thread is ours only if it still knows the marker under that label.
    // Checked only before GL objects are deleted, not on every call.
    GLsync marker = nullptr;
    std::string marker_label;

    std::atomic<std::uint64_t> live_images{0};
    std::atomic<std::uint64_t> live_textures{0};
    std::atomic<std::uint64_t> create_image_calls{0};

    // Guards queue, live and the lifecycle flags below.
    std::mutex queue_mutex;
    // Objects of Images dropped where the context was not current: destroyed by collect().
    std::vector<std::pair<EGLImageKHR, GLuint>> queue;
    // The objects of every Image alive, so that detach() can destroy them before the context goes.
    std::unordered_map<const Image*, std::pair<EGLImageKHR, GLuint>> live;
    // Context::detach() ran: every object was destroyed, later drops touch nothing, every
    // operation fails. Set under queue_mutex, read by the operations without it.
    std::atomic<bool> detached{false};
    // The handle is current but the marker is gone: the application destroyed the attached
    // context (its textures went with it) and a new one took the handle value.
    std::atomic<bool> lost{false};

    // formats(), queried once.
    std::mutex formats_mutex;
    std::optional<DmaBufFormats> formats;

    // The attached handle is current on this thread and the state was not detached or lost. Cheap
    // (no GL call): enough to create objects, not to delete them (see owns_current()).
    bool current() const noexcept {
        return context != EGL_NO_CONTEXT && !detached.load(std::memory_order_acquire) &&
               !lost.load(std::memory_order_acquire) && eglGetCurrentContext() == context;
    }
    // current(), and the context behind the handle is the one attached (the marker answers to its
    // label). Sets `lost` when the handle was taken over by another context. Two GL calls.
    bool owns_current() noexcept;

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
    // Destroys the queued objects; owns_current() must be true.
    std::size_t drain_queue();
    // After `lost`: destroys the queued EGLImages (display objects, no context needed); their
    // textures died with the application's context.
    void drop_lost_queue();
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
