// SPDX-License-Identifier: MIT
// What differs between the kernels the VM boots (ci/vm --kernel 6.12, 5.10, 7): device discovery
// on every bus, and the fallbacks of a kernel without the sync_file ioctls (5.10).
//
// Test suites select the tests per kernel (ci/test passes -ts/-tse):
//   any_kernel                       needs only the dma-buf core, vgem and vivid: runs everywhere
//   kernel_without_sync_file_ioctls  runs only on kernels older than 6.0 (bullseye's 5.10)
//   (no suite)                       needs udmabuf, the system heap, the sync_file ioctls and a
//                                    Vulkan driver that shares dma-bufs: 6.12 and 7.x
#include <dmabridge/alloc/gbm_allocator.hpp>
#include <dmabridge/kernel/devices.hpp>
#include <dmabridge/kernel/dmabuf.hpp>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <string>

#include <linux/dma-buf.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include "fd_count.hpp"
#include "report.hpp"
#include "vgem.hpp"

using namespace dmabridge;
using dmabridge::test::FdLeakCheck;
using dmabridge::test::Vgem;

namespace {

// The bus a DRM node's device sits on, from sysfs ("platform", "pci", "faux", ...).
std::string bus_of(const std::string& node_name) {
    std::error_code ec;
    auto subsystem = std::filesystem::canonical("/sys/class/drm/" + node_name + "/device/subsystem", ec);
    return ec ? "unknown" : subsystem.filename().string();
}

}  // namespace

TEST_SUITE_BEGIN("any_kernel");

TEST_CASE_FIXTURE(FdLeakCheck, "DRM discovery lists vgem's card and render node as one device, whatever its bus") {
    // vgem sits on the platform bus up to 6.12 and on the faux bus on 7.x, which libdrm 2.4.123's
    // drmGetDevices2 does not enumerate.
    MESSAGE("vgem's bus: " << bus_of("card0"));
    auto drm = list_drm_devices();
    REQUIRE_MESSAGE(drm, (drm ? "" : drm.error().message()));
    auto vgem = std::find_if(drm->begin(), drm->end(), [](const DrmDevice& d) { return d.driver == "vgem"; });
    REQUIRE_MESSAGE(vgem != drm->end(), "no vgem among " << drm->size() << " DRM devices");
    CHECK(vgem->primary_node == "/dev/dri/card0");
    CHECK(vgem->render_node == "/dev/dri/renderD128");

    // Every node the kernel lists in sysfs is in exactly one device.
    for (const auto& entry : std::filesystem::directory_iterator("/sys/class/drm")) {
        const std::string name = entry.path().filename().string();
        if (name.find('-') != std::string::npos || !(name.starts_with("card") || name.starts_with("renderD"))) continue;
        const std::string node = "/dev/dri/" + name;
        CAPTURE(node);
        CHECK(std::count_if(drm->begin(), drm->end(), [&](const DrmDevice& d) {
                  return d.primary_node == node || d.render_node == node;
              }) == 1);
    }

    // What depends on discovery finds vgem too: GBM's default node and dmabridge-info.
    auto gbm = GbmAllocator::open();
    REQUIRE_MESSAGE(gbm, (gbm ? "" : gbm.error().message()));
    CHECK(gbm->node() == "/dev/dri/card0");
    info::Filters only_vgem;
    only_vgem.device = "vgem";
    const auto report = info::gather(only_vgem);
    auto listed = std::find_if(report.drm.begin(), report.drm.end(), [](const auto& d) { return d.driver == "vgem"; });
    REQUIRE(listed != report.drm.end());
    CHECK(listed->primary_node == "/dev/dri/card0");
    CHECK(listed->render_node == "/dev/dri/renderD128");
    CHECK(info::to_text(report).find("/dev/dri/renderD128") != std::string::npos);
}

TEST_SUITE_END();

TEST_SUITE_BEGIN("kernel_without_sync_file_ioctls");

TEST_CASE_FIXTURE(FdLeakCheck, "without the sync_file ioctls, dmabridge-info says so and names the CPU-wait fallback") {
    // The kernel itself: DMA_BUF_IOCTL_EXPORT_SYNC_FILE is unknown (ENOTTY) on a real dma-buf.
    Vgem vgem;
    DmaBuf buf = vgem.create_buffer();
    dma_buf_export_sync_file arg{};
    arg.flags = DMA_BUF_SYNC_READ;
    arg.fd = -1;
    errno = 0;
    REQUIRE_MESSAGE(::ioctl(buf.fd(), DMA_BUF_IOCTL_EXPORT_SYNC_FILE, &arg) == -1,
                    "this kernel exports sync_files: the test belongs to kernels older than 6.0");
    REQUIRE(errno == ENOTTY);

    // The library says why, as an error of its own kind.
    auto exported = buf.export_sync_file(Access::read);
    REQUIRE_FALSE(exported);
    CHECK(exported.error().is(Errc::unsupported));

    // dmabridge-info probes with the only exporter such a kernel has (GBM on vgem) and reports
    // the ioctls as missing, the fallback the sync bridge takes, and no udmabuf or dma-heap.
    const auto report = info::gather({});
    CHECK(report.kernel.sync_file.starts_with("not supported by this kernel"));
    CHECK(report.kernel.sync_file.find("cpu_wait") != std::string::npos);
    CHECK_FALSE(report.kernel.udmabuf);
    CHECK(report.kernel.heaps.empty());
    const std::string text = info::to_text(report);
    CHECK(text.find("sync_file export/import: not supported by this kernel") != std::string::npos);

    // lavapipe cannot share there: without udmabuf it offers no DRM format modifiers, so it is
    // listed with the reason and appears in no pair of the sharing matrix.
    REQUIRE_FALSE(report.vulkan.empty());
    for (const auto& v : report.vulkan) {
        CAPTURE(v.name);
        CHECK(std::find(v.capabilities.begin(), v.capabilities.end(), "modifiers") == v.capabilities.end());
        CHECK_FALSE(v.error.empty());
        CHECK(v.importable.empty());
        CHECK(v.exportable.empty());
    }
    for (const auto& m : report.matrix) {
        CAPTURE(m.exporter + " -> " + m.importer);
        CHECK(m.exporter.find("vulkan:") == std::string::npos);
        CHECK(m.importer.find("vulkan:") == std::string::npos);
    }
}

TEST_SUITE_END();
