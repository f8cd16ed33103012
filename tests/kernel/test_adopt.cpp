// SPDX-License-Identifier: MIT
// Adopting fds that a peer sent: what DmaBuf::adopt and SyncFile::adopt may do to them. A peer
// shares the open file description (its offset) with us, and may send a file whose file system
// never answers: adopting must neither change the peer's file nor wait for a stranger.
#include <dmabridge/kernel/dmabuf.hpp>
#include <dmabridge/kernel/sync_file.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <linux/fuse.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include "fd_count.hpp"
#include "stuck_fuse.hpp"
#include "vgem.hpp"

using namespace dmabridge;
using namespace std::chrono_literals;
using dmabridge::test::FdLeakCheck;
using dmabridge::test::Vgem;
using dmabridge::test::Bounded;
using dmabridge::test::fd_on;
using dmabridge::test::StuckFuse;

namespace {

// The file offset of `fd`'s open file description, from fdinfo's "pos:" line (a dma-buf's lseek
// accepts only SEEK_SET 0 and SEEK_END 0, so SEEK_CUR cannot read it).
long long file_pos(int fd) {
    const std::string path = "/proc/self/fdinfo/" + std::to_string(fd);
    int f = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    REQUIRE(f >= 0);
    char text[512] = {};
    const auto n = ::read(f, text, sizeof text - 1);
    ::close(f);
    REQUIRE(n > 0);
    const std::string s(text, static_cast<std::size_t>(n));
    const auto at = s.find("pos:");
    REQUIRE(at != std::string::npos);
    return std::stoll(s.substr(at + 4));
}


}  // namespace

TEST_SUITE_BEGIN("any_kernel");

TEST_CASE_FIXTURE(FdLeakCheck, "adopting a peer's dma-buf reads its size without touching the offset it shares with the peer") {
    Vgem vgem;
    DmaBuf peer = vgem.create_buffer(8192);
    // Measured: a dma-buf's llseek returns the size for SEEK_END 0 but never stores an offset,
    // so the shared offset stays 0 whatever anyone seeks. adopt() reads the size from fstat and
    // seeks nothing; this checks that the size is right and the peer's file is as it was.
    REQUIRE(::lseek(peer.fd(), 0, SEEK_END) == 8192);
    const long long before = file_pos(peer.fd());
    // import_fd dups: the new fd shares the open file description, as one received over a socket does.
    auto mine = DmaBuf::import_fd(peer.fd());
    REQUIRE_MESSAGE(mine, (mine ? "" : mine.error().message()));
    CHECK(mine->size() == 8192);
    CHECK(mine->id() == peer.id());
    CHECK(file_pos(peer.fd()) == before);
    CHECK(file_pos(mine->fd()) == before);
}

TEST_CASE_FIXTURE(FdLeakCheck, "a file whose FUSE daemon never answers is refused at once as a dma-buf and as a sync_file") {
    std::optional<Result<DmaBuf>> as_dmabuf;
    std::optional<Result<SyncFile>> as_sync_file;
    {
        StuckFuse fuse;
        if (!fuse.skip.empty()) {
            MESSAGE("skipped on this kernel: " << fuse.skip);
            return;
        }
        const int file = ::open(fuse.file().c_str(), O_RDONLY | O_CLOEXEC);
        REQUIRE_MESSAGE(file >= 0, "open on the FUSE file system: " << std::strerror(errno));
        UniqueFd keep(file);
        fuse.stop_answering();
        // The trap is armed: asking the file's file system now waits for the daemon.
        Bounded statfs_call(fuse, [file] {
            struct statfs fs {};
            (void)::fstatfs(file, &fs);
        });
        CHECK_FALSE_MESSAGE(statfs_call.finished_within(300ms), "fstatfs on the stuck FUSE file returned: the test proves nothing");

        Bounded adopt_dmabuf(fuse, [&] { as_dmabuf.emplace(DmaBuf::import_fd(file)); });
        Bounded adopt_sync_file(fuse, [&] { as_sync_file.emplace(SyncFile::adopt(UniqueFd(::fcntl(file, F_DUPFD_CLOEXEC, 0)))); });
        CHECK_MESSAGE(adopt_dmabuf.finished_within(2s), "DmaBuf::import_fd waited for the FUSE daemon");
        CHECK_MESSAGE(adopt_sync_file.finished_within(2s), "SyncFile::adopt waited for the FUSE daemon");
        // Leaving the scope aborts the FUSE connection (the fstatfs above is stuck) before it joins
        // the threads and closes the file, whose close would otherwise wait for the daemon too.
    }
    // The refused fds' closes (each flushes to the file system) waited for the daemon on threads
    // of their own and ended with the abort: wait until no fd of the mount is left.
    for (int i = 0; i < 200 && fd_on("dmabridge-fuse-"); ++i) std::this_thread::sleep_for(10ms);
    CHECK_FALSE(fd_on("dmabridge-fuse-"));
    REQUIRE(as_dmabuf);
    REQUIRE_FALSE(*as_dmabuf);
    CHECK_MESSAGE(as_dmabuf->error().is(Errc::not_a_dmabuf), as_dmabuf->error().message());
    CHECK(as_dmabuf->error().message().find("a file of a file system") != std::string::npos);
    REQUIRE(as_sync_file);
    REQUIRE_FALSE(*as_sync_file);
    CHECK_MESSAGE(as_sync_file->error().is(Errc::not_a_sync_file), as_sync_file->error().message());
}

TEST_CASE_FIXTURE(FdLeakCheck, "memfds, pipes, FIFOs, sockets, /dev/null and regular files are refused by what /proc says they are") {
    char dir[] = "/tmp/dmabridge-adopt-XXXXXX";
    REQUIRE(::mkdtemp(dir));
    const std::string fifo = std::string(dir) + "/fifo", regular = std::string(dir) + "/regular";
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    int p[2];
    REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
    UniqueFd pipe_read(p[0]), pipe_write(p[1]);
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    UniqueFd sock_a(sv[0]), sock_b(sv[1]);
    struct Case {
        const char* kind;
        UniqueFd fd;
    };
    std::vector<Case> cases;
    cases.push_back({"a memfd", UniqueFd(::memfd_create("pretender", MFD_CLOEXEC))});
    cases.push_back({"a pipe", std::move(pipe_read)});
    // O_RDWR: a FIFO opened for both ends does not wait for a peer.
    cases.push_back({"a file of a file system", UniqueFd(::open(fifo.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC))});
    cases.push_back({"a socket", std::move(sock_a)});
    cases.push_back({"a device node", UniqueFd(::open("/dev/null", O_RDWR | O_CLOEXEC))});
    cases.push_back({"a file of a file system", UniqueFd(::open(regular.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600))});
    for (auto& c : cases) {
        REQUIRE(c.fd.valid());
        CAPTURE(c.kind);
        auto dmabuf = DmaBuf::import_fd(c.fd.get());
        REQUIRE_FALSE(dmabuf);
        CHECK_MESSAGE(dmabuf.error().is(Errc::not_a_dmabuf), dmabuf.error().message());
        CHECK_MESSAGE(dmabuf.error().message().find(c.kind) != std::string::npos, dmabuf.error().message());
        auto sync = SyncFile::adopt(UniqueFd(::fcntl(c.fd.get(), F_DUPFD_CLOEXEC, 0)));
        REQUIRE_FALSE(sync);
        CHECK_MESSAGE(sync.error().is(Errc::not_a_sync_file), sync.error().message());
    }
    // A dma-buf is not a sync_file, nor the other way round.
    Vgem vgem;
    DmaBuf buf = vgem.create_buffer(4096);
    auto as_sync = SyncFile::adopt(UniqueFd(::fcntl(buf.fd(), F_DUPFD_CLOEXEC, 0)));
    REQUIRE_FALSE(as_sync);
    CHECK(as_sync.error().is(Errc::not_a_sync_file));
    ::unlink(fifo.c_str());
    ::unlink(regular.c_str());
    ::rmdir(dir);
}

TEST_CASE_FIXTURE(FdLeakCheck, "real dma-bufs, named or not, are still adopted") {
    Vgem vgem;
    DmaBuf buf = vgem.create_buffer(16384);
    auto again = DmaBuf::import_fd(buf.fd());
    REQUIRE_MESSAGE(again, (again ? "" : again.error().message()));
    CHECK(again->size() == 16384);
    // A name with a slash and a blank still reads "/dmabuf:<name>" in /proc.
    REQUIRE(buf.set_name("peer/x y"));
    auto named = DmaBuf::import_fd(buf.fd());
    REQUIRE_MESSAGE(named, (named ? "" : named.error().message()));
    CHECK(named->id() == buf.id());
}

TEST_SUITE_END();

TEST_CASE_FIXTURE(FdLeakCheck, "a real sync_file is still adopted") {
    Vgem vgem;
    DmaBuf buf = vgem.create_buffer(4096);
    const auto fence = vgem.attach_fence(true);
    auto exported = buf.export_sync_file(Access::write);
    REQUIRE_MESSAGE(exported, (exported ? "" : exported.error().message()));
    auto again = SyncFile::adopt(UniqueFd(::fcntl(exported->fd(), F_DUPFD_CLOEXEC, 0)));
    REQUIRE_MESSAGE(again, (again ? "" : again.error().message()));
    CHECK(*again->status() == FenceStatus::active);
    vgem.signal(fence);
    CHECK(*again->status() == FenceStatus::signaled);
}
