// SPDX-License-Identifier: MIT
#include "pipewire_daemon.hpp"

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>
#include <ctime>
#include <fstream>
#include <sstream>
#include <utility>

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef DMABRIDGE_GST_REGISTRY_DEFAULT
#define DMABRIDGE_GST_REGISTRY_DEFAULT ""
#endif

namespace dmabridge::test {

double monotonic_seconds() {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

namespace {

std::string tail_of(const std::string& path, std::size_t lines) {
    std::ifstream in(path);
    std::vector<std::string> all;
    for (std::string line; std::getline(in, line);) all.push_back(line);
    std::string out;
    for (std::size_t i = all.size() > lines ? all.size() - lines : 0; i < all.size(); ++i) out += all[i] + "\n";
    return out;
}

void child_fail(const char* what) {
    const char* msg = std::strerror(errno);
    (void)!::write(2, what, std::strlen(what));
    (void)!::write(2, ": ", 2);
    (void)!::write(2, msg, std::strlen(msg));
    (void)!::write(2, "\n", 1);
    ::_exit(127);
}

bool socket_answers(const std::string& path) {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return false;
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    const bool ok = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0;
    ::close(fd);
    return ok;
}

}  // namespace

Result<Child> Child::spawn(const std::vector<std::string>& argv, const std::string& log_path) {
    std::vector<std::string> args = argv;
    std::vector<char*> ptrs;
    for (auto& a : args) ptrs.push_back(a.data());
    ptrs.push_back(nullptr);
    const int out = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (out < 0) return Error::from_errno(errno, "open " + log_path);
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0) {
        ::close(out);
        return Error::from_errno(errno, "fork for " + argv[0]);
    }
    if (pid == 0) {
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the test binary
        if (::getppid() != parent) ::_exit(127);
        ::dup2(out, 1);
        ::dup2(out, 2);
        ::execvp(ptrs[0], ptrs.data());
        child_fail("exec");
    }
    ::close(out);
    Child c;
    c.pid_ = pid;
    c.log_ = log_path;
    return c;
}

Child::Child(Child&& o) noexcept : pid_(std::exchange(o.pid_, -1)), code_(o.code_), log_(std::move(o.log_)) {}
Child& Child::operator=(Child&& o) noexcept {
    if (this != &o) {
        kill();
        pid_ = std::exchange(o.pid_, -1);
        code_ = o.code_;
        log_ = std::move(o.log_);
    }
    return *this;
}
Child::~Child() { kill(); }

bool Child::exited() {
    if (pid_ < 0) return true;
    int status = 0;
    const pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r != pid_) return false;
    code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    pid_ = -1;
    return true;
}

void Child::kill() {
    if (pid_ < 0) return;
    ::kill(pid_, SIGKILL);
    int status = 0;
    if (::waitpid(pid_, &status, 0) == pid_)
        code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    pid_ = -1;
}

std::string Child::output() const { return tail_of(log_, 40); }

Result<PipeWireDaemons*> PipeWireDaemons::get() {
    static PipeWireDaemons daemons;
    static std::optional<Status> started;
    if (!started) started = daemons.start();
    if (!*started) return started->error();
    return &daemons;
}

Status PipeWireDaemons::start() {
    std::string dir = "/tmp/dmabridge-pipewire-XXXXXX";
    if (::mkdtemp(dir.data()) == nullptr) return Error::from_errno(errno, "mkdtemp " + dir);  // mode 0700
    dir_ = dir;
    // Everything of PipeWire's, WirePlumber's and GStreamer's state in this process and its
    // children points into the private directory.
    ::setenv("XDG_RUNTIME_DIR", dir.c_str(), 1);
    ::setenv("PIPEWIRE_RUNTIME_DIR", dir.c_str(), 1);
    ::setenv("XDG_STATE_HOME", (dir + "/state").c_str(), 1);
    ::setenv("XDG_CONFIG_HOME", (dir + "/config").c_str(), 1);
    ::unsetenv("PIPEWIRE_REMOTE");
    ::unsetenv("DBUS_SESSION_BUS_ADDRESS");
    ::setenv("DISABLE_RTKIT", "1", 1);
    if (std::getenv("GST_REGISTRY") == nullptr) {
        const char* reg = std::getenv("DMABRIDGE_GST_REGISTRY");
        const std::string path = reg ? reg : DMABRIDGE_GST_REGISTRY_DEFAULT;
        if (!path.empty()) ::setenv("GST_REGISTRY", path.c_str(), 1);
    }

    if (auto launched = launch(); !launched) return launched;
    std::atexit([] {
        if (auto d = get(); d) (*d)->stop();
    });
    return {};
}

Status PipeWireDaemons::launch() {
    const std::string& dir = dir_;
    const double start = monotonic_seconds();
    auto pw = Child::spawn({"pipewire"}, dir + "/pipewire.log");
    if (!pw) return pw.error();
    pipewire_ = pw->release();
    const std::string socket = dir + "/pipewire-0";
    while (!socket_answers(socket)) {
        int status = 0;
        if (::waitpid(pipewire_, &status, WNOHANG) == pipewire_) {
            pipewire_ = -1;
            return Error::library(Errc::not_found, "pipewire exited at start:\n" + tail_of(dir + "/pipewire.log", 20));
        }
        if (monotonic_seconds() - start > 30)
            return Error::library(Errc::not_found, "pipewire's socket did not answer within 30 s:\n" +
                                                       tail_of(dir + "/pipewire.log", 20));
        ::usleep(20 * 1000);  // polling a socket the daemon creates: nothing to wait on instead
    }
    std::fprintf(stderr, "pipewire tests: the daemon answered after %.1f s (runtime dir %s)\n",
                 monotonic_seconds() - start, dir.c_str());
    auto wp = Child::spawn({"wireplumber"}, dir + "/wireplumber.log");
    if (!wp) return wp.error();
    wireplumber_ = wp->release();
    return {};
}

void PipeWireDaemons::kill() {
    for (pid_t* p : {&wireplumber_, &pipewire_}) {
        if (*p < 0) continue;
        ::kill(*p, SIGKILL);
        int status = 0;
        ::waitpid(*p, &status, 0);  // bounded: SIGKILL cannot be ignored
        *p = -1;
    }
}

Result<double> PipeWireDaemons::restart() {
    kill();
    const double start = monotonic_seconds();
    // The logs of the killed daemons are kept beside the new ones' for failure messages.
    for (const char* log : {"/pipewire.log", "/wireplumber.log"}) {
        std::error_code ignored;
        std::filesystem::rename(dir_ + log, dir_ + log + ".killed", ignored);
    }
    if (auto launched = launch(); !launched) return launched.error().with_context("restart the PipeWire daemons");
    return monotonic_seconds() - start;
}

bool PipeWireDaemons::running() {
    for (pid_t* p : {&pipewire_, &wireplumber_}) {
        int status = 0;
        if (*p < 0) return false;
        if (::waitpid(*p, &status, WNOHANG) == *p) {
            *p = -1;
            return false;
        }
    }
    return true;
}

std::string PipeWireDaemons::log_tail(std::size_t lines) const {
    return "--- pipewire:\n" + tail_of(dir_ + "/pipewire.log", lines) + "--- wireplumber:\n" +
           tail_of(dir_ + "/wireplumber.log", lines);
}

void PipeWireDaemons::stop() {
    for (pid_t* p : {&wireplumber_, &pipewire_}) {
        if (*p < 0) continue;
        ::kill(*p, SIGKILL);
        int status = 0;
        ::waitpid(*p, &status, 0);
        *p = -1;
    }
    if (!dir_.empty()) {
        std::error_code ignored;
        std::filesystem::remove_all(dir_, ignored);
        dir_.clear();
    }
}

PipeWireDaemons::~PipeWireDaemons() { stop(); }

}  // namespace dmabridge::test
