// SPDX-License-Identifier: MIT
#include "fd_count.hpp"

#include <dirent.h>

#include <doctest/doctest.h>

namespace dmabridge::test {

std::size_t open_fd_count() {
    DIR* dir = ::opendir("/proc/self/fd");
    REQUIRE(dir != nullptr);
    std::size_t count = 0;
    while (dirent* e = ::readdir(dir))
        if (e->d_name[0] != '.') ++count;
    ::closedir(dir);
    return count - 1;  // the directory stream's own fd
}

FdLeakCheck::FdLeakCheck() : baseline_(open_fd_count()) {}

FdLeakCheck::~FdLeakCheck() {
    CHECK_MESSAGE(open_fd_count() == baseline_, "the test leaked or closed file descriptors");
}

}  // namespace dmabridge::test
