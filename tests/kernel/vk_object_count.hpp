// SPDX-License-Identifier: MIT
#pragma once
// Live Vulkan objects made through dmabridge, counted: a Device attached with counted_handles()
// loads entry points that count every image, buffer, memory object and semaphore it creates and
// destroys. Leak checks compare live_vulkan_objects() before and after.

#include <cstdint>

#include <dmabridge/vulkan/context.hpp>

namespace dmabridge::test {

/// `ctx`'s handles with a vkGetInstanceProcAddr that counts object creation and destruction.
vulkan::DeviceHandles counted_handles(const vulkan::Context& ctx);
/// Objects created and not yet destroyed through counted handles (all devices together).
std::int64_t live_vulkan_objects();

}  // namespace dmabridge::test
