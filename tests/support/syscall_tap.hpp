// SPDX-License-Identifier: MIT
#pragma once
// SyscallTap: runs a function on a thread of its own whose every system call is reported, before
// it runs, to a supervisor (a seccomp filter returning SECCOMP_RET_USER_NOTIF). The supervisor
// counts each call and lets it run, or makes it fail with an errno that the caller chooses: the
// counts are exact (not timed, not sampled), and the failures are real ones the code under test
// receives from the kernel's entry point. Threads the function starts inherit the filter.
//
// Needs Linux 5.5 (SECCOMP_USER_NOTIF_FLAG_CONTINUE).

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace dmabridge::test {

class SyscallTap {
public:
    /// A trapped call: its number, its six arguments (as the kernel saw them) and how many calls
    /// were trapped before it.
    struct Call {
        long nr;
        std::uint64_t args[6];
        std::uint64_t index;
    };
    /// Decides a trapped call: 0 lets it run, a positive errno makes it fail with that errno.
    using Decide = std::function<int(const Call&)>;

    /// Runs `fn` on a new, filtered thread and returns once that thread has exited. Returns
    /// false, with `error()` saying why, when the filter cannot be installed.
    bool run(const std::function<void(SyscallTap&)>& fn, Decide decide = {});

    /// Calls trapped so far. Readable from inside `fn` without making a syscall.
    std::uint64_t count() const noexcept { return count_.load(std::memory_order_acquire); }
    /// The syscall numbers trapped so far, in order (read after run() returned).
    const std::vector<long>& calls() const noexcept { return calls_; }
    /// The thread (kernel tid) that made each call of calls(), index for index.
    const std::vector<int>& callers() const noexcept { return callers_; }
    /// The thread that ran `fn` (its tid): what callers() names as the application's own calls;
    /// every other tid is a thread that `fn` or a library it called started (a driver's).
    int main_thread() const noexcept { return main_thread_.load(std::memory_order_acquire); }
    const std::string& error() const noexcept { return error_; }

private:
    std::atomic<std::uint64_t> count_{0};
    std::vector<long> calls_;
    std::vector<int> callers_;
    std::atomic<int> main_thread_{0};
    std::string error_;
};

/// A syscall's name for messages ("ioctl", "poll", ...), or its number.
std::string syscall_name(long nr);

}  // namespace dmabridge::test
