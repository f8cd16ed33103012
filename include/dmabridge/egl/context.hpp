// SPDX-License-Identifier: MIT
#pragma once
/// @file egl/context.hpp
/// The EGL / OpenGL ES adapter: dma-bufs imported as EGLImages and GL textures, GL images exported
/// as dma-bufs, on the application's own EGLDisplay and EGLContext.
///
/// Context attaches dmabridge to a display and context the application made (it never creates,
/// makes current, or destroys them), loads every entry point it uses through eglGetProcAddress,
/// and checks the extensions it needs:
///   required: EGL_EXT_image_dma_buf_import, EGL_EXT_image_dma_buf_import_modifiers (display),
///             GL_OES_EGL_image (context);
///   optional: GL_OES_EGL_image_external (external-only formats such as NV12 as
///             GL_TEXTURE_EXTERNAL_OES), EGL_MESA_image_dma_buf_export (export),
///             EGL_ANDROID_native_fence_sync + EGL_KHR_wait_sync (SyncBridge without CPU waits),
///             EGL_KHR_gl_texture_2D_image (export of a plain GL texture).
/// Features() says which optional ones exist.
///
/// Threads: EGL binds a context to one thread at a time. Every member that issues GL calls (marked
/// "GL" below) must be called on a thread where the attached context is current; it checks
/// (eglGetCurrentContext, no syscall) and fails with Errc::invalid_argument otherwise. Members
/// that use only the display (formats(), export of an EGLImage, fences' status) work on any thread.
/// GL objects (textures) and the EGLImages behind them are destroyed only on a thread with the
/// context current: an Image dropped elsewhere is queued and destroyed by the next collect() (or
/// import, or ImportCache call) on the context's thread.
///
/// The public types carry EGL and GL handles as their underlying C types (EGLDisplay, EGLContext,
/// EGLImage and EGLSync are `void*`, GLuint and GLenum `unsigned int`), so that this header does
/// not include <EGL/egl.h> (which on some platforms drags in X11 and its macros).

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <dmabridge/alloc/allocator.hpp>
#include <dmabridge/base/result.hpp>
#include <dmabridge/format/buffer_desc.hpp>
#include <dmabridge/format/format_set.hpp>
#include <dmabridge/kernel/completion.hpp>
#include <dmabridge/kernel/sync_file.hpp>

namespace dmabridge::egl {

using DisplayHandle = void*;   ///< an EGLDisplay
using ContextHandle = void*;   ///< an EGLContext
using ImageHandle = void*;     ///< an EGLImage (EGLImageKHR)
using Texture = unsigned int;  ///< a GL texture name (GLuint)
using Target = unsigned int;   ///< a GL texture target (GLenum)

/// GL_TEXTURE_2D and GL_TEXTURE_EXTERNAL_OES, the targets an imported image is bound to.
inline constexpr Target texture_2d = 0x0DE1;
inline constexpr Target texture_external = 0x8D65;  ///< GL_TEXTURE_EXTERNAL_OES (see texture_2d)

/// Optional extensions a Context found (bit flags).
enum class Feature : std::uint32_t {
    none = 0,                     ///< no optional extension
    external_texture = 1u << 0,   ///< GL_OES_EGL_image_external: GL_TEXTURE_EXTERNAL_OES
    dmabuf_export = 1u << 1,      ///< EGL_MESA_image_dma_buf_export
    native_fence_sync = 1u << 2,  ///< EGL_ANDROID_native_fence_sync and EGL_KHR_wait_sync
    texture_image = 1u << 3,      ///< EGL_KHR_gl_texture_2D_image (export_texture())
    debug = 1u << 4,              ///< GL_KHR_debug
    fence_sync = 1u << 5,         ///< EGL_KHR_fence_sync (Context::fence())
};
/// Bitwise or and and of feature sets; has(set, f) is true when every bit of `f` is in `set`
/// (never for Feature::none).
constexpr Feature operator|(Feature a, Feature b) noexcept {
    return static_cast<Feature>(static_cast<std::uint32_t>(a) | static_cast<std::uint32_t>(b));
}
constexpr Feature operator&(Feature a, Feature b) noexcept {
    return static_cast<Feature>(static_cast<std::uint32_t>(a) & static_cast<std::uint32_t>(b));
}
constexpr bool has(Feature set, Feature f) noexcept { return (set & f) == f && f != Feature::none; }
/// "external_texture|dmabuf_export|...", for logs and tools.
std::string to_string(Feature features);

/// The EGL name of an EGL error code: "EGL_BAD_MATCH", or "EGL error 0x...." when unknown.
const char* egl_error_name(int error) noexcept;
/// The GL name of a GL error code: "GL_INVALID_OPERATION", or "GL error" when unknown.
const char* gl_error_name(unsigned int error) noexcept;

/// The dma-buf formats a display imports (eglQueryDmaBufFormatsEXT and
/// eglQueryDmaBufModifiersEXT). A fourcc for which the display lists no modifier is importable
/// only with the implicit modifier (modifier::invalid).
struct DmaBufFormats {
    /// Every importable (fourcc, modifier).
    FormatSet importable;
    /// The pairs the driver can sample only through GL_TEXTURE_EXTERNAL_OES (the external_only
    /// flags of eglQueryDmaBufModifiersEXT): YUV formats converted by the driver, for example.
    FormatSet external_only;
};

/// Live objects a Context made and has not destroyed yet, and calls counted since attach: for
/// leak checks (tests, soak) and to prove that refused descriptions never reached EGL.
struct ObjectCounts {
    std::uint64_t images = 0;         ///< live EGLImages made by dmabridge (imports, exports)
    std::uint64_t textures = 0;       ///< live GL textures made by dmabridge
    std::uint64_t queued = 0;         ///< dropped Images waiting for collect() on the GL thread
    std::uint64_t create_image_calls = 0;  ///< eglCreateImage(KHR) calls made, failed ones included
};

/// How to import a BufferDesc.
struct ImportOptions {
    /// 0: GL_TEXTURE_EXTERNAL_OES when the display flags the (fourcc, modifier) external-only,
    /// else GL_TEXTURE_2D. texture_external: always external (needs Feature::external_texture).
    /// texture_2d: never external (fails for an external-only pair).
    Target target = 0;
    /// EGL_YUV_COLOR_SPACE_HINT_EXT / EGL_SAMPLE_RANGE_HINT_EXT for YUV formats: 0 leaves them to
    /// the driver (BT.601, narrow range on Mesa). Other values are the EGL enum values
    /// (EGL_ITU_REC601_EXT 0x327F, EGL_ITU_REC709_EXT 0x3280, EGL_ITU_REC2020_EXT 0x3281;
    /// EGL_YUV_FULL_RANGE_EXT 0x3282, EGL_YUV_NARROW_RANGE_EXT 0x3283).
    int yuv_color_space = 0;
    int sample_range = 0;  ///< EGL_SAMPLE_RANGE_HINT_EXT, as above (0: the driver's choice)
};

class Context;
namespace detail {
struct ContextAccess;  // the library's own access to a Context's state (src/egl)
}  // namespace detail

/// An EGLImage made from dma-bufs (import) or exported from GL, with a GL texture bound to it.
/// Shared (std::shared_ptr<const Image>); the image and texture are destroyed when the last
/// reference goes: at once on a thread where the context is current, otherwise at the next
/// collect() on the GL thread (see the file comment). Holds its own references to the dma-bufs.
/// Thread safety: immutable; any thread may read it.
class Image {
public:
    /// The EGLImage (owned by the Image: do not destroy it).
    ImageHandle egl_image() const noexcept { return image_; }
    /// The GL texture (GL_TEXTURE_2D or GL_TEXTURE_EXTERNAL_OES, see target()), with
    /// GL_LINEAR filtering and GL_CLAMP_TO_EDGE wrapping set. A GL_TEXTURE_2D one can be
    /// attached to a framebuffer and rendered into.
    Texture texture() const noexcept { return texture_; }
    /// The texture's target: texture_2d or texture_external.
    Target target() const noexcept { return target_; }
    /// True when the texture is GL_TEXTURE_EXTERNAL_OES (sample it with samplerExternalOES).
    bool external() const noexcept { return target_ == texture_external; }
    /// The image's size in pixels, DRM fourcc and modifier (the imported or exported description's).
    std::uint32_t width() const noexcept { return width_; }
    std::uint32_t height() const noexcept { return height_; }
    std::uint32_t fourcc() const noexcept { return fourcc_; }
    std::uint64_t modifier() const noexcept { return modifier_; }

    struct Owner;
    /// Made by the library (Context::import(), allocate()); public only for std::make_shared.
    /// Registers the image as live with its Context (ObjectCounts, detach()).
    Image(std::shared_ptr<Owner> owner, ImageHandle image, Texture texture, Target target, std::uint32_t width,
          std::uint32_t height, std::uint32_t fourcc, std::uint64_t modifier) noexcept;
    /// Destroys the texture and the EGLImage at once on a thread where the context is current;
    /// elsewhere queues them for the next collect(). After detach() it touches nothing; after
    /// the context was found gone it destroys the EGLImage only (the texture went with the
    /// context).
    ~Image();
    Image(const Image&) = delete;
    Image& operator=(const Image&) = delete;

private:
    std::shared_ptr<Owner> owner_;  // destroys (or queues) the EGLImage and the texture
    ImageHandle image_ = nullptr;
    Texture texture_ = 0;
    Target target_ = 0;
    std::uint32_t width_ = 0, height_ = 0, fourcc_ = 0;
    std::uint64_t modifier_ = 0;
};

/// How Images are handed out: shared, destroyed with the last reference.
using SharedImage = std::shared_ptr<const Image>;

/// An image allocated for GL to render into and for others to import: its dma-bufs and the GL
/// image on them.
struct AllocatedImage {
    BufferDesc desc;    ///< the allocator's dma-bufs, to hand to other importers
    SharedImage image;  ///< the same memory imported as a GL_TEXTURE_2D
};

/// Options of Context::attach.
struct AttachOptions {
    /// Fail unless these optional features are present (Errc::unsupported naming the extension).
    Feature required = Feature::none;
};

/// dmabridge attached to an application's EGLDisplay and EGLContext (OpenGL ES 2 or later).
/// Copyable: copies share one state. A moved-from Context is empty: every operation fails with
/// Errc::empty_object.
///
/// Lifetime: the display must outlive every copy and every Image. Before destroying the
/// EGLContext while Images made through it may still be alive (in caches, in frames), call
/// detach() on the GL thread: it destroys every EGLImage and texture now, and the Images
/// dropped later touch nothing. Without detach(), an Image dropped after the context was
/// destroyed never deletes a texture of another context that got the same handle: on GLES 3
/// with GL_KHR_debug the attached context is recognized by a labelled sync object made at
/// attach (not by its handle alone), and when it is gone the Images' EGLImages are destroyed and
/// their textures are taken as gone with the context. Without those features only the handle
/// can be compared, so detach() is the only safe order there.
class Context {
public:
    /// An empty Context (empty() true): every operation fails with Errc::empty_object.
    Context() = default;

    /// GL. Attaches to `display` (initialized) and `context`, which must be current on the calling
    /// thread. Loads the entry points (eglGetProcAddress), checks the required extensions of the
    /// display (eglQueryString) and the context (glGetString(GL_EXTENSIONS)). Errors
    /// (Errc::unsupported) name the first missing extension or entry point; a null handle or a
    /// context that is not current fails with Errc::invalid_argument. Costs a few string scans.
    static Result<Context> attach(DisplayHandle display, ContextHandle context, const AttachOptions& options = {});

    /// Copies share one state (features, formats, counts, the queue of dropped Images).
    Context(const Context&) = default;
    Context& operator=(const Context&) = default;
    /// Moves leave the source empty.
    Context(Context&&) noexcept = default;
    Context& operator=(Context&&) noexcept = default;
    /// Dropping the last copy destroys nothing that is still queued (it cannot know the thread):
    /// call collect() on the GL thread first; ObjectCounts::queued says what is left.
    ~Context();

    /// True when default-made or moved from (not after detach(): a detached Context is not
    /// empty, its operations fail with Errc::empty_object "detached").
    bool empty() const noexcept { return state_ == nullptr; }
    /// The EGLDisplay and EGLContext attached to; nullptr when empty.
    DisplayHandle display() const noexcept;
    ContextHandle context() const noexcept;
    /// The optional features found at attach.
    Feature features() const noexcept;
    /// True when the attached context is current on the calling thread (eglGetCurrentContext).
    bool is_current() const noexcept;

    /// What the display imports, queried once at the first call and kept (two EGL queries per
    /// fourcc). Any thread. Errors: the queries fail (EGL error name and code).
    Result<DmaBufFormats> formats() const;

    /// GL. Imports `desc` as an EGLImage (every plane's fd, offset and pitch, the modifier as
    /// hi/lo attributes unless it is modifier::invalid) and binds it to a new texture, without a
    /// cache (see ImportCache). Checked before EGL sees anything: desc.validate(), a plane count
    /// EGL can take (1 to 4), a fourcc the display imports, a modifier it offers for that fourcc,
    /// width/height/offsets/pitches that fit an EGLint, the target rules of ImportOptions.
    /// Errors: Errc::invalid_argument / unsupported for refused descriptions, ErrorDomain::egl
    /// (code: the EGL error) when eglCreateImage fails, ErrorDomain::gl when binding fails; every
    /// message carries the description's numbers. Costs eglCreateImage + 3 GL calls; the fds are
    /// not duplicated (EGL takes its own references).
    Result<SharedImage> import(const BufferDesc& desc, const ImportOptions& options = {}) const;

    /// GL. Allocates an image with `allocator` (dma-heap, udmabuf, GBM...) and imports it as a
    /// GL_TEXTURE_2D that GL can render into (through a framebuffer) and others can import from
    /// `desc`. Errors: the allocator's, import()'s.
    Result<AllocatedImage> allocate(Allocator& allocator, const ImageRequest& request) const;

    /// Describes an EGLImage as dma-bufs (EGL_MESA_image_dma_buf_export:
    /// eglExportDMABUFImageQueryMESA then eglExportDMABUFImageMESA): fourcc, modifier, and per plane
    /// a new fd (owned by the result), offset and pitch. EGL does not report the size: pass
    /// `width` and `height`. Any thread. Errors: Feature::dmabuf_export missing (Errc::unsupported),
    /// the EGL calls' errors (ErrorDomain::egl), a result that fails BufferDesc::validate().
    Result<BufferDesc> export_image(ImageHandle image, std::uint32_t width, std::uint32_t height) const;

    /// GL. Describes level 0 of the GL_TEXTURE_2D `texture` (which the application allocated,
    /// e.g. with glTexStorage2D, and rendered into) as dma-bufs: a temporary EGLImage
    /// (EGL_KHR_gl_texture_2D_image) exported as export_image() does, size from
    /// glGetTexLevelParameteriv (GLES 3.1). The dma-bufs stay valid after the texture is deleted.
    Result<BufferDesc> export_texture(Texture texture) const;

    /// GL. A completion for every GL command issued so far on this context: an EGL fence sync
    /// (EGL_SYNC_FENCE) and glFlush. Its done() asks eglGetSyncAttrib (no GL call; any thread).
    /// Use it as the last use of cached images (ImportCache::set_last_use).
    Result<std::shared_ptr<const Completion>> fence() const;

    /// GL. A sync_file that signals when every GL command issued so far completed
    /// (EGL_SYNC_NATIVE_FENCE_ANDROID, glFlush, eglDupNativeFenceFDANDROID). Errors:
    /// Feature::native_fence_sync missing (Errc::unsupported), the EGL calls' errors.
    Result<SyncFile> native_fence() const;

    /// GL. Destroys the Images dropped on threads where the context was not current. Returns
    /// how many. Never blocks.
    std::size_t collect() const;

    /// GL. Call before the application destroys the attached EGLContext: destroys the EGLImage
    /// and texture of every Image made through this Context that is still alive or queued, and
    /// the attach-time marker. Returns how many Images' objects were destroyed. Afterwards every
    /// copy is detached: each operation fails with Errc::empty_object ("detached"), Images
    /// dropped later make no EGL or GL call, and an Image's egl_image()/texture() name objects
    /// that no longer exist (do not use them). Errors: an empty Context, a context that is not
    /// current on this thread, one already detached (Errc::empty_object).
    Result<std::size_t> detach();

    /// Live objects and counted calls (see ObjectCounts). Any thread.
    ObjectCounts counts() const;

    /// The adapter's shared state: opaque, defined and reached only inside the library.
    struct State;

private:
    friend struct detail::ContextAccess;
    explicit Context(std::shared_ptr<State> state) noexcept : state_(std::move(state)) {}
    std::shared_ptr<State> state_;
};

/// An EGL device as eglQueryDevicesEXT lists it.
struct DeviceInfo {
    int index = 0;                ///< position in eglQueryDevicesEXT's list
    std::string extensions;       ///< eglQueryDeviceStringEXT(EGL_EXTENSIONS)
    std::string drm_node;         ///< EGL_DRM_DEVICE_FILE_EXT, empty when none (software)
    std::string render_node;      ///< EGL_DRM_RENDER_NODE_FILE_EXT, empty when none
    bool software = false;        ///< offers EGL_MESA_device_software
};

/// The EGL devices (EGL_EXT_device_enumeration). Opens nothing. Errors: the client extensions are
/// missing (Errc::unsupported), eglQueryDevicesEXT fails.
Result<std::vector<DeviceInfo>> list_devices();

/// What one EGL device's display offers, read without a context.
struct DisplayInfo {
    DeviceInfo device;    ///< the device probed
    std::string vendor;   ///< eglQueryString(EGL_VENDOR), e.g. "Mesa Project"
    std::string version;  ///< eglQueryString(EGL_VERSION)
    /// Which of the extensions the adapter uses the display offers, by name.
    std::vector<std::string> extensions;
    DmaBufFormats formats;  ///< empty when the display cannot import dma-bufs
};

/// Initializes the display of device `index` (EGL_EXT_platform_device) and reads its vendor,
/// version, extensions and dma-buf formats; makes no context and changes no current binding. A
/// display this call initialized is terminated again; one already in use is left as it was.
/// Costs a driver start.
/// Errors: no such device, eglInitialize or the format queries fail (ErrorDomain::egl).
Result<DisplayInfo> probe_device(int index);

/// How to make a Headless display and context.
struct HeadlessOptions {
    /// Use the first device whose extensions include this one. The default picks Mesa's software
    /// device (llvmpipe): on vgem-only machines the DRM device's driver (kms_swrast) imports
    /// dma-bufs it cannot read. Empty: the first device.
    std::string device_extension = "EGL_MESA_device_software";
    /// Use the device with this index in list_devices() instead (-1: choose by extension).
    int device_index = -1;
    /// OpenGL ES major version to ask for (2 or 3).
    int gles_major = 3;
    /// Make a debug context (EGL_CONTEXT_OPENGL_DEBUG) and send every GL_KHR_debug message to
    /// this handler (called from inside GL calls, on the GL thread).
    std::function<void(std::string_view message)> on_debug_message;
};

/// An EGL display on the device platform (EGL_EXT_platform_device) and an OpenGL ES context
/// without surfaces (EGL_KHR_surfaceless_context), made current on the creating thread, with a
/// Context attached: for programs without a display of their own (samples, tools, tests).
/// Move-only. Destroying it on the thread where the context is current detaches the Context
/// (Context::detach(): Images still alive touch nothing afterwards), then releases and destroys
/// the context. Destroyed elsewhere, the Images still alive are recognized as orphans when
/// dropped (see Context's lifetime rules).
class Headless {
public:
    /// Picks the device (HeadlessOptions), eglGetPlatformDisplay, eglInitialize, eglCreateContext,
    /// eglMakeCurrent, Context::attach. Costs a driver start (seconds under emulation).
    /// Errors name the step and the EGL error.
    static Result<Headless> create(const HeadlessOptions& options = {});
    /// Moves: the display and context go with the new object; the moved-from Headless is
    /// empty (context() is an empty Context, make_current() fails with Errc::empty_object).
    /// Assignment first destroys what the target held, as the destructor does.
    Headless(Headless&&) noexcept;
    Headless& operator=(Headless&&) noexcept;
    Headless(const Headless&) = delete;
    Headless& operator=(const Headless&) = delete;
    /// See the class comment: detaches the Context when it is current here, releases the
    /// context from this thread and destroys it. The display stays initialized (EGL keeps one
    /// display per device and process; terminating it would pull it from under its other users).

    ~Headless();

    /// The Context attached to the headless display and context; an empty Context when moved
    /// from.
    const Context& context() const noexcept;

    /// The device used.
    const DeviceInfo& device() const noexcept;
    /// Makes the context current on the calling thread (release it on the other thread first).
    Status make_current() const;
    /// Releases the context from the calling thread.
    Status release_current() const;

    struct Impl;

private:
    explicit Headless(std::unique_ptr<Impl> impl) noexcept;
    std::unique_ptr<Impl> impl_;
};

}  // namespace dmabridge::egl
