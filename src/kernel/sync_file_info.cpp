// SPDX-License-Identifier: MIT
#include "kernel/sync_file_info.hpp"

#include <algorithm>
#include <cstring>
#include <string>

namespace dmabridge::detail {
namespace {

template <std::size_t N>
std::string bounded(const char (&field)[N]) {
    return std::string(field, strnlen(field, N));
}

}  // namespace

FenceStatus fence_status(std::int32_t status) noexcept {
    if (status > 0) return FenceStatus::signaled;
    if (status == 0) return FenceStatus::active;
    return FenceStatus::error;
}

std::vector<FenceInfo> parse_fence_infos(std::span<const sync_fence_info> filled, std::uint32_t reported) {
    const std::size_t count = std::min<std::size_t>(filled.size(), reported);
    std::vector<FenceInfo> out;
    out.reserve(count);
    for (const auto& f : filled.first(count))
        out.push_back({bounded(f.driver_name), bounded(f.obj_name), fence_status(f.status)});
    return out;
}

}  // namespace dmabridge::detail
