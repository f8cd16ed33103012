// SPDX-License-Identifier: MIT
#pragma once
// What Producer and Consumer share about a pw_stream's state: PipeWire's state mapped to
// StreamState, and the first error kept.

#include <cerrno>
#include <optional>
#include <string>

#include <pipewire/stream.h>

#include <dmabridge/base/result.hpp>
#include <dmabridge/pipewire/stream_state.hpp>

namespace dmabridge::pipewire::detail {

struct StreamStatus {
    StreamState state = StreamState::connecting;
    std::optional<Error> error;

    void fail(Error e) {
        if (!error) error = std::move(e);
        state = StreamState::error;
    }

    // The Context's connection to the daemon is gone (ContextState::connected false): PipeWire
    // only moves its streams to UNCONNECTED then, but nothing on them can work again, so the
    // stream fails with the Context's error.
    void on_connection_lost(const std::optional<Error>& context_error, const std::string& who) {
        fail(context_error ? context_error->with_context(who)
                           : Error::from_errno(EPIPE, who + ": the connection to the PipeWire daemon was lost"));
    }

    void on_state(pw_stream_state s, const char* message, const std::string& who) {
        switch (s) {
            case PW_STREAM_STATE_ERROR: {
                const std::string text = message ? message : "(no message)";
                // The session manager's answer for a target that does not exist (yet): the
                // caller may connect again once the node is there.
                const Errc code = text.find("no target node") != std::string::npos ? Errc::not_found : Errc::unsupported;
                fail(Error::library(code, who + ": PipeWire stream error: " + text));
                return;
            }
            case PW_STREAM_STATE_UNCONNECTED: if (!error) state = StreamState::unconnected; return;
            case PW_STREAM_STATE_CONNECTING: if (!error) state = StreamState::connecting; return;
            case PW_STREAM_STATE_PAUSED: if (!error) state = StreamState::paused; return;
            case PW_STREAM_STATE_STREAMING: if (!error) state = StreamState::streaming; return;
        }
    }
};

}  // namespace dmabridge::pipewire::detail
