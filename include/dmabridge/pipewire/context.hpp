// SPDX-License-Identifier: MIT
#pragma once
/// @file pipewire/context.hpp
/// pipewire::Context: one connection to a PipeWire daemon, driven by the application's own event
/// loop. Producers and Consumers (pipewire/producer.hpp, pipewire/consumer.hpp) are streams on it.
///
/// Event loop: the Context owns a PipeWire loop (pw_loop) that no dmabridge thread runs. The
/// application polls fd() for POLLIN with its other fds and calls dispatch() when it is readable
/// (or on a timeout): every callback of the Context's streams runs inside dispatch(), on the
/// caller's thread. libpipewire itself starts a data-loop thread per context (its real-time
/// scheduling thread); dmabridge registers nothing on it and runs none of its code there.
///
/// Life cycle: create() ... make streams ... per loop turn dispatch() ... destroy streams and the
/// Context in any order (streams keep the connection alive until they go).
///
/// The daemon going away (killed, crashed, restarted): the next dispatch() that reads the
/// socket's hang-up (measured in the VM: within a few milliseconds of a SIGKILL) fails with
/// the connection-lost error below, and from then on the Context is dead for good: every
/// dispatch() answers that error at once, connected() is false, its Producers and Consumers are
/// in StreamState::error with the same error (their dequeue(), queue() and acquire() answer
/// it), and a new stream made on it is refused with it. There is no reconnection: once the
/// daemon runs again, make a new Context and new streams on it (the old ones may be destroyed
/// before or after, in any order). Frames the application still holds stay valid until it
/// releases them (ConsumerFrame) or queues them (ProducerFrame, which then answers the error).
///
/// Thread safety: none; one thread drives a Context and its streams.

#include <chrono>
#include <memory>
#include <string>

#include <dmabridge/base/access.hpp>
#include <dmabridge/base/result.hpp>

namespace dmabridge::pipewire {

namespace detail {
struct ContextState;
}

/// Options of Context::create(); the zero value connects to the default daemon.
struct ContextOptions {
    /// The daemon's socket name or path (PIPEWIRE_REMOTE's meaning); empty: PIPEWIRE_REMOTE or
    /// "pipewire-0" in XDG_RUNTIME_DIR, as every PipeWire client.
    std::string remote;
    /// The client's application.name as other PipeWire tools show it.
    std::string application_name = "dmabridge";
};

class Context {
public:
    /// Initialises libpipewire (once per process), makes a loop and connects to the daemon
    /// (a socket connect and a hello round trip; no wait on the daemon beyond that). Errors: the
    /// daemon not running or refusing (the errno of the connect, with the remote named).
    /// After a daemon restart this is how an application connects again.
    static Result<Context> create(const ContextOptions& options = {});

    Context(Context&&) noexcept;
    Context& operator=(Context&&) noexcept;
    Context(const Context&) = delete;
    Context& operator=(const Context&) = delete;
    /// Disconnects once the last stream made on it is gone.
    ~Context();

    /// The loop's fd: readable when dispatch() has work. -1 on a moved-from Context.
    int fd() const noexcept;

    /// Runs the callbacks that are due, waiting at most `timeout` for the first (0: do not wait;
    /// never an infinite wait: forever is refused with Errc::invalid_argument). Returns the
    /// number of sources dispatched. Errors: the connection lost (errno EPIPE, "the connection
    /// to the PipeWire daemon was lost": make a new Context once the daemon runs again), the
    /// daemon reporting a fatal error on the core (the daemon's message and errno),
    /// Errc::empty_object when moved from. Once an error is reported every later call answers
    /// it too.
    Result<int> dispatch(Timeout timeout = Timeout{0});

    /// True while the connection to the daemon is up; false for good once it was lost.
    bool connected() const noexcept;

    /// The shared state its streams hold (not for applications).
    const std::shared_ptr<detail::ContextState>& state() const noexcept { return state_; }

private:
    explicit Context(std::shared_ptr<detail::ContextState> state) noexcept : state_(std::move(state)) {}
    std::shared_ptr<detail::ContextState> state_;
};

}  // namespace dmabridge::pipewire
