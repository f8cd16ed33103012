// SPDX-License-Identifier: MIT
#include "base/fdinfo.hpp"

namespace dmabridge::detail {

std::string fdinfo_find(std::string_view text, std::string_view key) {
    std::size_t pos = 0;
    while (pos < text.size()) {
        std::size_t eol = text.find('\n', pos);
        if (eol == std::string_view::npos) eol = text.size();
        const std::string_view line = text.substr(pos, eol - pos);
        if (line.size() > key.size() && line.substr(0, key.size()) == key && line[key.size()] == ':') {
            const std::size_t start = line.find_first_not_of(" \t", key.size() + 1);
            return start == std::string_view::npos ? std::string() : std::string(line.substr(start));
        }
        pos = eol + 1;
    }
    return std::string();
}

}  // namespace dmabridge::detail
