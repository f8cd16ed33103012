// SPDX-License-Identifier: MIT
// The dma-buf core against real dma-bufs (udmabuf and vgem, in the VM).
#include <dmabridge/alloc/udmabuf.hpp>
#include <dmabridge/kernel/cpu_access.hpp>
#include <dmabridge/kernel/dmabuf.hpp>

#include <cstring>
#include <string>

#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include "fd_count.hpp"
#include "vgem.hpp"

using namespace dmabridge;
using dmabridge::test::FdLeakCheck;
using dmabridge::test::Vgem;

namespace {

DmaBuf udmabuf(std::uint64_t size, const char* name = "test") {
    auto alloc = UdmabufAllocator::open();
    REQUIRE(alloc);
    auto buf = alloc->allocate_bytes(size, name);
    REQUIRE_MESSAGE(buf, (buf ? "" : buf.error().message()));
    return std::move(*buf);
}

// A dma-buf every kernel can make (a vgem dumb buffer), for the tests of the dma-buf core that
// also run on kernels without udmabuf (5.10). The buffer outlives the vgem fd that made it.
DmaBuf gem_buffer(std::uint32_t size) {
    Vgem vgem;
    return vgem.create_buffer(size);
}

void fill(const DmaBuf& buf, std::uint8_t seed) {
    auto map = Mapping::map(buf, Access::write);
    REQUIRE(map);
    auto cpu = CpuAccess::begin(buf, Access::write);
    REQUIRE(cpu);
    for (std::size_t i = 0; i < map->size(); ++i) map->data()[i] = std::byte(static_cast<std::uint8_t>(i * 7 + seed));
    REQUIRE(cpu->end());
}

bool holds(const DmaBuf& buf, std::uint8_t seed) {
    auto map = Mapping::map(buf, Access::read);
    REQUIRE(map);
    auto cpu = CpuAccess::begin(buf, Access::read);
    REQUIRE(cpu);
    for (std::size_t i = 0; i < map->size(); ++i)
        if (map->data()[i] != std::byte(static_cast<std::uint8_t>(i * 7 + seed))) return false;
    return true;
}

// Sends `fd` over a unix socket and returns the fd that arrives: a new fd of the same file.
UniqueFd pass_over_socket(int fd) {
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    UniqueFd a(sv[0]), b(sv[1]);
    char byte = 'x';
    iovec iov{&byte, 1};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
    REQUIRE(::sendmsg(a.get(), &msg, 0) == 1);
    msghdr in{};
    in.msg_iov = &iov;
    in.msg_iovlen = 1;
    in.msg_control = control;
    in.msg_controllen = sizeof control;
    REQUIRE(::recvmsg(b.get(), &in, MSG_CMSG_CLOEXEC) == 1);
    int received = -1;
    std::memcpy(&received, CMSG_DATA(CMSG_FIRSTHDR(&in)), sizeof received);
    return UniqueFd(received);
}

}  // namespace

TEST_CASE_FIXTURE(FdLeakCheck, "every fd of one buffer has the same identity, and buffers differ") {
    DmaBuf a = udmabuf(8192);
    auto dup = a.dup();
    REQUIRE(dup);
    auto passed = DmaBuf::adopt(pass_over_socket(a.fd()));
    REQUIRE(passed);
    auto imported = DmaBuf::import_fd(a.fd());
    REQUIRE(imported);
    CHECK(dup->fd() != a.fd());
    CHECK(dup->id() == a.id());
    CHECK(passed->id() == a.id());
    CHECK(imported->id() == a.id());
    DmaBuf b = udmabuf(8192);
    CHECK_FALSE(b.id() == a.id());
    CHECK(std::hash<BufferId>{}(dup->id()) == std::hash<BufferId>{}(a.id()));
}

TEST_CASE_FIXTURE(FdLeakCheck, "size, exporter name and buffer name come from the kernel") {
    DmaBuf buf = udmabuf(10000, "first-name");
    CHECK(buf.size() == 12288);  // page-rounded
    auto exporter = buf.exporter_name();
    REQUIRE(exporter);
    CHECK(*exporter == "udmabuf");
    auto name = buf.name();
    REQUIRE(name);
    CHECK(*name == "first-name");
    REQUIRE(buf.set_name("second-name"));
    auto dup = buf.dup();
    REQUIRE(dup);
    CHECK(*dup->name() == "second-name");  // a name belongs to the buffer, not the fd

    auto too_long = buf.set_name(std::string(32, 'n'));
    REQUIRE_FALSE(too_long);
    CHECK(too_long.error().is(Errc::invalid_argument));
    CHECK(too_long.error().message().find("at most 31") != std::string::npos);
    CHECK(buf.set_name(std::string(31, 'n')));
    CHECK(*buf.name() == std::string(31, 'n'));

    Vgem vgem;
    DmaBuf v = vgem.create_buffer(4096);
    CHECK(*v.exporter_name() == "drm");  // GEM PRIME exports name the DRM core
}

// The mapping and bracket tests use vgem buffers: they run on every kernel.
TEST_SUITE_BEGIN("any_kernel");

TEST_CASE_FIXTURE(FdLeakCheck, "data written through one mapping is read through a mapping of a dup") {
    DmaBuf buf = gem_buffer(64 * 1024);
    fill(buf, 3);
    auto dup = buf.dup();
    REQUIRE(dup);
    CHECK(holds(*dup, 3));
    CHECK_FALSE(holds(*dup, 4));
    fill(*dup, 9);
    CHECK(holds(buf, 9));
}

TEST_CASE_FIXTURE(FdLeakCheck, "a mapping keeps the buffer alive after every fd is closed") {
    auto map = [] {
        DmaBuf buf = gem_buffer(4096);
        fill(buf, 42);
        auto m = Mapping::map(buf, Access::read);
        REQUIRE(m);
        return std::move(*m);
    }();
    for (std::size_t i = 0; i < map.size(); ++i) REQUIRE(map.data()[i] == std::byte(static_cast<std::uint8_t>(i * 7 + 42)));
}

TEST_CASE_FIXTURE(FdLeakCheck, "a child process reads what the parent wrote") {
    DmaBuf buf = gem_buffer(4096);
    fill(buf, 77);
    pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) ::_exit(holds(buf, 77) ? 0 : 1);
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE_FIXTURE(FdLeakCheck, "mappings outside the buffer are refused before mmap") {
    DmaBuf buf = gem_buffer(8192);
    CHECK(Mapping::map(buf, Access::read, 4096));
    CHECK(Mapping::map(buf, Access::read, 0, 8192));
    auto misaligned = Mapping::map(buf, Access::read, 100);
    REQUIRE_FALSE(misaligned);
    CHECK(misaligned.error().message().find("page size") != std::string::npos);
    auto past = Mapping::map(buf, Access::read, 4096, 8192);
    REQUIRE_FALSE(past);
    CHECK(past.error().message().find("not inside the 8192-byte buffer") != std::string::npos);
    CHECK_FALSE(Mapping::map(buf, Access::read, 0, UINT64_MAX));
    CHECK_FALSE(Mapping::map(buf, Access::read, 12288));
}

TEST_CASE_FIXTURE(FdLeakCheck, "CPU access brackets end once and refuse invalid directions") {
    DmaBuf buf = gem_buffer(4096);
    for (Access a : {Access::read, Access::write, Access::read_write}) {
        auto cpu = CpuAccess::begin(buf, a);
        REQUIRE(cpu);
        CHECK(cpu->access() == a);
        CHECK(cpu->end());
        auto again = cpu->end();
        CHECK_FALSE(again);
    }
    auto bad = CpuAccess::begin(buf, static_cast<Access>(0));
    REQUIRE_FALSE(bad);
    CHECK(bad.error().is(Errc::invalid_argument));
    // Moving a bracket moves its END: only one END is issued.
    auto first = CpuAccess::begin(buf, Access::write);
    REQUIRE(first);
    CpuAccess moved = std::move(*first);
    CHECK(moved.end());
}

TEST_SUITE_END();
