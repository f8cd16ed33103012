// SPDX-License-Identifier: MIT
// Every exporter against the real kernel: udmabuf, the system dma-heap, and GBM on vgem.
#include <dmabridge/alloc/dma_heap.hpp>
#include <dmabridge/alloc/gbm_allocator.hpp>
#include <dmabridge/alloc/udmabuf.hpp>
#include <dmabridge/format/format.hpp>
#include <dmabridge/kernel/cpu_access.hpp>
#include <dmabridge/kernel/devices.hpp>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <fcntl.h>
#include <linux/dma-buf.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <dmabridge/base/log.hpp>

#include <doctest/doctest.h>

#include "fd_count.hpp"
#include "syscall_filter.hpp"

using namespace dmabridge;
using dmabridge::test::FdLeakCheck;

namespace {

std::unique_ptr<Allocator> open_allocator(const std::string& which) {
    if (which == "udmabuf") {
        auto a = UdmabufAllocator::open();
        REQUIRE_MESSAGE(a, (a ? "" : a.error().message()));
        return std::make_unique<UdmabufAllocator>(std::move(*a));
    }
    if (which == "dma-heap") {
        auto a = DmaHeapAllocator::open("system");
        REQUIRE_MESSAGE(a, (a ? "" : a.error().message()));
        return std::make_unique<DmaHeapAllocator>(std::move(*a));
    }
    auto a = GbmAllocator::open();
    REQUIRE_MESSAGE(a, (a ? "" : a.error().message()));
    return std::make_unique<GbmAllocator>(std::move(*a));
}

ImageRequest request(std::uint32_t w, std::uint32_t h, std::uint32_t code, std::string name = "pattern") {
    ImageRequest r;
    r.width = w;
    r.height = h;
    r.fourcc = code;
    r.name = std::move(name);
    return r;
}

std::uint8_t pattern(std::size_t plane, std::size_t x, std::size_t y) {
    return static_cast<std::uint8_t>(x * 3 + y * 5 + plane * 101 + 1);
}

// Writes a pattern into every visible byte of every plane, inside write brackets.
void write_pattern(const BufferDesc& desc) {
    const FormatInfo* info = find_format(desc.fourcc);
    REQUIRE(info);
    for (std::size_t p = 0; p < desc.planes.size(); ++p) {
        const PlaneDesc& plane = desc.planes[p];
        auto map = Mapping::map(plane.buffer, Access::write);
        REQUIRE_MESSAGE(map, (map ? "" : map.error().message()));
        auto cpu = CpuAccess::begin(plane.buffer, Access::write);
        REQUIRE(cpu);
        const auto row = *info->row_bytes(static_cast<std::uint32_t>(p), desc.width);
        for (std::size_t y = 0; y < info->plane_rows(static_cast<std::uint32_t>(p), desc.height); ++y)
            for (std::size_t x = 0; x < row; ++x)
                map->data()[plane.offset + y * plane.stride + x] = std::byte(pattern(p, x, y));
        REQUIRE(cpu->end());
    }
}

// Reads the pattern back through independent mappings of dup'd fds; returns the mismatches.
std::size_t count_mismatches(const BufferDesc& original) {
    auto desc = original.dup();
    REQUIRE(desc);
    const FormatInfo* info = find_format(desc->fourcc);
    std::size_t bad = 0;
    for (std::size_t p = 0; p < desc->planes.size(); ++p) {
        const PlaneDesc& plane = desc->planes[p];
        CHECK(plane.buffer.fd() != original.planes[p].buffer.fd());
        CHECK(plane.buffer.id() == original.planes[p].buffer.id());
        auto map = Mapping::map(plane.buffer, Access::read);
        REQUIRE(map);
        auto cpu = CpuAccess::begin(plane.buffer, Access::read);
        REQUIRE(cpu);
        const auto row = *info->row_bytes(static_cast<std::uint32_t>(p), desc->width);
        for (std::size_t y = 0; y < info->plane_rows(static_cast<std::uint32_t>(p), desc->height); ++y)
            for (std::size_t x = 0; x < row; ++x)
                bad += map->data()[plane.offset + y * plane.stride + x] != std::byte(pattern(p, x, y));
    }
    return bad;
}

const std::string all_allocators[] = {"udmabuf", "dma-heap", "gbm"};

}  // namespace

TEST_CASE_FIXTURE(FdLeakCheck, "every allocator's XRGB8888 image round-trips a pattern through a dup") {
    for (const std::string& which : all_allocators) {
        CAPTURE(which);
        auto alloc = open_allocator(which);
        auto desc = alloc->allocate(request(640, 480, fourcc::XRGB8888, "xrgb-pattern"));
        REQUIRE_MESSAGE(desc, (desc ? "" : desc.error().message()));
        CHECK(desc->validate());
        CHECK(desc->width == 640);
        CHECK(desc->height == 480);
        CHECK(desc->fourcc == fourcc::XRGB8888);
        CHECK(desc->modifier == modifier::linear);
        REQUIRE(desc->planes.size() == 1);
        CHECK(desc->planes[0].stride >= 2560);
        CHECK(desc->planes[0].buffer.size() >= desc->planes[0].stride * 480);
        CHECK(*desc->planes[0].buffer.name() == "xrgb-pattern");
        write_pattern(*desc);
        CHECK(count_mismatches(*desc) == 0);
    }
}

TEST_CASE_FIXTURE(FdLeakCheck, "a moved-from allocator of every kind fails allocations at once with Errc::empty_object") {
    for (const char* which : {"udmabuf", "dma-heap", "gbm"}) {
        CAPTURE(which);
        auto original = open_allocator(which);
        std::unique_ptr<Allocator> taker;
        if (auto* u = dynamic_cast<UdmabufAllocator*>(original.get()))
            taker = std::make_unique<UdmabufAllocator>(std::move(*u));
        else if (auto* h = dynamic_cast<DmaHeapAllocator*>(original.get()))
            taker = std::make_unique<DmaHeapAllocator>(std::move(*h));
        else if (auto* g = dynamic_cast<GbmAllocator*>(original.get()))
            taker = std::make_unique<GbmAllocator>(std::move(*g));
        REQUIRE(taker);
        auto empty = original->allocate(request(64, 32, fourcc::XRGB8888));
        REQUIRE_FALSE(empty);
        CHECK_MESSAGE(empty.error().is(Errc::empty_object), empty.error().message());
        auto fine = taker->allocate(request(64, 32, fourcc::XRGB8888));
        CHECK_MESSAGE(fine, (fine ? "" : fine.error().message()));
        if (auto* m = dynamic_cast<MemoryAllocator*>(original.get())) {
            auto bytes = m->allocate_bytes(4096);
            REQUIRE_FALSE(bytes);
            CHECK(bytes.error().is(Errc::empty_object));
        }
    }
}

TEST_CASE_FIXTURE(FdLeakCheck, "udmabuf and dma-heap NV12 images place both planes in one buffer") {
    for (const std::string which : {"udmabuf", "dma-heap"}) {
        CAPTURE(which);
        auto alloc = open_allocator(which);
        auto desc = alloc->allocate(request(320, 240, fourcc::NV12));
        REQUIRE_MESSAGE(desc, (desc ? "" : desc.error().message()));
        REQUIRE(desc->planes.size() == 2);
        CHECK(desc->planes[0].buffer.id() == desc->planes[1].buffer.id());
        CHECK(desc->planes[1].offset >= desc->planes[0].stride * 240);
        CHECK(desc->planes[0].buffer.size() % 4096 == 0);
        write_pattern(*desc);
        CHECK(count_mismatches(*desc) == 0);
    }
}

TEST_CASE_FIXTURE(FdLeakCheck, "exporters name their buffers") {
    auto u = UdmabufAllocator::open();
    REQUIRE(u);
    auto ub = u->allocate_bytes(4096, "named-u");
    REQUIRE(ub);
    CHECK(*ub->exporter_name() == "udmabuf");
    CHECK(*ub->name() == "named-u");
    auto h = DmaHeapAllocator::open();
    REQUIRE(h);
    CHECK(h->backend_name() == "dma-heap:system");
    auto hb = h->allocate_bytes(4096, "named-h");
    REQUIRE(hb);
    CHECK(*hb->exporter_name() == "system");
    CHECK(*hb->name() == "named-h");
    auto unnamed = h->allocate_bytes(4096);
    REQUIRE(unnamed);
    CHECK(*unnamed->name() == "dmabridge");
}

TEST_CASE_FIXTURE(FdLeakCheck, "zero, huge and unsupported requests fail with clear errors") {
    for (const std::string& which : all_allocators) {
        CAPTURE(which);
        auto alloc = open_allocator(which);
        auto zero = alloc->allocate(request(0, 480, fourcc::XRGB8888));
        REQUIRE_FALSE(zero);
        CHECK(zero.error().message().find("empty") != std::string::npos);

        auto unknown = alloc->allocate(request(64, 64, fourcc_code('Q', 'Q', 'Q', 'Q')));
        REQUIRE_FALSE(unknown);
        CHECK(unknown.error().is(Errc::unknown_format));

        // 14.4 GB: more than this machine has. It must be refused before the kernel tries
        // (a 7.3 kernel OOM-killed the test binary trying), on every allocator.
        auto huge = alloc->allocate(request(60000, 60000, fourcc::XRGB8888));
        REQUIRE_FALSE(huge);
        CHECK(huge.error().message().find("60000x60000") != std::string::npos);
        CHECK_MESSAGE(huge.error().is(Errc::limit_exceeded), huge.error().message());

        auto long_name = alloc->allocate(request(64, 64, fourcc::XRGB8888, std::string(40, 'x')));
        REQUIRE_FALSE(long_name);
        CHECK(long_name.error().is(Errc::invalid_argument));

        // A NUL byte would have the kernel keep only what stands before it: refused, by image
        // requests and byte allocations alike.
        using namespace std::string_literals;
        auto nul_name = alloc->allocate(request(64, 64, fourcc::XRGB8888, "cam\0era"s));
        REQUIRE_FALSE(nul_name);
        CHECK(nul_name.error().is(Errc::invalid_argument));
        CHECK(nul_name.error().message().find("NUL byte at 3") != std::string::npos);
    }
    // Byte allocations the same.
    auto u_bytes = UdmabufAllocator::open();
    REQUIRE(u_bytes);
    auto h_bytes = DmaHeapAllocator::open();
    REQUIRE(h_bytes);
    for (MemoryAllocator* bytes : {static_cast<MemoryAllocator*>(&*u_bytes), static_cast<MemoryAllocator*>(&*h_bytes)}) {
        auto nul_bytes = bytes->allocate_bytes(4096, std::string_view("cam\0era", 7));
        REQUIRE_FALSE(nul_bytes);
        CHECK(nul_bytes.error().message().find("NUL byte at 3") != std::string::npos);
    }
    // Linear-only allocators refuse a modifier list without LINEAR.
    auto u = open_allocator("udmabuf");
    ImageRequest tiled = request(64, 64, fourcc::XRGB8888);
    tiled.modifiers = {0x0100000000000001ull};
    auto refused = u->allocate(tiled);
    REQUIRE_FALSE(refused);
    CHECK(refused.error().is(Errc::unsupported));
    tiled.modifiers.push_back(modifier::linear);
    CHECK(u->allocate(tiled));
}

TEST_CASE_FIXTURE(FdLeakCheck, "udmabuf reports its module's size limit and refuses zero bytes") {
    auto u = UdmabufAllocator::open();
    REQUIRE(u);
    // The module parameter: 64 MiB by default up to 6.x, INT_MAX MiB (no limit) on 7.x.
    std::ifstream param("/sys/module/udmabuf/parameters/size_limit_mb");
    std::uint64_t limit_mb = 0;
    REQUIRE(bool(param >> limit_mb));
    REQUIRE(u->size_limit() == limit_mb << 20);
    if (limit_mb <= 1024) {
        auto over = u->allocate_bytes(u->size_limit() + 4096);
        REQUIRE_FALSE(over);
        CHECK(over.error().is(Errc::limit_exceeded));
        CHECK(over.error().message().find("size_limit_mb (" + std::to_string(limit_mb) + " MiB)") != std::string::npos);
    } else {
        // The module no longer protects the kernel: the library's memory check must refuse first.
        auto over = u->allocate_bytes(1ull << 40);
        REQUIRE_FALSE(over);
        CHECK(over.error().is(Errc::limit_exceeded));
    }
    auto zero = u->allocate_bytes(0);
    REQUIRE_FALSE(zero);
    CHECK(zero.error().is(Errc::invalid_argument));
    CHECK(u->allocate_bytes(std::min<std::uint64_t>(u->size_limit(), 64ull << 20)));
}

TEST_CASE_FIXTURE(FdLeakCheck, "dma-heap refuses missing heaps, bad names and impossible sizes") {
    auto missing = DmaHeapAllocator::open("no-such-heap");
    REQUIRE_FALSE(missing);
    CHECK(missing.error().is(Errc::not_found));
    CHECK(missing.error().message().find("system") != std::string::npos);  // lists what exists
    CHECK(DmaHeapAllocator::open("../udmabuf").error().is(Errc::invalid_argument));
    CHECK(DmaHeapAllocator::open("").error().is(Errc::invalid_argument));
    auto h = DmaHeapAllocator::open();
    REQUIRE(h);
    auto huge = h->allocate_bytes(1ull << 50);  // the system heap would OOM the machine trying
    REQUIRE_FALSE(huge);
    CHECK(huge.error().is(Errc::limit_exceeded));
    CHECK(huge.error().message().find("MemTotal") != std::string::npos);
    CHECK(h->allocate_bytes(0).error().is(Errc::invalid_argument));
}

TEST_CASE_FIXTURE(FdLeakCheck, "device discovery finds vgem, the system heap and udmabuf") {
    auto drm = list_drm_devices();
    REQUIRE(drm);
    bool vgem = false;
    for (const auto& d : *drm) vgem = vgem || (d.driver == "vgem" && d.primary_node == "/dev/dri/card0");
    CHECK(vgem);
    auto heaps = list_dma_heaps();
    CHECK(std::find(heaps.begin(), heaps.end(), "system") != heaps.end());
    CHECK(udmabuf_available());
}

TEST_SUITE_BEGIN("any_kernel");

TEST_CASE_FIXTURE(FdLeakCheck, "GBM on vgem falls back to the card node and reports linear") {
    auto gbm = GbmAllocator::open();
    REQUIRE(gbm);
    CHECK(gbm->node() == "/dev/dri/card0");  // vgem's render node refuses dumb buffers
    auto explicit_node = GbmAllocator::open("/dev/dri/card0");
    REQUIRE(explicit_node);
    ImageRequest r = request(256, 64, fourcc::ABGR8888);
    r.modifiers = {modifier::linear};
    auto desc = explicit_node->allocate(r);
    REQUIRE_MESSAGE(desc, (desc ? "" : desc.error().message()));
    CHECK(desc->modifier == modifier::linear);
    auto missing = GbmAllocator::open("/dev/dri/card9");
    REQUIRE_FALSE(missing);
    CHECK(missing.error().is_errno(ENOENT));
}

TEST_CASE_FIXTURE(FdLeakCheck, "GBM takes a modifier list and refuses one it cannot honour") {
    auto gbm = GbmAllocator::open();
    REQUIRE(gbm);
    constexpr std::uint64_t vendor_tiled = 0x0100000000000001ull;  // I915_FORMAT_MOD_X_TILED
    // vgem has no modifier support: GBM ignores the list and answers INVALID (implicit), so
    // with LINEAR in the list dmabridge allocates a buffer known to be linear instead.
    ImageRequest r = request(128, 32, fourcc::XRGB8888);
    r.modifiers = {vendor_tiled, modifier::linear};
    auto desc = gbm->allocate(r);
    REQUIRE_MESSAGE(desc, (desc ? "" : desc.error().message()));
    CHECK(desc->modifier == modifier::linear);
    write_pattern(*desc);
    CHECK(count_mismatches(*desc) == 0);
    // Accepting implicit keeps INVALID in the description: nobody may assume it is linear.
    r.modifiers = {vendor_tiled, modifier::invalid};
    auto implicit = gbm->allocate(r);
    REQUIRE_MESSAGE(implicit, (implicit ? "" : implicit.error().message()));
    CHECK(implicit->modifier == modifier::invalid);
    CHECK(implicit->validate());
    // Neither linear nor implicit acceptable: nothing vgem makes is what was asked, and the
    // error names the list.
    r.modifiers = {vendor_tiled};
    auto refused = gbm->allocate(r);
    REQUIRE_FALSE(refused);
    CHECK(refused.error().message().find("with modifiers [0x0100000000000001]") != std::string::npos);
}

TEST_SUITE_END();

namespace {

std::uint64_t meminfo(const std::string& key) {
    std::ifstream in("/proc/meminfo");
    std::string k, unit;
    std::uint64_t kib = 0;
    while (in >> k >> kib >> unit)
        if (k == key + ":") return kib << 10;
    FAIL("no " << key << " in /proc/meminfo");
    return 0;
}

bool says(const Error& e, const std::string& text) { return e.message().find(text) != std::string::npos; }

// Writes a module parameter (or any sysfs file) and restores it when destroyed.
class SysfsValue {
public:
    SysfsValue(std::string path, const std::string& value) : path_(std::move(path)) {
        std::ifstream in(path_);
        REQUIRE(std::getline(in, old_));
        set(value);
    }
    ~SysfsValue() { set(old_); }
    SysfsValue(const SysfsValue&) = delete;
    SysfsValue& operator=(const SysfsValue&) = delete;

private:
    void set(const std::string& value) {
        std::ofstream out(path_);
        out << value;
        out.flush();
        CHECK_MESSAGE(out.good(), "cannot write " << value << " to " << path_);
    }
    std::string path_, old_;
};

// Creates a node in a directory and removes it when destroyed.
class TestNode {
public:
    TestNode(std::string path, mode_t mode, dev_t dev) : path_(std::move(path)) {
        REQUIRE_MESSAGE(::mknod(path_.c_str(), mode | 0600, dev) == 0, "mknod " << path_);
    }
    ~TestNode() { ::unlink(path_.c_str()); }
    TestNode(const TestNode&) = delete;
    TestNode& operator=(const TestNode&) = delete;

private:
    std::string path_;
};

}  // namespace

TEST_CASE_FIXTURE(FdLeakCheck, "requests that cannot fit in memory are refused before the kernel sees them") {
    const std::uint64_t total = meminfo("MemTotal");
    const std::uint64_t available = meminfo("MemAvailable");
    // dma-heap: above MemTotal, and between MemAvailable and MemTotal (the pages are taken now).
    auto h = DmaHeapAllocator::open();
    REQUIRE(h);
    auto above_total = h->allocate_bytes(total + (64 << 20));
    REQUIRE_FALSE(above_total);
    CHECK(above_total.error().is(Errc::limit_exceeded));
    CHECK(says(above_total.error(), "MemTotal"));
    if (total - available > (32u << 20)) {
        auto above_available = h->allocate_bytes(available + (16 << 20));
        REQUIRE_FALSE(above_available);
        CHECK(above_available.error().is(Errc::limit_exceeded));
        CHECK(says(above_available.error(), "MemAvailable"));
    }
    // udmabuf with its module limit raised above the machine's memory: the memory check still
    // holds (udmabuf pins every page at creation).
    {
        SysfsValue limit("/sys/module/udmabuf/parameters/size_limit_mb", std::to_string((total >> 20) * 4));
        auto u = UdmabufAllocator::open();
        REQUIRE(u);
        REQUIRE(u->size_limit() == ((total >> 20) * 4) << 20);
        auto big = u->allocate_bytes(available + (16 << 20));
        REQUIRE_FALSE(big);
        CHECK(big.error().is(Errc::limit_exceeded));
        CHECK_MESSAGE((says(big.error(), "MemAvailable") || says(big.error(), "MemTotal")), big.error().message());
        auto image = u->allocate(request(60000, 60000, fourcc::XRGB8888));
        REQUIRE_FALSE(image);
        CHECK(image.error().is(Errc::limit_exceeded));
        CHECK(says(image.error(), "60000x60000"));
    }
    // GBM: the smallest layout of the image is already more than the machine's memory.
    auto g = GbmAllocator::open();
    REQUIRE(g);
    const auto side = static_cast<std::uint32_t>(total / (4 * 16384) + 16);  // just above MemTotal
    auto wide = g->allocate(request(16384, side, fourcc::XRGB8888));
    REQUIRE_FALSE(wide);
    CHECK(wide.error().is(Errc::limit_exceeded));
    CHECK(says(wide.error(), "MemTotal"));
    // Something that fits is still allocated.
    CHECK(g->allocate(request(640, 480, fourcc::XRGB8888)));
}

TEST_CASE_FIXTURE(FdLeakCheck, "a failing DMA_BUF_SET_NAME leaves the allocation standing, logged") {
    std::mutex mutex;
    std::vector<std::string> warnings;
    set_log_handler([&](LogLevel level, std::string_view message) {
        std::lock_guard lock(mutex);
        if (level == LogLevel::warning) warnings.emplace_back(message);
    });
    auto u = UdmabufAllocator::open();
    REQUIRE(u);
    auto h = DmaHeapAllocator::open();
    REQUIRE(h);
    auto g = GbmAllocator::open();
    REQUIRE(g);
    std::vector<std::string> failures;
    std::vector<BufferDesc> made;
    std::vector<DmaBuf> bytes;
    // The kernel answers ENOMEM to every DMA_BUF_SET_NAME on this thread only.
    test::run_with_failing_syscall(SYS_ioctl, 1, static_cast<std::uint32_t>(DMA_BUF_SET_NAME), ENOMEM, [&] {
        for (Allocator* a : std::initializer_list<Allocator*>{&*u, &*h, &*g}) {
            auto d = a->allocate(request(64, 64, fourcc::XRGB8888, "refused-name"));
            if (d) made.push_back(std::move(*d));
            else failures.push_back(a->backend_name() + ": " + d.error().message());
        }
        auto b = u->allocate_bytes(4096, "refused-name");
        if (b) bytes.push_back(std::move(*b));
        else failures.push_back(b.error().message());
        // The filter really makes the ioctl fail.
        if (!bytes.empty() && bytes[0].set_name("direct").ok()) failures.push_back("set_name succeeded under the filter");
    });
    set_log_handler({});
    for (const auto& f : failures) FAIL_CHECK(f);
    REQUIRE(made.size() == 3);
    REQUIRE(bytes.size() == 1);
    for (const auto& d : made) {
        CHECK(d.validate());
        CHECK(*d.planes[0].buffer.name() != "refused-name");
    }
    CHECK(*bytes[0].name() != "refused-name");
    // One warning per named buffer, naming the ioctl and the errno.
    REQUIRE(warnings.size() >= 4);
    for (const auto& w : warnings) {
        CHECK(w.find("DMA_BUF_SET_NAME") != std::string::npos);
        CHECK(w.find("Cannot allocate memory") != std::string::npos);
        CHECK(w.find("unnamed") != std::string::npos);
    }
    write_pattern(made[0]);
    CHECK(count_mismatches(made[0]) == 0);
}

TEST_CASE_FIXTURE(FdLeakCheck, "allocators opened on a node that is not theirs fail at open, saying what it is") {
    const std::string file = "/run/dmabridge-not-a-device";
    REQUIRE((std::ofstream(file) << "plain file").good());
    // udmabuf
    for (const auto& [node, is] : std::vector<std::pair<std::string, std::string>>{
             {"/dev/null", "\"null\""}, {"/dev/video0", "\"video0\""}, {"/dev/dri/card0", "\"dri/card0\""},
             {file, "a regular file"}}) {
        CAPTURE(node);
        auto u = UdmabufAllocator::open(node);
        REQUIRE_FALSE(u);
        CHECK(u.error().is(Errc::invalid_argument));
        CHECK_MESSAGE(says(u.error(), is), u.error().message());
        CHECK(says(u.error(), "not the udmabuf device"));
    }
    // dma-heap: whatever else sits in /dev/dma_heap
    {
        TestNode null_node("/dev/dma_heap/dmabridge-test-null", S_IFCHR, makedev(1, 3));
        TestNode plain("/dev/dma_heap/dmabridge-test-file", S_IFREG, 0);
        auto n = DmaHeapAllocator::open("dmabridge-test-null");
        REQUIRE_FALSE(n);
        CHECK(n.error().is(Errc::invalid_argument));
        CHECK_MESSAGE(says(n.error(), "\"null\""), n.error().message());
        CHECK(says(n.error(), "not a dma-heap"));
        auto f = DmaHeapAllocator::open("dmabridge-test-file");
        REQUIRE_FALSE(f);
        CHECK(f.error().is(Errc::invalid_argument));
        CHECK_MESSAGE(says(f.error(), "a regular file"), f.error().message());
    }
    // GBM: not DRM at all, and a DRM node where no buffer can be made (vgem's render node).
    for (const auto& [node, is] : std::vector<std::pair<std::string, std::string>>{
             {"/dev/null", "\"null\""}, {"/dev/video0", "\"video0\""}, {file, "a regular file"}}) {
        CAPTURE(node);
        auto g = GbmAllocator::open(node);
        REQUIRE_FALSE(g);
        CHECK(g.error().is(Errc::invalid_argument));
        CHECK_MESSAGE(says(g.error(), is), g.error().message());
    }
    auto render = GbmAllocator::open("/dev/dri/renderD128");
    REQUIRE_FALSE(render);
    CHECK(render.error().is(Errc::unsupported));
    CHECK_MESSAGE(says(render.error(), "cannot allocate"), render.error().message());
    CHECK(says(render.error(), "vgem"));
    ::unlink(file.c_str());
}
