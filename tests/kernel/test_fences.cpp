// SPDX-License-Identifier: MIT
// Implicit fences on real dma-bufs: vgem fences gate poll(), exported sync_files and imports.
#include <dmabridge/alloc/udmabuf.hpp>
#include <dmabridge/format/buffer_fences.hpp>
#include <dmabridge/kernel/dmabuf.hpp>
#include <dmabridge/kernel/sync_file.hpp>

#include <atomic>
#include <chrono>
#include <csignal>
#include <functional>
#include <limits>
#include <optional>
#include <thread>

#include <sys/time.h>

#include <doctest/doctest.h>

#include "fd_count.hpp"
#include "vgem.hpp"

using namespace dmabridge;
using namespace std::chrono_literals;
using dmabridge::test::FdLeakCheck;
using dmabridge::test::Vgem;

namespace {

constexpr Timeout now{0};

bool ready(const Result<WaitStatus>& r) {
    REQUIRE_MESSAGE(r, (r ? "" : r.error().message()));
    return *r == WaitStatus::ready;
}

DmaBuf udmabuf() {
    auto alloc = UdmabufAllocator::open();
    REQUIRE(alloc);
    auto buf = alloc->allocate_bytes(4096, "fence-target");
    REQUIRE(buf);
    return std::move(*buf);
}

}  // namespace

TEST_CASE_FIXTURE(FdLeakCheck, "an idle buffer is ready for every access and exports a signalled sync_file") {
    Vgem vgem;
    DmaBuf buf = vgem.create_buffer();
    CHECK(ready(buf.wait(Access::read, now)));
    CHECK(ready(buf.wait(Access::write, now)));
    auto fence = buf.export_sync_file(Access::write);
    REQUIRE(fence);
    CHECK(*fence->status() == FenceStatus::signaled);
    CHECK(ready(fence->wait(now)));
}

TEST_CASE_FIXTURE(FdLeakCheck, "a write fence blocks readers and writers until it signals") {
    Vgem vgem;
    DmaBuf buf = vgem.create_buffer();
    const auto fence_id = vgem.attach_fence(true);
    CHECK_FALSE(ready(buf.wait(Access::read, now)));
    CHECK_FALSE(ready(buf.wait(Access::write, now)));
    auto for_read = buf.export_sync_file(Access::read);
    REQUIRE(for_read);
    CHECK(*for_read->status() == FenceStatus::active);
    auto info = for_read->fences();
    REQUIRE(info);
    REQUIRE(info->size() == 1);
    CHECK((*info)[0].driver == "vgem");
    CHECK((*info)[0].status == FenceStatus::active);

    vgem.signal(fence_id);
    CHECK(ready(buf.wait(Access::read, now)));
    CHECK(ready(buf.wait(Access::write, now)));
    CHECK(*for_read->status() == FenceStatus::signaled);
    CHECK(ready(for_read->wait(now)));
}

TEST_CASE_FIXTURE(FdLeakCheck, "a read fence blocks only writers") {
    Vgem vgem;
    DmaBuf buf = vgem.create_buffer();
    const auto fence_id = vgem.attach_fence(false);
    CHECK(ready(buf.wait(Access::read, now)));
    CHECK_FALSE(ready(buf.wait(Access::write, now)));
    CHECK(*buf.export_sync_file(Access::read)->status() == FenceStatus::signaled);
    CHECK(*buf.export_sync_file(Access::write)->status() == FenceStatus::active);
    vgem.signal(fence_id);
    CHECK(ready(buf.wait(Access::write, now)));
}

TEST_SUITE_BEGIN("any_kernel");

TEST_CASE_FIXTURE(FdLeakCheck, "a wait with a timeout returns timed_out after the timeout, then ready once signalled") {
    Vgem vgem;
    DmaBuf buf = vgem.create_buffer();
    const auto fence_id = vgem.attach_fence(true);
    const auto start = std::chrono::steady_clock::now();
    auto r = buf.wait(Access::read, 150ms);
    REQUIRE(r);
    CHECK(*r == WaitStatus::timed_out);
    CHECK(std::chrono::steady_clock::now() - start >= 150ms);

    std::thread signaller([&] {
        std::this_thread::sleep_for(100ms);
        vgem.signal(fence_id);
    });
    CHECK(ready(buf.wait(Access::read, 5000ms)));
    signaller.join();
}

TEST_CASE_FIXTURE(FdLeakCheck, "a signal delivered during a wait does not end it early") {
    Vgem vgem;
    DmaBuf buf = vgem.create_buffer();
    const auto fence_id = vgem.attach_fence(true);
    struct sigaction action {}, old {};
    action.sa_handler = [](int) {};
    action.sa_flags = 0;  // no SA_RESTART: poll() returns EINTR
    REQUIRE(::sigaction(SIGALRM, &action, &old) == 0);
    itimerval timer{{0, 20000}, {0, 20000}};  // every 20 ms
    REQUIRE(::setitimer(ITIMER_REAL, &timer, nullptr) == 0);
    const auto start = std::chrono::steady_clock::now();
    auto r = buf.wait(Access::write, 200ms);
    const auto elapsed = std::chrono::steady_clock::now() - start;
    itimerval stop{};
    ::setitimer(ITIMER_REAL, &stop, nullptr);
    ::sigaction(SIGALRM, &old, nullptr);
    REQUIRE_MESSAGE(r, (r ? "" : r.error().message()));
    CHECK(*r == WaitStatus::timed_out);
    CHECK(elapsed >= 200ms);
    vgem.signal(fence_id);
}

TEST_SUITE_END();

TEST_CASE_FIXTURE(FdLeakCheck, "an exported sync_file is a snapshot of the fences at export time") {
    Vgem vgem;
    DmaBuf buf = vgem.create_buffer();
    const auto first = vgem.attach_fence(false);
    const auto second = vgem.attach_fence(false);
    auto snapshot = buf.export_sync_file(Access::write);
    REQUIRE(snapshot);
    CHECK(snapshot->fences()->size() == 2);
    // (vgem refuses a write fence while read fences are pending, so the third is a reader too.)
    const auto third = vgem.attach_fence(false);
    vgem.signal(first);
    CHECK(*snapshot->status() == FenceStatus::active);
    vgem.signal(second);
    CHECK(*snapshot->status() == FenceStatus::signaled);
    CHECK_FALSE(ready(buf.wait(Access::write, now)));  // the third fence is still there
    vgem.signal(third);
    CHECK(ready(buf.wait(Access::write, now)));
}

TEST_CASE_FIXTURE(FdLeakCheck, "a sync_file imported as a write fence gates another buffer's readers") {
    Vgem vgem;
    DmaBuf source = vgem.create_buffer();
    const auto fence_id = vgem.attach_fence(true);
    auto fence = source.export_sync_file(Access::read);
    REQUIRE(fence);
    DmaBuf target = udmabuf();
    CHECK(ready(target.wait(Access::read, now)));
    REQUIRE(target.import_sync_file(*fence, Access::write));
    CHECK_FALSE(ready(target.wait(Access::read, now)));
    CHECK(*target.export_sync_file(Access::read)->status() == FenceStatus::active);
    vgem.signal(fence_id);
    CHECK(ready(target.wait(Access::read, 1000ms)));
    CHECK(ready(target.wait(Access::write, 1000ms)));
}

TEST_CASE_FIXTURE(FdLeakCheck, "a sync_file imported as a read fence gates only writers") {
    Vgem vgem;
    DmaBuf source = vgem.create_buffer();
    const auto fence_id = vgem.attach_fence(true);
    auto fence = source.export_sync_file(Access::read);
    REQUIRE(fence);
    DmaBuf target = udmabuf();
    REQUIRE(target.import_sync_file(*fence, Access::read));
    CHECK(ready(target.wait(Access::read, now)));
    CHECK_FALSE(ready(target.wait(Access::write, now)));
    vgem.signal(fence_id);
    CHECK(ready(target.wait(Access::write, 1000ms)));
}

TEST_SUITE_BEGIN("any_kernel");

TEST_CASE_FIXTURE(FdLeakCheck, "thirty-two read fences block only writers, and all must signal") {
    Vgem vgem;
    DmaBuf buf = vgem.create_buffer();
    std::vector<std::uint32_t> fences;
    for (int i = 0; i < 32; ++i) fences.push_back(vgem.attach_fence(false));
    CHECK(ready(buf.wait(Access::read, now)));
    for (std::size_t i = 0; i + 1 < fences.size(); ++i) vgem.signal(fences[i]);
    CHECK_FALSE(ready(buf.wait(Access::write, now)));
    vgem.signal(fences.back());
    CHECK(ready(buf.wait(Access::write, now)));
}

TEST_SUITE_END();

TEST_CASE_FIXTURE(FdLeakCheck, "a merged sync_file signals when both of its parts have") {
    Vgem vgem;
    DmaBuf a = vgem.create_buffer();
    const auto fa = vgem.attach_fence(true);
    DmaBuf b = vgem.create_buffer();
    const auto fb = vgem.attach_fence(true);
    auto sa = a.export_sync_file(Access::read);
    auto sb = b.export_sync_file(Access::read);
    REQUIRE(sa);
    REQUIRE(sb);
    auto merged = SyncFile::merge(*sa, *sb, "both");
    REQUIRE(merged);
    CHECK(merged->fences()->size() == 2);
    vgem.signal(fa);
    CHECK(*merged->status() == FenceStatus::active);
    CHECK_FALSE(ready(merged->wait(now)));
    vgem.signal(fb);
    CHECK(*merged->status() == FenceStatus::signaled);
    CHECK(ready(merged->wait(now)));
    auto dup = merged->dup();
    REQUIRE(dup);
    CHECK(*dup->status() == FenceStatus::signaled);
}

TEST_CASE_FIXTURE(FdLeakCheck, "importing something that is not a sync_file is refused") {
    DmaBuf target = udmabuf();
    auto fake = SyncFile::adopt(UniqueFd(::dup(target.fd())));
    REQUIRE_FALSE(fake);
    CHECK(fake.error().is(Errc::not_a_sync_file));
    auto bad_access = target.export_sync_file(static_cast<Access>(0));
    REQUIRE_FALSE(bad_access);
    CHECK(bad_access.error().is(Errc::invalid_argument));
}

namespace {

// Starts `wait` on a thread, checks it is still waiting after 200 ms (a huge timeout must not
// time out at once), signals the fence and checks the wait then returns ready.
void check_waits_until_signalled(Vgem& vgem, std::uint32_t fence_id, const std::function<Result<WaitStatus>()>& wait) {
    std::atomic<bool> returned{false};
    std::optional<Result<WaitStatus>> result;
    std::thread waiter([&] {
        result.emplace(wait());
        returned = true;
    });
    std::this_thread::sleep_for(200ms);
    const bool waited = !returned;
    vgem.signal(fence_id);
    waiter.join();
    CHECK_MESSAGE(waited, "the wait returned before the fence signalled");
    REQUIRE(result);
    CHECK(ready(*result));
}

const Timeout huge_timeouts[] = {Timeout::max(), std::chrono::duration_cast<Timeout>(std::chrono::hours(24 * 365 * 1000)),
                                 Timeout{std::numeric_limits<Timeout::rep>::max() / 1000}};

}  // namespace

TEST_CASE_FIXTURE(FdLeakCheck, "a dma-buf wait given Timeout::max() or another huge timeout waits for the signal") {
    Vgem vgem;
    for (Timeout t : huge_timeouts) {
        CAPTURE(t.count());
        for (Access access : {Access::read, Access::write}) {
            DmaBuf buf = vgem.create_buffer();
            const auto fence_id = vgem.attach_fence(true);
            check_waits_until_signalled(vgem, fence_id, [&] { return buf.wait(access, t); });
        }
    }
}

TEST_CASE_FIXTURE(FdLeakCheck, "a sync_file wait given Timeout::max() or another huge timeout waits for the signal") {
    Vgem vgem;
    for (Timeout t : huge_timeouts) {
        CAPTURE(t.count());
        DmaBuf buf = vgem.create_buffer();
        const auto fence_id = vgem.attach_fence(true);
        auto fence = buf.export_sync_file(Access::read);
        REQUIRE(fence);
        check_waits_until_signalled(vgem, fence_id, [&] { return fence->wait(t); });
    }
}

// export_fences / attach_fence: once per distinct dma-buf of a description, whatever the planes.
TEST_CASE_FIXTURE(FdLeakCheck, "a description's fences are exported and attached once per distinct dma-buf") {
    Vgem vgem;
    // NV12 as two planes of buffer A (two fds of it) plus an XR24-sized buffer B on its own
    // plane: three planes, two buffers.
    DmaBuf a = vgem.create_buffer();
    DmaBuf b = vgem.create_buffer();
    BufferDesc desc;
    desc.width = 16;
    desc.height = 16;
    desc.fourcc = fourcc::NV12;
    desc.planes.push_back({a.dup().value(), 0, 16});
    desc.planes.push_back({a.dup().value(), 1024, 16});
    desc.planes.push_back({std::move(b), 0, 16});
    CHECK(desc.distinct_buffers().size() == 2);
    CHECK(desc.plane_buffer_indices() == std::vector<std::size_t>{0, 0, 1});

    // Idle: a signalled sync_file.
    auto idle = export_fences(desc, Access::write);
    REQUIRE_MESSAGE(idle, (idle ? "" : idle.error().message()));
    REQUIRE(idle->has_value());
    CHECK(ready((*idle)->wait(now)));

    // A write fence on the second buffer only: the merged export waits for it.
    const auto on_b = vgem.attach_fence(true, vgem.import_buffer(desc.planes[2].buffer));
    auto pending = export_fences(desc, Access::read);
    REQUIRE(pending);
    REQUIRE(pending->has_value());
    CHECK_FALSE(ready((*pending)->wait(now)));

    // Attached to the whole description, an unsignalled fence (the export above) reaches both
    // buffers: buffer A, idle until now, is busy for writers.
    REQUIRE(attach_fence(desc, **pending, Access::read));
    CHECK(ready(desc.planes[0].buffer.wait(Access::read, now)));
    CHECK_FALSE(ready(desc.planes[0].buffer.wait(Access::write, now)));
    vgem.signal(on_b);
    CHECK(ready((*pending)->wait(5s)));
    CHECK(ready(desc.planes[0].buffer.wait(Access::write, 5s)));
    CHECK(ready(desc.planes[2].buffer.wait(Access::write, 5s)));

    // A description with a released plane, or none, is refused before any ioctl.
    BufferDesc empty;
    CHECK(export_fences(empty, Access::read).error().is(Errc::invalid_argument));
    { DmaBuf gone = std::move(desc.planes[1].buffer); }
    auto refused = attach_fence(desc, **idle, Access::read);
    REQUIRE_FALSE(refused);
    CHECK(refused.error().is(Errc::empty_object));
    CHECK(refused.error().message().find("plane 1") != std::string::npos);
}
