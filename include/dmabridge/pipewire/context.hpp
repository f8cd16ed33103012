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
    /// number of sources dispatched. Errors: the connection lost or the daemon reporting a
    /// fatal error on the core (the daemon's message and errno), Errc::empty_object when moved
    /// from.
    Result<int> dispatch(Timeout timeout = Timeout{0});

    /// True while the connection to the daemon is up.
    bool connected() const noexcept;

    /// The shared state its streams hold (not for applications).
    const std::shared_ptr<detail::ContextState>& state() const noexcept { return state_; }

private:
    explicit Context(std::shared_ptr<detail::ContextState> state) noexcept : state_(std::move(state)) {}
    std::shared_ptr<detail::ContextState> state_;
};

}  // namespace dmabridge::pipewire
