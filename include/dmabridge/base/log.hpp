// SPDX-License-Identifier: MIT
#pragma once
/// @file log.hpp
/// Diagnostics: dmabridge is silent unless the application installs a log handler.

#include <functional>
#include <string_view>

namespace dmabridge {

enum class LogLevel { debug, info, warning, error };

/// Receives every diagnostic message. Called from whichever thread produced the message.
using LogHandler = std::function<void(LogLevel, std::string_view message)>;

/// Installs `handler` (an empty function silences dmabridge again). Thread-safe.
void set_log_handler(LogHandler handler);

}  // namespace dmabridge
