// SPDX-License-Identifier: MIT
#include "weston.hpp"

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <utility>

#include <fcntl.h>
#include <png.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace dmabridge::test {

namespace {

double now_seconds() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// The environment of a child: ours without WAYLAND_DISPLAY, with XDG_RUNTIME_DIR set (and
// WAYLAND_DISPLAY set to `display` when it is not empty). Built before fork: the child only execs.
std::vector<std::string> child_environment(const std::string& runtime_dir, const std::string& display) {
    std::vector<std::string> env;
    for (char** e = environ; *e != nullptr; ++e) {
        const std::string_view entry(*e);
        if (entry.starts_with("WAYLAND_DISPLAY=") || entry.starts_with("XDG_RUNTIME_DIR=")) continue;
        env.emplace_back(entry);
    }
    env.push_back("XDG_RUNTIME_DIR=" + runtime_dir);
    if (!display.empty()) env.push_back("WAYLAND_DISPLAY=" + display);
    return env;
}

std::vector<char*> pointers(std::vector<std::string>& strings) {
    std::vector<char*> out;
    for (auto& s : strings) out.push_back(s.data());
    out.push_back(nullptr);
    return out;
}

void child_fail(const char* what) {
    const int err = errno;
    const char* msg = std::strerror(err);
    (void)!::write(2, what, std::strlen(what));
    (void)!::write(2, ": ", 2);
    (void)!::write(2, msg, std::strlen(msg));
    (void)!::write(2, "\n", 1);
    ::_exit(127);
}

// Waits up to `seconds` for `pid` to exit; its wait status, or -1 when it is still running.
int wait_for(pid_t pid, double seconds) {
    const double deadline = now_seconds() + seconds;
    for (;;) {
        int status = 0;
        const pid_t r = ::waitpid(pid, &status, WNOHANG);
        if (r == pid) return status;
        if (r < 0 && errno != EINTR) return 0;
        if (now_seconds() >= deadline) return -1;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
}

Result<Screenshot> read_png(const std::string& path) {
    png_image image{};
    image.version = PNG_IMAGE_VERSION;
    if (png_image_begin_read_from_file(&image, path.c_str()) == 0)
        return Error::library(Errc::invalid_argument, "read " + path + ": " + image.message);
    image.format = PNG_FORMAT_RGBA;
    Screenshot shot;
    shot.width = image.width;
    shot.height = image.height;
    shot.rgba.resize(PNG_IMAGE_SIZE(image));
    if (png_image_finish_read(&image, nullptr, shot.rgba.data(), 0, nullptr) == 0) {
        png_image_free(&image);
        return Error::library(Errc::invalid_argument, "decode " + path + ": " + image.message);
    }
    return shot;
}

}  // namespace

Result<Weston> Weston::launch(std::uint32_t width, std::uint32_t height, const std::string& shader_cache_dir,
                              bool hide) {
    Weston w;
    const char* base = ::access("/run", W_OK) == 0 ? "/run" : "/tmp";
    std::string dir = std::string(base) + "/dmabridge-weston-XXXXXX";
    if (::mkdtemp(dir.data()) == nullptr) return Error::from_errno(errno, "mkdtemp " + dir);
    w.runtime_dir_ = dir;
    w.socket_path_ = dir + "/wl-dmabridge";
    w.log_path_ = dir + "/weston.log";

    std::vector<std::string> args = {"weston",
                                     "--backend=headless",
                                     "--renderer=gl",
                                     "--shell=kiosk",
                                     "--width=" + std::to_string(width),
                                     "--height=" + std::to_string(height),
                                     "--idle-time=0",
                                     "--debug",  // weston_capture_v1, which weston-screenshooter uses
                                     "--socket=wl-dmabridge",
                                     "--log=" + w.log_path_};
    auto argv = pointers(args);
    auto env_strings = child_environment(dir, "");
    if (!shader_cache_dir.empty() && std::getenv("MESA_SHADER_CACHE_DIR") == nullptr)
        env_strings.push_back("MESA_SHADER_CACHE_DIR=" + shader_cache_dir);
    auto envp = pointers(env_strings);
    const int out = ::open((dir + "/weston.out").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (out < 0) return Error::from_errno(errno, "open weston.out in " + dir);
    struct stat dri{};
    const bool hide_dri = hide && ::stat("/dev/dri", &dri) == 0;
    const pid_t parent = ::getpid();

    w.started_ = now_seconds();
    const pid_t pid = ::fork();
    if (pid < 0) {
        ::close(out);
        return Error::from_errno(errno, "fork for weston");
    }
    if (pid == 0) {
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the test binary
        if (::getppid() != parent) ::_exit(127);
        ::dup2(out, 1);
        ::dup2(out, 2);
        if (hide_dri) {
            // Mesa must not see vgem (kms_swrast crashes weston): an empty /dev/dri, for weston only.
            if (::unshare(CLONE_NEWNS) != 0) child_fail("unshare(CLONE_NEWNS)");
            if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) child_fail("mount / private");
            if (::mount("tmpfs", "/dev/dri", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755") != 0)
                child_fail("mount tmpfs on /dev/dri");
        }
        ::execvpe("weston", argv.data(), envp.data());
        child_fail("exec weston");
    }
    ::close(out);
    w.pid_ = pid;
    return w;
}

Weston::Weston(Weston&& o) noexcept
    : pid_(std::exchange(o.pid_, -1)),
      runtime_dir_(std::move(o.runtime_dir_)),
      socket_path_(std::move(o.socket_path_)),
      log_path_(std::move(o.log_path_)),
      started_(o.started_) {
    o.runtime_dir_.clear();
}

Weston& Weston::operator=(Weston&& o) noexcept {
    if (this != &o) {
        stop();
        pid_ = std::exchange(o.pid_, -1);
        runtime_dir_ = std::move(o.runtime_dir_);
        o.runtime_dir_.clear();
        socket_path_ = std::move(o.socket_path_);
        log_path_ = std::move(o.log_path_);
        started_ = o.started_;
    }
    return *this;
}

Weston::~Weston() { stop(); }

bool Weston::running() {
    if (pid_ < 0) return false;
    int status = 0;
    const pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
        pid_ = -1;
        return false;
    }
    return true;
}

Result<double> Weston::wait_ready(int seconds) {
    const double deadline = now_seconds() + seconds;
    for (;;) {
        struct stat st{};
        if (::stat(socket_path_.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) return now_seconds() - started_;
        if (!running())
            return Error::library(Errc::not_found, "weston exited before its socket appeared:\n" + log_tail());
        if (now_seconds() >= deadline)
            return Error::from_errno(ETIMEDOUT, "weston's socket did not appear within " + std::to_string(seconds) +
                                                    " s:\n" + log_tail());
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
}

std::string Weston::log_tail(std::size_t lines) const {
    std::string text;
    for (const char* name : {"/weston.log", "/weston.out"}) {
        std::ifstream in(runtime_dir_ + name);
        std::stringstream ss;
        ss << in.rdbuf();
        text += ss.str();
    }
    std::size_t pos = text.size();
    for (std::size_t n = 0; n <= lines && pos > 0; ++n) pos = text.rfind('\n', pos - 1);
    return pos == std::string::npos ? text : text.substr(pos + 1);
}

Result<Screenshot> Weston::screenshot() {
    namespace fs = std::filesystem;
    const std::string dir = runtime_dir_ + "/shots";
    std::error_code ec;
    fs::remove_all(dir, ec);
    fs::create_directory(dir, ec);
    if (ec) return Error::from_errno(ec.value(), "mkdir " + dir);
    std::vector<std::string> args = {"weston-screenshooter"};
    auto argv = pointers(args);
    auto env_strings = child_environment(runtime_dir_, socket_path_);
    auto envp = pointers(env_strings);
    const int out = ::open((runtime_dir_ + "/screenshooter.out").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
                           0600);
    if (out < 0) return Error::from_errno(errno, "open screenshooter.out");
    const pid_t pid = ::fork();
    if (pid < 0) {
        ::close(out);
        return Error::from_errno(errno, "fork for weston-screenshooter");
    }
    if (pid == 0) {
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        ::dup2(out, 1);
        ::dup2(out, 2);
        if (::chdir(dir.c_str()) != 0) child_fail("chdir");
        ::execvpe("weston-screenshooter", argv.data(), envp.data());
        child_fail("exec weston-screenshooter");
    }
    ::close(out);
    const int status = wait_for(pid, 120);
    if (status == -1) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, nullptr, 0);
        return Error::from_errno(ETIMEDOUT, "weston-screenshooter did not finish within 120 s");
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        std::ifstream in(runtime_dir_ + "/screenshooter.out");
        std::stringstream ss;
        ss << in.rdbuf();
        return Error::library(Errc::invalid_argument,
                              "weston-screenshooter failed (status " + std::to_string(status) + "): " + ss.str());
    }
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
        if (entry.path().extension() == ".png") {
            auto shot = read_png(entry.path().string());
            fs::remove(entry.path(), ec);
            return shot;
        }
    }
    return Error::library(Errc::not_found, "weston-screenshooter wrote no PNG into " + dir);
}

void Weston::stop() {
    if (pid_ >= 0) {
        ::kill(pid_, SIGTERM);
        if (wait_for(pid_, 5) == -1) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
        }
        pid_ = -1;
    }
    if (!runtime_dir_.empty()) {
        std::error_code ec;
        std::filesystem::remove_all(runtime_dir_, ec);
        runtime_dir_.clear();
    }
}

}  // namespace dmabridge::test
