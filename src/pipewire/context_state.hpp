// SPDX-License-Identifier: MIT
#pragma once
// The PipeWire objects one pipewire::Context owns, shared with its streams so that destroying
// the Context before them cannot pull the loop or the core from under a stream.

#include <optional>

#include <pipewire/pipewire.h>

#include <dmabridge/base/result.hpp>

namespace dmabridge::pipewire::detail {

struct ContextState {
    pw_loop* loop = nullptr;
    pw_context* context = nullptr;
    pw_core* core = nullptr;
    spa_hook core_listener{};
    bool connected = false;
    /// A fatal error the daemon reported on the core (or the connection lost).
    std::optional<Error> error;

    ContextState() = default;
    ContextState(const ContextState&) = delete;
    ContextState& operator=(const ContextState&) = delete;
    ~ContextState();
};

/// Runs pw_init() once per process.
void init_pipewire();

}  // namespace dmabridge::pipewire::detail
