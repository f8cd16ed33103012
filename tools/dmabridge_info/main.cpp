// SPDX-License-Identifier: MIT
// dmabridge-info: what can share what with whom on this machine.
//
//   dmabridge-info [--json] [--device TEXT] [--format FOURCC]
#include <cstdio>
#include <cstring>
#include <string>

#include <dmabridge/format/fourcc.hpp>

#include "report.hpp"

namespace {

void usage(std::FILE* to) {
    std::fprintf(to,
                 "usage: dmabridge-info [--json] [--device TEXT] [--format FOURCC]\n"
                 "  --json           machine-readable output (schema: tools/dmabridge_info/README.md)\n"
                 "  --device TEXT    only devices whose name, node or driver contains TEXT\n"
                 "  --format FOURCC  only this DRM fourcc in format lists, e.g. XR24 or YUYV\n");
}

}  // namespace

int main(int argc, char** argv) {
    dmabridge::info::Filters filters;
    bool json = false;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "--json") {
            json = true;
        } else if ((arg == "--device" || arg == "--format") && i + 1 < argc) {
            const std::string value = argv[++i];
            if (arg == "--device") {
                filters.device = value;
            } else {
                if (value.size() != 4) {
                    std::fprintf(stderr, "dmabridge-info: --format takes a four-character code, not '%s'\n", value.c_str());
                    return 2;
                }
                std::string padded = value;
                filters.fourcc = dmabridge::fourcc_code(padded[0], padded[1], padded[2], padded[3]);
            }
        } else if (arg == "--help" || arg == "-h") {
            usage(stdout);
            return 0;
        } else {
            std::fprintf(stderr, "dmabridge-info: unexpected argument '%s'\n", arg.c_str());
            usage(stderr);
            return 2;
        }
    }
    const auto report = dmabridge::info::gather(filters);
    const std::string out = json ? dmabridge::info::to_json(report) : dmabridge::info::to_text(report);
    std::fwrite(out.data(), 1, out.size(), stdout);
    return 0;
}
