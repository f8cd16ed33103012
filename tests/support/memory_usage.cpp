// SPDX-License-Identifier: MIT
#include "memory_usage.hpp"

#include <fstream>
#include <string>

namespace dmabridge::test {

MemoryUsage memory_usage() {
    MemoryUsage usage;
    std::ifstream status("/proc/self/status");
    std::string key;
    std::size_t kib = 0;
    while (status >> key) {
        if (key == "RssAnon:" || key == "RssFile:" || key == "RssShmem:") {
            status >> kib;
            (key == "RssAnon:" ? usage.anon : key == "RssFile:" ? usage.file : usage.shmem) = kib * 1024;
        }
        status.ignore(1 << 20, '\n');
    }
    std::ifstream maps("/proc/self/maps");
    std::string line;
    while (std::getline(maps, line)) {
        ++usage.mappings;
        if (line.find("dmabuf") != std::string::npos) ++usage.dmabuf_mappings;
    }
    return usage;
}

}  // namespace dmabridge::test
