// SPDX-License-Identifier: MIT
// A dmabridge producer that changes size or format while it streams (Producer::reconfigure()),
// against the real PipeWire and WirePlumber daemons of this binary (pipewire_daemon.hpp): the
// consumer's frames after each change carry the new size with every pixel right, the old
// buffers' descriptions go, and an import cache that the application cleans with
// take_removed_buffers() keeps no import, fd or Vulkan object of them.

#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include <dmabridge/alloc/udmabuf.hpp>
#include <dmabridge/format/fourcc.hpp>
#include <dmabridge/kernel/cpu_access.hpp>
#include <dmabridge/pipewire/consumer.hpp>
#include <dmabridge/pipewire/context.hpp>
#include <dmabridge/pipewire/producer.hpp>
#include <dmabridge/vulkan/import_cache.hpp>

#include "fd_count.hpp"
#include "pipewire_daemon.hpp"
#include "pipewire_pattern.hpp"
#include "pipewire_pattern_producer.hpp"
#include "vk_fixture.hpp"
#include "vk_object_count.hpp"

using namespace dmabridge;
using namespace dmabridge::test;
using namespace std::chrono_literals;

namespace {

PipeWireDaemons& daemons() {
    auto d = PipeWireDaemons::get();
    if (!d) FAIL("the private PipeWire daemon did not start: " << d.error().message());
    return **d;
}

// The Vulkan device exists before the fd baseline (it takes seconds to make under emulation);
// validation must stay silent.
struct VkReady {
    VkReady() { device_b(); }
};
struct RenegotiateTest : VkReady, FdLeakCheck {
    ~RenegotiateTest() { check_no_validation_messages(); }
};

// Fills one free buffer of `producer`, if any, with pattern frame `frame` at the size the
// buffer was allocated for (ProducerFrame::format), and queues it.
void pump(pipewire::Producer& producer, std::uint32_t& frame) {
    auto f = producer.dequeue();
    REQUIRE_MESSAGE(f, f.error().message());
    if (!*f) return;
    const pipewire::ProducerFrame& pf = **f;
    REQUIRE(pf.desc != nullptr);
    CHECK(pf.format.width == pf.desc->width);
    CHECK(pf.format.height == pf.desc->height);
    CHECK(pf.format.fourcc == pf.desc->fourcc);
    auto filled = fill_pattern_frame(*pf.desc, frame);
    REQUIRE_MESSAGE(filled, filled.error().message());
    // A buffer removed by a renegotiation while it was dequeued: the frame is dropped (not_found).
    if (auto queued = producer.queue(pf, frame); !queued) CHECK(queued.error().is(Errc::not_found));
    ++frame;
}

// The frame's pixels, read through a mapping: the pattern at the frame's own size, none wrong.
PatternCheck read_frame(const BufferDesc& desc) {
    const PlaneDesc& p = desc.planes[0];
    REQUIRE(p.buffer.wait(Access::read, 1000ms));
    auto map = Mapping::map(p.buffer, Access::read);
    REQUIRE_MESSAGE(map, map.error().message());
    return check_pattern(map->data() + p.offset, p.stride, desc.width, desc.height);
}

bool contains(const std::vector<BufferId>& ids, BufferId id) { return std::find(ids.begin(), ids.end(), id) != ids.end(); }

// Device B's device again, through entry points that count the Vulkan objects made
// (vk_object_count.hpp): the imports of removed buffers must be destroyed, not just forgotten.
vulkan::Device counted_device() {
    auto counted = vulkan::Device::attach(counted_handles(device_b().context()),
                                          vulkan::Capability::import_memory | vulkan::Capability::modifiers);
    REQUIRE_MESSAGE(counted, counted.error().message());
    return std::move(*counted);
}

// What the producer offers at one step: one size, one LINEAR fourcc.
struct Offer {
    std::uint32_t width, height, fourcc;
};

FormatSet linear(std::uint32_t code) {
    FormatSet f;
    f.add(code, modifier::linear);
    return f;
}
FormatSet xrgb_linear() { return linear(fourcc::XRGB8888); }

}  // namespace

TEST_SUITE("pipewire") {

TEST_CASE_FIXTURE(RenegotiateTest, "a producer that changes size, then size and format, while streaming: every later frame "
                                   "has the new format and every pixel right, and no description, import, fd or Vulkan "
                                   "object of the old buffers is left") {
    daemons();
    const vulkan::Device counted = counted_device();
    const auto vk_baseline = live_vulkan_objects();
    // 4:3, smaller, then 16:9 in another fourcc: every change gives new strides and buffer sizes,
    // the last a new format too (the pattern's bytes are compared as they lie in memory, whatever
    // the fourcc calls them). Small enough that the per-pixel checks stay fast under emulation.
    const Offer sizes[] = {{320, 240, fourcc::XRGB8888}, {160, 120, fourcc::XRGB8888}, {320, 180, fourcc::ABGR8888}};
    constexpr int frames_per_size = 5;
    {
        auto context = pipewire::Context::create();
        REQUIRE_MESSAGE(context, context.error().message());
        auto udmabuf = UdmabufAllocator::open();
        REQUIRE_MESSAGE(udmabuf, udmabuf.error().message());
        auto po = dmabuf_producer_options("dmabridge-test-reneg-size", sizes[0].width, sizes[0].height, *udmabuf);
        po.buffer_count = 3;
        auto producer = pipewire::Producer::create(*context, po);
        REQUIRE_MESSAGE(producer, producer.error().message());
        // The consumer takes any size (PipeWire's default for a consumer that names none).
        pipewire::ConsumerOptions co;
        co.target = po.name;
        co.formats = xrgb_linear();
        co.formats.add(fourcc::ABGR8888, modifier::linear);
        co.accept_shm = false;
        auto consumer = pipewire::Consumer::create(*context, co);
        REQUIRE_MESSAGE(consumer, consumer.error().message());
        vulkan::ImportCache cache(counted);

        std::size_t phase = 0;
        std::vector<BufferId> ids[3];      // the dma-bufs seen at each size
        std::vector<BufferId> removed;     // reported by take_removed_buffers()
        int got = 0;                       // frames of the current size
        int old_frames = 0;                // frames of the previous size after a change
        std::uint32_t frame = 0;
        std::optional<pipewire::ConsumerFrame> held;  // a frame held across the first change
        std::size_t fds_at_end[3] = {};
        std::int64_t vk_at_end[3] = {};
        double changed_at = 0, renegotiation_s[2] = {};
        std::string states;  // the states each side passed through after a change, as dispatch() saw them
        auto note_state = [&](const char* who, pipewire::StreamState s, pipewire::StreamState& last) {
            if (s != last && phase > 0) states += std::string(" ") + who + ":" + pipewire::to_string(s);
            last = s;
        };
        pipewire::StreamState last_consumer = pipewire::StreamState::connecting, last_producer = last_consumer;
        const double started = monotonic_seconds();
        const double end = started + 90;
        while (phase < 3 && monotonic_seconds() < end) {
            auto r = context->dispatch(20ms);
            REQUIRE_MESSAGE(r, r.error().message());
            REQUIRE_MESSAGE(consumer->state() != pipewire::StreamState::error, consumer->error()->message());
            REQUIRE_MESSAGE(producer->state() != pipewire::StreamState::error, producer->error()->message());
            note_state("consumer", consumer->state(), last_consumer);
            note_state("producer", producer->state(), last_producer);
            pump(*producer, frame);
            // The application's part of a renegotiation: the old buffers leave its cache.
            for (BufferId id : consumer->take_removed_buffers()) {
                CHECK_FALSE(contains(removed, id));  // each reported once
                removed.push_back(id);
                cache.evict_buffer(id);
            }
            auto f = consumer->acquire();
            REQUIRE_MESSAGE(f, f.error().message());
            if (!*f) continue;
            const pipewire::ConsumerFrame& cf = **f;
            REQUIRE(cf.dmabuf);
            REQUIRE(cf.desc != nullptr);
            const BufferDesc& desc = *cf.desc;
            CHECK(cf.format.width == desc.width);
            CHECK(cf.format.height == desc.height);
            CHECK(cf.format.fourcc == desc.fourcc);
            const bool current = desc.width == sizes[phase].width && desc.height == sizes[phase].height &&
                                 desc.fourcc == sizes[phase].fourcc;
            if (!current) {
                // Frames queued before the change may still arrive, at the old size and before
                // any frame of the new one: never mixed, never reinterpreted.
                REQUIRE_MESSAGE(phase > 0, "a frame of " << desc.width << "x" << desc.height);
                CHECK(desc.width == sizes[phase - 1].width);
                CHECK(desc.height == sizes[phase - 1].height);
                CHECK(desc.fourcc == sizes[phase - 1].fourcc);
                CHECK(got == 0);
                ++old_frames;
            }
            auto check = read_frame(desc);
            CHECK_MESSAGE(check.wrong == 0, check.wrong << " pixels wrong in frame " << check.frame << " at "
                                                        << desc.width << "x" << desc.height);
            // Imported through the cache; each new import (the first frame of a buffer) is read back
            // through Vulkan too (a download costs a lavapipe submit, slow under emulation).
            const auto misses = cache.stats().misses;
            auto image = cache.import(desc);
            REQUIRE_MESSAGE(image, image.error().message());
            if (cache.stats().misses != misses) {
                const auto back = device_b().download(**image, desc.fourcc);
                REQUIRE(back.size() == 1);
                auto vk_check = check_pattern(reinterpret_cast<const std::byte*>(back[0].data()), desc.width * 4,
                                              desc.width, desc.height);
                CHECK(vk_check.frame == check.frame);
                CHECK_MESSAGE(vk_check.wrong == 0, vk_check.wrong << " pixels wrong through Vulkan at " << desc.width
                                                                  << "x" << desc.height);
            }
            if (current) {
                if (got == 0 && phase > 0) renegotiation_s[phase - 1] = monotonic_seconds() - changed_at;
                ++got;
                if (!contains(ids[phase], desc.planes[0].buffer.id())) ids[phase].push_back(desc.planes[0].buffer.id());
            }
            if (phase == 0 && got == frames_per_size && !held) {
                held = cf;  // kept across the change: it must stay readable and whole
            } else {
                REQUIRE(consumer->release(cf));
            }
            if (held && phase == 1 && got > 0) {
                // The held frame outlived its buffer's removal: still the old format, still right.
                CHECK(held->desc->width == sizes[0].width);
                CHECK(read_frame(*held->desc).wrong == 0);
                REQUIRE(consumer->release(*held));
                held.reset();
            }
            // Every buffer of this size seen, enough frames: measure, then change the size.
            const auto& ps = producer->stats();
            const std::size_t live_buffers = ps.buffers_allocated - ps.buffers_removed;
            if (got >= frames_per_size && ids[phase].size() == live_buffers && (phase == 0) == held.has_value()) {
                for (BufferId id : consumer->take_removed_buffers()) {
                    removed.push_back(id);
                    cache.evict_buffer(id);
                }
                cache.collect();
                const auto cs = cache.stats();
                INFO("phase " << phase << ": " << cs.live_entries << " live imports, " << cs.retired << " retired");
                // The cache holds the imports of this size's buffers and nothing else.
                CHECK(cs.live_entries == ids[phase].size());
                CHECK(cs.retired == 0);
                for (std::size_t old = 0; old < phase; ++old)
                    for (BufferId id : ids[old]) {
                        CHECK(contains(removed, id));
                        CHECK(cache.evict_buffer(id) == 0);  // no entry of an old buffer is left
                    }
                CHECK(consumer->stats().buffers_removed == ps.buffers_removed);
                fds_at_end[phase] = open_fd_count();
                vk_at_end[phase] = live_vulkan_objects();
                MESSAGE(sizes[phase].width << "x" << sizes[phase].height << " " << fourcc_to_string(sizes[phase].fourcc)
                                           << ": " << got << " frames, "
                                           << ids[phase].size() << " buffers, " << old_frames
                                           << " frames of the old format after the change; fds " << fds_at_end[phase]
                                           << ", live Vulkan objects " << vk_at_end[phase] - vk_baseline);
                ++phase;
                got = 0;
                old_frames = 0;
                if (phase < 3) {
                    changed_at = monotonic_seconds();
                    states += " | change " + std::to_string(phase) + ":";
                    REQUIRE(producer->reconfigure(sizes[phase].width, sizes[phase].height, linear(sizes[phase].fourcc)));
                }
            }
        }
        REQUIRE_MESSAGE(phase == 3, "stuck at " << sizes[std::min<std::size_t>(phase, 2)].width << "x"
                                                << sizes[std::min<std::size_t>(phase, 2)].height << " after " << got
                                                << " frames; producer " << std::string(pipewire::to_string(producer->state()))
                                                << ", consumer " << std::string(pipewire::to_string(consumer->state()))
                                                << "; producer buffers allocated " << producer->stats().buffers_allocated
                                                << ", removed " << producer->stats().buffers_removed << ", negotiations "
                                                << producer->stats().negotiations << "; states:" << states << "\n"
                                                << daemons().log_tail());
        // The same number of buffers at every size: the same fds and Vulkan objects.
        CHECK(ids[0].size() == ids[2].size());
        CHECK(fds_at_end[2] == fds_at_end[0]);
        CHECK(fds_at_end[1] == fds_at_end[0]);
        CHECK(vk_at_end[2] == vk_at_end[0]);
        const auto negotiated = producer->negotiated();
        REQUIRE(negotiated);
        CHECK(negotiated->width == sizes[2].width);
        CHECK(negotiated->height == sizes[2].height);
        CHECK(negotiated->fourcc == sizes[2].fourcc);
        const auto& ps = producer->stats();
        CHECK(ps.reconfigurations == 2);
        CHECK(consumer->stats().frames_rejected == 0);
        // One description per buffer ever seen.
        CHECK(consumer->stats().descriptions_built == ids[0].size() + ids[1].size() + ids[2].size());
        MESSAGE("renegotiation (reconfigure() to the first frame of the new size at the consumer): "
                << renegotiation_s[0] * 1000 << " ms, " << renegotiation_s[1] * 1000 << " ms; producer: "
                << ps.buffers_allocated << " buffers allocated, " << ps.buffers_removed << " removed, "
                << ps.negotiations << " negotiations; consumer: " << consumer->stats().frames_empty
                << " empty buffers skipped; states seen after the changes:" << states << "; "
                << monotonic_seconds() - started << " s from the first dispatch");
    }
    CHECK(live_vulkan_objects() == vk_baseline);
}

TEST_CASE_FIXTURE(RenegotiateTest, "a producer that changes to a format the consumer does not accept: both sides say so "
                                   "within a bounded time, and the old buffers leave nothing behind") {
    daemons();
    const vulkan::Device counted = counted_device();
    const auto vk_baseline = live_vulkan_objects();
    {
        auto context = pipewire::Context::create();
        REQUIRE_MESSAGE(context, context.error().message());
        auto udmabuf = UdmabufAllocator::open();
        REQUIRE_MESSAGE(udmabuf, udmabuf.error().message());
        const auto po = dmabuf_producer_options("dmabridge-test-reneg-format", 320, 240, *udmabuf);
        auto producer = pipewire::Producer::create(*context, po);
        REQUIRE_MESSAGE(producer, producer.error().message());
        pipewire::ConsumerOptions co;
        co.target = po.name;
        co.formats = xrgb_linear();  // XRGB8888 only, no shared memory
        co.accept_shm = false;
        auto consumer = pipewire::Consumer::create(*context, co);
        REQUIRE_MESSAGE(consumer, consumer.error().message());
        vulkan::ImportCache cache(counted);
        std::uint32_t frame = 0;
        int got = 0;
        double end = monotonic_seconds() + 60;
        while (got < 3 && monotonic_seconds() < end) {
            REQUIRE(context->dispatch(20ms));
            pump(*producer, frame);
            auto f = consumer->acquire();
            REQUIRE_MESSAGE(f, f.error().message());
            if (!*f) continue;
            CHECK(read_frame(*(*f)->desc).wrong == 0);
            auto image = cache.import(*(*f)->desc);
            REQUIRE_MESSAGE(image, image.error().message());
            REQUIRE(consumer->release(**f));
            ++got;
        }
        REQUIRE_MESSAGE(got == 3, "frames before the change: " << got);
        CHECK(cache.stats().live_entries > 0);

        // NV12 only: nothing the consumer offered.
        FormatSet nv12;
        nv12.add(fourcc::NV12, modifier::linear);
        const double changed_at = monotonic_seconds();
        REQUIRE(producer->reconfigure(320, 240, nv12));
        std::string states;
        pipewire::StreamState last_consumer = consumer->state(), last_producer = producer->state();
        // Bounded: PipeWire fails the link in well under a second on a quiet VM.
        end = changed_at + 30;
        int frames_after = 0;
        while (!(consumer->error() && producer->error()) && monotonic_seconds() < end) {
            REQUIRE(context->dispatch(20ms));
            if (!producer->error()) pump(*producer, frame);
            for (BufferId id : consumer->take_removed_buffers()) cache.evict_buffer(id);
            auto f = consumer->acquire();
            if (f && *f) {
                // Only frames of the old format, described as such, may still arrive.
                CHECK((*f)->desc->fourcc == fourcc::XRGB8888);
                CHECK(read_frame(*(*f)->desc).wrong == 0);
                REQUIRE(consumer->release(**f));
                ++frames_after;
            }
            if (consumer->state() != last_consumer)
                states += std::string(" consumer:") + pipewire::to_string(last_consumer = consumer->state());
            if (producer->state() != last_producer)
                states += std::string(" producer:") + pipewire::to_string(last_producer = producer->state());
        }
        const double took = monotonic_seconds() - changed_at;
        for (BufferId id : consumer->take_removed_buffers()) cache.evict_buffer(id);
        const auto error_of = [](const std::optional<Error>& e) { return e ? e->message() : std::string("no error"); };
        MESSAGE("a format the consumer does not take, after " << took * 1000 << " ms: consumer: "
                                                              << error_of(consumer->error()) << "; producer: "
                                                              << error_of(producer->error()) << "; states:" << states
                                                              << "; " << frames_after << " old frames after the change");
        // PipeWire fails the link and says so on both streams: a terminal error on each.
        REQUIRE_MESSAGE(consumer->error(), "no error on the consumer in 30 s; states:" << states);
        REQUIRE_MESSAGE(producer->error(), "no error on the producer in 30 s; states:" << states);
        CHECK(consumer->error()->is(Errc::unsupported));
        CHECK(producer->error()->is(Errc::unsupported));
        CHECK(consumer->error()->message().find("format") != std::string::npos);
        CHECK(producer->error()->message().find("format") != std::string::npos);
        CHECK(consumer->state() == pipewire::StreamState::error);
        CHECK(producer->state() == pipewire::StreamState::error);
        auto acquired = consumer->acquire();
        REQUIRE_FALSE(acquired);
        CHECK(acquired.error().is(Errc::unsupported));
        auto dequeued = producer->dequeue();
        REQUIRE_FALSE(dequeued);
        CHECK(dequeued.error().is(Errc::unsupported));
        // The error is final: a reconfigure() back to what the consumer took changes nothing.
        auto back = producer->reconfigure(320, 240, xrgb_linear());
        REQUIRE_FALSE(back);
        CHECK(back.error().is(Errc::unsupported));
        CHECK_FALSE(producer->negotiated());
        CHECK_FALSE(consumer->negotiated());
        // Every buffer went on both sides, and the cache let go of its imports of them.
        CHECK(consumer->stats().buffers_removed > 0);
        CHECK(consumer->stats().buffers_removed == producer->stats().buffers_removed);
        CHECK(producer->stats().buffers_removed == producer->stats().buffers_allocated);
        cache.collect();
        CHECK(cache.stats().live_entries == 0);
        CHECK(cache.stats().retired == 0);
    }
    CHECK(live_vulkan_objects() == vk_baseline);
}

TEST_CASE_FIXTURE(RenegotiateTest, "a consumer whose importer refuses the negotiated modifier at import time falls back "
                                   "to the next offered pair, then to shared memory, with every pixel right") {
    daemons();
    auto context = pipewire::Context::create();
    REQUIRE_MESSAGE(context, context.error().message());
    auto udmabuf = UdmabufAllocator::open();
    REQUIRE_MESSAGE(udmabuf, udmabuf.error().message());
    // Two LINEAR pairs on both sides (lavapipe and udmabuf make no other modifier here; a
    // (fourcc, modifier) pair is what is refused, whichever half differs), and shared memory
    // from a producer that wraps its memfds for the application.
    auto po = dmabuf_producer_options("dmabridge-test-refuse-import", 320, 240, *udmabuf);
    po.formats.add(fourcc::ARGB8888, modifier::linear);
    po.offer_shm = true;
    po.udmabuf = &*udmabuf;
    po.buffer_count = 3;
    auto producer = pipewire::Producer::create(*context, po);
    REQUIRE_MESSAGE(producer, producer.error().message());
    pipewire::ConsumerOptions co;
    co.target = po.name;
    co.formats = xrgb_linear();
    co.formats.add(fourcc::ARGB8888, modifier::linear);
    co.accept_shm = true;
    co.udmabuf = &*udmabuf;
    auto consumer = pipewire::Consumer::create(*context, co);
    REQUIRE_MESSAGE(consumer, consumer.error().message());

    // What each step takes: a dma-buf pair (which of the two comes first is PipeWire's pick),
    // then the other one, then shared memory of either fourcc.
    struct Step {
        bool dmabuf;
        std::uint32_t fourcc;  // 0: any
    };
    Step steps[] = {{true, 0}, {true, 0}, {false, 0}};
    const auto kind = [](const pipewire::ConsumerFrame& cf) {
        return fourcc_to_string(cf.format.fourcc) + (cf.dmabuf ? std::string(" dma-buf") : std::string(" shm"));
    };
    std::size_t step = 0;
    int got = 0, late = 0;
    std::uint32_t frame = 0;
    std::vector<BufferId> removed;
    const double end = monotonic_seconds() + 90;
    double refused_at = 0, fallback_s[2] = {};
    while (step < 3 && monotonic_seconds() < end) {
        REQUIRE(context->dispatch(20ms));
        REQUIRE_MESSAGE(consumer->state() != pipewire::StreamState::error, consumer->error()->message());
        REQUIRE_MESSAGE(producer->state() != pipewire::StreamState::error, producer->error()->message());
        pump(*producer, frame);
        for (BufferId id : consumer->take_removed_buffers()) removed.push_back(id);
        auto f = consumer->acquire();
        REQUIRE_MESSAGE(f, f.error().message());
        if (!*f) continue;
        const pipewire::ConsumerFrame& cf = **f;
        REQUIRE(cf.desc != nullptr);  // dma-bufs, or the memfd wrapped by udmabuf
        if (step == 0 && steps[0].fourcc == 0 && cf.dmabuf) {
            steps[0].fourcc = cf.format.fourcc;
            steps[1].fourcc = cf.format.fourcc == fourcc::XRGB8888 ? fourcc::ARGB8888 : fourcc::XRGB8888;
        }
        const bool current = cf.dmabuf == steps[step].dmabuf &&
                             (steps[step].fourcc == 0 || cf.format.fourcc == steps[step].fourcc);
        if (!current) {
            // Only frames of the refused pair, queued before the renegotiation, and before any
            // frame of the next step.
            REQUIRE_MESSAGE(step > 0, "a frame of " << kind(cf));
            CHECK(cf.dmabuf == steps[step - 1].dmabuf);
            CHECK(cf.format.fourcc == steps[step - 1].fourcc);
            CHECK(got == 0);
            ++late;
        }
        auto check = read_frame(*cf.desc);
        CHECK_MESSAGE(check.wrong == 0, check.wrong << " pixels wrong in a " << kind(cf) << " frame");
        if (!current) {
            REQUIRE(consumer->release(cf));
            continue;
        }
        if (got == 0 && step > 0) fallback_s[step - 1] = monotonic_seconds() - refused_at;
        if (++got < 3) {
            REQUIRE(consumer->release(cf));
            continue;
        }
        if (step < 2) {
            // The importer refuses this pair: the consumer stops offering it and renegotiates.
            const Error why = Error::library(Errc::unsupported, "the test's importer takes no " +
                                                                    fourcc_to_string(cf.format.fourcc));
            REQUIRE(consumer->refuse_import(cf, why));
            CHECK(consumer->refused_formats().contains(cf.format.fourcc, modifier::linear));
            CHECK(consumer->last_import_refusal().find(fourcc_to_string(cf.format.fourcc)) != std::string::npos);
            CHECK(consumer->last_import_refusal().find("the test's importer") != std::string::npos);
            // The frame went back with the refusal.
            auto again = consumer->release(cf);
            REQUIRE_FALSE(again);
            CHECK(again.error().is(Errc::invalid_argument));
            refused_at = monotonic_seconds();
        } else {
            // Shared memory has no modifier to refuse.
            auto refused = consumer->refuse_import(cf, Error::library(Errc::unsupported, "no"));
            REQUIRE_FALSE(refused);
            CHECK(refused.error().is(Errc::invalid_argument));
            REQUIRE(consumer->release(cf));
            // A released frame cannot be refused either.
            auto late_refusal = consumer->refuse_import(**f, Error::library(Errc::unsupported, "no"));
            REQUIRE_FALSE(late_refusal);
        }
        ++step;
        got = 0;
    }
    MESSAGE("refused at import: " << fourcc_to_string(steps[0].fourcc) << " -> " << fourcc_to_string(steps[1].fourcc)
                                  << " dma-buf after " << fallback_s[0] * 1000 << " ms, then shared memory after "
                                  << fallback_s[1] * 1000 << " ms; " << late << " late frames of a refused pair");
    REQUIRE_MESSAGE(step == 3, "stuck at step " << step << " with " << got << " frames");
    CHECK(consumer->stats().imports_refused == 2);
    CHECK(consumer->stats().frames_rejected == 0);
    // Each renegotiation replaced the buffers: the application was told of the old ones.
    CHECK(removed.size() >= 2 * po.buffer_count);
    CHECK(consumer->stats().buffers_removed >= 2 * po.buffer_count);
    // A moved-from consumer refuses nothing.
    pipewire::Consumer moved = std::move(*consumer);
    pipewire::ConsumerFrame none;
    none.dmabuf = true;
    auto empty = consumer->refuse_import(none, Error::library(Errc::unsupported, "no"));
    REQUIRE_FALSE(empty);
    CHECK(empty.error().is(Errc::empty_object));
    CHECK(consumer->refused_formats().empty());
}


TEST_CASE_FIXTURE(RenegotiateTest, "a shared-memory producer that changes size and format: the consumer's memfd "
                                   "frames follow, read in place and through udmabuf, every pixel right") {
    daemons();
    auto context = pipewire::Context::create();
    REQUIRE_MESSAGE(context, context.error().message());
    auto udmabuf = UdmabufAllocator::open();
    REQUIRE_MESSAGE(udmabuf, udmabuf.error().message());
    const Offer sizes[] = {{320, 240, fourcc::XRGB8888}, {160, 120, fourcc::XRGB8888}, {320, 180, fourcc::ABGR8888}};
    // No dma-buf formats: memfds only, sealed by the producer, and wrapped by udmabuf on both sides
    // (the producer renders through ProducerFrame::desc).
    pipewire::ProducerOptions po;
    po.name = "dmabridge-test-reneg-shm";
    po.width = sizes[0].width;
    po.height = sizes[0].height;
    po.offer_shm = true;
    po.shm_fourccs = {fourcc::XRGB8888};
    po.udmabuf = &*udmabuf;
    po.buffer_count = 3;
    auto producer = pipewire::Producer::create(*context, po);
    REQUIRE_MESSAGE(producer, producer.error().message());
    pipewire::ConsumerOptions co;
    co.target = po.name;
    co.accept_shm = true;
    co.shm_fourccs = {fourcc::XRGB8888, fourcc::ABGR8888};
    co.udmabuf = &*udmabuf;
    auto consumer = pipewire::Consumer::create(*context, co);
    REQUIRE_MESSAGE(consumer, consumer.error().message());

    std::size_t phase = 0;
    int got = 0, old_frames = 0;
    std::uint32_t frame = 0;
    std::size_t fds_at_end[3] = {};
    const double end = monotonic_seconds() + 90;
    while (phase < 3 && monotonic_seconds() < end) {
        REQUIRE(context->dispatch(20ms));
        REQUIRE_MESSAGE(consumer->state() != pipewire::StreamState::error, consumer->error()->message());
        REQUIRE_MESSAGE(producer->state() != pipewire::StreamState::error, producer->error()->message());
        pump(*producer, frame);
        (void)consumer->take_removed_buffers();
        auto f = consumer->acquire();
        REQUIRE_MESSAGE(f, f.error().message());
        if (!*f) continue;
        const pipewire::ConsumerFrame& cf = **f;
        REQUIRE_FALSE(cf.dmabuf);
        const bool current = cf.format.width == sizes[phase].width && cf.format.height == sizes[phase].height &&
                             cf.format.fourcc == sizes[phase].fourcc;
        if (!current) {
            REQUIRE_MESSAGE(phase > 0, "a frame of " << cf.format.width << "x" << cf.format.height);
            CHECK(cf.format.width == sizes[phase - 1].width);
            CHECK(cf.format.height == sizes[phase - 1].height);
            CHECK(got == 0);
            ++old_frames;
        }
        // In place (a sealed memfd: the span is handed out) and as the udmabuf-wrapped dma-buf.
        REQUIRE(cf.plane_count == 1);
        REQUIRE(cf.strides[0] >= std::uint64_t{cf.format.width} * 4);
        REQUIRE(cf.memory.size() >= cf.offsets[0] + cf.strides[0] * cf.format.height);
        const auto in_place = check_pattern(cf.memory.data() + cf.offsets[0], cf.strides[0], cf.format.width,
                                            cf.format.height);
        CHECK_MESSAGE(in_place.wrong == 0, in_place.wrong << " pixels wrong in place at " << cf.format.width << "x"
                                                          << cf.format.height);
        REQUIRE(cf.desc != nullptr);
        CHECK(cf.desc->width == cf.format.width);
        CHECK(cf.desc->fourcc == cf.format.fourcc);
        const auto wrapped = read_frame(*cf.desc);
        CHECK(wrapped.wrong == 0);
        CHECK(wrapped.frame == in_place.frame);
        REQUIRE(consumer->release(cf));
        if (current && ++got >= 5) {
            fds_at_end[phase] = open_fd_count();
            MESSAGE("shared memory " << sizes[phase].width << "x" << sizes[phase].height << " "
                                     << fourcc_to_string(sizes[phase].fourcc) << ": " << got << " frames, "
                                     << old_frames << " of the old format after the change, fds " << fds_at_end[phase]);
            ++phase;
            got = old_frames = 0;
            if (phase < 3) {
                std::vector<std::uint32_t> shm{sizes[phase].fourcc};
                REQUIRE(producer->reconfigure(sizes[phase].width, sizes[phase].height, FormatSet{}, shm));
            }
        }
    }
    REQUIRE_MESSAGE(phase == 3, "stuck at phase " << phase << " after " << got << " frames");
    CHECK(consumer->stats().shm_wrapped > 0);
    CHECK(consumer->stats().shm_copies == 0);
    CHECK(consumer->stats().frames_rejected == 0);
    CHECK(producer->stats().reconfigurations == 2);
    // The same number of buffers at every size: the same fds.
    CHECK(fds_at_end[1] == fds_at_end[0]);
    CHECK(fds_at_end[2] == fds_at_end[0]);
}


}  // TEST_SUITE
