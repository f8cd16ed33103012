// SPDX-License-Identifier: MIT
#pragma once
// What both ends of a queue do with the timelines of the other: take a timeline fd a peer sent,
// and check the points it sends. Not part of the public API.

#include <cstdint>
#include <string>

#include <dmabridge/base/result.hpp>
#include <dmabridge/base/unique_fd.hpp>
#include <dmabridge/kernel/timeline.hpp>

namespace dmabridge::queue::detail {

/// Imports the timeline `fd` that a peer sent on `device`. The fd is untrusted: what it is comes
/// first from /proc/self/fd alone (every syncobj fd is "anon_inode:syncobj_file"; an ioctl on a
/// peer's FUSE file could wait for ever), and anything else is closed without letting the
/// caller wait (close_untrusted) and refused with Errc::invalid_argument naming what it is.
/// Then DRM_IOCTL_SYNCOBJ_FD_TO_HANDLE on `device` (its errno when the device refuses). The fd
/// is consumed either way.
Result<Timeline> import_peer_timeline(int device, UniqueFd fd, const std::string& what);

/// Checks that `point` may follow `last` (0 before the first) on a timeline a peer drives:
/// above it, by at most max_point_step. Errc::invalid_argument naming both points otherwise.
Status check_point_step(std::uint64_t last, std::uint64_t point, const std::string& what);

}  // namespace dmabridge::queue::detail
