// SPDX-License-Identifier: MIT
#pragma once
// Fd-leak checking: every test that touches fds derives its fixture from FdLeakCheck, which
// counts the process's open fds when the test starts and checks the count when it ends.

#include <cstddef>
#include <map>
#include <string>

namespace dmabridge::test {

/// The number of fds this process has open (entries of /proc/self/fd).
std::size_t open_fd_count();

/// Fixture: fails the test if it ends with a different number of open fds than it started with
/// (after up to half a second for driver threads to close what they hold).
class FdLeakCheck {
public:
    FdLeakCheck();
    ~FdLeakCheck();
    FdLeakCheck(const FdLeakCheck&) = delete;
    FdLeakCheck& operator=(const FdLeakCheck&) = delete;

private:
    std::size_t baseline_;
    std::map<int, std::string> baseline_fds_;  // fd -> what it refers to, for the failure message
};

}  // namespace dmabridge::test
