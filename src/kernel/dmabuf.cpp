// SPDX-License-Identifier: MIT
#include <dmabridge/kernel/dmabuf.hpp>

#include <climits>
#include <cstdlib>
#include <cstring>
#include <string>

#include <fcntl.h>
#include <linux/dma-buf.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/sys.hpp"

namespace dmabridge {
namespace {

// What a non-dma-buf fd is, for the error message, from its /proc/self/fd link alone: asking the
// file (fstat) could block on a FUSE file.
std::string describe_link(const std::string& link) {
    auto starts = [&](const char* prefix) { return link.rfind(prefix, 0) == 0; };
    const char* kind = "a file of another kind";
    if (starts("/memfd:")) kind = "a memfd";
    else if (starts("socket:[")) kind = "a socket";
    else if (starts("pipe:[")) kind = "a pipe";
    else if (link == "anon_inode:sync_file") kind = "a sync_file";
    else if (starts("anon_inode:")) kind = "an anonymous inode";
    else if (starts("/dev/")) kind = "a device node or file under /dev";
    else if (starts("/")) kind = "a file of a file system";
    return std::string(kind) + " (" + link + ")";
}

// A dma-buf's /proc/self/fd link: "/dmabuf:<name>" (5.10, 6.12, 7.3 measured; Linux 5.3 on, when
// buffers got names), "anon_inode:dmabuf" before.
bool dmabuf_link(const std::string& link) { return link.rfind("/dmabuf:", 0) == 0 || link == "anon_inode:dmabuf"; }

std::uint32_t sync_flags(Access access) { return static_cast<std::uint32_t>(access); }

bool valid_access(Access a) { return a == Access::read || a == Access::write || a == Access::read_write; }

Error no_fd(const std::string& operation) {
    return Error::library(Errc::empty_object, operation + ": the dma-buf holds no fd (moved from or released)");
}

}  // namespace

Result<DmaBuf> DmaBuf::adopt(UniqueFd fd) {
    const int raw = fd.get();
    const std::string what = "fd " + std::to_string(raw);
    if (raw < 0) return Error::library(Errc::empty_object, what + " is not a dma-buf: no fd (an empty object)");
    // First what the fd is, from /proc alone: a peer's fd may be a file whose FUSE daemon never
    // answers, and fstat/fstatfs on it would wait for that daemon.
    auto link = detail::fd_link(raw, what + " is not a dma-buf");
    if (!link) return link.error();
    if (!dmabuf_link(*link)) {
        detail::close_untrusted(std::move(fd), *link);
        return Error::library(Errc::not_a_dmabuf, what + " is not a dma-buf: it is " + describe_link(*link));
    }
    // The link is a name: a file of the caller's own root could be called "/dmabuf:x". Only the
    // dma-buf core writes "exp_name:" into fdinfo (dma_buf_show_fdinfo, Linux 5.4+), and reading
    // fdinfo calls no code of a FUSE file system either.
    auto info = detail::read_text_file("/proc/self/fdinfo/" + std::to_string(raw));
    if (!info) return info.error().with_context(what);
    if (!detail::find_key(*info, "exp_name:")) {
        detail::close_untrusted(std::move(fd), *link);
        return Error::library(Errc::not_a_dmabuf, what + " is not a dma-buf: it is " + describe_link(*link) +
                                                      ", whose fdinfo has no exp_name");
    }
    // Now known to be a dma-buf: its inode answers fstat itself.
    struct stat st {};
    if (::fstat(raw, &st) != 0) return detail::last_error(what + ": fstat");
    // The size of a dma-buf is fixed and the kernel keeps it in the inode (i_size, set at export:
    // fstat's st_size, measured on 5.10, 6.12 and 7.3), so the fstat above already read it. No
    // lseek: the offset belongs to the open file description that every dup and every fd passed
    // over a socket shares with the peer. (A dma-buf's llseek happens to store no offset, measured
    // on 6.12, but the library does not rely on that, and saves two syscalls.) A kernel that left
    // i_size 0 still reports the size in fdinfo (dma_buf_show_fdinfo, Linux 5.4+).
    std::uint64_t size = static_cast<std::uint64_t>(st.st_size);
    if (size == 0) {
        size = std::strtoull(detail::find_key(*info, "size:").value_or("0").c_str(), nullptr, 10);
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
        return Error::library(Errc::empty_object, "import sync_file into dma-buf: the sync_file holds no fd (moved from or released)");
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
