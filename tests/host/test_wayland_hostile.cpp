// SPDX-License-Identifier: MIT
// The Wayland client against a compositor that lies: a small libwayland-server in a thread
// (tests/support/fake_compositor) offers wl_compositor, xdg_wm_base and zwp_linux_dmabuf_v1 v4,
// and answers the default feedback request with crafted events (a table shorter than announced, indices past the
// table, a main device of the wrong size, tranches before any table, no `done` at all).
// Display::connect must fail with the numbers, leak no fd, and accept the honest feedback.
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <wayland-server.h>

#include "linux-dmabuf-v1-server.h"
#include "xdg-shell-server.h"

#include <doctest/doctest.h>

#include <dmabridge/format/fourcc.hpp>
#include <dmabridge/wayland/display.hpp>
#include <dmabridge/wayland/surface.hpp>

#include "fake_compositor.hpp"
#include "fd_count.hpp"

using namespace dmabridge;
using namespace std::chrono_literals;
using dmabridge::test::FakeCompositor;
using dmabridge::test::FeedbackScript;

namespace {

struct Row {
    std::uint32_t fourcc;
    std::uint32_t pad;
    std::uint64_t modifier;
};

void send_array(wl_resource* feedback, void (*send)(wl_resource*, wl_array*), const void* data, std::size_t size) {
    wl_array array;
    wl_array_init(&array);
    std::memcpy(wl_array_add(&array, size), data, size);
    send(feedback, &array);
    wl_array_release(&array);
}

// A table fd of `rows`, truncated to `file_bytes` when that is smaller.
int table_fd(const std::vector<Row>& rows, std::size_t file_bytes) {
    const int fd = ::memfd_create("hostile-table", MFD_CLOEXEC);
    REQUIRE(fd >= 0);
    REQUIRE(::write(fd, rows.data(), rows.size() * sizeof(Row)) == static_cast<ssize_t>(rows.size() * sizeof(Row)));
    REQUIRE(::ftruncate(fd, static_cast<off_t>(file_bytes)) == 0);
    return fd;
}

const std::vector<Row> rows = {{fourcc::XRGB8888, 0, modifier::linear},
                               {fourcc::ARGB8888, 0, modifier::linear},
                               {fourcc::NV12, 0, modifier::linear}};

Result<wayland::Display> connect_to(const FakeCompositor& compositor, std::chrono::milliseconds timeout = 5s) {
    wayland::DisplayOptions options;
    options.name = compositor.socket();
    options.timeout = timeout;
    return wayland::Display::connect(options);
}

void send_table(wl_resource* feedback, std::size_t announced, std::size_t file_bytes) {
    const int fd = table_fd(rows, file_bytes);
    zwp_linux_dmabuf_feedback_v1_send_format_table(feedback, fd, static_cast<std::uint32_t>(announced));
    ::close(fd);  // the message carries a duplicate
}

void send_tranche(wl_resource* feedback, std::vector<std::uint16_t> indices) {
    const dev_t dev = makedev(226, 128);
    send_array(feedback, zwp_linux_dmabuf_feedback_v1_send_tranche_target_device, &dev, sizeof dev);
    send_array(feedback, zwp_linux_dmabuf_feedback_v1_send_tranche_formats, indices.data(),
               indices.size() * sizeof(std::uint16_t));
    zwp_linux_dmabuf_feedback_v1_send_tranche_flags(feedback, 0);
    zwp_linux_dmabuf_feedback_v1_send_tranche_done(feedback);
}

void send_main_device(wl_resource* feedback) {
    const dev_t dev = makedev(226, 128);
    send_array(feedback, zwp_linux_dmabuf_feedback_v1_send_main_device, &dev, sizeof dev);
}

}  // namespace

// Waits are bounded by the caller: neither acquire_free nor dispatch compiles without a timeout.
template <typename S>
concept waits_without_a_timeout = requires(S& s) { s.acquire_free(); };
template <typename D>
concept dispatches_without_a_timeout = requires(D& d) { d.dispatch(); };
static_assert(!waits_without_a_timeout<wayland::Surface>);
static_assert(!dispatches_without_a_timeout<wayland::Display>);
static_assert(requires(wayland::Surface& s) { s.acquire_free(forever); });  // an explicit forever stays

TEST_CASE("an honest v4 feedback gives the tranches' formats and the main device") {
    dmabridge::test::FdLeakCheck leaks;
    FakeCompositor compositor([](wl_resource* feedback) {
        send_table(feedback, sizeof(Row) * rows.size(), sizeof(Row) * rows.size());
        send_main_device(feedback);
        send_tranche(feedback, {2});
        send_tranche(feedback, {0});
        zwp_linux_dmabuf_feedback_v1_send_done(feedback);
    });
    auto display = connect_to(compositor);
    REQUIRE_MESSAGE(display, (display ? "" : display.error().message()));
    CHECK(display->dmabuf_version() == 4);
    REQUIRE(display->main_device().has_value());
    CHECK(*display->main_device() == makedev(226, 128));
    CHECK(display->formats().size() == 2);
    CHECK(display->formats().contains(fourcc::NV12, modifier::linear));
    CHECK(display->formats().contains(fourcc::XRGB8888, modifier::linear));
    CHECK_FALSE(display->formats().contains(fourcc::ARGB8888, modifier::linear));
    CHECK_FALSE(display->explicit_sync());  // not offered
}

TEST_CASE("lying feedback fails the connection with the numbers and leaks no fd") {
    struct Case {
        const char* name;
        FeedbackScript script;
        const char* expected;
    };
    const std::vector<Case> cases = {
        {"a table shorter than announced",
         [](wl_resource* f) {
             send_table(f, sizeof(Row) * 3, sizeof(Row) * 2);
             send_tranche(f, {0});
             zwp_linux_dmabuf_feedback_v1_send_done(f);
         },
         "announced size 48 but the file has 32 bytes"},
        {"a table truncated after its size was announced",
         [](wl_resource* f) {
             // The client reads the table only when it dispatches the event: the file is
             // already empty then (a mapped read of it would have been a SIGBUS).
             const int fd = table_fd(rows, sizeof(Row) * 3);
             zwp_linux_dmabuf_feedback_v1_send_format_table(f, fd, sizeof(Row) * 3);
             REQUIRE(::ftruncate(fd, 0) == 0);
             ::close(fd);
             send_tranche(f, {0});
             zwp_linux_dmabuf_feedback_v1_send_done(f);
         },
         "announced size 48 but the file has 0 bytes"},
        {"an index past the table",
         [](wl_resource* f) {
             send_table(f, sizeof(Row) * 3, sizeof(Row) * 3);
             send_tranche(f, {0, 5});
             zwp_linux_dmabuf_feedback_v1_send_done(f);
         },
         "index 5"},
        {"a table size that is not whole rows",
         [](wl_resource* f) {
             send_table(f, 20, sizeof(Row) * 3);
             zwp_linux_dmabuf_feedback_v1_send_done(f);
         },
         "not a positive multiple of 16"},
        {"a main device of the wrong size",
         [](wl_resource* f) {
             const std::uint32_t small = 7;
             send_array(f, zwp_linux_dmabuf_feedback_v1_send_main_device, &small, sizeof small);
             zwp_linux_dmabuf_feedback_v1_send_done(f);
         },
         "main_device: 4 bytes"},
        {"tranches before any table",
         [](wl_resource* f) {
             send_tranche(f, {0});
             zwp_linux_dmabuf_feedback_v1_send_done(f);
         },
         "past the format table's 0 rows"},
    };
    for (const auto& c : cases) {
        const std::string name = c.name;
        CAPTURE(name);
        dmabridge::test::FdLeakCheck leaks;
        FakeCompositor compositor(c.script);
        auto display = connect_to(compositor);
        REQUIRE_FALSE(display);
        CHECK(display.error().is(Errc::invalid_argument));
        CHECK_MESSAGE(display.error().message().find(c.expected) != std::string::npos, display.error().message());
    }
}

TEST_CASE("a compositor that never finishes its feedback times out") {
    dmabridge::test::FdLeakCheck leaks;
    FakeCompositor compositor([](wl_resource* f) { send_table(f, sizeof(Row) * 3, sizeof(Row) * 3); });
    const auto start = std::chrono::steady_clock::now();
    auto display = connect_to(compositor, 300ms);
    REQUIRE_FALSE(display);
    CHECK(display.error().is_errno(ETIMEDOUT));
    CHECK(display.error().message().find("default feedback") != std::string::npos);
    CHECK(std::chrono::steady_clock::now() - start >= 300ms);
}

TEST_CASE("no compositor: connect says which display it tried") {
    wayland::DisplayOptions options;
    options.name = "/nonexistent/dmabridge-no-such-display";
    auto display = wayland::Display::connect(options);
    REQUIRE_FALSE(display);
    CHECK(display.error().domain() == ErrorDomain::system);
    CHECK(display.error().message().find("/nonexistent/dmabridge-no-such-display") != std::string::npos);
}

TEST_CASE("a compositor that stops reading: the client waits for its socket too, not only for events") {
    // The client's requests fill its socket while the compositor reads nothing; the rest stays
    // in libwayland's buffer. A roundtrip's sync is behind them: the compositor cannot answer it
    // before the client sends it, and the client can send it only once the socket takes more.
    // A client waiting for events alone sleeps until its timeout.
    dmabridge::test::FdLeakCheck leaks;
    dmabridge::test::FakeCompositorOptions options;
    options.formats = {{fourcc::XRGB8888, modifier::linear}};
    FakeCompositor compositor(options);
    wayland::DisplayOptions display_options;
    display_options.name = compositor.socket();
    display_options.timeout = 5s;
    auto display = wayland::Display::connect(display_options);
    REQUIRE_MESSAGE(display, (display ? "" : display.error().message()));
    // A small send buffer: a few kilobytes of requests fill the socket.
    const int small = 4096;
    REQUIRE(::setsockopt(display->fd(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small) == 0);

    compositor.pause_reading(true);
    constexpr std::uint32_t pings = 3000;  // 3000 pongs: 36 kB of requests
    compositor.ping(pings);
    // Answer every ping: the pongs fill the socket, the rest waits in libwayland's buffer.
    for (int i = 0; i < 1000; ++i) {
        auto dispatched = display->dispatch(200ms);
        REQUIRE_MESSAGE(dispatched, (dispatched ? "" : dispatched.error().message()));
        if (!*dispatched) break;
    }
    CHECK(compositor.pongs == 0);

    // The compositor reads again 300 ms into the roundtrip; it sends nothing until the sync.
    std::thread resume([&] {
        std::this_thread::sleep_for(300ms);
        compositor.pause_reading(false);
    });
    const auto start = std::chrono::steady_clock::now();
    auto roundtrip = display->roundtrip();
    const auto took = std::chrono::steady_clock::now() - start;
    resume.join();
    REQUIRE_MESSAGE(roundtrip, (roundtrip ? "" : roundtrip.error().message()));
    CHECK(took < 4s);
    CHECK(compositor.pongs == pings);
}
