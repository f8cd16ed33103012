// SPDX-License-Identifier: MIT
// The Wayland client against a real weston (headless, GL renderer on llvmpipe): Vulkan-exported
// dma-bufs are presented, weston's own output is captured (weston-screenshooter) and compared
// pixel for pixel with what was rendered; buffers come back only after weston released them;
// refused formats and modifiers say so. One weston for the whole binary (it takes about half a
// minute to start in the VM), started while the Vulkan device is being created.
#include <dmabridge/vulkan/device.hpp>
#include <dmabridge/wayland/display.hpp>
#include <dmabridge/wayland/surface.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <memory>

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <wayland-client.h>

#include "xdg-shell-client.h"

#include <doctest/doctest.h>

#include <dmabridge/base/unique_fd.hpp>

#include "fd_count.hpp"
#include "vk_fixture.hpp"
#include "vk_object_count.hpp"
#include "wayland_application.hpp"
#include "weston.hpp"

using namespace dmabridge;
using namespace dmabridge::test;
using namespace std::chrono_literals;

namespace {

constexpr std::uint32_t size = 64;  // weston's output and every buffer: the window covers the output
constexpr std::uint64_t i915_x_tiled = 0x0100000000000001ull;

struct Session {
    std::unique_ptr<Weston> weston;
    double startup_seconds = 0;
};

// Weston starts first; the Vulkan device is created while it boots (two vCPUs in the VM).
Session& session() {
    static Session s = [] {
        Session out;
        // Mesa's shader cache (llvmpipe's compiled shaders) for weston and for this process's
        // lavapipe: DMABRIDGE_WESTON_CACHE, or next to the binary. A warm cache saves seconds
        // of LLVM compilation under emulation.
        std::string cache;
        if (const char* dir = std::getenv("DMABRIDGE_WESTON_CACHE"); dir != nullptr && *dir != '\0') {
            cache = dir;
        } else {
            std::error_code ec;
            cache = std::filesystem::read_symlink("/proc/self/exe", ec).parent_path() / "weston-shader-cache";
        }
        std::filesystem::create_directories(cache);
        ::setenv("MESA_SHADER_CACHE_DIR", cache.c_str(), 0);
        auto launched = Weston::launch(size, size, cache);
        REQUIRE_MESSAGE(launched, (launched ? "" : launched.error().message()));
        out.weston = std::make_unique<Weston>(std::move(*launched));
        device_a();
        auto ready = out.weston->wait_ready(300);
        REQUIRE_MESSAGE(ready, (ready ? "" : ready.error().message()));
        out.startup_seconds = *ready;
        std::printf("weston ready %.1f s after launch\n", *ready);
        return out;
    }();
    REQUIRE(s.weston);
    return s;
}

wayland::DisplayOptions display_options() {
    wayland::DisplayOptions o;
    o.name = session().weston->socket_path();
    o.timeout = 120s;  // the first answers of a weston under emulation can take seconds
    return o;
}

wayland::Display connect(wayland::DisplayOptions options = display_options()) {
    auto d = wayland::Display::connect(options);
    REQUIRE_MESSAGE(d, (d ? "" : d.error().message() + "\n" + session().weston->log_tail()));
    return std::move(*d);
}

wayland::Surface make_surface(wayland::Display& d, wayland::PresentSync sync) {
    wayland::SurfaceOptions o;
    o.title = "dmabridge test";
    o.sync = sync;
    o.configure_timeout = 120s;
    auto s = d.create_surface(o);
    REQUIRE_MESSAGE(s, (s ? "" : s.error().message()));
    return std::move(*s);
}

// XBGR8888 is R, G, B, X in memory: what the pattern writes and the screenshot reads as RGB.
std::array<std::uint8_t, 3> texel(std::uint32_t x, std::uint32_t y, std::uint32_t seed) {
    return {static_cast<std::uint8_t>((x * 4 + seed * 37) & 255), static_cast<std::uint8_t>((y * 4 + seed * 11) & 255),
            static_cast<std::uint8_t>((x ^ y ^ (seed * 29)) & 255)};
}

std::vector<std::vector<std::uint8_t>> pattern(std::uint32_t seed) {
    std::vector<std::uint8_t> bytes(size * size * 4);
    for (std::uint32_t y = 0; y < size; ++y)
        for (std::uint32_t x = 0; x < size; ++x) {
            const auto t = texel(x, y, seed);
            std::uint8_t* p = &bytes[(y * size + x) * 4];
            p[0] = t[0];
            p[1] = t[1];
            p[2] = t[2];
            p[3] = 0x5a;  // X: weston must ignore it
        }
    return {bytes};
}

// A buffer rendered by the GPU: an exported image filled with a pattern by a Vulkan copy.
vulkan::ExportedImage rendered(const vulkan::Device& device, std::uint32_t seed) {
    ImageRequest r;
    r.width = size;
    r.height = size;
    r.fourcc = fourcc::XBGR8888;
    r.name = "wayland-test";
    auto e = device.export_image(r);
    REQUIRE_MESSAGE(e, (e ? "" : e.error().message()));
    if (seed != 0) device_a().upload(e->image, fourcc::XBGR8888, pattern(seed));
    return std::move(*e);
}

// Pixels of the output that differ from pattern `seed`, and the first of them.
std::string compare(const Screenshot& shot, std::uint32_t seed) {
    if (shot.width != size || shot.height != size)
        return "screenshot is " + std::to_string(shot.width) + "x" + std::to_string(shot.height);
    std::size_t wrong = 0;
    std::string first;
    for (std::uint32_t y = 0; y < size; ++y)
        for (std::uint32_t x = 0; x < size; ++x) {
            const auto want = texel(x, y, seed);
            const std::uint8_t* got = &shot.rgba[(y * size + x) * 4];
            if (got[0] != want[0] || got[1] != want[1] || got[2] != want[2]) {
                if (wrong++ == 0) {
                    char buf[128];
                    std::snprintf(buf, sizeof buf, "first at (%u,%u): got %u,%u,%u want %u,%u,%u", x, y, got[0], got[1],
                                  got[2], want[0], want[1], want[2]);
                    first = buf;
                }
            }
        }
    return wrong == 0 ? std::string() : std::to_string(wrong) + " pixels differ, " + first;
}

void wait_frame(wayland::Display& d, const wayland::Surface& s, std::uint64_t before) {
    const auto deadline = std::chrono::steady_clock::now() + 120s;
    while (s.stats().frames_done <= before) {
        REQUIRE(std::chrono::steady_clock::now() < deadline);
        auto r = d.dispatch(1000ms);
        REQUIRE_MESSAGE(r, (r ? "" : r.error().message()));
    }
}

double seconds_since(std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

Screenshot capture() {
    const auto start = std::chrono::steady_clock::now();
    auto shot = session().weston->screenshot();
    std::printf("  screenshot: %.1f s\n", seconds_since(start));
    REQUIRE_MESSAGE(shot, (shot ? "" : shot.error().message() + "\n" + session().weston->log_tail()));
    return std::move(*shot);
}

struct LiveVulkanCheck {
    LiveVulkanCheck() : before(live_vulkan_objects()) {}
    ~LiveVulkanCheck() { CHECK(live_vulkan_objects() == before); }
    std::int64_t before;
};

// Weston first (the fd check must not count its start), then the leak checks.
struct WaylandTest {
    WaylandTest() { session(); }
};
struct WaylandLeakTest : WaylandTest, FdLeakCheck, LiveVulkanCheck {};

vulkan::Device counted_device() {
    auto d = vulkan::Device::attach(counted_handles(device_a().context()),
                                    vulkan::Capability::export_memory | vulkan::Capability::modifiers);
    REQUIRE_MESSAGE(d, (d ? "" : d.error().message()));
    return std::move(*d);
}

}  // namespace

TEST_SUITE("wayland") {

TEST_CASE_FIXTURE(WaylandLeakTest, "weston accepts the device's exports and shows a presented frame pixel for pixel") {
    const auto device = counted_device();
    auto display = connect();
    CHECK(display.dmabuf_version() >= 3);
    CHECK(display.fd() >= 0);
    // weston's GL renderer on llvmpipe: linux-dmabuf v3 (no main device) and explicit sync.
    CHECK(display.explicit_sync());
    auto common = display.negotiate(device.exportable_formats());
    REQUIRE_MESSAGE(common, (common ? "" : common.error().message()));
    REQUIRE(common->contains(fourcc::XBGR8888, modifier::linear));

    auto surface = make_surface(display, wayland::PresentSync::implicit);
    CHECK(surface.sync() == wayland::PresentSync::implicit);
    CHECK(surface.configured_width() == size);  // kiosk: the output's size
    CHECK(surface.configured_height() == size);

    auto a = rendered(device, 1);
    auto b = rendered(device, 0);
    auto id_a = surface.add_buffer(std::move(a.desc));
    auto id_b = surface.add_buffer(std::move(b.desc));
    REQUIRE_MESSAGE(id_a, (id_a ? "" : id_a.error().message()));
    REQUIRE(id_b);

    REQUIRE(surface.acquire_free(0ms).value() == *id_a);  // never presented: free, first added first
    const auto frames = surface.stats().frames_done;
    const auto first_present = std::chrono::steady_clock::now();
    REQUIRE(surface.present(*id_a));
    wait_frame(display, surface, frames);
    std::printf("  first frame on screen: %.1f s after its commit\n", seconds_since(first_present));
    auto shot = capture();
    CHECK_MESSAGE(compare(shot, 1).empty(), compare(shot, 1));

    // On screen, weston holds A: it is busy, not handed out, and cannot be presented again.
    REQUIRE(display.roundtrip());
    CHECK(surface.busy(*id_a));
    CHECK(surface.stats().released == 0);
    CHECK(surface.acquire_free(0ms).value() == *id_b);
    auto again = surface.present(*id_a);
    REQUIRE_FALSE(again);
    CHECK(again.error().is(Errc::invalid_argument));
    CHECK(again.error().message().find("still holds") != std::string::npos);

    // B, rendered now, with its rendering's fence put on the dma-buf (implicit sync).
    device_a().upload(b.image, fourcc::XBGR8888, pattern(2));
    auto fence = surface.buffer(*id_b)->planes[0].buffer.export_sync_file(Access::read);
    REQUIRE(fence);
    REQUIRE(surface.present(*id_b, std::move(*fence)));
    CHECK(surface.busy(*id_b));
    // A comes back once B replaced it.
    auto freed = surface.acquire_free(120s);
    REQUIRE_MESSAGE(freed, (freed ? "" : freed.error().message()));
    CHECK(*freed == *id_a);
    CHECK(surface.stats().released >= 1);
    CHECK(surface.busy(*id_b));
    shot = capture();
    CHECK_MESSAGE(compare(shot, 2).empty(), compare(shot, 2));
}

TEST_CASE_FIXTURE(WaylandLeakTest, "explicit sync: acquire fences travel with the commit and releases come back per commit") {
    const auto device = counted_device();
    auto display = connect();
    REQUIRE(display.explicit_sync());
    auto surface = make_surface(display, wayland::PresentSync::automatic);
    CHECK(surface.sync() == wayland::PresentSync::explicit_fences);
    auto a = rendered(device, 3);
    auto b = rendered(device, 4);
    auto id_a = surface.add_buffer(std::move(a.desc));
    auto id_b = surface.add_buffer(std::move(b.desc));
    REQUIRE(id_a);
    REQUIRE(id_b);

    auto fence_a = surface.buffer(*id_a)->planes[0].buffer.export_sync_file(Access::read);
    REQUIRE(fence_a);
    auto frames = surface.stats().frames_done;
    REQUIRE(surface.present(*id_a, std::move(*fence_a)));
    wait_frame(display, surface, frames);
    CHECK(surface.busy(*id_a));

    auto fence_b = surface.buffer(*id_b)->planes[0].buffer.export_sync_file(Access::read);
    REQUIRE(fence_b);
    frames = surface.stats().frames_done;
    REQUIRE(surface.present(*id_b, std::move(*fence_b)));
    wait_frame(display, surface, frames);
    auto freed = surface.acquire_free(120s);
    REQUIRE_MESSAGE(freed, (freed ? "" : freed.error().message()));
    CHECK(*freed == *id_a);
    const auto stats = surface.stats();
    CHECK(stats.fenced_releases + stats.immediate_releases == 1);  // exactly one per released commit
    if (auto release = surface.take_release_fence(*id_a)) {
        auto waited = release->wait(60s);
        REQUIRE(waited);
        CHECK(*waited == WaitStatus::ready);
    }
    CHECK_FALSE(surface.take_release_fence(*id_a).has_value());  // taking it cleared it
    auto shot = capture();
    CHECK_MESSAGE(compare(shot, 4).empty(), compare(shot, 4));
}

TEST_CASE_FIXTURE(WaylandLeakTest, "formats and modifiers the compositor did not offer are refused with their names") {
    const auto device = counted_device();
    auto display = connect();
    auto surface = make_surface(display, wayland::PresentSync::implicit);
    auto image = rendered(device, 0);

    // A modifier weston did not offer (i915 X-tiled on a linear buffer).
    CHECK_FALSE(display.formats().contains(fourcc::XBGR8888, i915_x_tiled));
    auto tiled = image.desc.dup();
    REQUIRE(tiled);
    tiled->modifier = i915_x_tiled;
    auto refused = surface.add_buffer(std::move(*tiled));
    REQUIRE_FALSE(refused);
    CHECK(refused.error().is(Errc::unsupported));
    CHECK(refused.error().message().find("XB24") != std::string::npos);
    CHECK(refused.error().message().find("0x0100000000000001") != std::string::npos);

    // A malformed description is refused by validation before anything is sent.
    auto short_stride = image.desc.dup();
    REQUIRE(short_stride);
    short_stride->planes[0].stride = 16;
    auto invalid = surface.add_buffer(std::move(*short_stride));
    REQUIRE_FALSE(invalid);
    CHECK(invalid.error().is(Errc::invalid_argument));
    CHECK(surface.buffer_count() == 0);

    // A producer with nothing in common.
    FormatSet only_tiled;
    only_tiled.add(fourcc::XBGR8888, i915_x_tiled);
    auto none = display.negotiate(only_tiled);
    REQUIRE_FALSE(none);
    CHECK(none.error().is(Errc::unsupported));
    CHECK(none.error().message().find("no (fourcc, modifier) in common") != std::string::npos);

    CHECK(surface.present(3).error().is(Errc::invalid_argument));  // unknown id
    CHECK(surface.acquire_free(0ms).error().is(Errc::not_found));  // nothing added

    // Explicit sync asked of a connection that did not bind it.
    auto options = display_options();
    options.explicit_sync = false;
    auto plain = connect(options);
    CHECK_FALSE(plain.explicit_sync());
    wayland::SurfaceOptions explicit_only;
    explicit_only.sync = wayland::PresentSync::explicit_fences;
    auto no_explicit = plain.create_surface(explicit_only);
    REQUIRE_FALSE(no_explicit);
    CHECK(no_explicit.error().is(Errc::unsupported));

    // The connection still works after all the refusals: nothing reached weston.
    CHECK(display.roundtrip());

    // Moved-from objects fail.
    auto moved_surface = std::move(surface);
    CHECK(surface.present(0).error().is(Errc::empty_object));  // NOLINT(bugprone-use-after-move): that is the test
    CHECK(surface.add_buffer({}).error().is(Errc::empty_object));  // NOLINT(bugprone-use-after-move)
    auto moved_display = std::move(display);
    CHECK(display.roundtrip().error().is(Errc::empty_object));  // NOLINT(bugprone-use-after-move)
    CHECK(display.dispatch(0ms).error().is(Errc::empty_object));  // NOLINT(bugprone-use-after-move)
    CHECK(display.create_surface({}).error().is(Errc::empty_object));  // NOLINT(bugprone-use-after-move)
    CHECK(display.fd() == -1);
}

TEST_CASE("with /dev/dri visible, weston's linux-dmabuf v4 feedback names vgem as its main device and lists its formats" *
          doctest::test_suite("wayland_feedback")) {
    // A weston of its own (about half a minute more in the VM: not in ci/test's budget). It
    // renders with kms_swrast on vgem there, so no buffer is created: the feedback is the point.
    struct stat render{};
    REQUIRE(::stat("/dev/dri/renderD128", &render) == 0);
    auto launched = Weston::launch(size, size, {}, false);
    REQUIRE(launched);
    auto ready = launched->wait_ready(300);
    REQUIRE_MESSAGE(ready, (ready ? "" : ready.error().message()));
    FdLeakCheck leaks;
    wayland::DisplayOptions options;
    options.name = launched->socket_path();
    options.timeout = 120s;
    auto display = wayland::Display::connect(options);
    REQUIRE_MESSAGE(display, (display ? "" : display.error().message() + "\n" + launched->log_tail()));
    CHECK(display->dmabuf_version() >= 4);
    REQUIRE(display->main_device().has_value());
    CHECK(*display->main_device() == render.st_rdev);
    CHECK(display->formats().contains(fourcc::XRGB8888, modifier::linear));
    std::printf("  v%u feedback: %zu pairs, main device %u:%u\n", display->dmabuf_version(), display->formats().size(),
                major(*display->main_device()), minor(*display->main_device()));
    // The same compositor through version 3: the modifier events give the same set.
    options.max_dmabuf_version = 3;
    auto v3 = wayland::Display::connect(options);
    REQUIRE(v3);
    CHECK(v3->dmabuf_version() == 3);
    CHECK_FALSE(v3->main_device().has_value());
    CHECK(v3->formats() == display->formats());
}

#ifdef DMABRIDGE_WAYLAND_PRESENT
TEST_CASE_FIXTURE(WaylandLeakTest, "the wayland_present sample's compute-shader frames show in weston" * doctest::test_suite("wayland_sample")) {
    // The sample renders frame N with shaders/pattern.glsl, presents it and holds it on screen
    // (--hold) until its stdin closes.
    constexpr std::uint32_t frames = 4;
    int to_child[2], from_child[2];
    REQUIRE(::pipe2(to_child, O_CLOEXEC) == 0);
    REQUIRE(::pipe2(from_child, O_CLOEXEC) == 0);
    UniqueFd child_stdin(to_child[0]), stdin_writer(to_child[1]);
    UniqueFd stdout_reader(from_child[0]), child_stdout(from_child[1]);
    const std::string frames_arg = std::to_string(frames);
    const std::string size_arg = std::to_string(size) + "x" + std::to_string(size);
    const std::string display = session().weston->socket_path();
    const char* argv[] = {DMABRIDGE_WAYLAND_PRESENT, "--frames", frames_arg.c_str(), "--size", size_arg.c_str(),
                          "--display", display.c_str(), "--hold", nullptr};
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        ::dup2(child_stdin.get(), 0);
        ::dup2(child_stdout.get(), 1);
        ::execv(argv[0], const_cast<char* const*>(argv));
        ::_exit(127);
    }
    child_stdin.reset();
    child_stdout.reset();
    std::string out;
    const auto deadline = std::chrono::steady_clock::now() + 300s;
    while (out.find("presented") == std::string::npos || out.back() != '\n') {
        pollfd p{stdout_reader.get(), POLLIN, 0};
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
        char buf[512];
        const ssize_t n = ::read(stdout_reader.get(), buf, sizeof buf);
        if (n <= 0) break;
        out.append(buf, static_cast<std::size_t>(n));
    }
    INFO(out);
    bool shown = out.find("presented " + frames_arg + " frames") != std::string::npos;
    CHECK(shown);
    if (shown) {
        auto shot = capture();
        std::size_t wrong = 0;
        for (std::uint32_t y = 0; y < size; ++y)
            for (std::uint32_t x = 0; x < size; ++x) {
                const std::uint8_t* got = &shot.rgba[(y * size + x) * 4];
                wrong += got[0] != ((x + 61 * frames) & 255) || got[1] != ((y + 97 * frames) & 255) ||
                         got[2] != ((x ^ y ^ (29 * frames)) & 255);
            }
        CHECK(shot.width == size);
        CHECK(wrong == 0);
    }
    stdin_writer.reset();  // the sample's end of the hold
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
}
#endif

namespace {

void set_true(void* data, wl_callback* callback, std::uint32_t) {
    *static_cast<bool*>(data) = true;
    wl_callback_destroy(callback);
}
constexpr wl_callback_listener set_true_listener{.done = set_true};

}  // namespace

TEST_CASE_FIXTURE(WaylandLeakTest, "an application's own wl_display and wl_surface: frames land in them, and the application's objects and events stay its own") {
    const auto device = counted_device();
    Application app(session().weston->socket_path());
    bool app_sync_done = false;
    {
        auto display = wayland::Display::adopt(app.display, display_options());
        REQUIRE_MESSAGE(display, (display ? "" : display.error().message()));
        CHECK(display->fd() == wl_display_get_fd(app.display));
        CHECK(display->formats().contains(fourcc::XBGR8888, modifier::linear));
        auto surface = wayland::Surface::adopt(*display, app.surface, wayland::PresentSync::automatic);
        REQUIRE_MESSAGE(surface, (surface ? "" : surface.error().message()));
        CHECK(surface->sync() == wayland::PresentSync::explicit_fences);  // weston offers it

        // The application's own round trip, sent before the library dispatches: its answer is
        // read by the library's dispatch but must wait on the application's queue.
        wl_callback* app_sync = wl_display_sync(app.display);
        wl_callback_add_listener(app_sync, &set_true_listener, &app_sync_done);
        REQUIRE(wl_display_flush(app.display) >= 0);

        auto a = rendered(device, 6);
        auto b = rendered(device, 7);
        auto id_a = surface->add_buffer(std::move(a.desc));
        auto id_b = surface->add_buffer(std::move(b.desc));
        REQUIRE_MESSAGE(id_a, (id_a ? "" : id_a.error().message()));
        REQUIRE(id_b);
        auto frames = surface->stats().frames_done;
        REQUIRE(surface->present(*id_a));
        wait_frame(*display, *surface, frames);  // the frame callback came on the library's queue
        REQUIRE(display->roundtrip());
        CHECK_FALSE(app_sync_done);  // read, queued for the application, not dispatched by the library

        frames = surface->stats().frames_done;
        REQUIRE(surface->present(*id_b));
        wait_frame(*display, *surface, frames);
        auto freed = surface->acquire_free(120s);
        REQUIRE_MESSAGE(freed, (freed ? "" : freed.error().message()));
        CHECK(*freed == *id_a);  // weston released A once B replaced it
        auto shot = capture();
        CHECK_MESSAGE(compare(shot, 7).empty(), compare(shot, 7));  // B is what the application's window shows

        // Refusals: a null surface, a proxy that is not a wl_surface.
        CHECK(wayland::Surface::adopt(*display, nullptr).error().is(Errc::empty_object));
        CHECK(wayland::Surface::adopt(*display, reinterpret_cast<wl_surface*>(app.toplevel)).error().is(Errc::invalid_argument));
        CHECK(wayland::Display::adopt(nullptr).error().is(Errc::empty_object));
    }
    // The library's objects are gone; the application's connection and window still work.
    CHECK(wl_display_dispatch_pending(app.display) >= 0);
    CHECK(app_sync_done);
    xdg_toplevel_set_title(app.toplevel, "application, after dmabridge");
    wl_surface_attach(app.surface, nullptr, 0, 0);
    wl_surface_commit(app.surface);
    bool after = false;
    wl_callback* after_sync = wl_display_sync(app.display);
    wl_callback_add_listener(after_sync, &set_true_listener, &after);
    REQUIRE(wl_display_roundtrip(app.display) >= 0);
    CHECK(after);
    CHECK(wl_display_get_error(app.display) == 0);
}

TEST_CASE_FIXTURE(WaylandTest, "when weston dies, dispatch and present fail with the connection's error") {
    // Runs last: it stops the shared weston.
    FdLeakCheck leaks;
    const auto device = counted_device();
    auto display = connect();
    auto surface = make_surface(display, wayland::PresentSync::implicit);
    auto image = rendered(device, 5);
    auto id = surface.add_buffer(std::move(image.desc));
    REQUIRE(id);
    std::printf("weston startup %.1f s\n", session().startup_seconds);
    session().weston->stop();
    Result<bool> dispatched = false;
    for (int i = 0; i < 100 && dispatched; ++i) dispatched = display.dispatch(1000ms);
    REQUIRE_FALSE(dispatched);
    CHECK(dispatched.error().domain() == ErrorDomain::system);
    auto presented = surface.present(*id);
    REQUIRE_FALSE(presented);
    CHECK(presented.error().message().find("wayland::Surface::present") != std::string::npos);
}

}  // TEST_SUITE
