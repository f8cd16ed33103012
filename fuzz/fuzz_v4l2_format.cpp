// SPDX-License-Identifier: MIT
// Fuzzes the conversion of what a V4L2 driver returns from VIDIOC_G_FMT / S_FMT / TRY_FMT
// (struct v4l2_format, single-plane and multi-planar) into the library's Format, and the
// description the library builds from it: one plane per V4L2 buffer plane at offset 0 with the
// driver's bytesperline, in a dma-buf of the driver's sizeimage, as an exported MMAP ring has.
// Whatever the driver says, the conversion stays in bounds, and a description validate_layout()
// accepts fits its buffers.
//
// Input: u8 flags (bit 0: read the multi-planar member), then the bytes of a struct v4l2_format
// (as the kernel's uapi lays it out on this machine; missing bytes are zero).

#include <dmabridge/format/buffer_desc.hpp>
#include <dmabridge/format/format.hpp>
#include <dmabridge/v4l2/device.hpp>

#include "v4l2/format_parser.hpp"
#include "fuzz_input.hpp"
#include "layout_oracle.hpp"

using namespace dmabridge;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    fuzz::Input in(data, size);
    const bool mplane = in.take<std::uint8_t>() & 1;
    v4l2_format f;
    in.take_bytes(&f, sizeof f);

    const v4l2::Format got = detail::format_from_v4l2(f, mplane);
    FUZZ_CHECK(got.multiplanar == mplane);
    if (mplane) {
        const auto& mp = f.fmt.pix_mp;
        FUZZ_CHECK(got.width == mp.width && got.height == mp.height && got.pixel_format == mp.pixelformat);
        FUZZ_CHECK(got.planes.size() == std::min<std::size_t>(mp.num_planes, VIDEO_MAX_PLANES));
        for (std::size_t p = 0; p < got.planes.size(); ++p)
            FUZZ_CHECK(got.planes[p].bytes_per_line == mp.plane_fmt[p].bytesperline &&
                       got.planes[p].size_image == mp.plane_fmt[p].sizeimage);
    } else {
        const auto& sp = f.fmt.pix;
        FUZZ_CHECK(got.width == sp.width && got.height == sp.height && got.pixel_format == sp.pixelformat);
        FUZZ_CHECK(got.planes.size() == 1);
        FUZZ_CHECK(got.planes[0].bytes_per_line == sp.bytesperline && got.planes[0].size_image == sp.sizeimage);
    }
    FUZZ_CHECK(got.drm_fourcc == v4l2::drm_fourcc_for(got.pixel_format));
    if (got.drm_fourcc != 0) FUZZ_CHECK(find_format(got.drm_fourcc) != nullptr);

    // The description of one buffer of an MMAP ring on this format, the driver's numbers as they
    // are: validation must refuse whatever does not fit the buffers.
    ImageLayout layout{got.width, got.height, got.drm_fourcc, modifier::linear, {}};
    for (const auto& p : got.planes) layout.planes.push_back({0, p.bytes_per_line, p.size_image});
    if (validate_layout(layout)) fuzz::check_accepted_layout_fits(layout);
    return 0;
}
