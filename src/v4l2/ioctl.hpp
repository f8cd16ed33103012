// SPDX-License-Identifier: MIT
#pragma once
// The one way the V4L2 adapter calls ioctl(). Not part of the public API.

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <limits>

#include <sys/ioctl.h>

namespace dmabridge::detail {

/// ioctl() retried only while it fails with EINTR. V4L2 nodes are opened O_NONBLOCK, where
/// EAGAIN is an answer ("nothing ready": VIDIOC_DQBUF with no finished buffer, a decoder that has
/// no format yet), never a reason to call again at once: retrying it would spin a core until the
/// driver changed its mind. Callers return EAGAIN, or poll() for it.
template <typename Arg>
int v4l2_ioctl(int fd, unsigned long request, Arg arg) noexcept {
    int r;
    do {
        r = ::ioctl(fd, request, arg);
    } while (r == -1 && errno == EINTR);
    return r;
}

/// The `length` to give V4L2 for a dma-buf of `size` bytes. V4L2's length and bytesused fields
/// are 32 bits wide: a dma-buf of 4 GiB or more is offered as its first 4 GiB - 1 bytes (a
/// driver never needs more than sizeimage, itself 32 bits). Passing 0 ("the dma-buf's own
/// size") would not do: videobuf2 stores that size in 32 bits too, and 4 GiB becomes 0.
inline std::uint32_t v4l2_length(std::uint64_t size) noexcept {
    return static_cast<std::uint32_t>(std::min<std::uint64_t>(size, std::numeric_limits<std::uint32_t>::max()));
}

/// Whether a captured buffer plane misses bytes its description covers: the description says
/// the data starts at byte 0 and spans `needed` bytes; the driver reported `bytes_used` (from
/// the start of the plane, data_offset included) and `data_offset`.
inline bool plane_incomplete(std::uint64_t needed, std::uint32_t bytes_used, std::uint32_t data_offset) noexcept {
    return data_offset != 0 || bytes_used < needed;
}

}  // namespace dmabridge::detail
