// SPDX-License-Identifier: MIT
// The parsers of what the kernel and drivers return (src/base/fdinfo, src/kernel/sync_file_info, src/v4l2/format_parser), which the fuzz targets in fuzz/
// also run: the cases a fuzzer's short inputs cannot reach (lines of megabytes) and the ones
// each parser promises by name.
#include <dmabridge/v4l2/device.hpp>

#include <cstring>
#include <string>

#include <doctest/doctest.h>

#include "base/fdinfo.hpp"
#include "kernel/sync_file_info.hpp"
#include "v4l2/format_parser.hpp"

using namespace dmabridge;

TEST_CASE("fdinfo: the first line with the key gives its value, without blanks or newline") {
    const std::string text = "pos:\t0\nflags:\t02000002\nsize:\t1228800\nexp_name:\tudmabuf\nname:\t frame 1 \n";
    CHECK(detail::fdinfo_find(text, "exp_name") == "udmabuf");
    CHECK(detail::fdinfo_find(text, "name") == "frame 1 ");
    CHECK(detail::fdinfo_find(text, "size") == "1228800");
    CHECK(detail::fdinfo_find(text, "missing") == "");
    CHECK(detail::fdinfo_find(text, "exp") == "");  // a prefix of a key is not the key
    CHECK(detail::fdinfo_find("name:\tfirst\nname:\tsecond\n", "name") == "first");
    CHECK(detail::fdinfo_find("name:", "name") == "");
    CHECK(detail::fdinfo_find("", "name") == "");
}

TEST_CASE("fdinfo: a last line without newline, and lines of megabytes, parse whole") {
    CHECK(detail::fdinfo_find("pos:\t0\nexp_name:\tsystem", "exp_name") == "system");
    const std::string huge(16u << 20, 'x');
    const std::string text = "junk:" + huge + "\nname:\t" + huge;
    const std::string value = detail::fdinfo_find(text, "name");
    CHECK(value.size() == huge.size());
    CHECK(value == huge);
    CHECK(detail::fdinfo_find(huge, "name") == "");
}

TEST_CASE("sync_file info: no more fences than the array holds, names bounded by their fields") {
    sync_fence_info raw[2]{};
    std::memset(raw[0].driver_name, 'd', sizeof raw[0].driver_name);  // no terminating NUL
    std::memset(raw[0].obj_name, 'o', sizeof raw[0].obj_name);
    raw[0].status = 1;
    std::strcpy(raw[1].driver_name, "vgem");
    std::strcpy(raw[1].obj_name, "vgem-3");
    raw[1].status = -22;

    auto fences = detail::parse_fence_infos(raw, 0xffffffffu);  // more reported than filled
    REQUIRE(fences.size() == 2);
    CHECK(fences[0].driver == std::string(32, 'd'));
    CHECK(fences[0].timeline == std::string(32, 'o'));
    CHECK(fences[0].status == FenceStatus::signaled);
    CHECK(fences[1].driver == "vgem");
    CHECK(fences[1].timeline == "vgem-3");
    CHECK(fences[1].status == FenceStatus::error);
    CHECK(detail::parse_fence_infos(raw, 1).size() == 1);
    CHECK(detail::parse_fence_infos({}, 5).empty());
    CHECK(detail::fence_status(0) == FenceStatus::active);
}

TEST_CASE("v4l2_format: at most VIDEO_MAX_PLANES planes, whatever num_planes says") {
    v4l2_format f{};
    f.fmt.pix_mp.width = 640;
    f.fmt.pix_mp.height = 480;
    f.fmt.pix_mp.pixelformat = V4L2_PIX_FMT_NV12M;
    f.fmt.pix_mp.num_planes = 255;
    for (auto& p : f.fmt.pix_mp.plane_fmt) p = {307200, 640, {}};
    auto mp = detail::format_from_v4l2(f, true);
    CHECK(mp.planes.size() == VIDEO_MAX_PLANES);
    CHECK(mp.drm_fourcc == v4l2::drm_fourcc_for(V4L2_PIX_FMT_NV12M));
    CHECK(mp.multiplanar);

    v4l2_format s{};
    s.fmt.pix.width = 640;
    s.fmt.pix.height = 480;
    s.fmt.pix.pixelformat = V4L2_PIX_FMT_YUYV;
    s.fmt.pix.bytesperline = 1280;
    s.fmt.pix.sizeimage = 614400;
    auto sp = detail::format_from_v4l2(s, false);
    REQUIRE(sp.planes.size() == 1);
    CHECK(sp.planes[0].bytes_per_line == 1280);
    CHECK(sp.planes[0].size_image == 614400);
    CHECK(sp.drm_fourcc == v4l2::drm_fourcc_for(V4L2_PIX_FMT_YUYV));
    CHECK_FALSE(sp.multiplanar);
}
