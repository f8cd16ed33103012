// SPDX-License-Identifier: MIT
#include "v4l2/format_parser.hpp"

namespace dmabridge::detail {

v4l2::Format format_from_v4l2(const v4l2_format& f, bool mplane) {
    v4l2::Format out;
    out.multiplanar = mplane;
    if (mplane) {
        out.width = f.fmt.pix_mp.width;
        out.height = f.fmt.pix_mp.height;
        out.pixel_format = f.fmt.pix_mp.pixelformat;
        for (unsigned p = 0; p < f.fmt.pix_mp.num_planes && p < VIDEO_MAX_PLANES; ++p)
            out.planes.push_back({f.fmt.pix_mp.plane_fmt[p].bytesperline, f.fmt.pix_mp.plane_fmt[p].sizeimage});
    } else {
        out.width = f.fmt.pix.width;
        out.height = f.fmt.pix.height;
        out.pixel_format = f.fmt.pix.pixelformat;
        out.planes.push_back({f.fmt.pix.bytesperline, f.fmt.pix.sizeimage});
    }
    out.drm_fourcc = v4l2::drm_fourcc_for(out.pixel_format);
    return out;
}

}  // namespace dmabridge::detail
