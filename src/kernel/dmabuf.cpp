// SPDX-License-Identifier: MIT
#include <dmabridge/kernel/dmabuf.hpp>

#include <climits>
#include <cstdlib>
#include <cstring>
#include <string>

#include <fcntl.h>
#include <linux/dma-buf.h>
#include <linux/magic.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "base/sys.hpp"

namespace dmabridge {
namespace {

std::string fd_target(int fd) {
    char link[PATH_MAX];
    auto n = ::readlink(("/proc/self/fd/" + std::to_string(fd)).c_str(), link, sizeof link - 1);
    return n > 0 ? std::string(link, static_cast<std::size_t>(n)) : std::string("?");
}

// What a non-dma-buf fd is, for the error message.
std::string describe_fd(int fd, const struct stat& st) {
    std::string target = fd_target(fd);
    const char* kind = "a file of another kind";
    if (target.rfind("/memfd:", 0) == 0) kind = "a memfd";
    else if (S_ISREG(st.st_mode)) kind = "a regular file";
    else if (S_ISSOCK(st.st_mode)) kind = "a socket";
    else if (S_ISFIFO(st.st_mode)) kind = "a pipe";
    else if (S_ISCHR(st.st_mode)) kind = "a character device";
    else if (S_ISDIR(st.st_mode)) kind = "a directory";
    else if (target.rfind("anon_inode:", 0) == 0) kind = "an anonymous inode";
    return std::string(kind) + " (" + target + ")";
}

std::uint32_t sync_flags(Access access) { return static_cast<std::uint32_t>(access); }

bool valid_access(Access a) { return a == Access::read || a == Access::write || a == Access::read_write; }

Error no_fd(const std::string& operation) {
    return Error::from_errno(EBADF, operation + ": the dma-buf holds no fd (moved from or released)");
}

}  // namespace

Result<DmaBuf> DmaBuf::adopt(UniqueFd fd) {
    const int raw = fd.get();
    const std::string what = "fd " + std::to_string(raw);
    struct statfs fs {};
    if (raw < 0 || ::fstatfs(raw, &fs) != 0)
        return Error::from_errno(raw < 0 ? EBADF : errno, what + " is not a dma-buf");
    struct stat st {};
    if (::fstat(raw, &st) != 0) return detail::last_error(what + ": fstat");
    if (static_cast<unsigned long>(fs.f_type) != DMA_BUF_MAGIC)
        return Error::library(Errc::not_a_dmabuf, what + " is not a dma-buf: it is " + describe_fd(raw, st));
    // The size of a dma-buf is fixed and the kernel keeps it in the inode (i_size, set at export:
    // fstat's st_size, measured on 5.10, 6.12 and 7.3), so the fstat above already read it. No
    // lseek: the offset belongs to the open file description that every dup and every fd passed
    // over a socket shares with the peer. (A dma-buf's llseek happens to store no offset, measured
    // on 6.12, but the library does not rely on that, and saves two syscalls.) A kernel that left
    // i_size 0 still reports the size in fdinfo (dma_buf_show_fdinfo, Linux 5.4+).
    std::uint64_t size = static_cast<std::uint64_t>(st.st_size);
    if (size == 0) {
        auto text = detail::fdinfo_value(raw, "size");
        if (!text) return text.error().with_context(what + ": read the dma-buf size");
        size = std::strtoull(text->c_str(), nullptr, 10);
        if (size == 0) return Error::library(Errc::not_a_dmabuf, what + ": a dma-buf without a size");
    }
    return DmaBuf(std::move(fd), size, BufferId{st.st_dev, st.st_ino});
}

Result<DmaBuf> DmaBuf::import_fd(int fd) {
    auto copy = UniqueFd::dup_of(fd);
    if (!copy) return copy.error().with_context("import dma-buf");
    return adopt(std::move(*copy));
}

Result<std::string> DmaBuf::exporter_name() const {
    if (!valid()) return no_fd("dma-buf exporter name");
    return detail::fdinfo_value(fd(), "exp_name");
}

Result<std::string> DmaBuf::name() const {
    if (!valid()) return no_fd("dma-buf name");
    return detail::fdinfo_value(fd(), "name");
}

Status check_dmabuf_name(std::string_view name, std::string_view what) {
    if (name.find('\0') != std::string_view::npos)
        return Error::library(Errc::invalid_argument, std::string(what) + ": the name has a NUL byte at " +
                                                          std::to_string(name.find('\0')) +
                                                          " (the kernel would cut it there)");
    if (name.size() > max_dmabuf_name_length)
        return Error::library(Errc::invalid_argument,
                              std::string(what) + " \"" + std::string(name) + "\": " + std::to_string(name.size()) +
                                  " bytes, the kernel takes at most " + std::to_string(max_dmabuf_name_length));
    return {};
}

Status DmaBuf::set_name(std::string_view name) const {
    if (!valid()) return no_fd("set dma-buf name");
    if (auto ok = check_dmabuf_name(name, "set dma-buf name"); !ok) return ok;
    std::string copy(name);
    // The ioctl number encodes the pointer size; on 64-bit this is DMA_BUF_SET_NAME_B.
    if (::ioctl(fd(), DMA_BUF_SET_NAME, copy.c_str()) != 0)
        return detail::last_error("set dma-buf name \"" + copy + "\" (DMA_BUF_SET_NAME)");
    return {};
}

Result<DmaBuf> DmaBuf::dup() const {
    if (!valid()) return no_fd("dup dma-buf");
    auto copy = fd_.dup();
    if (!copy) return copy.error().with_context("dup dma-buf");
    return DmaBuf(std::move(*copy), size_, id_);
}

Result<WaitStatus> DmaBuf::wait(Access access, Timeout timeout) const {
    if (!valid()) return no_fd("wait for dma-buf");
    if (!valid_access(access)) return Error::library(Errc::invalid_argument, "wait for dma-buf: invalid access");
    // POLLIN: the writers are done (safe to read). POLLOUT: every fence is done (safe to write).
    // Asking for both would return as soon as the writers are done, so ask for exactly one.
    const short events = access == Access::read ? POLLIN : POLLOUT;
    return detail::poll_fd(fd(), events, timeout, "wait for dma-buf");
}

Result<SyncFile> DmaBuf::export_sync_file(Access access) const {
    if (!valid()) return no_fd("export sync_file from dma-buf");
    if (!valid_access(access))
        return Error::library(Errc::invalid_argument, "export sync_file from dma-buf: invalid access");
    dma_buf_export_sync_file arg{};
    arg.flags = sync_flags(access);
    arg.fd = -1;
    if (::ioctl(fd(), DMA_BUF_IOCTL_EXPORT_SYNC_FILE, &arg) != 0) {
        if (errno == ENOTTY)
            return Error::library(Errc::unsupported,
                                  "export sync_file from dma-buf: DMA_BUF_IOCTL_EXPORT_SYNC_FILE is not "
                                  "supported by this kernel (needs Linux 6.0 with CONFIG_SYNC_FILE)");
        return detail::last_error(std::string("export ") + to_string(access) + " sync_file from dma-buf");
    }
    return SyncFile::adopt(UniqueFd(arg.fd));
}

Status DmaBuf::import_sync_file(const SyncFile& fence, Access access) const {
    if (!valid()) return no_fd("import sync_file into dma-buf");
    if (!fence.valid())
        return Error::from_errno(EBADF, "import sync_file into dma-buf: the sync_file holds no fd (moved from or released)");
    if (!valid_access(access))
        return Error::library(Errc::invalid_argument, "import sync_file into dma-buf: invalid access");
    dma_buf_import_sync_file arg{};
    arg.flags = sync_flags(access);
    arg.fd = fence.fd();
    if (::ioctl(fd(), DMA_BUF_IOCTL_IMPORT_SYNC_FILE, &arg) != 0) {
        if (errno == ENOTTY)
            return Error::library(Errc::unsupported,
                                  "import sync_file into dma-buf: DMA_BUF_IOCTL_IMPORT_SYNC_FILE is not "
                                  "supported by this kernel (needs Linux 6.0 with CONFIG_SYNC_FILE)");
        return detail::last_error(std::string("import ") + to_string(access) + " sync_file into dma-buf");
    }
    return {};
}

}  // namespace dmabridge
