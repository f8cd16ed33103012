// SPDX-License-Identifier: MIT
// Objects that were moved from or released (fd -1) and used again: every call fails at once
// (Errc::empty_object), none blocks, none succeeds, none looks like the buffer it
// held. One test per type. Every call runs under a time limit, so that a call that would block
// fails the test instead of hanging it.
#include <dmabridge/alloc/dma_heap.hpp>
#include <dmabridge/alloc/gbm_allocator.hpp>
#include <dmabridge/alloc/udmabuf.hpp>
#include <dmabridge/format/buffer_desc.hpp>
#include <dmabridge/kernel/cpu_access.hpp>
#include <dmabridge/kernel/fence_watcher.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include <fcntl.h>

#include <doctest/doctest.h>

#include "fd_count.hpp"
#include "vgem.hpp"

using namespace dmabridge;
using namespace std::chrono_literals;
using dmabridge::test::FdLeakCheck;
using dmabridge::test::Vgem;

namespace {

// Runs `call` on a thread of its own and returns whether it failed at once (within `limit`).
// `call` must own what it touches: on a hang its thread is left behind.
bool fails_at_once(std::function<bool()> call, std::chrono::milliseconds limit = 2s) {
    struct Shared {
        std::mutex mutex;
        std::optional<bool> failed;
    };
    auto shared = std::make_shared<Shared>();
    std::thread([shared, call = std::move(call)] {
        const bool failed = call();
        std::lock_guard lock(shared->mutex);
        shared->failed = failed;
    }).detach();
    const auto start = std::chrono::steady_clock::now();
    while (std::chrono::steady_clock::now() - start < limit) {
        {
            std::lock_guard lock(shared->mutex);
            if (shared->failed) return *shared->failed;
        }
        std::this_thread::sleep_for(1ms);
    }
    FAIL_CHECK("the call did not return within " << limit.count() << " ms");
    return false;
}

template <typename R>
bool is_ebadf(const R& r) {
    return !r && r.error().is(Errc::empty_object) && r.error().message().find("holds no") != std::string::npos;
}

// Every call on an empty DmaBuf fails with EBADF at once.
void check_empty_dmabuf(std::shared_ptr<DmaBuf> empty, std::shared_ptr<SyncFile> fence) {
    CHECK(empty->fd() == -1);
    CHECK_FALSE(empty->valid());
    CHECK(empty->size() == 0);
    CHECK(empty->id() == BufferId{});
    CHECK(fails_at_once([empty] { return is_ebadf(empty->wait(Access::read, forever)); }));
    CHECK(fails_at_once([empty] { return is_ebadf(empty->wait(Access::write, Timeout::max())); }));
    CHECK(fails_at_once([empty] { return is_ebadf(empty->wait(Access::read_write, 0ms)); }));
    CHECK(fails_at_once([empty] { return is_ebadf(empty->export_sync_file(Access::read)); }));
    CHECK(fails_at_once([empty, fence] { return is_ebadf(empty->import_sync_file(*fence, Access::write)); }));
    CHECK(fails_at_once([empty] { return is_ebadf(empty->exporter_name()); }));
    CHECK(fails_at_once([empty] { return is_ebadf(empty->name()); }));
    CHECK(fails_at_once([empty] { return is_ebadf(empty->set_name("again")); }));
    CHECK(fails_at_once([empty] { return is_ebadf(empty->dup()); }));
    CHECK(fails_at_once([empty] { return is_ebadf(Mapping::map(*empty, Access::read)); }));
    CHECK(fails_at_once([empty] { return is_ebadf(CpuAccess::begin(*empty, Access::read)); }));
    CHECK(fails_at_once([empty] { return !DmaBuf::import_fd(empty->fd()); }));
}

}  // namespace

TEST_CASE_FIXTURE(FdLeakCheck, "a moved-from or released UniqueFd refuses to be duplicated") {
    UniqueFd fd(::fcntl(0, F_DUPFD_CLOEXEC, 0));
    REQUIRE(fd);
    UniqueFd taken = std::move(fd);
    CHECK_FALSE(fd);
    CHECK(fd.dup().error().is(Errc::empty_object));
    UniqueFd raw(taken.release());
    CHECK_FALSE(taken);
    CHECK(taken.dup().error().is(Errc::empty_object));
}

TEST_CASE_FIXTURE(FdLeakCheck, "a moved-from or released DmaBuf fails every call at once, even with a fence pending") {
    Vgem vgem;
    DmaBuf original = vgem.create_buffer();
    const auto fence_id = vgem.attach_fence(true);  // a wait on the real buffer would block
    auto fence = original.export_sync_file(Access::read);
    REQUIRE(fence);
    auto shared_fence = std::make_shared<SyncFile>(std::move(*fence));
    const BufferId id = original.id();

    auto moved = std::make_shared<DmaBuf>(std::move(original));
    CHECK(moved->id() == id);
    check_empty_dmabuf(std::make_shared<DmaBuf>(std::move(original)), shared_fence);  // the moved-from one
    {
        auto second = moved->dup();
        REQUIRE(second);
        DmaBuf assigned = std::move(*second);
        DmaBuf target = vgem.create_buffer();
        target = std::move(assigned);  // move-assignment empties its source too
        CHECK(target.id() == id);
        check_empty_dmabuf(std::make_shared<DmaBuf>(std::move(assigned)), shared_fence);
    }
    UniqueFd raw = moved->release();
    CHECK(raw.valid());
    check_empty_dmabuf(moved, shared_fence);
    vgem.signal(fence_id);
}

TEST_CASE_FIXTURE(FdLeakCheck, "a moved-from or released SyncFile fails every call at once") {
    Vgem vgem;
    DmaBuf buf = vgem.create_buffer();
    const auto fence_id = vgem.attach_fence(true);
    auto fence = buf.export_sync_file(Access::read);
    REQUIRE(fence);
    auto valid = std::make_shared<SyncFile>(std::move(*fence));
    auto buffer = std::make_shared<DmaBuf>(std::move(buf));
    auto moved_to = valid->dup();
    REQUIRE(moved_to);
    SyncFile sink = std::move(*moved_to);
    auto empty_moved = std::make_shared<SyncFile>(std::move(*moved_to));
    auto released = std::make_shared<SyncFile>(std::move(sink));
    UniqueFd raw = released->release();
    for (const auto& empty : {empty_moved, released}) {
        CHECK(empty->fd() == -1);
        CHECK_FALSE(empty->valid());
        CHECK(fails_at_once([empty] { return is_ebadf(empty->wait(forever)); }));
        CHECK(fails_at_once([empty] { return is_ebadf(empty->wait(Timeout::max())); }));
        CHECK(fails_at_once([empty] { return is_ebadf(empty->status()); }));
        CHECK(fails_at_once([empty] { return is_ebadf(empty->fences()); }));
        CHECK(fails_at_once([empty] { return is_ebadf(empty->dup()); }));
        CHECK(fails_at_once([empty, valid] { return is_ebadf(SyncFile::merge(*valid, *empty)); }));
        CHECK(fails_at_once([empty, valid] { return is_ebadf(SyncFile::merge(*empty, *valid)); }));
        CHECK(fails_at_once([empty, buffer] { return is_ebadf(buffer->import_sync_file(*empty, Access::read)); }));
    }
    vgem.signal(fence_id);
}

TEST_CASE_FIXTURE(FdLeakCheck, "moved-from mappings and CPU access brackets are empty and refuse to end") {
    Vgem vgem;
    DmaBuf buf = vgem.create_buffer();
    auto map = Mapping::map(buf, Access::read_write);
    REQUIRE(map);
    Mapping moved = std::move(*map);
    CHECK(map->data() == nullptr);
    CHECK(map->size() == 0);
    CHECK(map->bytes().empty());
    CHECK(moved.size() == 4096);
    auto cpu = CpuAccess::begin(buf, Access::write);
    REQUIRE(cpu);
    CpuAccess taken = std::move(*cpu);
    CHECK_FALSE(cpu->end());
    CHECK(taken.end());
    CHECK_FALSE(taken.end());
}

TEST_CASE_FIXTURE(FdLeakCheck, "a description whose buffers were released or moved away fails validation and copying") {
    Vgem vgem;
    BufferDesc desc;
    desc.width = 32;
    desc.height = 32;
    desc.fourcc = fourcc::XRGB8888;
    desc.planes.push_back({vgem.create_buffer(), 0, 128});
    REQUIRE(desc.validate());
    DmaBuf kept = std::move(desc.planes[0].buffer);
    auto invalid = desc.validate();
    REQUIRE_FALSE(invalid);
    CHECK(invalid.error().message().find("plane 0 has no dma-buf") != std::string::npos);
    CHECK(is_ebadf(desc.dup()));
    CHECK(desc.layout().planes[0].buffer_size == 0);
    desc.planes[0].buffer = std::move(kept);
    UniqueFd raw = desc.planes[0].buffer.release();
    CHECK_FALSE(desc.validate());
    CHECK(is_ebadf(desc.dup()));
}

TEST_CASE_FIXTURE(FdLeakCheck, "a moved-from FenceWatcher fails every call at once") {
    Vgem vgem;
    auto created = FenceWatcher::create();
    REQUIRE(created);
    auto watcher = std::make_shared<FenceWatcher>(std::move(*created));
    REQUIRE(watcher->start());
    auto empty = std::make_shared<FenceWatcher>(std::move(*created));  // moved from by the line above
    auto buf = std::make_shared<DmaBuf>(vgem.create_buffer());
    auto fence = buf->export_sync_file(Access::read);
    REQUIRE(fence);
    auto sync = std::make_shared<SyncFile>(std::move(*fence));
    // `*created` itself is the moved-from object; `empty` was moved from it again.
    for (FenceWatcher* w : {&*created, empty.get()}) {
        CHECK(w->fd() == -1);
        CHECK(w->pending() == 0);
        CHECK_FALSE(w->cancel(1));
        CHECK(w->next_timeout() == Timeout{0});
        w->stop();
    }
    CHECK(fails_at_once([empty, buf] { return !empty->watch(*buf, Access::read, [](WatchId, WaitStatus) {}); }));
    CHECK(fails_at_once([empty, sync] { return !empty->watch(*sync, [](WatchId, WaitStatus) {}); }));
    CHECK(fails_at_once([empty] { return !empty->dispatch(forever); }));
    CHECK(fails_at_once([empty] { return !empty->dispatch(Timeout::max()); }));
    CHECK(fails_at_once([empty] { return !empty->start(); }));
    auto refused = empty->dispatch();
    REQUIRE_FALSE(refused);
    CHECK(refused.error().message().find("moved from") != std::string::npos);
    // And a released fence or buffer cannot be watched.
    auto released_buf = std::make_shared<DmaBuf>(vgem.create_buffer());
    UniqueFd raw = released_buf->release();
    CHECK(fails_at_once([watcher, released_buf] {
        return !watcher->watch(*released_buf, Access::read, [](WatchId, WaitStatus) {});
    }));
    watcher->stop();
}

TEST_CASE_FIXTURE(FdLeakCheck, "moved-from allocators fail every allocation at once") {
    auto u = UdmabufAllocator::open();
    REQUIRE(u);
    UdmabufAllocator u2 = std::move(*u);
    auto h = DmaHeapAllocator::open();
    REQUIRE(h);
    DmaHeapAllocator h2 = std::move(*h);
    auto g = GbmAllocator::open();
    REQUIRE(g);
    GbmAllocator g2 = std::move(*g);
    ImageRequest request;
    request.width = 64;
    request.height = 64;
    request.fourcc = fourcc::XRGB8888;
    CHECK(is_ebadf(u->allocate_bytes(4096)));
    CHECK(is_ebadf(u->allocate(request)));
    CHECK(is_ebadf(h->allocate_bytes(4096)));
    CHECK(is_ebadf(h->allocate(request)));
    CHECK(is_ebadf(g->allocate(request)));
    CHECK(g->backend_name() == "gbm:");
    CHECK(g->node().empty());
    CHECK(g->gbm_backend().empty());
    // The objects they moved into still work.
    CHECK(u2.allocate_bytes(4096));
    CHECK(h2.allocate_bytes(4096));
    CHECK(g2.allocate(request));
}
