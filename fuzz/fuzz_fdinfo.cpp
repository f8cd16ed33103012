// SPDX-License-Identifier: MIT
// Fuzzes the parsing of /proc/self/fdinfo text (DmaBuf::exporter_name(), DmaBuf::name()): any
// bytes, lines of any length, a last line without '\n', keys that are prefixes of other keys,
// NULs. Checked against a reference reading of the format written here: the value of the first
// line "<key>:<blanks><value>".
//
// Input: u8 key selector (0: "exp_name", 1: "name", 2: "size", otherwise the next
// (selector % 16) bytes are the key), then the fdinfo text.

#include <string>
#include <string_view>

#include "base/fdinfo.hpp"
#include "fuzz_input.hpp"

namespace {

std::string reference(std::string_view text, std::string_view key) {
    std::size_t pos = 0;
    while (pos <= text.size()) {
        std::size_t eol = text.find('\n', pos);
        if (eol == std::string_view::npos) eol = text.size();
        std::string line(text.substr(pos, eol - pos));
        const std::string prefix = std::string(key) + ":";
        if (line.rfind(prefix, 0) == 0) {
            std::size_t start = prefix.size();
            while (start < line.size() && (line[start] == ' ' || line[start] == '\t')) ++start;
            return line.substr(start);
        }
        pos = eol + 1;
    }
    return {};
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    fuzz::Input in(data, size);
    const auto sel = in.take<std::uint8_t>();
    std::string key;
    if (sel == 0) {
        key = "exp_name";
    } else if (sel == 1) {
        key = "name";
    } else if (sel == 2) {
        key = "size";
    } else {
        key.resize(std::min<std::size_t>(sel % 16, in.rest().size()));
        in.take_bytes(key.data(), key.size());
    }
    const auto rest = in.rest();
    const std::string_view text(reinterpret_cast<const char*>(rest.data()), rest.size());

    const std::string value = dmabridge::detail::fdinfo_find(text, key);
    FUZZ_CHECK(value == reference(text, key));
    FUZZ_CHECK(value.find('\n') == std::string::npos);
    FUZZ_CHECK(value.empty() || (value[0] != ' ' && value[0] != '\t'));
    FUZZ_CHECK(value.size() <= text.size());
    return 0;
}
