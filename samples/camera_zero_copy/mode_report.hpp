// SPDX-License-Identifier: MIT
#pragma once
// What the sample's modes (--serve/--connect, --display, --pipewire) share for reporting: the
// error line a failed step prints, and the seconds a run took.
#include <chrono>
#include <cstdio>
#include <string>

#include <dmabridge/base/result.hpp>

namespace camera {

/// Prints "camera_zero_copy MODE: message" on stderr; returns 1, the sample's exit code.
inline int fail(const std::string& mode, const dmabridge::Error& e) {
    std::fprintf(stderr, "camera_zero_copy %s: %s\n", mode.c_str(), e.message().c_str());
    return 1;
}

/// Prints "camera_zero_copy MODE: STEP: message" on stderr; returns 1.
inline int fail(const std::string& mode, const std::string& step, const dmabridge::Error& e) {
    return fail(mode + ": " + step, e);
}

/// Seconds from `t` to now (steady clock).
inline double seconds_since(std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace camera
