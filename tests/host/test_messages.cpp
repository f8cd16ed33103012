// SPDX-License-Identifier: MIT
// Error and log messages: a "0x" is only ever followed by hexadecimal digits. A message that
// prints "0x" before a decimal number (bits "0x" + std::to_string(mask)) sends the reader off
// by a factor they cannot see. The whole source tree is checked, so the class stays fixed.
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>
#include <vector>

#include <doctest/doctest.h>

namespace fs = std::filesystem;

namespace {

// "0x" closing a string literal and followed by a decimal conversion, or a printf conversion
// of a decimal right after "0x".
const std::regex decimal_after_0x(R"re(0x"\s*(\+|<<)\s*(std::)?(to_string|n)\s*\(|0x%[-+ #0-9.]*(l|ll|z|j|h|hh)?[diu])re");

std::vector<std::string> offending_lines(const fs::path& root) {
    std::vector<std::string> found;
    for (const char* dir : {"src", "include", "tools", "samples", "bench"}) {
        const fs::path base = root / dir;
        if (!fs::exists(base)) continue;
        for (const auto& entry : fs::recursive_directory_iterator(base)) {
            const auto ext = entry.path().extension();
            if (ext != ".cpp" && ext != ".hpp" && ext != ".h" && ext != ".c") continue;
            std::ifstream in(entry.path());
            std::string line;
            for (int number = 1; std::getline(in, line); ++number)
                if (std::regex_search(line, decimal_after_0x))
                    found.push_back(entry.path().string() + ":" + std::to_string(number) + ": " + line);
        }
    }
    return found;
}

}  // namespace

TEST_CASE("the pattern finds a 0x before a decimal number, and nothing else") {
    CHECK(std::regex_search(R"(what + ": bits 0x" + std::to_string(bits))", decimal_after_0x));
    CHECK(std::regex_search(R"(s += "0x" + n(v);)", decimal_after_0x));
    CHECK(std::regex_search(R"(snprintf(buf, sizeof buf, "0x%u", v);)", decimal_after_0x));
    CHECK_FALSE(std::regex_search(R"(snprintf(buf, sizeof buf, "0x%08x", v);)", decimal_after_0x));
    CHECK_FALSE(std::regex_search(R"(what + ": bits " + detail::hex(bits))", decimal_after_0x));
}

TEST_CASE("no message in the source tree prints 0x before a decimal number") {
    const auto found = offending_lines(DMABRIDGE_SOURCE_DIR);
    for (const auto& line : found) FAIL_CHECK(line);
    CHECK(found.empty());
}
