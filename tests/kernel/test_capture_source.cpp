// SPDX-License-Identifier: MIT
// dmabridge::v4l2::CaptureSource on vivid: a camera's exported ring served through the queue to
// consumers in this process and in another one (pixels compared across the two by checksum),
// a consumer that dies holding frames, stop and restart, the driver's error frames, and misuse.
#include <dmabridge/bridge/capture_source.hpp>
#include <dmabridge/kernel/cpu_access.hpp>
#include <dmabridge/queue/connection.hpp>
#include <dmabridge/queue/consumer.hpp>
#include <dmabridge/queue/producer.hpp>
#include <dmabridge/v4l2/device.hpp>

#include <algorithm>
#include <chrono>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <linux/videodev2.h>

#include <doctest/doctest.h>

#include "fd_count.hpp"
#include "queue_peer_process.hpp"
#include "vivid_nodes.hpp"

using namespace dmabridge;
using namespace std::chrono_literals;
using dmabridge::test::FdLeakCheck;
using dmabridge::test::Peer;
using dmabridge::test::socket_link;

namespace {

// Small frames keep the emulated VM fast: 320x180 YUYV, 640 bytes a row.
constexpr std::uint32_t width = 320, height = 180, row_bytes = width * 2;

v4l2::CaptureOptions small_yuyv(std::uint32_t ring = 4) {
    v4l2::CaptureOptions o;
    o.pixel_format = V4L2_PIX_FMT_YUYV;
    o.width = width;
    o.height = height;
    o.ring_size = ring;
    return o;
}

v4l2::CaptureSource open_camera(std::uint32_t ring = 4) {
    auto source = v4l2::CaptureSource::open(small_yuyv(ring), "test camera");
    REQUIRE_MESSAGE(source, (source ? "" : source.error().message()));
    return std::move(*source);
}

// FNV-1a over plane 0's rows (without padding): the same function queue_peer's checksum role
// computes in the other process.
std::uint64_t checksum(const BufferDesc& desc) {
    const DmaBuf& buf = desc.planes[0].buffer;
    auto map = Mapping::map(buf, Access::read);
    REQUIRE(map);
    auto access = CpuAccess::begin(buf, Access::read);
    REQUIRE(access);
    std::uint64_t h = 1469598103934665603ull;
    const auto* base = reinterpret_cast<const unsigned char*>(map->data()) + desc.planes[0].offset;
    for (std::uint32_t y = 0; y < desc.height; ++y)
        for (std::uint64_t x = 0; x < row_bytes; ++x) h = (h ^ base[y * desc.planes[0].stride + x]) * 1099511628211ull;
    REQUIRE(access->end());
    return h;
}

// Pumps until `done()`, acquiring and releasing every frame of `local` (if any) on the way. The
// limit is generous: 60 s ran out once in 9 runs on a 2-core host at load 12 (a consumer
// process starting under emulation, with other VMs and builds beside it).
// `on_local` sees each local frame before its release.
template <typename Done, typename OnLocal>
void pump_until(v4l2::CaptureSource& source, queue::Consumer* local, Done done, OnLocal on_local,
                std::chrono::seconds limit = 180s) {
    const auto end = std::chrono::steady_clock::now() + limit;
    while (!done()) {
        REQUIRE_MESSAGE(std::chrono::steady_clock::now() < end, "the capture source made no progress in time");
        // ETIMEDOUT is no failure here: until a consumer process has started (fork, exec, under
        // emulation), every buffer may wait for it. `limit` bounds the whole wait.
        auto pumped = source.pump(2s);
        REQUIRE_MESSAGE((pumped || pumped.error().is_errno(ETIMEDOUT)), (pumped ? "" : pumped.error().message()));
        if (!local) continue;
        for (;;) {
            auto f = local->acquire(0ms);
            if (!f && f.error().is_errno(ETIMEDOUT)) break;
            REQUIRE_MESSAGE(f, (f ? "" : f.error().message()));
            on_local(*f);
            REQUIRE(local->release(f->buffer));
        }
    }
}

// After stop(): releases every frame still queued to `consumer` and pumps the source until no
// consumer of a stopped stream holds a buffer.
void release_until_drained(v4l2::CaptureSource& source, queue::Consumer& consumer) {
    const auto give_up = std::chrono::steady_clock::now() + 30s;
    while (source.lent() > 0) {
        REQUIRE_MESSAGE(std::chrono::steady_clock::now() < give_up, "the stopped stream's buffers never came back");
        for (auto f = consumer.acquire(0ms); f; f = consumer.acquire(0ms)) REQUIRE(consumer.release(f->buffer));
        auto pumped = source.pump(200ms);
        REQUIRE_MESSAGE((pumped || pumped.error().is_errno(ETIMEDOUT)), (pumped ? "" : pumped.error().message()));
    }
    CHECK(source.draining_fd() == -1);
}

}  // namespace

TEST_CASE_FIXTURE(FdLeakCheck, "a camera's frames reach a consumer in this process and one in another, byte for byte the same") {
    auto source = open_camera();
    auto local = source.start_local();
    REQUIRE_MESSAGE(local, (local ? "" : local.error().message()));
    auto link = socket_link();
    REQUIRE(source.producer()->add_consumer(std::move(link.here)));
    Peer peer({"--fd", "3", "checksum", "8", std::to_string(row_bytes)}, link.there.get());
    link.there.reset();

    // The peer's lines come while the camera runs: read them without blocking the pump.
    std::map<std::uint64_t, std::uint64_t> here, there;  // sequence -> checksum
    const auto read_peer = [&] {
        while (auto l = peer.try_line()) {
            std::istringstream in(*l);
            std::string word;
            std::uint64_t seq = 0, sum = 0;
            if (in >> word && word == "frame" && in >> seq >> sum) there[seq] = sum;
            REQUIRE_MESSAGE(l->rfind("error", 0) != 0, "queue_peer: " << *l);
        }
    };
    pump_until(
        source, &*local,
        [&] {
            read_peer();
            return there.size() >= 8;
        },
        [&](const queue::AcquiredFrame& f) { here[f.info.sequence] = checksum(*f.desc); });
    // Every frame the other process checked was seen here too, with the same bytes.
    std::size_t compared = 0;
    for (const auto& [seq, sum] : there) {
        auto it = here.find(seq);
        REQUIRE_MESSAGE(it != here.end(), "frame " << seq << " reached the other process only");
        CHECK_MESSAGE(it->second == sum, "frame " << seq << " differs between the two consumers");
        ++compared;
    }
    CHECK(compared == 8);
    // The camera's frames differ from each other (vivid's moving pattern): equal checksums would
    // prove nothing.
    std::set<std::uint64_t> distinct;
    for (const auto& [seq, sum] : there) distinct.insert(sum);
    CHECK(distinct.size() > 1);
    CHECK(source.stats().frames_queued >= 8);
    REQUIRE(source.stop());
    // The other process releases what was still queued to it; then the stream ends for it.
    release_until_drained(source, *local);
    peer.expect_ok();
}

TEST_CASE_FIXTURE(FdLeakCheck, "a consumer process that dies holding frames does not stop the camera") {
    std::vector<std::string> lost;
    queue::ProducerOptions options;
    options.on_consumer_lost = [&](queue::ConsumerId, const Error& e) { lost.push_back(e.message()); };
    auto source = open_camera();
    std::vector<queue::BufferIndex> returned;
    source.on_returned([&](queue::BufferIndex i) {
        returned.push_back(i);
        return Status{};
    });
    auto local = source.start_local(std::move(options));
    REQUIRE(local);
    auto link = socket_link();
    REQUIRE(source.producer()->add_consumer(std::move(link.here)));
    Peer peer({"--fd", "3", "hold", "2"}, link.there.get());
    link.there.reset();
    // The peer holds two frames and reads no more: every buffer ends up out with it (held, or
    // queued to it), and the camera stalls until it goes. A pump that times out is expected here.
    bool held = false;
    std::uint64_t local_frames = 0;
    const auto give_up = std::chrono::steady_clock::now() + 60s;
    while (!held) {
        REQUIRE_MESSAGE(std::chrono::steady_clock::now() < give_up, "queue_peer never held its frames");
        while (auto l = peer.try_line()) held = held || *l == "held";
        auto pumped = source.pump(200ms);
        REQUIRE_MESSAGE((pumped || pumped.error().is_errno(ETIMEDOUT)), (pumped ? "" : pumped.error().message()));
        for (auto f = local->acquire(0ms); f; f = local->acquire(0ms)) {
            ++local_frames;
            REQUIRE(local->release(f->buffer));
        }
    }
    ::kill(peer.pid(), SIGKILL);
    CHECK(peer.wait() == 128 + SIGKILL);
    // The dead consumer is dropped, its buffers come back to the driver, frames go on.
    returned.clear();
    const std::uint64_t before = local_frames;
    pump_until(
        source, &*local, [&] { return !lost.empty() && local_frames >= before + 8; },
        [&](const queue::AcquiredFrame&) { ++local_frames; });
    CHECK(lost.size() == 1);
    std::set<queue::BufferIndex> back(returned.begin(), returned.end());
    CHECK(back.size() == source.size());  // every buffer went round again, the held ones too
    CHECK(source.producer()->consumer_count() == 1);
    REQUIRE(source.stop());
}

TEST_CASE_FIXTURE(FdLeakCheck, "stop ends the stream for its consumers, and a second start streams again") {
    auto source = open_camera(3);
    for (int round = 0; round < 2; ++round) {
        CAPTURE(round);
        auto local = source.start_local();
        REQUIRE_MESSAGE(local, (local ? "" : local.error().message()));
        CHECK(source.streaming());
        CHECK(source.with_driver() == source.size());
        std::uint64_t frames = 0;
        pump_until(source, &*local, [&] { return frames >= 5; }, [&](const queue::AcquiredFrame&) { ++frames; });
        CHECK(source.stats().frames_queued >= 5);
        REQUIRE(source.stop());
        CHECK_FALSE(source.streaming());
        CHECK(source.producer() == nullptr);
        CHECK(source.device_fd() == -1);
        CHECK(source.producer_fd() == -1);
        // Frames queued to the consumer before the stop still reach it; once it released them,
        // the stopped stream's producer goes and the consumer sees the end of the stream.
        release_until_drained(source, *local);
        auto after = local->acquire(1s);
        REQUIRE_FALSE(after);
        CHECK(after.error().is_errno(ECONNRESET));
        REQUIRE(source.stop());  // harmless twice
    }
}

TEST_CASE_FIXTURE(FdLeakCheck, "a restart gives the driver no buffer that a consumer of the stopped stream still holds") {
    auto source = open_camera(4);
    std::vector<queue::BufferIndex> returned;
    source.on_returned([&](queue::BufferIndex i) {
        returned.push_back(i);
        return Status{};
    });
    auto old = source.start_local();
    REQUIRE_MESSAGE(old, (old ? "" : old.error().message()));
    std::optional<queue::AcquiredFrame> kept;
    pump_until(
        source, nullptr,
        [&] {
            if (auto f = old->acquire(0ms)) kept.emplace(std::move(*f));
            return kept.has_value();
        },
        [](const queue::AcquiredFrame&) {});
    const queue::BufferIndex held = kept->buffer;
    const std::uint64_t sum = checksum(*kept->desc);
    REQUIRE(source.stop());
    CHECK(source.lent() >= 1);
    CHECK(source.draining_fd() >= 0);

    // A new stream with a new consumer runs over the other buffers, many times round.
    returned.clear();
    auto fresh = source.start_local();
    REQUIRE_MESSAGE(fresh, (fresh ? "" : fresh.error().message()));
    CHECK(source.with_driver() == source.size() - source.lent());
    std::uint64_t frames = 0;
    pump_until(source, &*fresh, [&] { return frames >= 8; }, [&](const queue::AcquiredFrame& f) {
        ++frames;
        CHECK(f.buffer != held);
    });
    CHECK(std::count(returned.begin(), returned.end(), held) == 0);
    CHECK(checksum(*kept->desc) == sum);  // the driver never wrote into the held frame
    CHECK(source.lent() >= 1);

    // Its release (and that of frames still queued to it) lets the old producer go: the buffer
    // rejoins the ring, and the old consumer sees the end of its stream.
    REQUIRE(old->release(held));
    const auto give_up = std::chrono::steady_clock::now() + 30s;
    while (source.lent() > 0 || std::count(returned.begin(), returned.end(), held) == 0) {
        REQUIRE_MESSAGE(std::chrono::steady_clock::now() < give_up, "the held buffer never came back");
        for (auto f = old->acquire(0ms); f; f = old->acquire(0ms)) REQUIRE(old->release(f->buffer));
        for (auto f = fresh->acquire(0ms); f; f = fresh->acquire(0ms)) REQUIRE(fresh->release(f->buffer));
        auto pumped = source.pump(200ms);
        REQUIRE_MESSAGE((pumped || pumped.error().is_errno(ETIMEDOUT)), (pumped ? "" : pumped.error().message()));
    }
    CHECK(source.draining_fd() == -1);
    auto end = old->acquire(1s);
    REQUIRE_FALSE(end);
    CHECK(end.error().is_errno(ECONNRESET));
    REQUIRE(source.stop());
    release_until_drained(source, *fresh);
}

TEST_CASE_FIXTURE(FdLeakCheck, "frames the driver flags as errors go back to it and reach no consumer") {
    auto source = open_camera();
    // The button lives on the device, not the fd: a second fd of the node presses it.
    auto control = v4l2::Device::open(source.device().path());
    REQUIRE(control);
    auto inject = control->control_id("Inject V4L2_BUF_FLAG_ERROR");
    REQUIRE_MESSAGE(inject, (inject ? "" : inject.error().message()));
    auto local = source.start_local();
    REQUIRE(local);
    std::uint64_t frames = 0;
    std::set<std::uint64_t> sequences;
    pump_until(source, &*local, [&] { return frames >= 2; }, [&](const queue::AcquiredFrame&) { ++frames; });
    REQUIRE(control->set_control(*inject, 1));
    pump_until(
        source, &*local, [&] { return source.stats().driver_errors >= 1 && frames >= 6; },
        [&](const queue::AcquiredFrame& f) {
            ++frames;
            sequences.insert(f.info.sequence);
        });
    CHECK(source.stats().driver_errors == 1);
    // The flagged frame was counted, not queued: every consumer frame was a good one.
    CHECK(source.stats().frames_queued == frames);
    REQUIRE(source.stop());
}

TEST_CASE_FIXTURE(FdLeakCheck, "a capture source refuses misuse with clear errors, and a moved-from one never hangs") {
    SUBCASE("a ring of no buffers") {
        auto o = small_yuyv(0);
        auto s = v4l2::CaptureSource::open(o, "cam");
        REQUIRE_FALSE(s);
        CHECK(s.error().is(Errc::invalid_argument));
        CHECK(s.error().message().find("cam") == 0);
    }
    SUBCASE("an output node is no camera") {
        auto out = test::find_vivid_node([](const v4l2::Device& d) {
            return d.capabilities().output && !d.capabilities().capture;
        });
        REQUIRE(out);
        auto o = small_yuyv();
        o.device = out->path();
        auto s = v4l2::CaptureSource::open(o);
        REQUIRE_FALSE(s);
        CHECK(s.error().is(Errc::unsupported));
        CHECK(s.error().message().find(out->path()) != std::string::npos);
    }
    SUBCASE("a node that does not exist") {
        auto o = small_yuyv();
        o.device = "/dev/video-none";
        CHECK_FALSE(v4l2::CaptureSource::open(o));
    }
    SUBCASE("pump before start, start twice, and a moved-from source") {
        auto source = open_camera();
        auto early = source.pump(0ms);
        REQUIRE_FALSE(early);
        CHECK(early.error().is(Errc::invalid_argument));
        REQUIRE(source.start());
        auto twice = source.start();
        REQUIRE_FALSE(twice);
        CHECK(twice.error().is(Errc::invalid_argument));
        v4l2::CaptureSource moved_to = std::move(source);
        CHECK(moved_to.streaming());
        CHECK_FALSE(source.streaming());
        CHECK(source.producer() == nullptr);
        CHECK(source.device_fd() == -1);
        CHECK(source.with_driver() == 0);
        CHECK(source.device().fd() == -1);  // an empty Device, not a dangling reference
        CHECK(source.device().format(v4l2::Direction::capture).error().is(Errc::empty_object));
        CHECK(source.format().width == 0);
        CHECK(moved_to.device().fd() >= 0);
        CHECK(moved_to.format().width > 0);
        CHECK_FALSE(source.pump(10s));  // at once, not after ten seconds
        CHECK(source.pump(10s).error().is(Errc::empty_object));
        CHECK(source.start().error().is(Errc::empty_object));
        CHECK_FALSE(source.start_local());
        CHECK(source.stop());
        source.on_returned([](queue::BufferIndex) { return Status{}; });
        REQUIRE(moved_to.stop());
    }
}
