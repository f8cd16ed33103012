// SPDX-License-Identifier: MIT
#pragma once
/// @file access.hpp
/// Access directions and wait results shared by dma-bufs, sync_files and CPU mappings.

#include <chrono>
#include <cstdint>

namespace dmabridge {

/// How a device or the CPU touches a buffer. The values match DMA_BUF_SYNC_READ/WRITE.
enum class Access : std::uint8_t {
    read = 1,        ///< reads only: must wait for the buffer's writers
    write = 2,       ///< writes only: must wait for every fence (readers and writers)
    read_write = 3,  ///< both: must wait for every fence
};

/// The outcome of a wait that did not fail.
enum class WaitStatus : std::uint8_t {
    ready,      ///< the fences signalled within the timeout
    timed_out,  ///< the timeout passed first; nothing changed
};

/// A wait timeout. `forever` (or any negative value) waits without limit; zero polls once
/// without blocking. Deadlines are computed with saturation: Timeout::max() and any value too
/// large to add to the clock also wait without limit, they never time out at once.
using Timeout = std::chrono::milliseconds;
/// The timeout that waits without limit (-1 ms). Prefer a bounded timeout where a peer or a
/// device might never signal.
inline constexpr Timeout forever{-1};


/// "read", "write" or "read+write", for messages.
const char* to_string(Access access) noexcept;

}  // namespace dmabridge
