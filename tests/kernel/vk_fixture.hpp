// SPDX-License-Identifier: MIT
#pragma once
// Two Vulkan devices (A exports, B imports), made once per test process: creating a device
// takes seconds under emulation. VkTest makes sure they exist before FdLeakCheck takes its
// baseline, and checks after each test that the validation layer said nothing.

#include "fd_count.hpp"
#include "vk_harness.hpp"

namespace dmabridge::test {

VkHarness& device_a();
VkHarness& device_b();

struct VkDevicesReady {
    VkDevicesReady();
};

/// Fixture for Vulkan tests: both devices exist, fds are counted, validation must stay silent.
struct VkTest : VkDevicesReady, FdLeakCheck {
    ~VkTest();
};

}  // namespace dmabridge::test
