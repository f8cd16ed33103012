// SPDX-License-Identifier: MIT
#include <dmabridge/devices.hpp>
#include <dmabridge/dma_heap.hpp>

#include <fstream>
#include <string>

#include <fcntl.h>
#include <linux/dma-heap.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "memory_allocator.hpp"
#include "sys.hpp"

namespace dmabridge {
namespace {

// Bytes the kernel reports as available (MemAvailable), or 0 when unknown.
std::uint64_t available_memory() {
    std::ifstream in("/proc/meminfo");
    std::string key;
    std::uint64_t kib = 0;
    std::string unit;
    while (in >> key >> kib >> unit)
        if (key == "MemAvailable:") return kib << 10;
    return 0;
}

}  // namespace

Result<DmaHeapAllocator> DmaHeapAllocator::open(std::string_view heap, LinearLayoutOptions layout) {
    const std::string name(heap);
    if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..")
        return Error::library(Errc::invalid_argument, "open dma-heap \"" + name + "\": not a heap name");
    const std::string path = "/dev/dma_heap/" + name;
    int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) {
            std::string there;
            for (const auto& h : list_dma_heaps()) there += (there.empty() ? "" : ", ") + h;
            return Error::library(Errc::not_found, "open dma-heap " + path + ": no such heap (heaps here: " +
                                                       (there.empty() ? std::string("none") : there) + ")");
        }
        return detail::last_error("open dma-heap " + path);
    }
    return DmaHeapAllocator(UniqueFd(fd), name, layout);
}

Result<DmaBuf> DmaHeapAllocator::allocate_bytes(std::uint64_t size, std::string_view name) {
    auto plan = detail::plan_buffer(backend_name(), size, name);
    if (!plan) return plan.error();
    const std::string& what = plan->what;
    // The system heap takes pages one by one until it has them all: a request beyond what the
    // machine has left does not fail, it wakes the OOM killer. Refuse it here instead.
    if (heap_ == "system") {
        const std::uint64_t available = available_memory();
        if (available != 0 && plan->size > available)
            return Error::library(Errc::limit_exceeded, what + ": more than the " + std::to_string(available >> 20) +
                                                            " MiB of memory available (MemAvailable)");
    }
    dma_heap_allocation_data alloc{};
    alloc.len = plan->size;
    alloc.fd_flags = O_RDWR | O_CLOEXEC;  // the only flags the kernel accepts here
    alloc.heap_flags = 0;                 // no heap flags are defined
    if (::ioctl(dev_.get(), DMA_HEAP_IOCTL_ALLOC, &alloc) != 0)
        return detail::last_error(what + " (DMA_HEAP_IOCTL_ALLOC)");
    auto buf = DmaBuf::adopt(UniqueFd(static_cast<int>(alloc.fd)));
    if (!buf) return buf.error().with_context(what);
    if (auto named = buf->set_name(plan->name); !named) return named.error().with_context(what);
    return buf;
}

}  // namespace dmabridge
