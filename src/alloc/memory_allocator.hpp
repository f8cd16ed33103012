// SPDX-License-Identifier: MIT
#pragma once
// Shared by the allocators of plain memory (udmabuf, dma-heaps) and GBM: checks of requests and
// of raw buffer sizes and names, so each backend only does its own syscalls.

#include <cstdint>
#include <string>
#include <string_view>

#include <dmabridge/alloc/allocator.hpp>
#include <dmabridge/kernel/dmabuf.hpp>

namespace dmabridge::detail {

/// The name an allocator gives its dma-bufs when the request has none.
inline constexpr const char* default_buffer_name = "dmabridge";

/// "allocate 640x480 XR24", for error context.
std::string describe_request(const ImageRequest& request);

/// A checked raw allocation: the page-rounded size, the buffer's name, and "<backend>: allocate
/// N bytes" for error messages.
struct BufferPlan {
    std::uint64_t size = 0;
    std::string name;
    std::string what;
};

/// Checks a raw allocation of `size` bytes named `name` (empty: the default name): non-zero,
/// no overflow when rounded to pages or converted to off_t, a name the kernel accepts.
Result<BufferPlan> plan_buffer(const std::string& backend, std::uint64_t size, std::string_view name);

/// Checks an image request's extent, format and name (not its modifiers); `backend` names the
/// allocator in errors.
Status check_image_request(const ImageRequest& request, const std::string& backend);

/// The machine's memory in bytes, from /proc/meminfo (sysinfo() when that cannot be read;
/// `available` is then free + buffer memory). 0 means unknown.
struct MemoryInfo {
    std::uint64_t total = 0;      ///< MemTotal: physical memory
    std::uint64_t available = 0;  ///< MemAvailable: what can be allocated without swapping out
};
MemoryInfo memory_info();

/// When an allocation's pages are taken.
enum class Commit {
    now,     ///< at allocation (dma-heaps, udmabuf pins its memfd's pages): must fit MemAvailable
    device,  ///< by the driver, possibly later or in device memory (GBM): must fit MemTotal
};

/// Refuses, with Errc::limit_exceeded and the numbers, a buffer of `bytes` that cannot fit: above
/// MemAvailable for Commit::now, above MemTotal for Commit::device. The kernel does not fail
/// such requests cleanly: it wakes the OOM killer, which kills the caller. `what` is the
/// operation for the message.
Status check_fits_memory(const std::string& what, std::uint64_t bytes, Commit commit);

/// Names a dma-buf (DMA_BUF_SET_NAME). Names are debugging metadata: a failure is logged as a
/// warning with `what` and the errno, and never fails the allocation that made the buffer.
void name_buffer(const DmaBuf& buffer, const std::string& name, const std::string& what);

/// Checks that `fd` (opened from `path`) is the character device an allocator needs: the node's
/// sysfs DEVNAME must start with `devname_prefix` ("udmabuf", "dma_heap/", "dri/"). Errors
/// (Errc::invalid_argument) say what the node is instead: a regular file, a directory, or the
/// character device major:minor with its DEVNAME ("null", "video0", ...). Where sysfs cannot
/// be read the node's kind is checked only. `what` is the operation for the message.
Status check_device_node(int fd, const std::string& path, const std::string& devname_prefix,
                         const std::string& wanted, const std::string& what);

}  // namespace dmabridge::detail
