// SPDX-License-Identifier: MIT
#pragma once
// Fault injection for single ioctls, on one thread: a seccomp filter (SECCOMP_RET_ERRNO) makes
// the kernel answer chosen ioctl requests with an errno, for the calling thread only (no TSYNC),
// so the library under test makes its real system call and the real kernel refuses it. The
// filter cannot be removed, so it is installed on a thread of its own that ends with the work.

#include <cerrno>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace dmabridge::test {

struct IoctlFault {
    unsigned long request;
    int error;  ///< errno the kernel answers with
};

/// Runs `work` on a new thread on which every ioctl() with one of `faults`' requests fails with
/// its errno, and waits for it. Returns an empty string, or why the filter could not be
/// installed (the work did not run then).
std::string run_with_ioctl_faults(const std::vector<IoctlFault>& faults, const std::function<void()>& work);

}  // namespace dmabridge::test
