// SPDX-License-Identifier: MIT
// Error and log messages: a "0x" is only ever followed by hexadecimal digits. A message that
// prints "0x" before a decimal number (bits "0x" + std::to_string(mask)) sends the reader off
// by a factor they cannot see. The whole source tree is checked, so the class stays fixed.
#include <filesystem>
#include <fstream>
#include <algorithm>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include <doctest/doctest.h>

namespace fs = std::filesystem;

namespace {

// Where in `text` (a whole source file; a message may continue on the next line) "0x" closes a string literal followed by a decimal conversion
// ("0x" + std::to_string(v), "0x" << n(v)), or a printf conversion of a decimal right after
// "0x" ("0x%u", "0x%lld").
std::size_t find_decimal_after_0x(const std::string& line) {
    const auto skip_space = [&](std::size_t i) {
        while (i < line.size() && (line[i] == ' ' || line[i] == '\t' || line[i] == '\n')) ++i;
        return i;
    };
    const auto starts = [&](std::size_t i, const char* text) { return line.compare(i, std::strlen(text), text) == 0; };
    for (std::size_t at = line.find("0x\""); at != std::string::npos; at = line.find("0x\"", at + 1)) {
        std::size_t i = skip_space(at + 3);
        if (starts(i, "+")) i += 1;
        else if (starts(i, "<<")) i += 2;
        else continue;
        i = skip_space(i);
        if (starts(i, "std::")) i += 5;
        if (starts(i, "to_string") || starts(i, "n(") || starts(i, "n (")) return at;
    }
    for (std::size_t at = line.find("0x%"); at != std::string::npos; at = line.find("0x%", at + 1)) {
        std::size_t i = at + 3;
        while (i < line.size() && std::strchr("-+ #0123456789.lhzjt", line[i])) ++i;
        if (i < line.size() && std::strchr("diu", line[i])) return at;
    }
    return std::string::npos;
}

bool decimal_after_0x(const std::string& text) { return find_decimal_after_0x(text) != std::string::npos; }

std::vector<std::string> offending_lines(const fs::path& root) {
    std::vector<std::string> found;
    for (const char* dir : {"src", "include", "tools", "samples", "bench"}) {
        const fs::path base = root / dir;
        if (!fs::exists(base)) continue;
        for (const auto& entry : fs::recursive_directory_iterator(base)) {
            const auto ext = entry.path().extension();
            if (ext != ".cpp" && ext != ".hpp" && ext != ".h" && ext != ".c") continue;
            std::ifstream in(entry.path());
            std::stringstream whole;
            whole << in.rdbuf();
            const std::string text = whole.str();
            for (std::size_t from = 0;;) {
                const std::size_t at = find_decimal_after_0x(text.substr(from));
                if (at == std::string::npos) break;
                const std::size_t pos = from + at;
                const auto line = 1 + std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(pos), '\n');
                found.push_back(entry.path().string() + ":" + std::to_string(line));
                from = pos + 1;
            }
        }
    }
    return found;
}

}  // namespace

TEST_CASE("the pattern finds a 0x before a decimal number, and nothing else") {
    CHECK(decimal_after_0x(R"(what + ": bits 0x" + std::to_string(bits))"));
    CHECK(decimal_after_0x(R"(s += "0x" + n(v);)"));
    CHECK(decimal_after_0x("what + \": bits 0x\" +\n    std::to_string(bits)"));  // across lines
    CHECK(decimal_after_0x(R"(snprintf(buf, sizeof buf, "0x%u", v);)"));
    CHECK_FALSE(decimal_after_0x(R"(snprintf(buf, sizeof buf, "0x%08x", v);)"));
    CHECK_FALSE(decimal_after_0x(R"(what + ": bits " + detail::hex(bits))"));
}

TEST_CASE("no message in the source tree prints 0x before a decimal number") {
    const auto found = offending_lines(DMABRIDGE_SOURCE_DIR);
    for (const auto& line : found) FAIL_CHECK(line);
    CHECK(found.empty());
}
