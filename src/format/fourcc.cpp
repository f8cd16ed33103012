// SPDX-License-Identifier: MIT
#include <dmabridge/format/fourcc.hpp>

#include <cstdio>

namespace dmabridge {

std::string fourcc_to_string(std::uint32_t code) {
    char c[4];
    bool printable = true;
    for (int i = 0; i < 4; ++i) {
        c[i] = static_cast<char>((code >> (8 * i)) & 0xff);
        printable = printable && c[i] >= 0x20 && c[i] < 0x7f;
    }
    if (printable) return std::string(c, 4);
    char buf[16];
    std::snprintf(buf, sizeof buf, "0x%08x", code);
    return buf;
}

std::string modifier_to_string(std::uint64_t mod) {
    if (mod == modifier::linear) return "LINEAR";
    if (mod == modifier::invalid) return "INVALID (implicit)";
    char buf[24];
    std::snprintf(buf, sizeof buf, "0x%016llx", static_cast<unsigned long long>(mod));
    return buf;
}

}  // namespace dmabridge
