// SPDX-License-Identifier: MIT
// Fence wake-up latency: from a dma-fence signal (vgem) to the FenceWatcher's callback, over the
// kernel's plain wake-up path on the same machine in the same run (an eventfd write waking a
// poll()er on another thread). Both are medians of many round trips.
//
//   metric fence_wake_over_eventfd R   (goal <= 2)
#include <dmabridge/kernel/devices.hpp>
#include <dmabridge/kernel/fence_watcher.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "vgem_uapi.hpp"
#include "wake_baseline.hpp"

using namespace dmabridge;
namespace uapi = dmabridge::test::vgem_uapi;
using dmabridge::bench::clock_type;
using dmabridge::bench::median_us;

namespace {

constexpr int rounds = 300;

// A vgem fence signalled on this thread reaches a FenceWatcher callback on the watcher's thread.
double fence_wake_us(int vgem_fd, const DmaBuf& buf, std::uint32_t handle) {
    auto watcher = FenceWatcher::create();
    if (!watcher || !watcher->start()) return -1;
    std::atomic<clock_type::time_point> woke{};
    std::atomic<int> seen{0};
    std::vector<double> samples;
    for (int i = 0; i < rounds; ++i) {
        uapi::fence_attach attach{handle, uapi::fence_write, 0, 0};
        if (drmIoctl(vgem_fd, uapi::ioctl_fence_attach, &attach) != 0) return -1;
        auto id = watcher->watch(buf, Access::read, [&](WatchId, WaitStatus) {
            woke = clock_type::now();
            ++seen;
        });
        if (!id) return -1;
        std::this_thread::sleep_for(std::chrono::microseconds(500));  // let the watcher block
        const auto start = clock_type::now();
        uapi::fence_signal sig{attach.out_fence, 0};
        if (drmIoctl(vgem_fd, uapi::ioctl_fence_signal, &sig) != 0) return -1;
        while (seen.load() <= i) std::this_thread::yield();
        samples.push_back(std::chrono::duration<double, std::micro>(woke.load() - start).count());
    }
    watcher->stop();
    return median_us(samples);
}

}  // namespace

int main() {
    auto devices = list_drm_devices();
    std::string node;
    if (devices)
        for (const auto& d : *devices)
            if (d.driver == "vgem") node = d.primary_node;
    if (node.empty()) {
        std::fprintf(stderr, "bench_fences: no vgem device (run inside ci/vm)\n");
        return 1;
    }
    UniqueFd vgem(::open(node.c_str(), O_RDWR | O_CLOEXEC));
    drm_mode_create_dumb create{};
    create.width = 1024;
    create.height = 1;
    create.bpp = 32;
    int prime = -1;
    if (!vgem || drmIoctl(vgem.get(), DRM_IOCTL_MODE_CREATE_DUMB, &create) != 0 ||
        drmPrimeHandleToFD(vgem.get(), create.handle, DRM_CLOEXEC | DRM_RDWR, &prime) != 0) {
        std::fprintf(stderr, "bench_fences: cannot make a vgem buffer\n");
        return 1;
    }
    auto buf = DmaBuf::adopt(UniqueFd(prime));
    if (!buf) return 1;
    const double eventfd = dmabridge::bench::eventfd_wake_us(rounds);
    const double fence = fence_wake_us(vgem.get(), *buf, create.handle);
    if (fence < 0) {
        std::fprintf(stderr, "bench_fences: a vgem fence or watch failed\n");
        return 1;
    }
    const double ratio = fence / eventfd;
    std::printf("# median wake-up: vgem fence -> watcher callback %.1f us, eventfd -> poll %.1f us\n", fence, eventfd);
    std::printf("metric fence_wake_over_eventfd %.2f\n", ratio);
    return 0;
}
