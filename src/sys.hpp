// SPDX-License-Identifier: MIT
#pragma once
// Small system-call helpers shared by the kernel-object modules. Not part of the public API.

#include <cerrno>
#include <string>

#include <sys/ioctl.h>

#include <dmabridge/access.hpp>
#include <dmabridge/log.hpp>
#include <dmabridge/result.hpp>

namespace dmabridge::detail {

/// ioctl() retried while it fails with EINTR or EAGAIN (as DMA_BUF_IOCTL_SYNC requires).
template <typename Arg>
int ioctl_retry(int fd, unsigned long request, Arg arg) noexcept {
    int r;
    do {
        r = ::ioctl(fd, request, arg);
    } while (r == -1 && (errno == EINTR || errno == EAGAIN));
    return r;
}

/// An Error from the current errno with `context`.
Error last_error(std::string context);

/// poll() for `events` on `fd`, retrying EINTR with the time that remains.
Result<WaitStatus> poll_fd(int fd, short events, Timeout timeout, const char* what);

/// Reads `/proc/self/fdinfo/<fd>` and returns the value of `key` ("exp_name", "name", ...),
/// an empty string when the key is absent.
Result<std::string> fdinfo_value(int fd, const char* key);

/// Writes a message to the installed log handler, if any.
void log_message(LogLevel level, const std::string& message);

}  // namespace dmabridge::detail
