// SPDX-License-Identifier: MIT
#pragma once
// Shared by the allocators of plain memory (udmabuf, dma-heaps) and GBM: checks of requests and
// of raw buffer sizes and names, so each backend only does its own syscalls.

#include <cstdint>
#include <string>
#include <string_view>

#include <dmabridge/allocator.hpp>

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

}  // namespace dmabridge::detail
