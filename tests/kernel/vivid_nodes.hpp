// SPDX-License-Identifier: MIT
#pragma once
// Finding a particular vivid node: ci/vm loads two instances (the second multi-planar), each
// with capture, output and other nodes, and their numbers depend on load order.

#include <dmabridge/v4l2/device.hpp>

#include <filesystem>
#include <functional>
#include <optional>

namespace dmabridge::test {

/// The first /dev/videoN driven by vivid for which `wanted` is true, open; nothing if none.
inline std::optional<v4l2::Device> find_vivid_node(const std::function<bool(const v4l2::Device&)>& wanted) {
    for (const auto& entry : std::filesystem::directory_iterator("/dev")) {
        if (entry.path().filename().string().rfind("video", 0) != 0) continue;
        auto dev = v4l2::Device::open(entry.path().string());
        if (dev && dev->capabilities().driver == "vivid" && wanted(*dev)) return std::move(*dev);
    }
    return std::nullopt;
}

}  // namespace dmabridge::test
