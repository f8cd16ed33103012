// SPDX-License-Identifier: MIT
#include <dmabridge/base/unique_fd.hpp>
#include <dmabridge/kernel/dmabuf.hpp>
#include <dmabridge/kernel/sync_file.hpp>

#include <cstdio>
#include <string>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include "fd_count.hpp"

using namespace dmabridge;
using dmabridge::test::FdLeakCheck;
using dmabridge::test::open_fd_count;

namespace {

bool is_open(int fd) { return ::fcntl(fd, F_GETFD) != -1; }

std::string refusal(UniqueFd fd) {
    auto r = DmaBuf::adopt(std::move(fd));
    REQUIRE_FALSE(r);
    return r.error().message();
}

}  // namespace

TEST_CASE_FIXTURE(FdLeakCheck, "UniqueFd closes what it owns, once") {
    int raw = ::memfd_create("t", MFD_CLOEXEC);
    REQUIRE(raw >= 0);
    {
        UniqueFd a(raw);
        CHECK(a.valid());
        UniqueFd b(std::move(a));
        CHECK_FALSE(a.valid());
        CHECK(b.get() == raw);
        UniqueFd c;
        c = std::move(b);
        CHECK(c.get() == raw);
        CHECK(is_open(raw));
    }
    CHECK_FALSE(is_open(raw));
}

TEST_CASE_FIXTURE(FdLeakCheck, "UniqueFd release hands the fd over and reset replaces it") {
    UniqueFd a(::memfd_create("t", MFD_CLOEXEC));
    const int raw = a.release();
    CHECK_FALSE(a.valid());
    CHECK(is_open(raw));
    a.reset(raw);
    auto copy = a.dup();
    REQUIRE(copy);
    CHECK(copy->get() != raw);
    CHECK((::fcntl(copy->get(), F_GETFD) & FD_CLOEXEC) != 0);
    a.reset();
    CHECK_FALSE(is_open(raw));
    CHECK(is_open(copy->get()));
}

TEST_CASE_FIXTURE(FdLeakCheck, "duplicating no fd is an empty object, a closed fd the kernel's EBADF") {
    auto bad = UniqueFd::dup_of(-1);
    REQUIRE_FALSE(bad);
    CHECK(bad.error().is(Errc::empty_object));
    auto closed = DmaBuf::import_fd(9999);
    REQUIRE_FALSE(closed);
    CHECK(closed.error().is_errno(EBADF));
}

TEST_CASE_FIXTURE(FdLeakCheck, "a memfd is not a dma-buf, and the error says it is a memfd") {
    const auto before = open_fd_count();
    auto msg = refusal(UniqueFd(::memfd_create("pretender", MFD_CLOEXEC)));
    CHECK(msg.find("is not a dma-buf") != std::string::npos);
    CHECK(msg.find("memfd") != std::string::npos);
    CHECK(open_fd_count() == before);  // the refused fd was closed
}

TEST_CASE_FIXTURE(FdLeakCheck, "regular files, sockets, pipes and closed fds are not dma-bufs") {
    char path[] = "/tmp/dmabridge-test-XXXXXX";
    int file = ::mkstemp(path);
    REQUIRE(file >= 0);
    ::unlink(path);
    // Its kind comes from /proc/self/fd alone (fstat could block on a FUSE file): a file, by path.
    const auto file_refusal = refusal(UniqueFd(file));
    CHECK(file_refusal.find("a file of a file system") != std::string::npos);
    CHECK(file_refusal.find(path) != std::string::npos);

    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    UniqueFd keep(sv[1]);
    CHECK(refusal(UniqueFd(sv[0])).find("a socket") != std::string::npos);

    int p[2];
    REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
    UniqueFd keep_write(p[1]);
    CHECK(refusal(UniqueFd(p[0])).find("a pipe") != std::string::npos);

    auto none = DmaBuf::adopt(UniqueFd());
    REQUIRE_FALSE(none);
    CHECK(none.error().is(Errc::empty_object));

    auto not_dmabuf = DmaBuf::adopt(UniqueFd(::memfd_create("x", MFD_CLOEXEC)));
    CHECK(not_dmabuf.error().is(Errc::not_a_dmabuf));
}

TEST_CASE_FIXTURE(FdLeakCheck, "a memfd is not a sync_file either") {
    auto r = SyncFile::adopt(UniqueFd(::memfd_create("pretender", MFD_CLOEXEC)));
    REQUIRE_FALSE(r);
    CHECK(r.error().is(Errc::not_a_sync_file));
}

TEST_CASE("errors keep their domain and code when context is added") {
    auto e = Error::from_errno(ENOMEM, "allocate").with_context("udmabuf");
    CHECK(e.domain() == ErrorDomain::system);
    CHECK(e.code() == ENOMEM);
    CHECK(e.message().rfind("udmabuf: allocate: ", 0) == 0);
    CHECK(e.is_errno(ENOMEM));
    CHECK_FALSE(e.is(Errc::invalid_argument));
}
