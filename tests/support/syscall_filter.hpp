// SPDX-License-Identifier: MIT
#pragma once
// Real system-call failures and checks for tests, with seccomp filters installed on a thread of
// their own: the filter applies to that thread (and threads it starts) only, and goes away with
// it, so the rest of the test process is untouched. Needs x86_64 or another architecture whose
// <sys/syscall.h> names the calls; the kernel needs CONFIG_SECCOMP_FILTER.

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace dmabridge::test {

/// Runs `body` on a new thread where every `syscall_nr` whose argument `arg_index` equals
/// `value` (compared on its low 32 bits) fails with `err` without reaching the kernel, and
/// joins it. REQUIREs that the filter could be installed.
void run_with_failing_syscall(long syscall_nr, unsigned arg_index, std::uint32_t value, int err,
                              const std::function<void()>& body);

/// A system call that would have created a fd without close-on-exec.
struct FdCall {
    std::string call;   ///< its name and, for open/openat, the path
    std::string owner;  ///< the file name of the shared object (or executable) that made it
};

/// Runs `body` on a new thread where every system call that would create a fd without
/// close-on-exec (open/openat without O_CLOEXEC, dup, dup2, fcntl F_DUPFD, pipe, memfd_create,
/// eventfd, epoll_create, socket, accept and recvmsg without their CLOEXEC flags, ...) is
/// stopped and recorded with the code that made it. open and openat are then redone with
/// O_CLOEXEC (so the code under test goes on), the others fail with EPERM. x86_64 only (the
/// handler edits registers). An empty list means every fd was created close-on-exec.
std::vector<FdCall> calls_creating_fds_without_cloexec(const std::function<void()>& body);

/// The fds of this process that lack FD_CLOEXEC (fcntl F_GETFD over /proc/self/fd).
std::vector<int> fds_without_cloexec();

}  // namespace dmabridge::test
