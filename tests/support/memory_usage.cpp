// SPDX-License-Identifier: MIT
#include "memory_usage.hpp"

#include <fstream>
#include <string>

#include <malloc.h>

#if defined(__SANITIZE_ADDRESS__)
// The sanitizer runtime's allocator statistics (sanitizer/allocator_interface.h, which GCC 12
// does not install).
extern "C" std::size_t __sanitizer_get_current_allocated_bytes();
#endif

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
#if defined(__SANITIZE_ADDRESS__)
    usage.heap_in_use = __sanitizer_get_current_allocated_bytes();
#else
    const struct mallinfo2 info = ::mallinfo2();
    usage.heap_in_use = info.uordblks + info.hblkhd;
#endif
    return usage;
}

}  // namespace dmabridge::test
