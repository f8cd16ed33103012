// SPDX-License-Identifier: MIT
#include <dmabridge/base/unique_fd.hpp>

#include <fcntl.h>
#include <unistd.h>

#include "base/sys.hpp"

namespace dmabridge {

Result<UniqueFd> UniqueFd::dup_of(int fd) {
    if (fd < 0) return Error::library(Errc::empty_object, "dup fd " + std::to_string(fd) + ": no fd (an empty object)");
    int copy = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (copy < 0) return detail::last_error("dup fd " + std::to_string(fd));
    return UniqueFd(copy);
}

void UniqueFd::reset(int fd) noexcept {
    // close() is not retried on EINTR: on Linux the fd is released even then.
    if (fd_ >= 0 && fd_ != fd) ::close(fd_);
    fd_ = fd;
}

}  // namespace dmabridge
