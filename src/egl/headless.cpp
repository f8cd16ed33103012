// SPDX-License-Identifier: MIT
// egl::Headless and list_devices(): an EGL display on the device platform and a surfaceless
// OpenGL ES context, for programs without a display of their own.
#include "egl/egl_state.hpp"

#include <cstring>

#include <dmabridge/base/log.hpp>

#include "base/sys.hpp"

namespace dmabridge::egl {

namespace {

struct Client {
    PFNEGLQUERYDEVICESEXTPROC eglQueryDevicesEXT = nullptr;
    PFNEGLQUERYDEVICESTRINGEXTPROC eglQueryDeviceStringEXT = nullptr;
    PFNEGLGETPLATFORMDISPLAYEXTPROC eglGetPlatformDisplayEXT = nullptr;
};

Result<Client> client() {
    const char* ext = eglQueryString(EGL_NO_DISPLAY, EGL_EXTENSIONS);
    if (!ext) return Error::library(Errc::unsupported, "egl devices: EGL has no client extensions (EGL 1.5 / "
                                                       "EGL_EXT_client_extensions)");
    for (const char* need : {"EGL_EXT_device_enumeration", "EGL_EXT_device_query", "EGL_EXT_platform_device"})
        if (!detail::has_extension(ext, need) && !(std::strcmp(need, "EGL_EXT_device_enumeration") == 0 && detail::has_extension(ext, "EGL_EXT_device_base")))
            return Error::library(Errc::unsupported, std::string("egl devices: EGL lacks ") + need);
    Client c;
    c.eglQueryDevicesEXT = reinterpret_cast<PFNEGLQUERYDEVICESEXTPROC>(eglGetProcAddress("eglQueryDevicesEXT"));
    c.eglQueryDeviceStringEXT =
        reinterpret_cast<PFNEGLQUERYDEVICESTRINGEXTPROC>(eglGetProcAddress("eglQueryDeviceStringEXT"));
    c.eglGetPlatformDisplayEXT =
        reinterpret_cast<PFNEGLGETPLATFORMDISPLAYEXTPROC>(eglGetProcAddress("eglGetPlatformDisplayEXT"));
    if (!c.eglQueryDevicesEXT || !c.eglQueryDeviceStringEXT || !c.eglGetPlatformDisplayEXT)
        return Error::library(Errc::unsupported, "egl devices: eglGetProcAddress found no device entry points");
    return c;
}

Result<std::vector<EGLDeviceEXT>> devices(const Client& c) {
    EGLint n = 0;
    if (!c.eglQueryDevicesEXT(0, nullptr, &n)) return detail::egl_error("eglQueryDevicesEXT (count)");
    std::vector<EGLDeviceEXT> list(static_cast<std::size_t>(n > 0 ? n : 0));
    if (n > 0 && !c.eglQueryDevicesEXT(n, list.data(), &n)) return detail::egl_error("eglQueryDevicesEXT");
    list.resize(static_cast<std::size_t>(n > 0 ? n : 0));
    return list;
}

DeviceInfo describe(const Client& c, EGLDeviceEXT d, int index) {
    DeviceInfo info;
    info.index = index;
    auto str = [&](EGLint name) {
        const char* s = c.eglQueryDeviceStringEXT(d, name);
        if (!s) (void)eglGetError();  // a device without a DRM node says EGL_BAD_PARAMETER
        return std::string(s ? s : "");
    };
    info.extensions = str(EGL_EXTENSIONS);
    if (detail::has_extension(info.extensions.c_str(), "EGL_EXT_device_drm")) info.drm_node = str(EGL_DRM_DEVICE_FILE_EXT);
    if (detail::has_extension(info.extensions.c_str(), "EGL_EXT_device_drm_render_node"))
        info.render_node = str(EGL_DRM_RENDER_NODE_FILE_EXT);
    info.software = detail::has_extension(info.extensions.c_str(), "EGL_MESA_device_software");
    return info;
}

}  // namespace

Result<std::vector<DeviceInfo>> list_devices() {
    auto c = client();
    if (!c) return c.error();
    auto list = devices(*c);
    if (!list) return list.error();
    std::vector<DeviceInfo> out;
    for (std::size_t i = 0; i < list->size(); ++i) out.push_back(describe(*c, (*list)[i], static_cast<int>(i)));
    return out;
}

Result<DisplayInfo> probe_device(int index) {
    auto c = client();
    if (!c) return c.error();
    auto list = devices(*c);
    if (!list) return list.error();
    if (index < 0 || static_cast<std::size_t>(index) >= list->size())
        return Error::library(Errc::not_found, "egl probe: device index " + std::to_string(index) + " but EGL lists " +
                                                   std::to_string(list->size()) + " devices");
    DisplayInfo info;
    info.device = describe(*c, (*list)[static_cast<std::size_t>(index)], index);
    const std::string what = "egl probe of device " + std::to_string(index);
    EGLDisplay display =
        c->eglGetPlatformDisplayEXT(EGL_PLATFORM_DEVICE_EXT, (*list)[static_cast<std::size_t>(index)], nullptr);
    if (display == EGL_NO_DISPLAY) return detail::egl_error(what + ": eglGetPlatformDisplayEXT");
    // An uninitialized display answers no query: then this probe initialized it and terminates
    // it again (no fds or driver threads left behind); a display in use stays as it was.
    const bool was_initialized = eglQueryString(display, EGL_VENDOR) != nullptr;
    if (!was_initialized) (void)eglGetError();
    EGLint major = 0, minor = 0;
    if (!eglInitialize(display, &major, &minor)) return detail::egl_error(what + ": eglInitialize");
    struct Terminate {
        EGLDisplay display;
        bool active;
        ~Terminate() {
            if (active) eglTerminate(display);
        }
    } terminate{display, !was_initialized};
    const char* vendor = eglQueryString(display, EGL_VENDOR);
    const char* version = eglQueryString(display, EGL_VERSION);
    const char* ext = eglQueryString(display, EGL_EXTENSIONS);
    info.vendor = vendor ? vendor : "";
    info.version = version ? version : "";
    for (const char* name : {"EGL_EXT_image_dma_buf_import", "EGL_EXT_image_dma_buf_import_modifiers",
                             "EGL_MESA_image_dma_buf_export", "EGL_ANDROID_native_fence_sync", "EGL_KHR_wait_sync",
                             "EGL_KHR_fence_sync", "EGL_KHR_surfaceless_context", "EGL_KHR_gl_texture_2D_image"})
        if (detail::has_extension(ext, name)) info.extensions.emplace_back(name);
    if (detail::has_extension(ext, "EGL_EXT_image_dma_buf_import_modifiers")) {
        auto qf = reinterpret_cast<PFNEGLQUERYDMABUFFORMATSEXTPROC>(eglGetProcAddress("eglQueryDmaBufFormatsEXT"));
        auto qm = reinterpret_cast<PFNEGLQUERYDMABUFMODIFIERSEXTPROC>(eglGetProcAddress("eglQueryDmaBufModifiersEXT"));
        if (!qf || !qm) return Error::library(Errc::unsupported, what + ": no eglQueryDmaBuf*EXT entry points");
        auto formats = detail::query_formats(display, qf, qm);
        if (!formats) return formats.error().with_context(what);
        info.formats = std::move(*formats);
    }
    return info;
}

struct Headless::Impl {
    DeviceInfo device;
    EGLDisplay display = EGL_NO_DISPLAY;
    EGLContext context = EGL_NO_CONTEXT;
    Context attached;
    std::function<void(std::string_view)> on_debug;

    ~Impl() {
        if (context == EGL_NO_CONTEXT) return;
        // Images (in caches, in frames) may outlive the Headless: destroy their objects while the
        // context is current, so that they make no EGL or GL call later.
        if (attached.is_current()) (void)attached.detach();
        attached = Context();
        if (eglGetCurrentContext() == context) eglMakeCurrent(display, EGL_NO_SURFACE, EGL_NO_SURFACE, EGL_NO_CONTEXT);
        eglDestroyContext(display, context);
        // The display stays initialized: EGL keeps one display per device and process, and
        // terminating it would pull it from under every other user of the same device.
    }
};

namespace {

void GL_APIENTRY debug_callback(GLenum, GLenum, GLuint, GLenum, GLsizei length, const GLchar* message,
                                const void* user) {
    const auto* impl = static_cast<const Headless::Impl*>(user);
    if (!impl->on_debug) return;
    impl->on_debug(length >= 0 ? std::string_view(message, static_cast<std::size_t>(length)) : std::string_view(message));
}

}  // namespace

Result<Headless> Headless::create(const HeadlessOptions& options) {
    auto c = client();
    if (!c) return c.error();
    auto list = devices(*c);
    if (!list) return list.error();
    auto impl = std::make_unique<Impl>();
    int chosen = -1;
    if (options.device_index >= 0) {
        if (static_cast<std::size_t>(options.device_index) >= list->size())
            return Error::library(Errc::not_found, "egl headless: device index " + std::to_string(options.device_index) +
                                                       " but EGL lists " + std::to_string(list->size()) + " devices");
        chosen = options.device_index;
    } else {
        for (std::size_t i = 0; i < list->size() && chosen < 0; ++i) {
            auto info = describe(*c, (*list)[i], static_cast<int>(i));
            if (options.device_extension.empty() || detail::has_extension(info.extensions.c_str(), options.device_extension.c_str()))
                chosen = static_cast<int>(i);
        }
        if (chosen < 0)
            return Error::library(Errc::not_found, "egl headless: none of the " + std::to_string(list->size()) +
                                                       " EGL devices offers " + options.device_extension);
    }
    impl->device = describe(*c, (*list)[static_cast<std::size_t>(chosen)], chosen);
    const std::string what = "egl headless on device " + std::to_string(chosen);
    impl->display = c->eglGetPlatformDisplayEXT(EGL_PLATFORM_DEVICE_EXT, (*list)[static_cast<std::size_t>(chosen)], nullptr);
    if (impl->display == EGL_NO_DISPLAY) return detail::egl_error(what + ": eglGetPlatformDisplayEXT");
    EGLint major = 0, minor = 0;
    if (!eglInitialize(impl->display, &major, &minor)) return detail::egl_error(what + ": eglInitialize");
    const char* ext = eglQueryString(impl->display, EGL_EXTENSIONS);
    if (!detail::has_extension(ext, "EGL_KHR_surfaceless_context"))
        return Error::library(Errc::unsupported, what + ": the display lacks EGL_KHR_surfaceless_context");
    if (!eglBindAPI(EGL_OPENGL_ES_API)) return detail::egl_error(what + ": eglBindAPI(EGL_OPENGL_ES_API)");
    EGLConfig config = EGL_NO_CONFIG_KHR;
    if (!detail::has_extension(ext, "EGL_KHR_no_config_context")) {
        const EGLint want[] = {EGL_RENDERABLE_TYPE, options.gles_major >= 3 ? EGL_OPENGL_ES3_BIT : EGL_OPENGL_ES2_BIT,
                               EGL_SURFACE_TYPE, 0, EGL_NONE};
        EGLint n = 0;
        if (!eglChooseConfig(impl->display, want, &config, 1, &n) || n < 1)
            return detail::egl_error(what + ": eglChooseConfig (OpenGL ES " + std::to_string(options.gles_major) + ")");
    }
    std::vector<EGLint> attribs = {EGL_CONTEXT_MAJOR_VERSION, options.gles_major};
    if (options.on_debug_message) {
        attribs.push_back(EGL_CONTEXT_OPENGL_DEBUG);
        attribs.push_back(EGL_TRUE);
    }
    attribs.push_back(EGL_NONE);
    impl->context = eglCreateContext(impl->display, config, EGL_NO_CONTEXT, attribs.data());
    if (impl->context == EGL_NO_CONTEXT)
        return detail::egl_error(what + ": eglCreateContext (OpenGL ES " + std::to_string(options.gles_major) + ")");
    if (!eglMakeCurrent(impl->display, EGL_NO_SURFACE, EGL_NO_SURFACE, impl->context))
        return detail::egl_error(what + ": eglMakeCurrent (surfaceless)");
    auto attached = Context::attach(impl->display, impl->context);
    if (!attached) return attached.error().with_context(what);
    impl->attached = std::move(*attached);
    if (options.on_debug_message) {
        impl->on_debug = options.on_debug_message;
        auto set_callback =
            reinterpret_cast<PFNGLDEBUGMESSAGECALLBACKKHRPROC>(eglGetProcAddress("glDebugMessageCallbackKHR"));
        auto enable = reinterpret_cast<void (*)(GLenum)>(eglGetProcAddress("glEnable"));
        if (!set_callback || !enable || !has(impl->attached.features(), Feature::debug))
            return Error::library(Errc::unsupported, what + ": debug messages asked, but the context lacks GL_KHR_debug");
        enable(GL_DEBUG_OUTPUT_KHR);
        enable(GL_DEBUG_OUTPUT_SYNCHRONOUS_KHR);
        set_callback(debug_callback, impl.get());
        if (auto e = detail::gl_check(*detail::ContextAccess::state(impl->attached), what + ": enable GL_KHR_debug"); !e) return e.error();
    }
    ::dmabridge::detail::log_message(LogLevel::info, what + ": EGL " + std::to_string(major) + "." +
                                                         std::to_string(minor) + ", features " +
                                                         to_string(impl->attached.features()));
    return Headless(std::move(impl));
}

Headless::Headless(std::unique_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}
Headless::Headless(Headless&&) noexcept = default;
Headless& Headless::operator=(Headless&&) noexcept = default;
Headless::~Headless() = default;

const Context& Headless::context() const noexcept {
    static const Context empty;
    return impl_ ? impl_->attached : empty;
}

const DeviceInfo& Headless::device() const noexcept {
    static const DeviceInfo none;
    return impl_ ? impl_->device : none;
}

Status Headless::make_current() const {
    if (!impl_) return Error::library(Errc::empty_object, "egl headless: empty (moved from)");
    if (!eglMakeCurrent(impl_->display, EGL_NO_SURFACE, EGL_NO_SURFACE, impl_->context))
        return detail::egl_error("egl headless: eglMakeCurrent");
    return {};
}

Status Headless::release_current() const {
    if (!impl_) return Error::library(Errc::empty_object, "egl headless: empty (moved from)");
    if (!eglMakeCurrent(impl_->display, EGL_NO_SURFACE, EGL_NO_SURFACE, EGL_NO_CONTEXT))
        return detail::egl_error("egl headless: eglMakeCurrent (release)");
    return {};
}

}  // namespace dmabridge::egl
