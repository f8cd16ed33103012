// SPDX-License-Identifier: MIT
#include "sys.hpp"
#include "parse/fdinfo.hpp"

#include <chrono>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>

#include <poll.h>

namespace dmabridge {

Error Error::from_errno(int err, std::string context) {
    context += ": ";
    context += std::strerror(err);
    return Error(ErrorDomain::system, err, std::move(context));
}

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

Error last_error(std::string context) { return Error::from_errno(errno, std::move(context)); }

Result<WaitStatus> poll_fd(int fd, short events, Timeout timeout, const char* what) {
    using clock = std::chrono::steady_clock;
    const bool infinite = timeout.count() < 0;
    const auto deadline = clock::now() + (infinite ? Timeout{0} : timeout);
    for (;;) {
        int wait_ms = -1;
        if (!infinite) {
            auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - clock::now());
            wait_ms = left.count() > 0 ? static_cast<int>(std::min<long long>(left.count(), 0x7fffffff)) : 0;
        }
        pollfd p{fd, events, 0};
        int r = ::poll(&p, 1, wait_ms);
        if (r > 0) {
            if (p.revents & POLLNVAL) return Error::from_errno(EBADF, std::string(what) + ": poll");
            // dma-buf and sync_file report readiness with the requested events; POLLERR on a
            // sync_file means a fence signalled with an error, which still ends the wait.
            return WaitStatus::ready;
        }
        if (r == 0) {
            if (!infinite && clock::now() >= deadline) return WaitStatus::timed_out;
            continue;
        }
        if (errno != EINTR) return last_error(std::string(what) + ": poll");
    }
}

Result<std::string> fdinfo_value(int fd, const char* key) {
    std::ifstream in("/proc/self/fdinfo/" + std::to_string(fd));
    if (!in) return last_error("read /proc/self/fdinfo/" + std::to_string(fd));
    std::ostringstream text;
    text << in.rdbuf();
    return fdinfo_find(text.str(), key);
}

}  // namespace detail
}  // namespace dmabridge
