// SPDX-License-Identifier: MIT
#pragma once
/// @file log.hpp
/// Diagnostics: dmabridge is silent unless the application installs a log handler.

#include <functional>
#include <string_view>

namespace dmabridge {

/// How serious a diagnostic is: debug (tracing), info (a choice made, e.g. a fallback to CPU
/// waits or the EGL version found), warning (something degraded but working), error (a resource
/// that could not be handled as promised, e.g. a cache destroyed while the GPU still used it).
enum class LogLevel { debug, info, warning, error };


/// Receives every diagnostic message. Called from whichever thread produced the message.
using LogHandler = std::function<void(LogLevel, std::string_view message)>;

/// Installs `handler` (an empty function silences dmabridge again). Thread-safe.
void set_log_handler(LogHandler handler);

}  // namespace dmabridge
