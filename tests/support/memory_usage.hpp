// SPDX-License-Identifier: MIT
#pragma once
// This process's resident memory, split the way a leak check needs it: anonymous memory (the
// heap, thread stacks, libraries' private pools) grows when objects leak; shared memory pages
// mapped from buffers (udmabuf and memfd pages count as RssShmem) come and go with whichever
// buffers happen to be mapped at the moment of the sample, so a bound on the whole resident set
// measures the timing of buffer reallocation as much as a leak.

#include <cstddef>

namespace dmabridge::test {

struct MemoryUsage {
    std::size_t anon = 0;   ///< RssAnon, bytes
    std::size_t file = 0;   ///< RssFile, bytes
    std::size_t shmem = 0;  ///< RssShmem, bytes
    std::size_t mappings = 0;         ///< lines of /proc/self/maps
    std::size_t dmabuf_mappings = 0;  ///< of which map a dma-buf ("/dmabuf:" or "anon_inode:dmabuf")
    /// Bytes the heap has handed out and not taken back: glibc's mallinfo2() (arena and mmapped
    /// chunks in use), or under AddressSanitizer its allocator's count, which excludes the
    /// quarantine of freed chunks (that quarantine makes RssAnon grow by megabytes with no leak).
    std::size_t heap_in_use = 0;

    /// The whole resident set (what /proc/self/statm's second field counts).
    std::size_t resident() const { return anon + file + shmem; }
};

/// Reads /proc/self/status and /proc/self/maps, and the heap's count.
MemoryUsage memory_usage();

}  // namespace dmabridge::test
