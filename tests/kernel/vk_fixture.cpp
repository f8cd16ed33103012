// SPDX-License-Identifier: MIT
#include "vk_fixture.hpp"

#include <memory>

namespace dmabridge::test {

VkHarness& device_a() {
    static auto harness = std::make_unique<VkHarness>();
    return *harness;
}

VkHarness& device_b() {
    static auto harness = std::make_unique<VkHarness>();
    return *harness;
}

VkDevicesReady::VkDevicesReady() {
    device_a();
    device_b();
}

VkTest::~VkTest() { check_no_validation_messages(); }

}  // namespace dmabridge::test
