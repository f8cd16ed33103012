// SPDX-License-Identifier: MIT
#include "memory_allocator.hpp"

#include <algorithm>
#include <cstdint>

#include <unistd.h>

#include "checked_math.hpp"

namespace dmabridge {
namespace detail {

std::string describe_request(const ImageRequest& request) {
    return "allocate " + std::to_string(request.width) + "x" + std::to_string(request.height) + " " +
           fourcc_to_string(request.fourcc);
}

Result<BufferPlan> plan_buffer(const std::string& backend, std::uint64_t size, std::string_view name) {
    BufferPlan plan;
    plan.what = backend + ": allocate " + std::to_string(size) + " bytes";
    if (size == 0) return Error::library(Errc::invalid_argument, plan.what + ": the size is zero");
    auto rounded = align_up(size, static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE)));
    if (!rounded || *rounded > static_cast<std::uint64_t>(INT64_MAX))
        return Error::library(Errc::invalid_argument, plan.what + ": the size overflows");
    if (name.size() > max_dmabuf_name_length)
        return Error::library(Errc::invalid_argument, plan.what + ": the name is longer than " +
                                                          std::to_string(max_dmabuf_name_length) + " bytes");
    plan.size = *rounded;
    plan.name = name.empty() ? std::string(default_buffer_name) : std::string(name);
    return plan;
}

Status check_image_request(const ImageRequest& request, const std::string& backend) {
    const std::string what = backend + ": " + describe_request(request);
    if (request.width == 0 || request.height == 0)
        return Error::library(Errc::invalid_argument, what + ": the extent is empty");
    if (!find_format(request.fourcc)) return Error::library(Errc::unknown_format, what + ": unknown DRM fourcc");
    if (request.name.size() > max_dmabuf_name_length)
        return Error::library(Errc::invalid_argument, what + ": name \"" + request.name + "\" is longer than " +
                                                          std::to_string(max_dmabuf_name_length) + " bytes");
    return {};
}

}  // namespace detail

Result<BufferDesc> MemoryAllocator::allocate(const ImageRequest& request) {
    const std::string what = backend_name() + ": " + detail::describe_request(request);
    if (auto ok = detail::check_image_request(request, backend_name()); !ok) return ok.error();
    const auto& mods = request.modifiers;
    if (!mods.empty() && std::find(mods.begin(), mods.end(), modifier::linear) == mods.end())
        return Error::library(Errc::unsupported, what + ": only LINEAR can be allocated here, and the request's " +
                                                     std::to_string(mods.size()) + " modifiers do not include it");
    auto layout = linear_layout(request.fourcc, request.width, request.height, layout_);
    if (!layout) return layout.error().with_context(backend_name());
    auto buffer = allocate_bytes(layout->size, request.name);
    if (!buffer) return buffer.error().with_context(detail::describe_request(request));

    BufferDesc desc;
    desc.width = request.width;
    desc.height = request.height;
    desc.fourcc = request.fourcc;
    desc.modifier = modifier::linear;
    for (std::uint32_t p = 0; p < layout->plane_count; ++p) {
        // Every plane holds its own reference; the last one takes the original.
        auto ref = p + 1 == layout->plane_count ? Result<DmaBuf>(std::move(*buffer)) : buffer->dup();
        if (!ref) return ref.error().with_context(what + ": plane " + std::to_string(p));
        desc.planes.push_back({std::move(*ref), layout->offsets[p], layout->strides[p]});
    }
    if (auto ok = desc.validate(); !ok) return ok.error().with_context(backend_name());
    return desc;
}

}  // namespace dmabridge
