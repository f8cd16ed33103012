// SPDX-License-Identifier: MIT
#pragma once
// Shared by the allocators that hand out plain memory (udmabuf, dma-heaps): checks an
// ImageRequest for a linear image and describes one dma-buf as that image.

#include <cstdint>
#include <string>

#include <dmabridge/allocator.hpp>
#include <dmabridge/format.hpp>

namespace dmabridge::detail {

/// The name an allocator gives its dma-bufs when the request has none.
inline constexpr const char* default_buffer_name = "dmabridge";

/// Checks that `request` asks for something a linear-only allocator can make, and returns its
/// layout. `backend` names the allocator in errors.
Result<LinearLayout> plan_linear_image(const ImageRequest& request, const LinearLayoutOptions& options,
                                       const std::string& backend);

/// Describes `buffer` as the planes of `layout` (one dma-buf reference per plane) and validates.
Result<BufferDesc> describe_linear_image(DmaBuf buffer, const LinearLayout& layout, const ImageRequest& request);

/// "allocate 640x480 XR24", for error context.
std::string describe_request(const ImageRequest& request);

/// Page size rounding for kernels that allocate whole pages; nothing on overflow.
std::optional<std::uint64_t> page_round(std::uint64_t size);

}  // namespace dmabridge::detail
