// SPDX-License-Identifier: MIT
#include "base/sys.hpp"
#include "base/fdinfo.hpp"

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstring>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <string>

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <dmabridge/base/unique_fd.hpp>

namespace dmabridge {

const char* to_string(Access access) noexcept {
    switch (access) {
    case Access::read: return "read";
    case Access::write: return "write";
    case Access::read_write: return "read+write";
    }
    return "invalid access";
}

namespace {
std::mutex log_mutex;
LogHandler log_handler;
}  // namespace

void set_log_handler(LogHandler handler) {
    std::lock_guard lock(log_mutex);
    log_handler = std::move(handler);
}

namespace detail {

void log_message(LogLevel level, const std::string& message) {
    LogHandler handler;
    {
        std::lock_guard lock(log_mutex);
        handler = log_handler;
    }
    if (handler) handler(level, message);
}

std::string hex(std::uint64_t value) {
    char buf[24];
    std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(value));
    return buf;
}

Error last_error(std::string context) { return Error::from_errno(errno, std::move(context)); }

std::optional<deadline_clock::time_point> deadline_after(Timeout timeout) noexcept {
    if (timeout.count() < 0) return std::nullopt;
    const auto now = deadline_clock::now();
    // now + timeout in the clock's nanoseconds overflows for timeouts of about 292 years minus
    // the uptime: compare in milliseconds first and saturate.
    const auto room = std::chrono::floor<Timeout>(deadline_clock::time_point::max() - now);
    if (timeout >= room) return deadline_clock::time_point::max();
    return now + timeout;
}

int poll_ms_until(const std::optional<deadline_clock::time_point>& deadline) noexcept {
    if (!deadline) return -1;
    if (*deadline == deadline_clock::time_point::max()) return INT_MAX;
    const auto left = std::chrono::ceil<Timeout>(*deadline - deadline_clock::now()).count();
    if (left <= 0) return 0;
    return static_cast<int>(std::min<long long>(left, INT_MAX));
}

Result<WaitStatus> poll_fd(int fd, short events, Timeout timeout, const char* what) {
    // poll() ignores negative fds: a released or moved-from object would wait for its whole
    // timeout (forever for Timeout forever) instead of failing.
    if (fd < 0) return Error::library(Errc::empty_object, std::string(what) + ": the object holds no fd (moved from or released)");
    const auto deadline = deadline_after(timeout);
    for (;;) {
        pollfd p{fd, events, 0};
        int r = ::poll(&p, 1, poll_ms_until(deadline));
        if (r > 0) {
            if (p.revents & POLLNVAL) return Error::from_errno(EBADF, std::string(what) + ": poll");
            // dma-buf and sync_file report readiness with the requested events; POLLERR on a
            // sync_file means a fence signalled with an error, which still ends the wait.
            return WaitStatus::ready;
        }
        if (r == 0) {
            if (deadline && deadline_clock::now() >= *deadline) return WaitStatus::timed_out;
            continue;
        }
        if (errno != EINTR) return last_error(std::string(what) + ": poll");
    }
}

Result<std::string> read_text_file(const std::string& path) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return last_error("read " + path);
    std::string text;
    char chunk[4096];
    for (;;) {
        const ssize_t n = ::read(fd.get(), chunk, sizeof chunk);
        if (n == 0) return text;
        if (n < 0) {
            if (errno == EINTR) continue;
            return last_error("read " + path);
        }
        text.append(chunk, static_cast<std::size_t>(n));
        if (text.size() > (1u << 20)) return Error::library(Errc::limit_exceeded, "read " + path + ": more than 1 MiB");
    }
}

std::optional<std::string> find_key(const std::string& text, const std::string& key) {
    std::size_t pos = 0;
    while (pos < text.size()) {
        std::size_t eol = text.find('\n', pos);
        if (eol == std::string::npos) eol = text.size();
        if (text.compare(pos, key.size(), key) == 0) {
            const std::size_t start = text.find_first_not_of(" \t", pos + key.size());
            if (start == std::string::npos || start >= eol) return std::string();
            return text.substr(start, eol - start);
        }
        pos = eol + 1;
    }
    return std::nullopt;
}

Result<std::string> fd_link(int fd, const std::string& what) {
    if (fd < 0) return Error::from_errno(EBADF, what);
    const std::string path = "/proc/self/fd/" + std::to_string(fd);
    char link[PATH_MAX];
    const ssize_t n = ::readlink(path.c_str(), link, sizeof link);
    if (n >= 0) return std::string(link, static_cast<std::size_t>(n));
    const int err = errno;
    if (err != ENOENT) return Error::from_errno(err, what + ": readlink " + path);
    // ENOENT: either the fd is closed or /proc is not there. F_GETFD touches only the fd table.
    if (::fcntl(fd, F_GETFD) < 0) return last_error(what);
    return Error::library(Errc::unsupported,
                          what + ": cannot tell what the fd is without " + path +
                              " (is /proc mounted?); the library does not ask the file itself (fstat, "
                              "ioctl), which could block on a FUSE or network file system a peer chose");
}

void close_untrusted(UniqueFd fd, const std::string& link) noexcept {
    const bool on_a_file_system = !link.empty() && link[0] == '/' && link.rfind("/memfd:", 0) != 0 &&
                                  link.rfind("/dmabuf:", 0) != 0;
    if (!on_a_file_system) return;  // `fd` closes here, in the kernel alone
    struct Closing {
        std::mutex mutex;
        std::condition_variable done_cv;
        bool done = false;
    };
    try {
        auto closing = std::make_shared<Closing>();
        std::thread([closing, f = std::move(fd)]() mutable {
            f.reset();
            std::lock_guard lock(closing->mutex);
            closing->done = true;
            closing->done_cv.notify_all();
        }).detach();
        std::unique_lock lock(closing->mutex);
        if (!closing->done_cv.wait_for(lock, std::chrono::milliseconds(100), [&] { return closing->done; }))
            log_message(LogLevel::warning, "closing a refused fd (" + link +
                                               ") did not end within 100 ms: its file system (FUSE?) does not "
                                               "answer; the close goes on on a thread of its own");
    } catch (...) {
        // No thread (or no memory): the fd, wherever it is now, closes on this thread.
    }
}

Result<std::string> fdinfo_value(int fd, const char* key) {
    if (fd < 0) return Error::library(Errc::empty_object, "read fdinfo: the object holds no fd (moved from or released)");
    auto text = read_text_file("/proc/self/fdinfo/" + std::to_string(fd));
    if (!text) return text.error();
    return fdinfo_find(*text, key);
}

}  // namespace detail
}  // namespace dmabridge
