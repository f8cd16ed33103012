// SPDX-License-Identifier: MIT
#pragma once
// What every benchmark prints and computes the same way: a failure line naming the benchmark and
// the step, and the median of a run's samples.
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include <dmabridge/base/result.hpp>

namespace dmabridge::bench {

/// Prints "`tool`: `what`: the error" to stderr; returns 1, the benchmark's exit status.
inline int fail(const char* tool, const std::string& what, const Error& e) {
    std::fprintf(stderr, "%s: %s: %s\n", tool, what.c_str(), e.message().c_str());
    return 1;
}

/// The median of `v` (the upper one of an even count); `v` must not be empty.
inline double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

}  // namespace dmabridge::bench
