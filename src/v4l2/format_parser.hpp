// SPDX-License-Identifier: MIT
#pragma once
// Conversion of the v4l2_format a driver returns (VIDIOC_G_FMT, S_FMT, TRY_FMT) into the
// library's Format, apart from the ioctl, so that it can be fuzzed. Not part of the public API.

#include <linux/videodev2.h>

#include <dmabridge/v4l2/device.hpp>

namespace dmabridge::detail {

/// The Format a driver's `f` describes, read as the multi-planar (`mplane`) or the single-plane
/// member of its union. At most VIDEO_MAX_PLANES planes whatever num_planes says; drm_fourcc is
/// v4l2::drm_fourcc_for(pixelformat). Copies numbers only: whether they make sense is for the
/// caller to check (BufferDesc::validate, the ring's own checks). Pure.
v4l2::Format format_from_v4l2(const v4l2_format& f, bool mplane);

}  // namespace dmabridge::detail
