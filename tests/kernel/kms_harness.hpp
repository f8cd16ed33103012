// SPDX-License-Identifier: MIT
#pragma once
// What the KMS tests share (suites kms, kms_syncobj, kms_flip: ci/vm --vkms).
#include <dmabridge/format/buffer_desc.hpp>
#include <dmabridge/kernel/sync_file.hpp>
#include <dmabridge/kms/commit.hpp>
#include <dmabridge/kms/device.hpp>

#include <cstdint>
#include <vector>

namespace dmabridge::test::kms_harness {

/// vkms among the primary nodes (vgem is card0; virtio_gpu, when the VM has it, also does KMS).
kms::Device open_vkms();

/// The first CRTC, its connected output (preferred mode), the writeback connector and a
/// primary, overlay and cursor plane of it.
struct Output {
    std::uint32_t crtc = 0, connector = 0, writeback = 0, primary = 0, overlay = 0, cursor = 0;
    kms::Mode mode;
};
Output find_output(const kms::Device& d);

/// An XRGB8888 image of `w` x `h` in udmabuf memory, every pixel (x, y) a function of `seed`.
BufferDesc pattern_image(std::uint32_t w, std::uint32_t h, std::uint8_t seed);
/// A writeback target: a dumb buffer made on vkms itself (writeback into imported vgem memory
/// froze the guest; into vkms's own buffers it did not: shared/DESIGN.md), as a dma-buf.
BufferDesc dumb_target(const kms::Device& d, std::uint32_t w, std::uint32_t h);
/// The RGB of every pixel (the X byte is undefined), rows packed.
std::vector<std::uint32_t> rgb_pixels(const BufferDesc& desc);
std::size_t differing(const std::vector<std::uint32_t>& a, const std::vector<std::uint32_t>& b);
/// Everything off: planes hidden, connectors detached, the CRTC disabled (a blocking commit).
void turn_off(const kms::Device& d, const Output& o);
/// Shows `fb` full screen and captures the CRTC through writeback; returns the captured pixels.
std::vector<std::uint32_t> show_and_capture(const kms::Device& d, const Output& o, const kms::Framebuffer& fb,
                                            const SyncFile* in_fence = nullptr);
/// Captures what the CRTC shows now (a commit with only the writeback job).
std::vector<std::uint32_t> capture_now(const kms::Device& d, const Output& o);

}  // namespace dmabridge::test::kms_harness
