// SPDX-License-Identifier: MIT
// Adopting fds that a peer sent: what DmaBuf::adopt and SyncFile::adopt may do to them. A peer
// shares the open file description (its offset) with us, and may send a file whose file system
// never answers: adopting must neither change the peer's file nor wait for a stranger.
#include <dmabridge/kernel/dmabuf.hpp>
#include <dmabridge/kernel/sync_file.hpp>

#include <string>

#include <fcntl.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include "fd_count.hpp"
#include "vgem.hpp"

using namespace dmabridge;
using dmabridge::test::FdLeakCheck;
using dmabridge::test::Vgem;

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

TEST_SUITE_END();
