// SPDX-License-Identifier: MIT
#include <dmabridge/udmabuf.hpp>

#include <fstream>
#include <string>

#include <fcntl.h>
#include <linux/udmabuf.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "linear_image.hpp"
#include "sys.hpp"

namespace dmabridge {
namespace {

// The udmabuf module refuses buffers above its size_limit_mb parameter (64 MiB by default)
// with a bare EINVAL; read the limit so that the error can say so.
std::uint64_t read_size_limit() {
    std::ifstream in("/sys/module/udmabuf/parameters/size_limit_mb");
    std::uint64_t mb = 0;
    if (in >> mb) return mb << 20;
    return 0;
}

}  // namespace

Result<UdmabufAllocator> UdmabufAllocator::open(std::string_view device, LinearLayoutOptions layout) {
    const std::string path(device);
    int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) return detail::last_error("open udmabuf device " + path);
    return UdmabufAllocator(UniqueFd(fd), layout, read_size_limit());
}

Result<DmaBuf> UdmabufAllocator::allocate_bytes(std::uint64_t size, std::string_view name) {
    const std::string what = "udmabuf: allocate " + std::to_string(size) + " bytes";
    if (size == 0) return Error::library(Errc::invalid_argument, what + ": the size is zero");
    auto rounded = detail::page_round(size);
    if (!rounded || *rounded > static_cast<std::uint64_t>(INT64_MAX))
        return Error::library(Errc::invalid_argument, what + ": the size overflows");
    if (size_limit_ != 0 && *rounded > size_limit_)
        return Error::library(Errc::limit_exceeded,
                              what + ": above the udmabuf module's size_limit_mb (" +
                                  std::to_string(size_limit_ >> 20) +
                                  " MiB); raise it with the module parameter udmabuf.size_limit_mb");
    if (name.size() > max_dmabuf_name_length)
        return Error::library(Errc::invalid_argument, what + ": the name is longer than " +
                                                          std::to_string(max_dmabuf_name_length) + " bytes");
    const std::string label = name.empty() ? std::string(detail::default_buffer_name) : std::string(name);

    // udmabuf needs a memfd that can be sealed, carries F_SEAL_SHRINK (the pages must not go
    // away under the device) and does not carry F_SEAL_WRITE. The kernel keeps its own
    // reference to the memfd's pages, so ours is closed once the dma-buf exists.
    UniqueFd memfd(::memfd_create(label.c_str(), MFD_ALLOW_SEALING | MFD_CLOEXEC));
    if (!memfd) return detail::last_error(what + ": memfd_create");
    if (::ftruncate(memfd.get(), static_cast<off_t>(*rounded)) != 0) return detail::last_error(what + ": ftruncate");
    if (::fcntl(memfd.get(), F_ADD_SEALS, F_SEAL_SHRINK) != 0) return detail::last_error(what + ": seal the memfd");

    udmabuf_create create{};
    create.memfd = static_cast<__u32>(memfd.get());
    create.flags = UDMABUF_FLAGS_CLOEXEC;
    create.offset = 0;
    create.size = *rounded;
    int fd = ::ioctl(dev_.get(), UDMABUF_CREATE, &create);
    if (fd < 0) return detail::last_error(what + " (UDMABUF_CREATE)");
    auto buf = DmaBuf::adopt(UniqueFd(fd));
    if (!buf) return buf.error().with_context(what);
    if (auto named = buf->set_name(label); !named) return named.error().with_context(what);
    return buf;
}

Result<BufferDesc> UdmabufAllocator::allocate(const ImageRequest& request) {
    auto layout = detail::plan_linear_image(request, layout_, backend_name());
    if (!layout) return layout.error();
    auto buf = allocate_bytes(layout->size, request.name);
    if (!buf) return buf.error().with_context(detail::describe_request(request));
    return detail::describe_linear_image(std::move(*buf), *layout, request);
}

}  // namespace dmabridge
