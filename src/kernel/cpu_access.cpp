// SPDX-License-Identifier: MIT
#include <dmabridge/kernel/cpu_access.hpp>

#include <utility>

#include <linux/dma-buf.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/checked_math.hpp"
#include "base/sys.hpp"

namespace dmabridge {

Result<Mapping> Mapping::map(const DmaBuf& buf, Access access, std::uint64_t offset, std::uint64_t length) {
    if (!buf.valid()) return Error::library(Errc::empty_object, "map dma-buf: the dma-buf holds no fd (moved from or released)");
    if (access != Access::read && access != Access::write && access != Access::read_write)
        return Error::library(Errc::invalid_argument, "map dma-buf: invalid access");
    const auto page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
    const std::uint64_t size = buf.size();
    if (offset % page != 0)
        return Error::library(Errc::invalid_argument,
                              "map dma-buf: offset " + std::to_string(offset) + " is not a multiple of the page size " +
                                  std::to_string(page));
    if (offset > size)
        return Error::library(Errc::invalid_argument, "map dma-buf: offset " + std::to_string(offset) +
                                                          " is past the end of the " + std::to_string(size) +
                                                          "-byte buffer");
    if (length == 0) length = size - offset;
    auto end = detail::add(offset, length);
    if (length == 0 || !end || *end > size)
        return Error::library(Errc::invalid_argument, "map dma-buf: range " + std::to_string(offset) + " + " +
                                                          std::to_string(length) + " is not inside the " +
                                                          std::to_string(size) + "-byte buffer");
    const int prot = access == Access::read ? PROT_READ : PROT_READ | PROT_WRITE;
    void* addr = ::mmap(nullptr, length, prot, MAP_SHARED, buf.fd(), static_cast<off_t>(offset));
    if (addr == MAP_FAILED) return detail::last_error("map dma-buf (" + std::to_string(length) + " bytes)");
    return Mapping(addr, static_cast<std::size_t>(length));
}

Mapping::Mapping(Mapping&& other) noexcept
    : addr_(std::exchange(other.addr_, nullptr)), length_(std::exchange(other.length_, 0)) {}

Mapping& Mapping::operator=(Mapping&& other) noexcept {
    if (this != &other) {
        if (addr_) ::munmap(addr_, length_);
        addr_ = std::exchange(other.addr_, nullptr);
        length_ = std::exchange(other.length_, 0);
    }
    return *this;
}

Mapping::~Mapping() {
    if (addr_) ::munmap(addr_, length_);
}

Result<CpuAccess> CpuAccess::begin(const DmaBuf& buf, Access access) {
    if (access != Access::read && access != Access::write && access != Access::read_write)
        return Error::library(Errc::invalid_argument, "begin CPU access: invalid access");
    if (!buf.valid())
        return Error::library(Errc::empty_object, "begin CPU access: the dma-buf holds no fd (moved from or released)");
    dma_buf_sync sync{DMA_BUF_SYNC_START | static_cast<std::uint64_t>(access)};
    if (detail::ioctl_retry(buf.fd(), DMA_BUF_IOCTL_SYNC, &sync) != 0)
        return detail::last_error(std::string("begin CPU ") + to_string(access) + " access (DMA_BUF_IOCTL_SYNC START)");
    return CpuAccess(buf.fd(), access);
}

CpuAccess::CpuAccess(CpuAccess&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), access_(other.access_) {}

CpuAccess& CpuAccess::operator=(CpuAccess&& other) noexcept {
    if (this != &other) {
        (void)end();
        fd_ = std::exchange(other.fd_, -1);
        access_ = other.access_;
    }
    return *this;
}

CpuAccess::~CpuAccess() { (void)end(); }

Status CpuAccess::end() {
    if (fd_ < 0) return Error::library(Errc::invalid_argument, "end CPU access: the access already ended");
    dma_buf_sync sync{DMA_BUF_SYNC_END | static_cast<std::uint64_t>(access_)};
    const int fd = std::exchange(fd_, -1);
    if (detail::ioctl_retry(fd, DMA_BUF_IOCTL_SYNC, &sync) != 0)
        return detail::last_error(std::string("end CPU ") + to_string(access_) + " access (DMA_BUF_IOCTL_SYNC END)");
    return {};
}

}  // namespace dmabridge
