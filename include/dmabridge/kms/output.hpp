// SPDX-License-Identifier: MIT
#pragma once
/// @file kms/output.hpp
/// Choosing where to show a buffer, and reading back what a CRTC shows. Every display program
/// (a kiosk, a camera preview, a test) otherwise walks the connectors, CRTCs and planes by hand
/// for the same answer: a connected output, its preferred mode, a CRTC that can drive it, and the
/// planes of that CRTC that scan out the buffer's format and modifier.

#include <cstdint>
#include <vector>

#include <dmabridge/alloc/allocator.hpp>
#include <dmabridge/base/result.hpp>
#include <dmabridge/base/access.hpp>
#include <dmabridge/format/buffer_desc.hpp>
#include <dmabridge/kernel/sync_file.hpp>
#include <dmabridge/kms/device.hpp>

namespace dmabridge::kms {

/// An output and the planes able to show one (fourcc, modifier) on it.
struct Output {
    std::uint32_t connector = 0;    ///< a connected output connector
    std::uint32_t crtc = 0;         ///< a CRTC that can drive it
    std::uint32_t crtc_index = 0;   ///< that CRTC's index (possible_crtcs bit)
    Mode mode;                      ///< the connector's preferred mode (else its first)
    std::uint32_t primary = 0;      ///< the CRTC's primary plane, if it takes the format; else 0
    std::vector<std::uint32_t> overlays;  ///< the CRTC's overlay planes that take the format
    std::uint32_t writeback = 0;    ///< a writeback connector the CRTC can feed; 0 when none
};

/// The first connected connector (in the device's order) that has a mode and a CRTC to drive
/// it, with the planes of that CRTC that scan out (fourcc, modifier). Reads the Device's lists
/// only (no ioctl). Errors (Errc::not_found / unsupported) name what was missing: no connected
/// output with a mode and a CRTC, or no primary or overlay plane of CRTC N taking the format
/// (listing what the planes take).
Result<Output> find_output(const Device& device, std::uint32_t fourcc, std::uint64_t modifier);

/// A picture captured from a CRTC through writeback.
struct Capture {
    BufferDesc picture;  ///< mode size, the format asked for
};

/// Captures what `output`'s CRTC composes now into a new buffer from `allocator` (which must
/// make buffers the device can import: GBM on the device's node, or udmabuf/dma-heap memory
/// where the driver scans out system memory) through output.writeback, and waits until the
/// capture is written (the writeback fence), at most `timeout`. The CRTC must be active. Routing
/// the writeback connector is a mode set in the kernel's eyes (ALLOW_MODESET; the output stays
/// lit); the connector is detached again afterwards. Errors: no writeback connector
/// (Errc::unsupported), `fourcc` not among WRITEBACK_PIXEL_FORMATS (the kernel's EINVAL, named),
/// the allocation's, the commit's, a fence that does not signal in time (ETIME).
Result<Capture> capture(const Device& device, const Output& output, Allocator& allocator, std::uint32_t fourcc,
                        Timeout timeout);

}  // namespace dmabridge::kms
