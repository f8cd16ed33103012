// SPDX-License-Identifier: MIT
#pragma once
// Test harness for the Vulkan tests: a Context with the validation layer on (every message is
// a test failure), host-visible staging buffers, and uploads and downloads of image planes so
// that pixels can be compared after they crossed devices.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <dmabridge/format/buffer_desc.hpp>
#include <dmabridge/vulkan/context.hpp>
#include <dmabridge/vulkan/device.hpp>

namespace dmabridge::test {

/// Validation messages of every context made by VkHarness, kept past the contexts' destruction.
std::vector<std::string>& validation_log();

/// Checks (doctest CHECK) that no validation message arrived since the last call, and clears.
void check_no_validation_messages();

/// One device with helpers. Every harness has its own VkDevice (two harnesses = two devices).
class VkHarness {
public:
    VkHarness();
    ~VkHarness();
    const vulkan::Device& device() const { return ctx_->device(); }
    const vulkan::Context& context() const { return *ctx_; }

    /// Writes `planes[p]` (tightly packed rows of plane p) into the image, then releases it to
    /// VK_QUEUE_FAMILY_FOREIGN_EXT in VK_IMAGE_LAYOUT_GENERAL for another device to read.
    void upload(const vulkan::Image& image, std::uint32_t fourcc, const std::vector<std::vector<std::uint8_t>>& planes);

    /// Acquires the image from VK_QUEUE_FAMILY_FOREIGN_EXT (layout GENERAL, contents kept) and
    /// reads every plane back, tightly packed.
    std::vector<std::vector<std::uint8_t>> download(const vulkan::Image& image, std::uint32_t fourcc);

    /// Copies `size` bytes of a buffer to host memory and returns them.
    std::vector<std::uint8_t> read_buffer(VkBuffer buffer, std::uint64_t size);

private:
    struct Staging;
    std::unique_ptr<vulkan::Context> ctx_;
};

/// A deterministic pattern for plane `p` of a `fourcc` image: tightly packed rows.
std::vector<std::vector<std::uint8_t>> make_pattern(std::uint32_t fourcc, std::uint32_t width, std::uint32_t height,
                                                    std::uint8_t seed);

}  // namespace dmabridge::test
