// SPDX-License-Identifier: MIT
// A dmabridge producer in another process (pipewire_peer) read through PipeWire by a consumer that
// imports its frames into OpenGL ES (egl::ImportCache on Mesa's EGL device platform), once per
// buffer, every pixel read back through GL right. Suite "pipewire_egl": plain build only, as the
// other EGL suites (llvmpipe under ASan is slow and its allocations are its own).

#include <doctest/doctest.h>

#include <map>
#include <optional>
#include <string>
#include <utility>

#include <dmabridge/egl/import_cache.hpp>
#include <dmabridge/format/fourcc.hpp>
#include <dmabridge/pipewire/consumer.hpp>
#include <dmabridge/pipewire/context.hpp>

#include "egl_harness.hpp"
#include "pipewire_daemon.hpp"
#include "pipewire_pattern.hpp"

using namespace dmabridge;
using namespace dmabridge::test;
using namespace std::chrono_literals;

TEST_SUITE("pipewire_egl") {

TEST_CASE_FIXTURE(EglTest, "a dmabridge producer in another process reaches a dmabridge consumer as dma-bufs that EGL "
                           "imports once per buffer, every pixel right through GL") {
    constexpr std::uint32_t width = 160, height = 120;
    auto daemons = PipeWireDaemons::get();
    REQUIRE_MESSAGE(daemons, (daemons ? "" : daemons.error().message()));
    PipeWireDaemons& d = **daemons;
    const std::string name = "dmabridge-test-peer-producer-egl";
    auto peer = Child::spawn({PIPEWIRE_PEER_PATH, "produce", name, std::to_string(width), std::to_string(height)},
                             d.runtime_dir() + "/peer-produce-egl.log");
    REQUIRE_MESSAGE(peer, peer.error().message());
    {
        auto context = pipewire::Context::create();
        REQUIRE_MESSAGE(context, context.error().message());
        pipewire::ConsumerOptions o;
        o.target = name;
        o.formats.add(fourcc::XRGB8888, modifier::linear);
        o.accept_shm = false;
        std::optional<pipewire::Consumer> consumer;
        egl::ImportCache cache(egl_context());
        std::map<std::uint32_t, const BufferDesc*> descs;
        int got = 0;
        const double end = monotonic_seconds() + 60;
        while (got < 8 && monotonic_seconds() < end) {
            if (!consumer) {
                auto c = pipewire::Consumer::create(*context, o);
                REQUIRE_MESSAGE(c, c.error().message());
                consumer.emplace(std::move(*c));
            }
            REQUIRE(context->dispatch(20ms));
            if (consumer->error() && consumer->error()->is(Errc::not_found)) {  // the peer not up yet
                consumer.reset();
                continue;
            }
            REQUIRE_MESSAGE(!consumer->error(), consumer->error()->message());
            auto f = consumer->acquire();
            REQUIRE_MESSAGE(f, f.error().message());
            if (!*f) continue;
            const pipewire::ConsumerFrame& cf = **f;
            REQUIRE(cf.desc != nullptr);
            descs.emplace(cf.buffer_id, cf.desc);
            REQUIRE(cf.desc->planes[0].buffer.wait(Access::read, 1000ms));
            auto image = cache.import(*cf.desc);
            REQUIRE_MESSAGE(image, (image ? "" : image.error().message()));
            // GL reads XR24 as RGBA with R and B where the bytes are: back to the pattern's BGRx.
            auto rgba = read_rgba(**image);
            REQUIRE(rgba.size() == std::size_t{width} * height * 4);
            for (std::size_t px = 0; px < rgba.size(); px += 4) std::swap(rgba[px], rgba[px + 2]);
            const auto check = check_pattern(reinterpret_cast<const std::byte*>(rgba.data()), width * 4, width, height);
            CHECK_MESSAGE(check.wrong == 0, check.wrong << " pixels wrong through GL in frame " << check.frame);
            CHECK(check.frame == cf.sequence % 256);
            auto fence = egl_context().fence();
            REQUIRE(fence);
            REQUIRE(cache.set_last_use(**image, *fence));
            REQUIRE(consumer->release(cf));
            ++got;
        }
        REQUIRE_MESSAGE(got == 8, "frames: " << got << "\n" << peer->output() << d.log_tail());
        const auto stats = cache.stats();
        CHECK(stats.misses == descs.size());  // one EGLImage per buffer ...
        CHECK(stats.hits == got - descs.size());  // ... every later frame of it a hit
        MESSAGE("EGL import cache: " << stats.hits << " hits, " << stats.misses << " misses for " << descs.size()
                                     << " buffers");
        consumer.reset();
        (void)cache.collect();
    }
    peer->kill();
}

}  // TEST_SUITE
