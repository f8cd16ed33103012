// SPDX-License-Identifier: MIT
// The EGL adapter against Mesa's EGL (software device, llvmpipe) in the VM: attach, formats,
// pixels that cross between dma-heap / udmabuf / GBM / CPU and GL, export, the import cache, and
// descriptions refused before EGL sees them.
#include <dmabridge/alloc/dma_heap.hpp>
#include <dmabridge/alloc/gbm_allocator.hpp>
#include <dmabridge/alloc/udmabuf.hpp>
#include <dmabridge/egl/import_cache.hpp>
#include <dmabridge/egl/sync_bridge.hpp>
#include <dmabridge/kernel/cpu_access.hpp>

#include <algorithm>
#include <atomic>
#include <cstring>

#include <doctest/doctest.h>

#include <EGL/egl.h>
#include <EGL/eglext.h>
#include <dlfcn.h>

#include "egl_harness.hpp"
#include "report.hpp"
#include "vgem.hpp"

using namespace dmabridge;
using namespace dmabridge::test;

namespace {

// Writes `packed` (rows of width*4 bytes) into plane 0 of `desc` through a CPU mapping.
void cpu_write(const BufferDesc& desc, const std::vector<std::uint8_t>& packed) {
    const auto& p = desc.planes[0];
    auto map = Mapping::map(p.buffer, Access::write);
    REQUIRE(map);
    auto cpu = CpuAccess::begin(p.buffer, Access::write);
    REQUIRE(cpu);
    const std::size_t row = std::size_t{desc.width} * 4;
    for (std::uint32_t y = 0; y < desc.height; ++y)
        std::memcpy(map->data() + p.offset + y * p.stride, packed.data() + y * row, row);
}

std::vector<std::uint8_t> cpu_read(const BufferDesc& desc) {
    const auto& p = desc.planes[0];
    auto map = Mapping::map(p.buffer, Access::read);
    REQUIRE(map);
    auto cpu = CpuAccess::begin(p.buffer, Access::read);
    REQUIRE(cpu);
    const std::size_t row = std::size_t{desc.width} * 4;
    std::vector<std::uint8_t> out(row * desc.height);
    for (std::uint32_t y = 0; y < desc.height; ++y)
        std::memcpy(out.data() + y * row, map->data() + p.offset + y * p.stride, row);
    return out;
}

std::vector<std::uint8_t> pattern(std::uint32_t w, std::uint32_t h, std::uint8_t seed) {
    std::vector<std::uint8_t> out(std::size_t{w} * h * 4);
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<std::uint8_t>(i * 7 + seed + i / 251);
    return out;
}

ImageRequest request(std::uint32_t w, std::uint32_t h, std::uint32_t fourcc, const char* name) {
    ImageRequest r;
    r.width = w;
    r.height = h;
    r.fourcc = fourcc;
    r.name = name;
    return r;
}

}  // namespace

namespace {
// While alive, eglGetCurrentContext() answers `pretend` whenever a context is current: the
// driver reusing a destroyed context's handle for a new one, which Mesa may do (handles are
// pointers it frees) but not on demand. Everything else stays real.
std::atomic<EGLContext> pretend_current{EGL_NO_CONTEXT};
}  // namespace

TEST_SUITE("egl") {

TEST_CASE_FIXTURE(EglTest, "attach finds the extensions and the display's dma-buf formats") {
    const auto& ctx = egl_context();
    CHECK(egl_headless().device().software);
    CHECK(egl::has(ctx.features(), egl::Feature::external_texture));
    CHECK(egl::has(ctx.features(), egl::Feature::dmabuf_export));
    CHECK(egl::has(ctx.features(), egl::Feature::native_fence_sync));
    auto formats = ctx.formats();
    REQUIRE_MESSAGE(formats, (formats ? "" : formats.error().message()));
    CHECK(formats->importable.contains(fourcc::XRGB8888, modifier::linear));
    CHECK_FALSE(formats->external_only.contains(fourcc::XRGB8888, modifier::linear));
    // Mesa's llvmpipe samples packed YUV (YUYV ...) only through GL_TEXTURE_EXTERNAL_OES; NV12
    // both ways.
    CHECK(formats->external_only.contains(fourcc::YUYV, modifier::linear));
    CHECK(formats->importable.contains(fourcc::NV12, modifier::linear));
    CHECK(formats->importable.size() >= 40);
    // A second attach to the same handles works and sees the same.
    auto again = egl::Context::attach(ctx.display(), ctx.context());
    REQUIRE(again);
    CHECK(again->features() == ctx.features());
}

TEST_CASE_FIXTURE(EglTest, "attach refuses a context that is not current and null handles") {
    auto null = egl::Context::attach(nullptr, nullptr);
    REQUIRE_FALSE(null);
    CHECK(null.error().is(Errc::invalid_argument));
    REQUIRE(egl_headless().release_current());
    auto stale = egl::Context::attach(egl_context().display(), egl_context().context());
    REQUIRE(egl_headless().make_current());
    REQUIRE_FALSE(stale);
    CHECK(stale.error().message().find("not current") != std::string::npos);
    // Calls that need GL fail the same way off the GL thread's binding.
    REQUIRE(egl_headless().release_current());
    auto heap = DmaHeapAllocator::open();
    REQUIRE(heap);
    auto desc = heap->allocate(request(16, 16, fourcc::XRGB8888, "egl-not-current"));
    REQUIRE(desc);
    auto image = egl_context().import(*desc);
    REQUIRE(egl_headless().make_current());
    REQUIRE_FALSE(image);
    CHECK(image.error().is(Errc::invalid_argument));
}

TEST_CASE_FIXTURE(EglTest, "dma-heap and udmabuf images written by the CPU read back exactly in GL") {
    auto heap = DmaHeapAllocator::open();
    REQUIRE(heap);
    auto udmabuf = UdmabufAllocator::open();
    REQUIRE(udmabuf);
    MemoryAllocator* allocators[] = {&*heap, &*udmabuf};
    for (auto* allocator : allocators) {
        for (std::uint32_t fourcc : {fourcc::XRGB8888, fourcc::ABGR8888}) {
            CAPTURE(allocator->backend_name());
            CAPTURE(fourcc_to_string(fourcc));
            auto desc = allocator->allocate(request(64, 48, fourcc, "cpu-to-gl"));
            REQUIRE(desc);
            const auto bytes = pattern(64, 48, static_cast<std::uint8_t>(fourcc));
            cpu_write(*desc, bytes);
            auto image = egl_context().import(*desc);
            REQUIRE_MESSAGE(image, (image ? "" : image.error().message()));
            CHECK((*image)->target() == egl::texture_2d);
            CHECK(read_rgba(**image) == rgba_of(fourcc, bytes, fourcc == fourcc::XRGB8888));
        }
    }
}

TEST_CASE_FIXTURE(EglTest, "GL renders into an allocated image and the CPU reads the same bytes") {
    auto heap = DmaHeapAllocator::open();
    REQUIRE(heap);
    auto allocated = egl_context().allocate(*heap, request(64, 64, fourcc::ABGR8888, "gl-to-cpu"));
    REQUIRE_MESSAGE(allocated, (allocated ? "" : allocated.error().message()));
    const auto expected = fill_quadrants(*allocated->image, 11);
    GLC(glFinish());
    CHECK(cpu_read(allocated->desc) == expected);  // AB24 is R, G, B, A in memory, as GL reads it
    CHECK(read_rgba(*allocated->image) == expected);
}

TEST_CASE_FIXTURE(EglTest, "a GBM buffer is imported by GL with the implicit modifier and reads back exactly") {
    auto gbm = GbmAllocator::open();
    REQUIRE(gbm);
    auto desc = gbm->allocate(request(64, 32, fourcc::XRGB8888, "gbm-to-gl"));
    REQUIRE_MESSAGE(desc, (desc ? "" : desc.error().message()));
    const auto bytes = pattern(64, 32, 5);
    cpu_write(*desc, bytes);
    auto image = egl_context().import(*desc);
    REQUIRE_MESSAGE(image, (image ? "" : image.error().message()));
    CHECK(read_rgba(**image) == rgba_of(fourcc::XRGB8888, bytes, true));
}

TEST_CASE_FIXTURE(EglTest, "a GL texture is exported as dma-bufs that hold its pixels") {
    GLuint texture = 0;
    GLC(glGenTextures(1, &texture));
    GLC(glBindTexture(GL_TEXTURE_2D, texture));
    GLC(glTexStorage2D(GL_TEXTURE_2D, 1, GL_RGBA8, 64, 32));
    GLC(glBindTexture(GL_TEXTURE_2D, 0));
    // Fill it through an import of its own export: the same memory.
    auto desc = egl_context().export_texture(texture);
    REQUIRE_MESSAGE(desc, (desc ? "" : desc.error().message()));
    CHECK(desc->width == 64);
    CHECK(desc->height == 32);
    CHECK(desc->planes.size() == 1);
    CHECK(desc->modifier == modifier::linear);
    INFO(desc->describe());
    auto image = egl_context().import(*desc);
    REQUIRE_MESSAGE(image, (image ? "" : image.error().message()));
    const auto expected = fill_quadrants(**image, 77);
    GLC(glFinish());
    if (desc->fourcc == fourcc::ABGR8888 || desc->fourcc == fourcc::XBGR8888) {
        CHECK(rgba_of(desc->fourcc, cpu_read(*desc), desc->fourcc == fourcc::XBGR8888) == expected);
    } else {
        CHECK(rgba_of(desc->fourcc, cpu_read(*desc), desc->fourcc == fourcc::XRGB8888) == expected);
    }
    image->reset();
    GLC(glDeleteTextures(1, &texture));
    // Refused: a texture without storage, and export without a texture.
    GLuint empty = 0;
    GLC(glGenTextures(1, &empty));
    auto none = egl_context().export_texture(empty);
    GLC(glDeleteTextures(1, &empty));
    CHECK_FALSE(none);
}

TEST_CASE_FIXTURE(EglTest, "hostile descriptions are refused before EGL sees them") {
    auto heap = DmaHeapAllocator::open();
    REQUIRE(heap);
    auto good = heap->allocate(request(32, 32, fourcc::XRGB8888, "hostile"));
    REQUIRE(good);
    const auto calls = egl_context().counts().create_image_calls;
    auto refuse = [&](BufferDesc d, const char* why) {
        CAPTURE(why);
        auto image = egl_context().import(d);
        REQUIRE_FALSE(image);
        INFO(image.error().message());
        CHECK(image.error().domain() == ErrorDomain::library);
    };
    auto copy = [&]() {
        auto d = good->dup();
        REQUIRE(d);
        return std::move(*d);
    };
    {
        auto d = copy();
        d.planes[0].stride = 64;  // shorter than a row
        refuse(std::move(d), "stride below the row size");
    }
    {
        auto d = copy();
        d.height = 1u << 20;  // past the buffer
        refuse(std::move(d), "rows past the buffer");
    }
    {
        auto d = copy();
        d.planes[0].offset = 0xffffffffull * 4;  // overflow
        refuse(std::move(d), "offset overflow");
    }
    {
        auto d = copy();
        d.fourcc = 0x20202020;  // unknown
        refuse(std::move(d), "unknown fourcc");
    }
    {
        auto d = copy();
        d.modifier = 0x0100000000000001ull;  // a tiled modifier llvmpipe does not offer
        refuse(std::move(d), "modifier not offered");
    }
    {
        auto d = copy();
        auto second = good->planes[0].buffer.dup();
        REQUIRE(second);
        d.planes.push_back(PlaneDesc{std::move(*second), 0, 128});
        refuse(std::move(d), "two planes for a one-plane format");
    }
    {
        auto d = copy();
        egl::ImportOptions o;
        o.target = egl::texture_2d;
        d.fourcc = fourcc::YUYV;
        d.planes[0].stride = 64;
        auto image = egl_context().import(d, o);
        REQUIRE_FALSE(image);
        CHECK(image.error().is(Errc::unsupported));  // external-only as GL_TEXTURE_2D
    }
    {
        BufferDesc moved = copy();
        BufferDesc taken = std::move(moved);
        refuse(std::move(moved), "moved-from description");  // NOLINT(bugprone-use-after-move)
    }
    CHECK(egl_context().counts().create_image_calls == calls);
    // EGL's own refusals carry the EGL error: a pitch EGL accepts in range but llvmpipe cannot use
    // is not guaranteed, so only the good import is checked to reach EGL once.
    auto image = egl_context().import(*good);
    REQUIRE(image);
    CHECK(egl_context().counts().create_image_calls == calls + 1);
}

TEST_CASE_FIXTURE(EglTest, "the import cache hits across new fds, misses on a changed layout, and destroys only after the GL's last use") {
    auto heap = DmaHeapAllocator::open();
    REQUIRE(heap);
    auto desc = heap->allocate(request(64, 64, fourcc::XRGB8888, "egl-cache"));
    REQUIRE(desc);
    const auto bytes = pattern(64, 64, 3);
    cpu_write(*desc, bytes);
    {
        egl::ImportCache cache(egl_context(), {.max_entries = 2});
        auto first = cache.import(*desc);
        REQUIRE(first);
        auto dup = desc->dup();
        REQUIRE(dup);
        REQUIRE(dup->planes[0].buffer.fd() != desc->planes[0].buffer.fd());
        const auto calls = egl_context().counts().create_image_calls;
        auto again = cache.import(*dup);
        REQUIRE(again);
        CHECK(again->get() == first->get());
        CHECK(egl_context().counts().create_image_calls == calls);
        CHECK(cache.stats().hits == 1);
        CHECK(cache.stats().misses == 1);

        // Another layout of the same buffer is another entry.
        auto smaller = desc->dup();
        REQUIRE(smaller);
        smaller->height = 32;
        auto other = cache.import(*smaller);
        REQUIRE(other);
        CHECK(other->get() != first->get());
        CHECK(cache.stats().misses == 2);

        // Draw with the first image, record the use with a fence, evict: the EGLImage lives on
        // until the fence signalled and the handle is dropped.
        const auto read = read_rgba(**first);
        CHECK(read == rgba_of(fourcc::XRGB8888, bytes, true));
        auto fence = egl_context().fence();
        REQUIRE(fence);
        REQUIRE(cache.set_last_use(**first, *fence));
        // A second use that ends only when the test says so: a vgem fence's sync_file.
        Vgem vgem;
        auto gate = vgem.create_buffer();
        const auto gate_fence = vgem.attach_fence(true);
        auto gate_file = gate.export_sync_file(Access::read);
        REQUIRE(gate_file);
        REQUIRE(cache.set_last_use(**first, std::move(*gate_file)));
        const auto images_before = egl_context().counts().images;
        CHECK(cache.evict(*desc));
        first->reset();
        again->reset();
        REQUIRE((*fence)->wait(forever));
        auto early = cache.collect();
        REQUIRE(early);
        CHECK(*early == 0);  // the vgem fence is pending: the EGLImage stays
        CHECK(cache.stats().retired == 1);
        CHECK(egl_context().counts().images == images_before);
        vgem.signal(gate_fence);
        auto collected = cache.collect();
        REQUIRE(collected);
        CHECK(*collected == 1);
        CHECK(egl_context().counts().images == images_before - 1);
        CHECK(cache.stats().retired == 0);

    }
    // An image dropped off the GL thread is queued and destroyed by the next GL call there.
    auto image = egl_context().import(*desc);
    REQUIRE(image);
    REQUIRE(egl_headless().release_current());
    image->reset();
    CHECK(egl_context().collect() == 0);  // not current: nothing can be destroyed here
    REQUIRE(egl_headless().make_current());
    CHECK(egl_context().counts().queued == 1);
    CHECK(egl_context().collect() == 1);
    CHECK(egl_context().counts().queued == 0);
}

TEST_CASE_FIXTURE(EglTest, "empty and moved-from EGL objects fail at once") {
    egl::Context copy = egl_context();
    egl::Context moved = std::move(copy);
    CHECK(moved.is_current());
    for (const egl::Context* empty : {static_cast<const egl::Context*>(&copy), static_cast<const egl::Context*>(nullptr)}) {
        egl::Context fresh;
        const egl::Context& c = empty ? *empty : fresh;  // NOLINT(bugprone-use-after-move)
        CHECK(c.empty());
        CHECK_FALSE(c.is_current());
        CHECK(c.features() == egl::Feature::none);
        CHECK_FALSE(c.formats());
        auto heap = DmaHeapAllocator::open();
        REQUIRE(heap);
        auto desc = heap->allocate(request(16, 16, fourcc::XRGB8888, "egl-empty"));
        REQUIRE(desc);
        auto image = c.import(*desc);
        REQUIRE_FALSE(image);
        CHECK(image.error().is(Errc::empty_object));
        CHECK_FALSE(c.fence());
        CHECK_FALSE(c.native_fence());
        CHECK_FALSE(c.export_image(nullptr, 16, 16));
        CHECK(c.collect() == 0);
        CHECK(c.counts().images == 0);
        egl::ImportCache cache(c);
        auto miss = cache.import(*desc);
        REQUIRE_FALSE(miss);
        CHECK(miss.error().is(Errc::empty_object));
        CHECK_FALSE(egl::SyncBridge::create(c));
    }
}

namespace {

// A second OpenGL ES 3 context on the harness's display (no config, surfaceless), current on
// this thread. The harness's context is made current again by the caller.
// HandleReuse: see pretend_current.
struct HandleReuse {
    explicit HandleReuse(EGLContext pretend) { pretend_current.store(pretend); }
    ~HandleReuse() { pretend_current.store(EGL_NO_CONTEXT); }
    HandleReuse(const HandleReuse&) = delete;
    HandleReuse& operator=(const HandleReuse&) = delete;
};

EGLContext make_context_current(EGLDisplay display) {
    const EGLint attribs[] = {EGL_CONTEXT_MAJOR_VERSION, 3, EGL_NONE};
    EGLContext context = eglCreateContext(display, EGL_NO_CONFIG_KHR, EGL_NO_CONTEXT, attribs);
    REQUIRE(context != EGL_NO_CONTEXT);
    REQUIRE(eglMakeCurrent(display, EGL_NO_SURFACE, EGL_NO_SURFACE, context));
    return context;
}

void destroy_context(EGLDisplay display, EGLContext context) {
    REQUIRE(eglMakeCurrent(display, EGL_NO_SURFACE, EGL_NO_SURFACE, EGL_NO_CONTEXT));
    REQUIRE(eglDestroyContext(display, context));
}

}  // namespace

TEST_CASE_FIXTURE(EglTest, "an Image that outlives its EGLContext never deletes a texture of the context that took its handle") {
    auto display = static_cast<EGLDisplay>(egl_context().display());
    auto heap = DmaHeapAllocator::open();
    REQUIRE(heap);
    auto desc = heap->allocate(request(16, 16, fourcc::XRGB8888, "egl-orphan"));
    REQUIRE(desc);
    EGLContext first = make_context_current(display);
    egl::SharedImage image;
    {
        auto attached = egl::Context::attach(display, first);
        REQUIRE(attached);
        auto imported = attached->import(*desc);
        REQUIRE(imported);
        image = *imported;
    }
    const GLuint old_name = image->texture();
    destroy_context(display, first);  // wrong order: the Image is still alive

    EGLContext second = make_context_current(display);
    GLuint mine = 0;
    GLC(glGenTextures(1, &mine));
    GLC(glBindTexture(GL_TEXTURE_2D, mine));
    GLC(glTexImage2D(GL_TEXTURE_2D, 0, GL_RGBA, 4, 4, 0, GL_RGBA, GL_UNSIGNED_BYTE, nullptr));
    REQUIRE(mine == old_name);  // names start over in a new share group: the case can happen
    {
        // The driver may give `second` the handle value of `first` (a pointer it freed).
        HandleReuse reuse(first);
        image.reset();  // the handle-only check deleted `old_name` here: `mine`
    }
    CHECK(glIsTexture(mine) == GL_TRUE);
    GLC(glDeleteTextures(1, &mine));
    destroy_context(display, second);
    REQUIRE(egl_headless().make_current());
}

TEST_CASE_FIXTURE(EglTest, "detach destroys every live Image's objects; later drops and calls touch nothing") {
    auto display = static_cast<EGLDisplay>(egl_context().display());
    auto heap = DmaHeapAllocator::open();
    REQUIRE(heap);
    auto a = heap->allocate(request(16, 16, fourcc::XRGB8888, "egl-detach-a"));
    auto b = heap->allocate(request(32, 16, fourcc::XRGB8888, "egl-detach-b"));
    REQUIRE(a);
    REQUIRE(b);
    EGLContext context = make_context_current(display);
    {
        auto attached = egl::Context::attach(display, context);
        REQUIRE(attached);
        egl::Context copy = *attached;
        auto first = attached->import(*a);
        auto second = attached->import(*b);
        REQUIRE(first);
        REQUIRE(second);
        CHECK(attached->counts().images == 2);
        CHECK(attached->counts().textures == 2);
        const GLuint texture = (*first)->texture();
        CHECK(glIsTexture(texture) == GL_TRUE);

        auto detached = attached->detach();
        REQUIRE(detached);
        CHECK(*detached == 2);
        CHECK(glIsTexture(texture) == GL_FALSE);
        CHECK(copy.counts().images == 0);
        CHECK(copy.counts().textures == 0);
        // Every copy is detached.
        auto again = copy.import(*a);
        REQUIRE_FALSE(again);
        CHECK(again.error().is(Errc::empty_object));
        CHECK(again.error().message().find("detached") != std::string::npos);
        auto twice = copy.detach();
        REQUIRE_FALSE(twice);
        CHECK(twice.error().is(Errc::empty_object));
        // Dropping the Images afterwards makes no call: the counts do not go below zero.
        first->reset();
        second->reset();
        CHECK(copy.counts().images == 0);
        CHECK(copy.counts().textures == 0);
    }
    destroy_context(display, context);
    REQUIRE(egl_headless().make_current());
}

TEST_CASE_FIXTURE(EglTest, "an Image outlives the Headless that made it") {
    auto heap = DmaHeapAllocator::open();
    REQUIRE(heap);
    auto desc = heap->allocate(request(16, 16, fourcc::XRGB8888, "egl-outlives-headless"));
    REQUIRE(desc);
    egl::SharedImage image;
    {
        auto headless = egl::Headless::create();
        REQUIRE(headless);
        auto imported = headless->context().import(*desc);
        REQUIRE(imported);
        image = *imported;
    }  // destroyed first, on its GL thread: detaches
    image.reset();  // no EGL or GL call; the dma-buf is released (the fixture counts fds)
    REQUIRE(egl_headless().make_current());
}

TEST_CASE_FIXTURE(EglTest, "dmabridge-info lists the EGL software device, its formats, and EGL in the sharing matrix") {
    info::Filters filters;
    filters.device = "software";
    const auto report = info::gather(filters);
    auto sw = std::find_if(report.egl.begin(), report.egl.end(), [](const auto& e) { return e.software; });
    REQUIRE(sw != report.egl.end());
    CHECK(sw->error.empty());
    CHECK(sw->index == egl_headless().device().index);
    CHECK(sw->importable == egl_context().formats()->importable);
    CHECK(sw->external_only.contains(fourcc::YUYV, modifier::linear));
    CHECK(std::find(sw->extensions.begin(), sw->extensions.end(), "EGL_MESA_image_dma_buf_export") != sw->extensions.end());
    auto pair = std::find_if(report.matrix.begin(), report.matrix.end(), [](const auto& m) {
        return m.exporter == "dma-heap:system" && m.importer.rfind("egl:device", 0) == 0;
    });
    REQUIRE(pair != report.matrix.end());
    CHECK(pair->common.contains(fourcc::XRGB8888, modifier::linear));
    const auto json = info::to_json(report);
    CHECK(json.find("\"egl\": [") != std::string::npos);
    CHECK(json.find("\"external_only\": [{\"fourcc\"") != std::string::npos);
    const auto text = info::to_text(report);
    CHECK(text.find("EGL devices\n  device " + std::to_string(sw->index) + " (software)") != std::string::npos);
    // Probing made no context current elsewhere: the test's context is still the current one.
    CHECK(egl_context().is_current());
}

}  // TEST_SUITE("egl")

// The interposer of HandleReuse: the test executable's definition is the one libdmabridge's
// calls bind to; libEGL's own is reached through RTLD_NEXT.
extern "C" EGLContext EGLAPIENTRY eglGetCurrentContext(void) {
    using Fn = EGLContext (*)();
    static const Fn real = reinterpret_cast<Fn>(dlsym(RTLD_NEXT, "eglGetCurrentContext"));
    const EGLContext actual = real();
    const EGLContext pretend = pretend_current.load();
    return pretend != EGL_NO_CONTEXT && actual != EGL_NO_CONTEXT ? pretend : actual;
}
