// SPDX-License-Identifier: MIT
#pragma once
// Parsing of /proc/<pid>/fdinfo/<fd> text, apart from reading it, so that it can be fuzzed.
// Not part of the public API.

#include <string>
#include <string_view>

namespace dmabridge::detail {

/// The value of `key` in fdinfo `text`: the rest of the first line that starts with "<key>:",
/// without the blanks (spaces, tabs) after the colon and without the line's '\n'. An empty string
/// when no line has the key. Lines may be of any length; the last may lack its '\n'. Pure: no
/// system call, no allocation beyond the result.
std::string fdinfo_find(std::string_view text, std::string_view key);

}  // namespace dmabridge::detail
