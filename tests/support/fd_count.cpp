// SPDX-License-Identifier: MIT
#include "fd_count.hpp"

#include <chrono>
#include <thread>

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
    // Drivers that run submissions on their own threads (lavapipe) close a sync_file imported
    // into a semaphore on that thread, just after the submit's fence signalled: give them a
    // moment. A real leak stays.
    std::size_t count = open_fd_count();
    for (int i = 0; i < 100 && count != baseline_; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
        count = open_fd_count();
    }
    CHECK_MESSAGE(count == baseline_, "the test leaked or closed file descriptors");
}

}  // namespace dmabridge::test
