// SPDX-License-Identifier: MIT
#pragma once
// A private PipeWire daemon and WirePlumber for the pipewire tests: started once per test binary
// (on first use), in a private XDG_RUNTIME_DIR (mode 0700, which mkdtemp gives), and stopped at
// exit. No D-Bus, systemd or udev: both run headless and log the D-Bus errors they do not need.
// The test process's own environment points at them (XDG_RUNTIME_DIR, PIPEWIRE_RUNTIME_DIR,
// PIPEWIRE_REMOTE unset), so every pipewire::Context and every child (gst-launch-1.0, the peer)
// connects there. GStreamer's registry is kept in GST_REGISTRY (DMABRIDGE_GST_REGISTRY, by
// default next to the test binary): the first scan in the VM takes about 17 s, later runs none.

#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include <sys/types.h>

#include <dmabridge/base/result.hpp>

namespace dmabridge::test {

class PipeWireDaemons {
public:
    /// The one instance of this process: starts the daemons on the first call and waits (at most
    /// 30 s) until the PipeWire socket accepts a connection. A failure is kept and returned by
    /// every later call, with the daemons' logs.
    static Result<PipeWireDaemons*> get();

    /// The private runtime directory.
    const std::string& runtime_dir() const { return dir_; }
    /// The last lines of both daemons' logs, for failure messages.
    std::string log_tail(std::size_t lines = 20) const;
    /// True while both daemons run.
    bool running();

    /// SIGKILLs both daemons and reaps them (bounded: SIGKILL cannot be ignored); clients see
    /// their connection hang up. restart() brings them back.
    void kill();
    /// kill() if still running, then starts both again in the same runtime directory and waits
    /// (at most 30 s) until the new PipeWire socket accepts a connection; WirePlumber links
    /// streams shortly after (connect_consumer-style retries cover that). Returns the seconds
    /// the restart took. Later tests of the binary use the new daemons.
    Result<double> restart();

    ~PipeWireDaemons();
    PipeWireDaemons(const PipeWireDaemons&) = delete;
    PipeWireDaemons& operator=(const PipeWireDaemons&) = delete;

private:
    PipeWireDaemons() = default;
    Status start();
    Status launch();  // spawns both daemons in dir_ and waits for PipeWire's socket
    void stop();
    std::string dir_;
    pid_t pipewire_ = -1;
    pid_t wireplumber_ = -1;
};

/// A child process: argv[0] is looked up in PATH; stdout and stderr go to a file in the runtime
/// directory. Killed (SIGKILL) and reaped on destruction if still running.
class Child {
public:
    static Result<Child> spawn(const std::vector<std::string>& argv, const std::string& log_path);
    Child(Child&&) noexcept;
    Child& operator=(Child&&) noexcept;
    Child(const Child&) = delete;
    Child& operator=(const Child&) = delete;
    ~Child();

    /// Reaps the child if it exited (no wait); true once it has. exit_code() then says how.
    bool exited();
    /// The exit status: the code, or 128 + signal.
    int exit_code() const { return code_; }
    /// SIGKILL and reap (bounded: SIGKILL cannot be ignored).
    void kill();
    pid_t pid() const { return pid_; }
    /// Gives up the child: it is no longer killed or reaped by this object.
    pid_t release() { return std::exchange(pid_, -1); }
    /// The child's output (its log file).
    std::string output() const;

private:
    Child() = default;
    pid_t pid_ = -1;
    int code_ = -1;
    std::string log_;
};

/// Seconds on the monotonic clock.
double monotonic_seconds();

}  // namespace dmabridge::test
