// SPDX-License-Identifier: MIT
#include <dmabridge/alloc/udmabuf.hpp>

#include <string>

#include <fcntl.h>
#include <linux/udmabuf.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "alloc/memory_allocator.hpp"
#include "base/sys.hpp"

namespace dmabridge {
namespace {

// The udmabuf module refuses buffers above its size_limit_mb parameter (64 MiB by default)
// with a bare EINVAL; read the limit so that the error can say so.
std::uint64_t read_size_limit() {
    auto text = detail::read_text_file("/sys/module/udmabuf/parameters/size_limit_mb");
    if (!text) return 0;
    std::uint64_t mb = 0;
    for (char c : *text) {
        if (c < '0' || c > '9') break;
        mb = mb * 10 + static_cast<std::uint64_t>(c - '0');
        if (mb > (UINT64_MAX >> 21)) return 0;
    }
    return mb << 20;
}

}  // namespace

Result<UdmabufAllocator> UdmabufAllocator::open(std::string_view device, LinearLayoutOptions layout) {
    const std::string path(device);
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
    if (!fd) return detail::last_error("open udmabuf device " + path);
    // A node that is not udmabuf must fail here, with what it is, not at the first allocation.
    if (auto ok = detail::check_device_node(fd.get(), path, "udmabuf", "the udmabuf device", "open udmabuf device");
        !ok)
        return ok.error();
    return UdmabufAllocator(std::move(fd), layout, read_size_limit());
}

Result<DmaBuf> UdmabufAllocator::allocate_bytes(std::uint64_t size, std::string_view name) {
    if (!dev_)
        return Error::library(Errc::empty_object, backend_name() + ": allocate " + std::to_string(size) +
                                            " bytes: the allocator holds no device (moved from)");
    auto plan = detail::plan_buffer(backend_name(), size, name);
    if (!plan) return plan.error();
    const std::string& what = plan->what;
    if (size_limit_ != 0 && plan->size > size_limit_)
        return Error::library(Errc::limit_exceeded,
                              what + ": above the udmabuf module's size_limit_mb (" +
                                  std::to_string(size_limit_ >> 20) +
                                  " MiB); raise it with the module parameter udmabuf.size_limit_mb");
    // The kernel pins every page of the memfd when it makes the udmabuf.
    if (auto fits = detail::check_fits_memory(what, plan->size, detail::Commit::now); !fits) return fits.error();

    // udmabuf needs a memfd that can be sealed, carries F_SEAL_SHRINK (the pages must not go
    // away under the device) and does not carry F_SEAL_WRITE. The kernel keeps its own
    // reference to the memfd's pages, so ours is closed once the dma-buf exists.
    UniqueFd memfd(::memfd_create(plan->name.c_str(), MFD_ALLOW_SEALING | MFD_CLOEXEC));
    if (!memfd) return detail::last_error(what + ": memfd_create");
    if (::ftruncate(memfd.get(), static_cast<off_t>(plan->size)) != 0) return detail::last_error(what + ": ftruncate");
    if (::fcntl(memfd.get(), F_ADD_SEALS, F_SEAL_SHRINK) != 0) return detail::last_error(what + ": seal the memfd");

    udmabuf_create create{};
    create.memfd = static_cast<__u32>(memfd.get());
    create.flags = UDMABUF_FLAGS_CLOEXEC;
    create.offset = 0;
    create.size = plan->size;
    int fd = ::ioctl(dev_.get(), UDMABUF_CREATE, &create);
    if (fd < 0) return detail::last_error(what + " (UDMABUF_CREATE)");
    auto buf = DmaBuf::adopt(UniqueFd(fd));
    if (!buf) return buf.error().with_context(what);
    detail::name_buffer(*buf, plan->name, what);
    return buf;
}

Result<DmaBuf> UdmabufAllocator::wrap_memfd(int memfd, std::uint64_t offset, std::uint64_t size) const {
    const std::string what = "udmabuf: wrap memfd " + std::to_string(memfd) + " bytes [" + std::to_string(offset) +
                             ", +" + std::to_string(size) + ")";
    if (!dev_) return Error::library(Errc::empty_object, what + ": the allocator holds no device (moved from)");
    const long page_size = ::sysconf(_SC_PAGESIZE);
    const std::uint64_t page = page_size > 0 ? static_cast<std::uint64_t>(page_size) : 4096;
    if (size == 0 || offset % page != 0 || size % page != 0)
        return Error::library(Errc::invalid_argument,
                              what + ": offset and size must be non-zero multiples of the page size " +
                                  std::to_string(page));
    if (size_limit_ != 0 && size > size_limit_)
        return Error::library(Errc::limit_exceeded, what + ": above the udmabuf module's size_limit_mb (" +
                                                        std::to_string(size_limit_ >> 20) + " MiB)");
    const int seals = ::fcntl(memfd, F_GET_SEALS);
    if (seals < 0) return detail::last_error(what + ": F_GET_SEALS (not a memfd?)");
    if ((seals & F_SEAL_SHRINK) == 0 || (seals & F_SEAL_WRITE) != 0)
        return Error::library(Errc::unsupported, what + ": udmabuf needs F_SEAL_SHRINK and no F_SEAL_WRITE; the memfd's seals are " +
                                                     std::to_string(seals) + " (F_SEAL_SHRINK 2, F_SEAL_WRITE 8)");
    udmabuf_create create{};
    create.memfd = static_cast<__u32>(memfd);
    create.flags = UDMABUF_FLAGS_CLOEXEC;
    create.offset = offset;
    create.size = size;
    int fd = ::ioctl(dev_.get(), UDMABUF_CREATE, &create);
    if (fd < 0) return detail::last_error(what + " (UDMABUF_CREATE)");
    auto buf = DmaBuf::adopt(UniqueFd(fd));
    if (!buf) return buf.error().with_context(what);
    return buf;
}

}  // namespace dmabridge
