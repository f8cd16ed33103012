// SPDX-License-Identifier: MIT
// What the Wayland client does with fds the compositor sends before it trusts them: the
// linux-dmabuf format table is read only from a memfd or a /dev/shm file, told apart by the fd's
// /proc link, so that a file whose file system never answers cannot stall the client.
#include <optional>
#include <string>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <sys/vfs.h>

#include <doctest/doctest.h>

#include <dmabridge/base/unique_fd.hpp>

#include "fd_count.hpp"
#include "stuck_fuse.hpp"
#include "wayland/format_table.hpp"

using namespace dmabridge;
using namespace dmabridge::test;

TEST_SUITE("wayland") {

TEST_CASE_FIXTURE(FdLeakCheck, "a format table on a file system whose daemon never answers is refused without asking it") {
    // Under /tmp (a path the link check refuses) and under /dev/shm (a path it accepts: a
    // compositor can mount FUSE there in its own namespace; F_GET_SEALS tells it apart).
    if (::access("/dev/shm", F_OK) != 0) REQUIRE(::mkdir("/dev/shm", 01777) == 0);
    for (const char* base : {"/tmp", "/dev/shm"}) {
    CAPTURE(std::string(base));
    std::optional<Result<std::vector<wayland::detail::FormatTableEntry>>> table;
    {
        StuckFuse fuse(base);
        REQUIRE_MESSAGE(fuse.skip.empty(), fuse.skip);  // 6.12, where this suite runs, has FUSE
        const int file = ::open(fuse.file().c_str(), O_RDONLY | O_CLOEXEC);
        REQUIRE_MESSAGE(file >= 0, "open on the FUSE file system: " << std::strerror(errno));
        UniqueFd keep(file);
        fuse.stop_answering();
        Bounded statfs_call(fuse, [file] {
            struct statfs fs {};
            (void)::fstatfs(file, &fs);
        });
        CHECK_FALSE_MESSAGE(statfs_call.finished_within(300ms), "fstatfs on the stuck FUSE file returned: the test proves nothing");
        Bounded read(fuse, [&] { table.emplace(wayland::detail::read_format_table(file, 64)); });
        CHECK_MESSAGE(read.finished_within(2s), "read_format_table waited for the FUSE daemon");
    }  // aborts the connection, then joins and closes
    for (int i = 0; i < 200 && fd_on("dmabridge-fuse-"); ++i) std::this_thread::sleep_for(10ms);
    CHECK_FALSE(fd_on("dmabridge-fuse-"));
    REQUIRE(table);
    REQUIRE_FALSE(*table);
    CHECK(table->error().is(Errc::invalid_argument));
    CHECK_MESSAGE((table->error().message().find("not a memfd") != std::string::npos ||
                   table->error().message().find("F_GET_SEALS") != std::string::npos),
                  table->error().message());
    }
}

}  // TEST_SUITE("wayland")
