// SPDX-License-Identifier: MIT
#pragma once
// Small system-call helpers shared by the kernel-object modules. Not part of the public API.

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include <sys/ioctl.h>

#include <dmabridge/base/access.hpp>
#include <dmabridge/base/log.hpp>
#include <dmabridge/base/result.hpp>
#include <dmabridge/base/unique_fd.hpp>

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

/// The clock every deadline in dmabridge is measured on.
using deadline_clock = std::chrono::steady_clock;

/// The point in time `timeout` from now, saturated: a negative timeout (forever) gives nothing,
/// and a timeout too large to add to the clock (Timeout::max(), any "no limit" value) gives
/// deadline_clock::time_point::max(), which never passes. Never overflows.
std::optional<deadline_clock::time_point> deadline_after(Timeout timeout) noexcept;

/// Milliseconds left until `deadline` for poll()/epoll_wait(): 0 once it has passed, rounded up,
/// and at most INT_MAX (the caller loops until the deadline really passed). -1 for no deadline.
int poll_ms_until(const std::optional<deadline_clock::time_point>& deadline) noexcept;

/// The end of a wait that polls in a loop until something happens (a frame, a free buffer, the
/// compositor's answer) or the time is up: one loop shape for every such wait of the library.
///
///     for (Deadline deadline(timeout);;) {
///         if (something_ready()) return it;
///         auto ms = deadline.wait_ms();
///         if (!ms) return ETIMEDOUT;
///         poll(..., *ms);
///     }
class Deadline {
public:
    explicit Deadline(Timeout timeout) noexcept : at_(deadline_after(timeout)) {}
    /// Milliseconds to poll for (-1: no limit), or nothing once the deadline has passed. Reads
    /// the clock a second time only when the rounded wait is 0, to tell "almost" from "passed".
    std::optional<int> wait_ms() const noexcept {
        const int ms = poll_ms_until(at_);
        if (at_ && ms == 0 && deadline_clock::now() >= *at_) return std::nullopt;
        return ms;
    }
    /// The same, as a Timeout (`forever` for no limit).
    std::optional<Timeout> wait_timeout() const noexcept {
        auto ms = wait_ms();
        if (!ms) return std::nullopt;
        return *ms < 0 ? forever : Timeout(*ms);
    }

private:
    std::optional<deadline_clock::time_point> at_;
};

/// `value` in hexadecimal with its "0x" prefix, for masks and codes in messages. A "0x" is only
/// ever written by this function: never put "0x" before a decimal number.
std::string hex(std::uint64_t value);

/// An Error from the current errno with `context`.
Error last_error(std::string context);

/// poll() for `events` on `fd`, retrying EINTR with the time that remains.
Result<WaitStatus> poll_fd(int fd, short events, Timeout timeout, const char* what);

/// Reads a small text file (proc, sysfs) whole, with open(O_RDONLY | O_CLOEXEC) and read(): no
/// fd of the library ever lacks close-on-exec, even for the length of a read.
Result<std::string> read_text_file(const std::string& path);

/// The value of the first line "<key><spaces><value>" of `text` (for "/proc/meminfo"-style
/// files, key including its ':'), or nothing.
std::optional<std::string> find_key(const std::string& text, const std::string& key);

/// Reads `/proc/self/fdinfo/<fd>` and returns the value of `key` ("exp_name", "name", ...),
/// an empty string when the key is absent.
Result<std::string> fdinfo_value(int fd, const char* key);

/// What `fd` is, as the kernel names it in /proc/self/fd/<fd>: "/dmabuf:<name>" for a dma-buf,
/// "anon_inode:sync_file", "pipe:[123]", "socket:[45]", "/memfd:x (deleted)", or a path.
/// Reading that link (readlink) runs no code of the fd's file or file system (the kernel only
/// prints the name it holds), so it is safe on a file a FUSE daemon serves: fstat, fstatfs and
/// ioctls on such a file wait for the daemon, which never has to answer. The one way to tell an
/// untrusted fd's kind before calling into it. One readlink (one fcntl more when it fails).
/// Errors: EBADF for a closed fd; Errc::unsupported when /proc is not mounted (a chroot without
/// it), naming `what` and why the library does not ask the file itself; other errnos of readlink.
Result<std::string> fd_link(int fd, const std::string& what);

/// Closes `fd`, refused after fd_link() gave `link`, without letting the caller wait for a
/// stranger: closing a file of a file system (a path other than "/memfd:" and "/dmabuf:")
/// flushes it to that file system, and a FUSE daemon need never answer. Such an fd is closed on
/// a thread of its own, which the caller waits for at most 100 ms (then it logs a warning and
/// returns; the close goes on, and a daemon that never answers keeps that one thread). Pipes,
/// sockets, anonymous inodes and memfds are closed here: their close never leaves the kernel.
void close_untrusted(UniqueFd fd, const std::string& link) noexcept;

/// Writes a message to the installed log handler, if any.
void log_message(LogLevel level, const std::string& message);

}  // namespace dmabridge::detail
