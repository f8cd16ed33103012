// SPDX-License-Identifier: MIT
#include "queue/timeline_link.hpp"

#include <dmabridge/queue/producer.hpp>

#include "base/sys.hpp"

namespace dmabridge::queue::detail {

Result<Timeline> import_peer_timeline(int device, UniqueFd fd, const std::string& what) {
    if (!fd) return Error::library(Errc::invalid_argument, what + ": no fd");
    auto link = dmabridge::detail::fd_link(fd.get(), what);
    if (!link) return link.error();
    // The name drm_syncobj.c gives the anonymous inode of every syncobj fd.
    if (*link != "anon_inode:syncobj_file") {
        dmabridge::detail::close_untrusted(std::move(fd), *link);
        return Error::library(Errc::invalid_argument, what + ": fd is not a DRM syncobj: it is " + *link);
    }
    auto t = Timeline::import(device, fd.get());
    if (!t) return t.error().with_context(what);
    return t;
}

Status check_point_step(std::uint64_t last, std::uint64_t point, const std::string& what) {
    if (point <= last)
        return Error::library(Errc::invalid_argument, what + ": point " + std::to_string(point) +
                                                          " does not rise above the last one, " + std::to_string(last));
    if (point - last > max_point_step)
        return Error::library(Errc::invalid_argument, what + ": point " + std::to_string(point) + " skips " +
                                                          std::to_string(point - last) + " points past " +
                                                          std::to_string(last) + ", more than " +
                                                          std::to_string(max_point_step));
    return {};
}

}  // namespace dmabridge::queue::detail
