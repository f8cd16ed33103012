// SPDX-License-Identifier: MIT
#include "gpu_converter.hpp"

#include <array>
#include <cstring>

#include <dmabridge_shaders/camera_to_rgba.hpp>

namespace camera {

using dmabridge::Result;

Result<GpuConverter> GpuConverter::create(const sample::DeviceFunctions& vk, std::uint32_t width,
                                          std::uint32_t height, std::uint32_t slots, bool readback) {
    GpuConverter c;
    c.vk_ = vk;
    c.width_ = width;
    c.height_ = height;
    const std::array<VkDescriptorType, 3> bindings{VK_DESCRIPTOR_TYPE_STORAGE_IMAGE, VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                                                   VK_DESCRIPTOR_TYPE_STORAGE_BUFFER};
    auto pipeline = sample::ComputePipeline::create(vk, "camera_to_rgba", dmabridge::shaders::camera_to_rgba, bindings,
                                                    sizeof(dmabridge::FrameLayout), slots);
    if (!pipeline) return pipeline.error();
    c.pipeline_ = std::move(*pipeline);
    auto image = sample::DeviceImage::create(vk, VK_FORMAT_R8G8B8A8_UNORM, width, height,
                                             VK_IMAGE_USAGE_STORAGE_BIT | VK_IMAGE_USAGE_TRANSFER_SRC_BIT);
    if (!image) return image.error().with_context("the RGBA image");
    c.image_ = std::move(*image);
    for (std::uint32_t s = 0; s < slots; ++s) {
        c.pipeline_.set_storage_image(0, c.image_.view(), s);
        if (!readback) continue;
        auto buffer = sample::HostBuffer::create(vk, VkDeviceSize{width} * height * 4, VK_BUFFER_USAGE_TRANSFER_DST_BIT);
        if (!buffer) return buffer.error().with_context("a read-back buffer");
        c.readback_.push_back(std::move(*buffer));
    }
    c.bound_.assign(slots, {VK_NULL_HANDLE, VK_NULL_HANDLE});
    return c;
}

bool GpuConverter::bind(std::uint32_t slot, VkBuffer plane0, VkBuffer plane1) {
    auto& bound = bound_.at(slot);
    if (bound.first == plane0 && bound.second == plane1) return false;
    pipeline_.set_storage_buffer(1, plane0, slot);
    pipeline_.set_storage_buffer(2, plane1, slot);
    bound = {plane0, plane1};
    return true;
}

void GpuConverter::record(VkCommandBuffer cmd, std::uint32_t slot, const dmabridge::FrameLayout& layout, bool read_back) const {
    // The image is shared by every frame: this conversion's writes wait for the previous
    // frame's writes and read-back copy (submission order makes "previous" well defined). The
    // old contents are overwritten, so the old layout is UNDEFINED: the commands do not depend
    // on what ran before, and can be recorded once and submitted every frame.
    VkImageMemoryBarrier before{};
    before.sType = VK_STRUCTURE_TYPE_IMAGE_MEMORY_BARRIER;
    before.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_READ_BIT;
    before.dstAccessMask = VK_ACCESS_SHADER_WRITE_BIT;
    before.oldLayout = VK_IMAGE_LAYOUT_UNDEFINED;
    before.newLayout = VK_IMAGE_LAYOUT_GENERAL;
    before.srcQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED;
    before.dstQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED;
    before.image = image_.handle();
    before.subresourceRange = {VK_IMAGE_ASPECT_COLOR_BIT, 0, 1, 0, 1};
    vk_.CmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
                           VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, 0, 0, nullptr, 0, nullptr, 1, &before);

    pipeline_.record_dispatch(cmd, std::as_bytes(std::span(&layout, 1)), layout.width, layout.height, slot);
    if (!read_back || readback_.empty()) return;

    VkImageMemoryBarrier to_copy = before;
    to_copy.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT;
    to_copy.dstAccessMask = VK_ACCESS_TRANSFER_READ_BIT;
    to_copy.oldLayout = VK_IMAGE_LAYOUT_GENERAL;
    to_copy.newLayout = VK_IMAGE_LAYOUT_TRANSFER_SRC_OPTIMAL;
    vk_.CmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_PIPELINE_STAGE_TRANSFER_BIT, 0, 0, nullptr, 0,
                           nullptr, 1, &to_copy);
    VkBufferImageCopy region{};
    region.imageSubresource = {VK_IMAGE_ASPECT_COLOR_BIT, 0, 0, 1};
    region.imageExtent = {width_, height_, 1};
    vk_.CmdCopyImageToBuffer(cmd, image_.handle(), VK_IMAGE_LAYOUT_TRANSFER_SRC_OPTIMAL, readback_.at(slot).handle(), 1, &region);
    VkBufferMemoryBarrier to_host{};
    to_host.sType = VK_STRUCTURE_TYPE_BUFFER_MEMORY_BARRIER;
    to_host.srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT;
    to_host.dstAccessMask = VK_ACCESS_HOST_READ_BIT;
    to_host.srcQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED;
    to_host.dstQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED;
    to_host.buffer = readback_.at(slot).handle();
    to_host.size = VK_WHOLE_SIZE;
    vk_.CmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_PIPELINE_STAGE_HOST_BIT, 0, 0, nullptr, 1, &to_host,
                           0, nullptr);
}

std::span<const std::uint8_t> GpuConverter::readback(std::uint32_t slot) const {
    if (readback_.empty()) return {};
    return {static_cast<const std::uint8_t*>(readback_.at(slot).data()), std::size_t{width_} * height_ * 4};
}

}  // namespace camera
