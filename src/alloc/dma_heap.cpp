// SPDX-License-Identifier: MIT
#include <dmabridge/alloc/dma_heap.hpp>
#include <dmabridge/kernel/devices.hpp>

#include <string>

#include <fcntl.h>
#include <linux/dma-heap.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "alloc/memory_allocator.hpp"
#include "base/sys.hpp"

namespace dmabridge {

Result<DmaHeapAllocator> DmaHeapAllocator::open(std::string_view heap, LinearLayoutOptions layout) {
    const std::string name(heap);
    if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..")
        return Error::library(Errc::invalid_argument, "open dma-heap \"" + name + "\": not a heap name");
    const std::string path = "/dev/dma_heap/" + name;
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
    if (!fd) {
        if (errno == ENOENT) {
            std::string there;
            for (const auto& h : list_dma_heaps()) there += (there.empty() ? "" : ", ") + h;
            return Error::library(Errc::not_found, "open dma-heap " + path + ": no such heap (heaps here: " +
                                                       (there.empty() ? std::string("none") : there) + ")");
        }
        return detail::last_error("open dma-heap " + path);
    }
    // Whatever else sits in /dev/dma_heap must fail here, with what it is.
    if (auto ok = detail::check_device_node(fd.get(), path, "dma_heap/", "a dma-heap", "open dma-heap " + path); !ok)
        return ok.error();
    return DmaHeapAllocator(std::move(fd), name, layout);
}

Result<DmaBuf> DmaHeapAllocator::allocate_bytes(std::uint64_t size, std::string_view name) {
    if (!dev_)
        return Error::library(Errc::empty_object, "dma-heap: allocate " + std::to_string(size) +
                                            " bytes: the allocator holds no heap (moved from)");
    auto plan = detail::plan_buffer(backend_name(), size, name);
    if (!plan) return plan.error();
    const std::string& what = plan->what;
    // Heaps take their pages at allocation (the system heap one by one until it has them all):
    // a request beyond what the machine has left does not fail, it wakes the OOM killer.
    // Refuse it here instead, for every heap (CMA and carve-out heaps are smaller still).
    if (auto fits = detail::check_fits_memory(what, plan->size, detail::Commit::now); !fits) return fits.error();
    dma_heap_allocation_data alloc{};
    alloc.len = plan->size;
    alloc.fd_flags = O_RDWR | O_CLOEXEC;  // the only flags the kernel accepts here
    alloc.heap_flags = 0;                 // no heap flags are defined
    if (::ioctl(dev_.get(), DMA_HEAP_IOCTL_ALLOC, &alloc) != 0)
        return detail::last_error(what + " (DMA_HEAP_IOCTL_ALLOC)");
    auto buf = DmaBuf::adopt(UniqueFd(static_cast<int>(alloc.fd)));
    if (!buf) return buf.error().with_context(what);
    detail::name_buffer(*buf, plan->name, what);
    return buf;
}

}  // namespace dmabridge
