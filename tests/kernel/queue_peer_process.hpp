// SPDX-License-Identifier: MIT
#pragma once
// The queue tests' other process: tests/kernel/queue_peer.cpp started with fork/exec, with a pipe
// to its stdin and one from its stdout, and a socket it inherits as fd 3. Used by the queue's and
// the capture source's tests.
#include <dmabridge/base/unique_fd.hpp>
#include <dmabridge/queue/connection.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <doctest/doctest.h>

#ifndef QUEUE_PEER_PATH
#error "QUEUE_PEER_PATH: the queue_peer binary"
#endif

namespace dmabridge::test {

using namespace std::chrono_literals;

// One queue_peer process, with a pipe to its stdin and one from its stdout.
class Peer {
public:
    Peer(std::vector<std::string> args, int pass_fd = -1) {
        int in[2], out[2];
        REQUIRE(::pipe2(in, O_CLOEXEC) == 0);
        REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
        static char peer_path[] = QUEUE_PEER_PATH;
        std::vector<char*> argv{peer_path};
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        pid_ = ::fork();
        REQUIRE(pid_ >= 0);
        if (pid_ == 0) {
            // Only async-signal-safe calls between fork and exec.
            int s = pass_fd >= 0 ? ::fcntl(pass_fd, F_DUPFD, 10) : -1;
            ::dup2(in[0], 0);
            ::dup2(out[1], 1);
            if (s >= 0) {
                ::dup2(s, 3);
                ::close(s);
            }
            ::execv(argv[0], argv.data());
            ::_exit(127);
        }
        ::close(in[0]);
        ::close(out[1]);
        in_.reset(in[1]);
        out_.reset(out[0]);
    }
    ~Peer() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
        }
    }
    pid_t pid() const { return pid_; }

    // The next stdout line (fails the test after `timeout`).
    std::string line(std::chrono::milliseconds timeout = 60s) {
        const auto end = std::chrono::steady_clock::now() + timeout;
        for (;;) {
            if (auto nl = buffer_.find('\n'); nl != std::string::npos) {
                std::string l = buffer_.substr(0, nl);
                buffer_.erase(0, nl + 1);
                return l;
            }
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
            pollfd p{out_.get(), POLLIN, 0};
            REQUIRE_MESSAGE(left.count() > 0, "queue_peer said nothing in time; so far: " << buffer_);
            REQUIRE(::poll(&p, 1, static_cast<int>(left.count())) >= 0);
            char chunk[256];
            const ssize_t n = ::read(out_.get(), chunk, sizeof chunk);
            if (n <= 0) return "EOF " + buffer_;
            buffer_.append(chunk, static_cast<std::size_t>(n));
        }
    }
    // A whole stdout line if one has arrived, without waiting; nothing otherwise.
    std::optional<std::string> try_line() {
        for (;;) {
            if (auto nl = buffer_.find('\n'); nl != std::string::npos) {
                std::string l = buffer_.substr(0, nl);
                buffer_.erase(0, nl + 1);
                return l;
            }
            pollfd p{out_.get(), POLLIN, 0};
            if (::poll(&p, 1, 0) <= 0) return std::nullopt;
            char chunk[256];
            const ssize_t n = ::read(out_.get(), chunk, sizeof chunk);
            if (n <= 0) return std::nullopt;
            buffer_.append(chunk, static_cast<std::size_t>(n));
        }
    }
    void tell(const std::string& l) {
        const std::string s = l + "\n";
        REQUIRE(::write(in_.get(), s.data(), s.size()) == static_cast<ssize_t>(s.size()));
    }
    // Waits for the exit; the exit code, or 128 + signal.
    int wait() {
        int status = 0;
        REQUIRE(::waitpid(pid_, &status, 0) == pid_);
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    // Waits for the exit and checks the last line is "ok ...".
    void expect_ok() {
        std::string l, last;
        while ((l = line()).rfind("EOF", 0) != 0) last = l;
        CHECK_MESSAGE(last.rfind("ok", 0) == 0, "queue_peer's last line: " << last << " " << l);
        CHECK(wait() == 0);
    }

private:
    pid_t pid_ = -1;
    UniqueFd in_, out_;
    std::string buffer_;
};

// A socketpair whose second end goes to a child (as fd 3).
struct SocketLink {
    queue::Connection here;
    UniqueFd there;
};
inline SocketLink socket_link() {
    auto pair = queue::Connection::socket_pair();
    REQUIRE(pair);
    auto s = pair->second.release_socket();
    REQUIRE(s);
    return {std::move(pair->first), std::move(*s)};
}

}  // namespace dmabridge::test
