// SPDX-License-Identifier: MIT
#include "fd_count.hpp"

#include <chrono>
#include <cstdlib>
#include <map>
#include <string>
#include <thread>

#include <dirent.h>
#include <unistd.h>

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

namespace {

// Every open fd and what it refers to ("anon_inode:dmabuf", "/dev/video0", ...).
std::map<int, std::string> open_fds() {
    std::map<int, std::string> fds;
    DIR* dir = ::opendir("/proc/self/fd");
    if (dir == nullptr) return fds;
    const int own = ::dirfd(dir);
    while (dirent* e = ::readdir(dir)) {
        if (e->d_name[0] == '.') continue;
        const int fd = std::atoi(e->d_name);
        if (fd == own) continue;
        char target[256] = {};
        const std::string link = std::string("/proc/self/fd/") + e->d_name;
        const ssize_t n = ::readlink(link.c_str(), target, sizeof target - 1);
        fds[fd] = n > 0 ? std::string(target, static_cast<std::size_t>(n)) : std::string("?");
    }
    ::closedir(dir);
    return fds;
}

// "opened: 12 anon_inode:sync_file; closed: 9 /dev/dri/card0", for the failure message.
std::string difference(const std::map<int, std::string>& before, const std::map<int, std::string>& after) {
    // Appended piece by piece: GCC 12 at -O3 flags `"..." + std::string&&` with a false
    // -Wrestrict (a Release build of the tests failed on it).
    const auto list = [](const std::map<int, std::string>& from, const std::map<int, std::string>& other) {
        std::string out;
        for (const auto& [fd, what] : from)
            if (auto it = other.find(fd); it == other.end() || it->second != what) {
                out += ' ';
                out += std::to_string(fd);
                out += ' ';
                out += what;
            }
        return out.empty() ? std::string(" none") : out;
    };
    std::string out = "opened:";
    out += list(after, before);
    out += "; closed:";
    out += list(before, after);
    return out;
}

}  // namespace

FdLeakCheck::FdLeakCheck() : baseline_(open_fd_count()), baseline_fds_(open_fds()) {}

FdLeakCheck::~FdLeakCheck() {
    // Drivers that run submissions on their own threads (lavapipe) close a sync_file imported
    // into a semaphore on that thread, just after the submit's fence signalled: give them a
    // moment. A real leak stays.
    std::size_t count = open_fd_count();
    for (int i = 0; i < 100 && count != baseline_; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
        count = open_fd_count();
    }
    if (count != baseline_) {
        CHECK_MESSAGE(count == baseline_,
                      "the test leaked or closed file descriptors: " << difference(baseline_fds_, open_fds()));
    }
}

}  // namespace dmabridge::test
