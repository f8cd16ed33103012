// SPDX-License-Identifier: MIT
// Pixels and fences crossing between GL (Mesa's software EGL device) and Vulkan (lavapipe),
// vgem fences and vivid: Vulkan export -> GL import, GL export -> Vulkan import, a vgem write
// fence holding GL back, GL's release fence on the dma-buf, and camera frames sampled through
// GL_TEXTURE_EXTERNAL_OES against the CPU reference conversion.
#include <dmabridge/alloc/dma_heap.hpp>
#include <dmabridge/egl/import_cache.hpp>
#include <dmabridge/egl/sync_bridge.hpp>
#include <dmabridge/format/frame_layout.hpp>
#include <dmabridge/kernel/cpu_access.hpp>
#include <dmabridge/v4l2/buffer_ring.hpp>
#include <dmabridge/v4l2/device.hpp>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <tuple>

#include <fcntl.h>
#include <linux/videodev2.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include "egl_harness.hpp"
#include "vgem.hpp"
#include "vivid_nodes.hpp"
#include "vk_fixture.hpp"

using namespace dmabridge;
using namespace dmabridge::test;
using namespace std::chrono_literals;

namespace {

struct EglVkTest : VkDevicesReady, EglTest {
    ~EglVkTest() { check_no_validation_messages(); }
};

std::vector<std::uint8_t> pack(const std::vector<std::vector<std::uint8_t>>& planes) { return planes.at(0); }

// The state letter of thread `tid` in /proc ('R', 'S', 'D' ...).
char thread_state(pid_t tid) {
    const std::string path = "/proc/self/task/" + std::to_string(tid) + "/stat";
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) return '?';
    char text[512];
    const ssize_t n = ::read(fd.get(), text, sizeof text - 1);
    if (n <= 0) return '?';
    const std::string_view all(text, static_cast<std::size_t>(n));
    const auto close = all.rfind(')');
    return close == std::string_view::npos || close + 2 >= all.size() ? '?' : all[close + 2];
}

void cpu_fill(const DmaBuf& buf, std::uint64_t offset, std::uint64_t stride, std::uint32_t rows, std::size_t row_bytes,
              std::uint8_t value) {
    auto map = Mapping::map(buf, Access::write);
    REQUIRE(map);
    auto cpu = CpuAccess::begin(buf, Access::write);
    REQUIRE(cpu);
    for (std::uint32_t y = 0; y < rows; ++y) std::memset(map->data() + offset + y * stride, value, row_bytes);
}

}  // namespace

TEST_SUITE("egl") {

TEST_CASE_FIXTURE(EglVkTest, "a Vulkan export is read exactly by GL") {
    for (std::uint32_t fourcc : {fourcc::XRGB8888, fourcc::ABGR8888}) {
        CAPTURE(fourcc_to_string(fourcc));
        ImageRequest r;
        r.width = 64;
        r.height = 48;
        r.fourcc = fourcc;
        auto exported = device_a().device().export_image(r);
        REQUIRE_MESSAGE(exported, (exported ? "" : exported.error().message()));
        const auto planes = make_pattern(fourcc, 64, 48, 21);
        device_a().upload(exported->image, fourcc, planes);
        egl::ImportCache cache(egl_context());
        auto image = cache.import(exported->desc);
        REQUIRE_MESSAGE(image, (image ? "" : image.error().message()));
        CHECK(read_rgba(**image) == rgba_of(fourcc, pack(planes), fourcc == fourcc::XRGB8888));
        auto fence = egl_context().fence();
        REQUIRE(fence);
        REQUIRE(cache.set_last_use(**image, *fence));
    }
}

TEST_CASE_FIXTURE(EglVkTest, "a texture GL rendered into is exported and read exactly by Vulkan after GL's release") {
    GLuint texture = 0;
    GLC(glGenTextures(1, &texture));
    GLC(glBindTexture(GL_TEXTURE_2D, texture));
    GLC(glTexStorage2D(GL_TEXTURE_2D, 1, GL_RGBA8, 64, 40));
    GLC(glBindTexture(GL_TEXTURE_2D, 0));
    auto desc = egl_context().export_texture(texture);
    REQUIRE_MESSAGE(desc, (desc ? "" : desc.error().message()));
    INFO(desc->describe());
    auto bridge = egl::SyncBridge::create(egl_context());
    REQUIRE(bridge);
    CHECK(bridge->mode() == egl::SyncMode::native_fence);
    REQUIRE(bridge->acquire(*desc, Access::write));
    const auto expected = fill_quadrants(texture, 64, 40, 133);
    auto done = bridge->release(*desc, Access::write);
    REQUIRE_MESSAGE(done, (done ? "" : done.error().message()));
    // The Vulkan reader waits for the dma-buf's fences (GL's, put there by release()).
    auto waited = desc->planes[0].buffer.wait(Access::read, 10s);
    REQUIRE(waited);
    CHECK(*waited == WaitStatus::ready);
    CHECK((*done)->done());
    auto image = device_b().device().import_image(*desc);
    REQUIRE_MESSAGE(image, (image ? "" : image.error().message()));
    const auto bytes = device_b().download(*image, desc->fourcc);
    const bool opaque = desc->fourcc == fourcc::XRGB8888 || desc->fourcc == fourcc::XBGR8888;
    CHECK(rgba_of(desc->fourcc, pack(bytes), opaque) == expected);
    GLC(glDeleteTextures(1, &texture));
}

TEST_CASE_FIXTURE(EglTest, "a vgem write fence holds back GL work that reads the buffer until it signals") {
    auto heap = DmaHeapAllocator::open();
    REQUIRE(heap);
    ImageRequest r;
    r.width = 32;
    r.height = 32;
    r.fourcc = fourcc::ABGR8888;
    auto desc = heap->allocate(r);
    REQUIRE(desc);
    const auto& plane = desc->planes[0];
    cpu_fill(plane.buffer, plane.offset, plane.stride, 32, 128, 0x11);  // the old contents
    auto image = egl_context().import(*desc);
    REQUIRE(image);
    Vgem vgem;
    const auto fence = vgem.attach_fence(true, vgem.import_buffer(plane.buffer));
    auto bridge = egl::SyncBridge::create(egl_context());
    REQUIRE(bridge);

    // The writer the fence stands for: once the GL thread is blocked (a CPU device waits inside
    // eglWaitSync) or its reads are queued behind the fence (a GPU waits server side, and the
    // GL thread sleeps in glReadPixels), it writes the new contents and signals.
    const pid_t gl_thread = static_cast<pid_t>(::syscall(SYS_gettid));
    // The writer writes through a plain mapping: DMA_BUF_IOCTL_SYNC would wait for the very fence
    // it stands for (the system heap's pages are cache-coherent on this machine).
    auto map = Mapping::map(plane.buffer, Access::write);
    REQUIRE(map);
    std::atomic<bool> started{false}, signalled{false};
    std::thread writer([&] {
        while (!started.load()) std::this_thread::yield();
        // vgem signals its fences by itself after 10 s: stay well below.
        const auto deadline = std::chrono::steady_clock::now() + 5s;
        int sleeping = 0;
        while (sleeping < 200 && std::chrono::steady_clock::now() < deadline) {
            sleeping = thread_state(gl_thread) == 'S' ? sleeping + 1 : 0;
            std::this_thread::yield();
        }
        for (std::uint32_t y = 0; y < 32; ++y) std::memset(map->data() + plane.offset + y * plane.stride, 0x77, 128);
        signalled.store(true);
        vgem.signal(fence);
    });
    started.store(true);
    auto acquired = bridge->acquire(*desc, Access::read);
    const bool signalled_at_acquire = signalled.load();
    // A GPU that waits server side returns at once: its reads must then still be pending.
    auto gl_fence = egl_context().fence();
    const auto pixels = read_rgba(**image);
    writer.join();
    REQUIRE_MESSAGE(acquired, (acquired ? "" : acquired.error().message()));
    REQUIRE(gl_fence);
    CHECK_MESSAGE(signalled_at_acquire, "acquire returned before the fence signalled (a server-side wait: "
                                        "GL's reads must then be queued behind it)");
    CHECK(pixels == std::vector<std::uint8_t>(32 * 32 * 4, 0x77));
}

TEST_CASE_FIXTURE(EglTest, "without native fences the bridge waits on the CPU and says why") {
    egl::SyncBridgeOptions options;
    options.force_cpu_wait = true;
    auto bridge = egl::SyncBridge::create(egl_context(), options);
    REQUIRE(bridge);
    CHECK(bridge->mode() == egl::SyncMode::cpu_wait);
    CHECK(bridge->reason().find("forced") != std::string::npos);
    auto heap = DmaHeapAllocator::open();
    REQUIRE(heap);
    auto buf = heap->allocate_bytes(4096);
    REQUIRE(buf);
    Vgem vgem;
    const auto fence = vgem.attach_fence(true, vgem.import_buffer(*buf));
    options.cpu_wait_timeout = 50ms;
    auto short_wait = egl::SyncBridge::create(egl_context(), options);
    REQUIRE(short_wait);
    auto timed_out = short_wait->acquire(*buf, Access::read);
    REQUIRE_FALSE(timed_out);
    CHECK(timed_out.error().is(Errc::limit_exceeded));
    vgem.signal(fence);
    REQUIRE(bridge->acquire(*buf, Access::read));
    auto done = bridge->release(*buf, Access::write);
    REQUIRE(done);
    CHECK((*done)->done());
    // Empty bridges and descriptions fail at once.
    egl::SyncBridge moved = std::move(*bridge);
    CHECK_FALSE(bridge->acquire(*buf, Access::read));  // NOLINT(bugprone-use-after-move)
    CHECK_FALSE(moved.acquire(BufferDesc{}, Access::read));
}

TEST_CASE_FIXTURE(EglTest, "vivid's YUYV and NV12 frames sampled through GL_TEXTURE_EXTERNAL_OES match the CPU conversion") {
    auto cap = find_vivid_node([](const v4l2::Device& d) {
        return d.capabilities().capture && !d.capabilities().multiplanar;
    });
    REQUIRE_MESSAGE(cap.has_value(), "no single-planar vivid capture node");
    // YUYV in vivid's own buffers (VIDIOC_EXPBUF). NV12 from the multi-planar vivid (NV12M: one
    // dma-buf per plane) in dma-heap buffers with room to spare (V4L2_MEMORY_DMABUF): llvmpipe
    // refused (EGL_BAD_ALLOC) NV12 with both planes in one dma-buf, vivid's or ours, and maps
    // planes with padded heights past the end of exactly-sized buffers (measured here).
    auto mplane = find_vivid_node([](const v4l2::Device& d) {
        return d.capabilities().capture && d.capabilities().multiplanar;
    });
    REQUIRE_MESSAGE(mplane.has_value(), "no multi-planar vivid capture node");
    auto heap = DmaHeapAllocator::open();
    REQUIRE(heap);
    for (auto [pixfmt, width, height] : {std::tuple{V4L2_PIX_FMT_YUYV, 320u, 180u}, std::tuple{V4L2_PIX_FMT_NV12M, 320u, 180u}}) {
        CAPTURE(pixfmt);
        v4l2::Device& dev = pixfmt == V4L2_PIX_FMT_YUYV ? *cap : *mplane;
        auto fmt = dev.set_format(v4l2::Direction::capture, width, height, pixfmt);
        REQUIRE_MESSAGE(fmt, (fmt ? "" : fmt.error().message()));
        std::optional<v4l2::Dequeued> frame;
        {
            Result<v4l2::BufferRing> ring = Error::library(Errc::not_found, "no ring");
            if (pixfmt == V4L2_PIX_FMT_YUYV) {
                ring = v4l2::BufferRing::create_exported(dev, v4l2::Direction::capture, 2);
            } else {
                std::vector<BufferDesc> own;
                for (int i = 0; i < 2; ++i) {
                    auto luma = heap->allocate_bytes(std::uint64_t{width} * height + 65536, "egl-nv12-y");
                    auto chroma = heap->allocate_bytes(std::uint64_t{width} * height / 2 + 65536, "egl-nv12-uv");
                    REQUIRE(luma);
                    REQUIRE(chroma);
                    BufferDesc d;
                    d.width = width;
                    d.height = height;
                    d.fourcc = fourcc::NV12;
                    d.planes.push_back(PlaneDesc{std::move(*luma), 0, width});
                    d.planes.push_back(PlaneDesc{std::move(*chroma), 0, width});
                    own.push_back(std::move(d));
                }
                ring = v4l2::BufferRing::create_imported(dev, v4l2::Direction::capture, std::move(own));
            }
            REQUIRE_MESSAGE(ring, (ring ? "" : ring.error().message()));
            for (std::uint32_t i = 0; i < ring->size(); ++i) REQUIRE(ring->queue(i));
            REQUIRE(ring->stream_on());
            while (!frame) {
                auto d = ring->dequeue(5000ms);
                REQUIRE(d);
                REQUIRE_MESSAGE(d->has_value(), "no frame within 5 s");
                if ((*d)->error || (*d)->incomplete) {
                    REQUIRE(ring->queue((*d)->index));
                    continue;
                }
                frame = **d;
            }
            const auto& desc = ring->buffer(frame->index);
            egl::ImportOptions options;
            options.target = egl::texture_external;
            options.yuv_color_space = 0x327F;  // EGL_ITU_REC601_EXT
            options.sample_range = 0x3283;     // EGL_YUV_NARROW_RANGE_EXT
            auto image = egl_context().import(desc, options);
            if (!image && pixfmt == V4L2_PIX_FMT_NV12M && image.error().domain() == ErrorDomain::egl) {
                // Mesa 25's llvmpipe lists NV12 but refuses every NV12 import (EGL_BAD_ALLOC, one
                // or two dma-bufs, any size tried): the error must still say what was refused.
                CHECK(image.error().message().find("EGL_BAD_ALLOC") != std::string::npos);
                CHECK(image.error().message().find("320x180 NV12 LINEAR, plane 0: offset 0 stride 320") !=
                      std::string::npos);
                MESSAGE("NV12 not importable by this EGL driver: " << image.error().message());
                REQUIRE(ring->stream_off());
                continue;
            }
            REQUIRE_MESSAGE(image, (image ? "" : image.error().message()));
            CHECK((*image)->external());
            const auto gl = read_rgba(**image);

            auto layout = dmabridge::frame_layout(desc);
            REQUIRE_MESSAGE(layout, (layout ? "" : layout.error().message()));
            auto map = Mapping::map(desc.planes[0].buffer, Access::read);
            REQUIRE(map);
            auto map1 = Mapping::map(desc.planes.back().buffer, Access::read);
            REQUIRE(map1);
            const auto converted =
                dmabridge::convert_to_rgba(*layout, std::span<const std::byte>(map->data(), map->size()),
                                           std::span<const std::byte>(map1->data(), map1->size()));
            REQUIRE_MESSAGE(converted, (converted ? "" : converted.error().message()));
            const auto& reference = *converted;
            REQUIRE(gl.size() == reference.size());
            // The driver converts in floating point, the reference in 8.8 fixed point: at most 3
            // levels apart per channel (measured: 2), and the picture is not flat.
            int worst = 0;
            std::size_t distinct = 0;
            for (std::size_t i = 0; i < gl.size(); ++i) {
                worst = std::max(worst, std::abs(int(gl[i]) - int(reference[i])));
                if (i >= 4 && (i % 4) != 3 && gl[i] != gl[i - 4]) ++distinct;
            }
            CHECK_MESSAGE(worst <= 3, "largest difference " << worst);
            CHECK(distinct > gl.size() / 100);
            image->reset();
            REQUIRE(ring->stream_off());
        }
    }
}

}  // TEST_SUITE("egl")
