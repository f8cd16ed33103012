// SPDX-License-Identifier: MIT
// dmabridge-info's report in the VM: the devices it lists, the JSON it writes, and a sharing
// matrix whose every vivid -> lavapipe pair is proven by a real import.
#include <dmabridge/v4l2/buffer_ring.hpp>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <set>
#include <string>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include <dmabridge/kernel/timeline.hpp>

#include "report.hpp"
#include "vk_fixture.hpp"

using namespace dmabridge;
using namespace dmabridge::test;

namespace {

// A strict JSON syntax check (RFC 8259 grammar; no semantic checks).
class JsonChecker {
public:
    explicit JsonChecker(const std::string& text) : s_(text) {}
    bool valid() {
        skip();
        if (!value()) return false;
        skip();
        return i_ == s_.size();
    }

private:
    void skip() {
        while (i_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[i_]))) ++i_;
    }
    bool literal(const char* word) {
        const std::size_t n = std::char_traits<char>::length(word);
        if (s_.compare(i_, n, word) != 0) return false;
        i_ += n;
        return true;
    }
    bool string() {
        if (s_[i_] != '"') return false;
        for (++i_; i_ < s_.size(); ++i_) {
            if (s_[i_] == '"') return ++i_, true;
            if (static_cast<unsigned char>(s_[i_]) < 0x20) return false;
            if (s_[i_] == '\\') ++i_;
        }
        return false;
    }
    bool number() {
        const std::size_t start = i_;
        while (i_ < s_.size() && (std::isdigit(static_cast<unsigned char>(s_[i_])) || std::strchr("+-.eE", s_[i_])))
            ++i_;
        return i_ > start;
    }
    template <typename Item>
    bool sequence(char close, Item item) {
        ++i_;
        skip();
        if (s_[i_] == close) return ++i_, true;
        for (;;) {
            skip();
            if (!item()) return false;
            skip();
            if (s_[i_] == close) return ++i_, true;
            if (s_[i_] != ',') return false;
            ++i_;
        }
    }
    bool value() {
        if (i_ >= s_.size()) return false;
        switch (s_[i_]) {
        case '{':
            return sequence('}', [&] {
                if (!string()) return false;
                skip();
                if (s_[i_] != ':') return false;
                ++i_;
                skip();
                return value();
            });
        case '[': return sequence(']', [&] { return value(); });
        case '"': return string();
        case 't': return literal("true");
        case 'f': return literal("false");
        case 'n': return literal("null");
        default: return number();
        }
    }
    const std::string& s_;
    std::size_t i_ = 0;
};

// The capture formats `v4l2-ctl --list-formats` reports for `node`.
std::set<std::string> v4l2_ctl_formats(const std::string& node) {
    std::set<std::string> out;
    FILE* p = ::popen(("v4l2-ctl -d " + node + " --list-formats 2>/dev/null").c_str(), "r");
    REQUIRE(p != nullptr);
    char line[512];
    while (std::fgets(line, sizeof line, p)) {
        std::string l = line;
        auto a = l.find('\'');
        auto b = l.find('\'', a + 1);
        if (a != std::string::npos && b == a + 5) out.insert(l.substr(a + 1, 4));
    }
    ::pclose(p);
    return out;
}

const info::MatrixEntry* find_entry(const info::Report& r, const std::string& exporter, const std::string& importer) {
    for (const auto& m : r.matrix)
        if (m.exporter.find(exporter) != std::string::npos && m.importer.find(importer) != std::string::npos) return &m;
    return nullptr;
}

}  // namespace

TEST_CASE_FIXTURE(VkTest, "dmabridge-info lists this machine's devices as the kernel and the drivers see them") {
    const auto report = info::gather({});
    const std::string json = info::to_json(report);
    CHECK(JsonChecker(json).valid());
    CHECK_FALSE(JsonChecker(json + "}").valid());  // the checker can say no

    CHECK(report.kernel.udmabuf);
    CHECK(std::find(report.kernel.heaps.begin(), report.kernel.heaps.end(), "system") != report.kernel.heaps.end());
    CHECK(report.kernel.sync_file == "supported");

    REQUIRE_FALSE(report.vulkan.empty());
    CHECK(report.vulkan[0].name.find("llvmpipe") != std::string::npos);
    CHECK(report.vulkan[0].importable.contains(fourcc::XRGB8888, modifier::linear));
    CHECK(report.vulkan[0].storage.contains(fourcc::ABGR8888, modifier::linear));
    CHECK_FALSE(report.vulkan[0].storage.contains(fourcc::RGB565, modifier::linear));  // lavapipe: no STORAGE
    CHECK(report.vulkan[0].color_attachment.contains(fourcc::RGB565, modifier::linear));
    CHECK(report.vulkan[0].drm_nodes.empty());  // lavapipe has no VK_EXT_physical_device_drm

    auto vgem = std::find_if(report.drm.begin(), report.drm.end(), [](const auto& d) { return d.driver == "vgem"; });
    REQUIRE(vgem != report.drm.end());
    CHECK(vgem->primary_node == "/dev/dri/card0");
    CHECK(vgem->render_node == "/dev/dri/renderD128");
    CHECK(vgem->gbm_node == "/dev/dri/card0");  // GBM allocates only on the card node
    CHECK(vgem->gbm_formats.contains(fourcc::XRGB8888, modifier::linear));
    CHECK(vgem->plane_formats.empty());  // vgem has no KMS
    CHECK_FALSE(vgem->syncobj);           // vgem has no syncobj at all
    CHECK_FALSE(vgem->syncobj_timeline);
    CHECK_FALSE(vgem->syncobj_eventfd);
    CHECK_MESSAGE(vgem->planes_note.find("no modesetting") != std::string::npos, vgem->planes_note);

    auto capture = std::find_if(report.v4l2.begin(), report.v4l2.end(), [](const auto& v) { return v.capture; });
    auto output = std::find_if(report.v4l2.begin(), report.v4l2.end(), [](const auto& v) { return v.output; });
    REQUIRE(capture != report.v4l2.end());
    REQUIRE(output != report.v4l2.end());
    CHECK(capture->driver == "vivid");
    CHECK(capture->capture_memory.exports);
    CHECK(output->output_memory.dmabuf);
    std::set<std::string> ours;
    for (const auto& f : capture->capture_formats) ours.insert(v4l2::fourcc_name(f.v4l2));
    const auto theirs = v4l2_ctl_formats(capture->path);
    CHECK(theirs.size() > 10);
    for (const auto& f : theirs) CHECK_MESSAGE(ours.count(f) == 1, "v4l2-ctl lists " << f);
}

TEST_CASE_FIXTURE(VkTest, "every vivid -> lavapipe pair of the sharing matrix imports for real") {
    info::Filters only_vivid_and_vulkan;
    const auto report = info::gather(only_vivid_and_vulkan);
    const auto* entry = find_entry(report, "v4l2:", "vulkan:");
    REQUIRE(entry != nullptr);
    CHECK(entry->common.contains(fourcc::YUYV, modifier::linear));
    CHECK(entry->common.contains(fourcc::XRGB8888, modifier::linear));
    const std::string node = entry->exporter.substr(5);
    auto capture = v4l2::Device::open(node);
    REQUIRE(capture);
    auto formats = capture->formats(v4l2::Direction::capture);
    REQUIRE(formats);
    vulkan::ImageOptions sampled;
    sampled.usage = VK_IMAGE_USAGE_SAMPLED_BIT;
    for (std::uint32_t code : entry->common.fourccs()) {
        CAPTURE(fourcc_to_string(code));
        auto v4l2_code = std::find_if(formats->begin(), formats->end(),
                                      [&](std::uint32_t f) { return v4l2::drm_fourcc_for(f) == code; });
        REQUIRE(v4l2_code != formats->end());
        REQUIRE(capture->set_format(v4l2::Direction::capture, 640, 480, *v4l2_code));
        auto ring = v4l2::BufferRing::create_exported(*capture, v4l2::Direction::capture, 2);
        REQUIRE_MESSAGE(ring, (ring ? "" : ring.error().message()));
        auto image = device_b().device().import_image(ring->buffer(0), sampled);
        CHECK_MESSAGE(image, (image ? "" : image.error().message()));
    }
}

TEST_CASE_FIXTURE(FdLeakCheck, "a device node that cannot be opened is reported, and the rest still listed") {
    const char* bogus = "/dev/video77";
    ::unlink(bogus);
    REQUIRE(::mknod(bogus, S_IFCHR | 0600, makedev(81, 77)) == 0);  // no driver behind it
    const auto report = info::gather({});
    ::unlink(bogus);
    auto it = std::find_if(report.v4l2.begin(), report.v4l2.end(), [&](const auto& v) { return v.path == bogus; });
    REQUIRE(it != report.v4l2.end());
    CHECK_FALSE(it->error.empty());
    CHECK(it->error.find("open V4L2 device /dev/video77") != std::string::npos);
    CHECK(std::any_of(report.v4l2.begin(), report.v4l2.end(), [](const auto& v) { return v.capture; }));
    CHECK(info::to_text(report).find("/dev/video77  cannot be opened") != std::string::npos);
}

TEST_CASE("dmabridge-info says which DRM devices have syncobj timelines and eventfd waits" * doctest::test_suite("syncobj")) {
    // In the VM with virtio-gpu (ci/vm --virtio-gpu): virtio_gpu has timelines, vgem none; the
    // kernels this suite runs on (6.12, 7.x) have DRM_IOCTL_SYNCOBJ_EVENTFD (6.6).
    info::Filters virtio;
    virtio.device = "virtio_gpu";
    const auto with = info::gather(virtio);
    REQUIRE_MESSAGE(with.drm.size() == 1, "DRM devices matching virtio_gpu: " << with.drm.size());
    const auto& gpu = with.drm[0];
    CHECK(gpu.driver == "virtio_gpu");
    CHECK(gpu.syncobj);
    CHECK(gpu.syncobj_timeline);
    CHECK(gpu.syncobj_eventfd);
    // The library's own answer for that node agrees.
    UniqueFd fd(::open(gpu.render_node.c_str(), O_RDWR | O_CLOEXEC));
    REQUIRE(fd);
    CHECK(Timeline::supported(fd.get()));
    CHECK(Timeline::eventfd_supported(fd.get()));
    const std::string text = info::to_text(with);
    CHECK_MESSAGE(text.find("syncobj: timelines, eventfd waits") != std::string::npos, text);
    const std::string json = info::to_json(with);
    CHECK(JsonChecker(json).valid());
    CHECK(json.find("\"syncobj_timeline\": true, \"syncobj_eventfd\": true") != std::string::npos);

    info::Filters vgem_only;
    vgem_only.device = "vgem";
    const auto without = info::gather(vgem_only);
    REQUIRE(without.drm.size() == 1);
    CHECK_FALSE(without.drm[0].syncobj_timeline);
    CHECK(info::to_text(without).find("syncobj: no") != std::string::npos);
    UniqueFd card(::open(without.drm[0].primary_node.c_str(), O_RDWR | O_CLOEXEC));
    REQUIRE(card);
    auto refused = Timeline::eventfd_supported(card.get());
    REQUIRE_FALSE(refused);
    CHECK(refused.error().is(Errc::unsupported));
}
