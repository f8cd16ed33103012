// SPDX-License-Identifier: MIT
#include "linear_image.hpp"

#include <algorithm>

#include <unistd.h>

#include "checked_math.hpp"

namespace dmabridge::detail {

std::string describe_request(const ImageRequest& request) {
    return "allocate " + std::to_string(request.width) + "x" + std::to_string(request.height) + " " +
           fourcc_to_string(request.fourcc);
}

Result<LinearLayout> plan_linear_image(const ImageRequest& request, const LinearLayoutOptions& options,
                                       const std::string& backend) {
    const std::string what = backend + ": " + describe_request(request);
    if (!request.modifiers.empty() &&
        std::find(request.modifiers.begin(), request.modifiers.end(), modifier::linear) == request.modifiers.end())
        return Error::library(Errc::unsupported, what + ": only LINEAR can be allocated here, and the request's " +
                                                     std::to_string(request.modifiers.size()) +
                                                     " modifiers do not include it");
    if (request.name.size() > max_dmabuf_name_length)
        return Error::library(Errc::invalid_argument, what + ": name \"" + request.name + "\" is longer than " +
                                                          std::to_string(max_dmabuf_name_length) + " bytes");
    auto layout = linear_layout(request.fourcc, request.width, request.height, options);
    if (!layout) return layout.error().with_context(backend);
    return layout;
}

Result<BufferDesc> describe_linear_image(DmaBuf buffer, const LinearLayout& layout, const ImageRequest& request) {
    BufferDesc desc;
    desc.width = request.width;
    desc.height = request.height;
    desc.fourcc = request.fourcc;
    desc.modifier = modifier::linear;
    for (std::uint32_t p = 0; p < layout.plane_count; ++p) {
        auto ref = p + 1 == layout.plane_count ? Result<DmaBuf>(std::move(buffer)) : buffer.dup();
        if (!ref) return ref.error().with_context("describe plane " + std::to_string(p));
        desc.planes.push_back({std::move(*ref), layout.offsets[p], layout.strides[p]});
    }
    if (auto ok = desc.validate(); !ok) return ok.error();
    return desc;
}

std::optional<std::uint64_t> page_round(std::uint64_t size) {
    return align_up(size, static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE)));
}

}  // namespace dmabridge::detail
