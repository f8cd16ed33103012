// SPDX-License-Identifier: MIT
// Import benchmark: what the import cache saves, and how close a cache hit comes to the floor of
// identifying a buffer (one fstat of its fd). Everything is measured in one run and reported as
// ratios, because absolute times on a shared, emulated machine mean little.
//
//   metric import_fresh_over_cached R   fresh import of 1920x1080 XRGB8888 / cache hit  (goal >= 100)
//   metric cache_hit_over_fstat R       cache hit / one fstat() of the dma-buf fd      (goal <= 3)
//   metric new_fd_hit_over_fstat R      adopt a new fd of a cached buffer + hit / fstat (no goal)
//   metric cache_hit_syscalls N         system calls per cache hit, counted (goal 0)
//   metric cache_hit_vulkan_calls N     Vulkan calls per cache hit, counted (goal 0)
//   metric cache_hit_scaling R          hit cost with 4096 live entries / with 4 (goal <= 1.5)
//
// The counts are exact: system calls are trapped one by one on a thread of their own (seccomp
// user notification, tests/support/syscall_tap), and Vulkan calls through the dispatch table the
// library loads, which here comes from a vkGetInstanceProcAddr that counts every call it hands out.
#include <dmabridge/dmabridge.hpp>
#include <dmabridge/vulkan/context.hpp>
#include <dmabridge/vulkan/import_cache.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include <atomic>

#include <sys/resource.h>
#include <sys/stat.h>

#include "syscall_tap.hpp"
#include "vulkan/device_state.hpp"
#include "bench_util.hpp"

using namespace dmabridge;
using clock_type = std::chrono::steady_clock;

namespace {

// The median of `rounds` timings of `iterations` calls of `fn`, in nanoseconds per call.
template <typename Fn>
double per_call_ns(int rounds, int iterations, Fn&& fn) {
    std::vector<double> samples;
    for (int r = 0; r < rounds; ++r) {
        const auto start = clock_type::now();
        for (int i = 0; i < iterations; ++i) fn();
        const std::chrono::duration<double, std::nano> took = clock_type::now() - start;
        samples.push_back(took.count() / iterations);
    }
    std::sort(samples.begin(), samples.end());
    return samples[samples.size() / 2];
}

int fail(const std::string& what, const Error& e) { return bench::fail("bench_import", what, e); }
using bench::median;

// --- Vulkan calls, counted through the entry points handed to the library. ---
std::atomic<std::uint64_t> vulkan_calls{0};
bool uncounted_functions = false;
PFN_vkGetInstanceProcAddr real_gipa = nullptr;

// One real entry point per function the library loads, and a thunk that counts and forwards.
#define BENCH_REAL(fn) PFN_##fn real_##fn = nullptr;
DMABRIDGE_VK_INSTANCE_FUNCTIONS(BENCH_REAL)
DMABRIDGE_VK_DEVICE_FUNCTIONS(BENCH_REAL)
DMABRIDGE_VK_EXTENSION_FUNCTIONS(BENCH_REAL)
BENCH_REAL(vkWaitSemaphores)
BENCH_REAL(vkGetSemaphoreCounterValue)
#undef BENCH_REAL

template <typename Pfn, Pfn* Real>
struct Counted;
template <typename R, typename... A, R(VKAPI_PTR** Real)(A...)>
struct Counted<R(VKAPI_PTR*)(A...), Real> {
    static R VKAPI_PTR call(A... a) {
        vulkan_calls.fetch_add(1, std::memory_order_relaxed);
        return (*Real)(a...);
    }
};

PFN_vkVoidFunction VKAPI_PTR counting_gdpa(VkDevice device, const char* name);

PFN_vkVoidFunction VKAPI_PTR counting_gipa(VkInstance instance, const char* name) {
    const std::string n = name;
    if (n == "vkGetDeviceProcAddr") {
        real_vkGetDeviceProcAddr = reinterpret_cast<PFN_vkGetDeviceProcAddr>(real_gipa(instance, name));
        return reinterpret_cast<PFN_vkVoidFunction>(&counting_gdpa);
    }
#define BENCH_WRAP(fn)                                                                   \
    if (n == #fn) {                                                                      \
        real_##fn = reinterpret_cast<PFN_##fn>(real_gipa(instance, name));               \
        if (!real_##fn) return nullptr;                                                  \
        return reinterpret_cast<PFN_vkVoidFunction>(&Counted<PFN_##fn, &real_##fn>::call); \
    }
    DMABRIDGE_VK_INSTANCE_FUNCTIONS(BENCH_WRAP)
#undef BENCH_WRAP
    return real_gipa(instance, name);
}

PFN_vkVoidFunction VKAPI_PTR counting_gdpa(VkDevice device, const char* name) {
    const std::string n = name;
#define BENCH_WRAP(fn)                                                                   \
    if (n == #fn) {                                                                      \
        real_##fn = reinterpret_cast<PFN_##fn>(real_vkGetDeviceProcAddr(device, name));  \
        if (!real_##fn) return nullptr;                                                  \
        return reinterpret_cast<PFN_vkVoidFunction>(&Counted<PFN_##fn, &real_##fn>::call); \
    }
    DMABRIDGE_VK_DEVICE_FUNCTIONS(BENCH_WRAP)
    DMABRIDGE_VK_EXTENSION_FUNCTIONS(BENCH_WRAP)
    BENCH_WRAP(vkWaitSemaphores)
    BENCH_WRAP(vkGetSemaphoreCounterValue)
#undef BENCH_WRAP
    // Anything else the library loads is not counted: the count would be a lower bound only.
    std::fprintf(stderr, "bench_import: the library loads %s, which the counting table does not wrap\n", name);
    uncounted_functions = true;
    return real_vkGetDeviceProcAddr(device, name);
}

}  // namespace

int main() {

    auto ctx = vulkan::Context::create();
    if (!ctx) return fail("create a Vulkan device", ctx.error());
    auto udmabuf = UdmabufAllocator::open();
    if (!udmabuf) return fail("open udmabuf", udmabuf.error());
    ImageRequest request;
    request.width = 1920;
    request.height = 1080;
    request.fourcc = fourcc::XRGB8888;
    request.name = "bench";
    auto desc = udmabuf->allocate(request);
    if (!desc) return fail("allocate", desc.error());
    const auto& device = ctx->device();

    // Each round times fresh imports, cache hits and fstat back to back and keeps their ratios;
    // the medians of the ratios over all rounds are reported. Interleaving keeps a slow spell of
    // the shared machine from landing on one side of a ratio only.
    volatile bool ok = true;
    vulkan::ImportCache cache(device);
    if (auto first = cache.import(*desc); !first) return fail("import", first.error());
    const int fd = desc->planes[0].buffer.fd();
    std::vector<double> fresh_over_cached, hit_over_fstat, new_fd_over_fstat;
    double fresh = 0, hit = 0, stat = 0, new_fd_hit = 0;
    for (int round = 0; round < 15; ++round) {
        // A fresh import: everything a cache miss costs (checks, queries, image, memory import, bind).
        fresh = per_call_ns(1, 10, [&] {
            auto image = device.import_image(*desc);
            ok = ok && image.ok();
        });
        hit = per_call_ns(1, 5000, [&] {
            auto image = cache.import(*desc);
            ok = ok && image.ok();
        });
        stat = per_call_ns(1, 5000, [&] {
            struct stat st {};
            ok = ok && ::fstat(fd, &st) == 0;
        });
        new_fd_hit = per_call_ns(1, 1000, [&] {
            auto copy = DmaBuf::import_fd(fd);  // a buffer arriving again as a new fd
            if (!copy) {
                ok = false;
                return;
            }
            BufferDesc again{desc->width, desc->height, desc->fourcc, desc->modifier, {}};
            again.planes.push_back({std::move(*copy), desc->planes[0].offset, desc->planes[0].stride});
            ok = ok && cache.import(again).ok();
        });
        fresh_over_cached.push_back(fresh / hit);
        hit_over_fstat.push_back(hit / stat);
        new_fd_over_fstat.push_back(new_fd_hit / stat);
    }
    if (!ok) {
        std::fprintf(stderr, "bench_import: an operation failed while timing\n");
        return 1;
    }
    // --- Counts per hit: system calls and Vulkan calls. ---
    vulkan::DeviceHandles counted_handles = ctx->handles();
    real_gipa = counted_handles.get_instance_proc_addr;
    counted_handles.get_instance_proc_addr = &counting_gipa;
    auto counted_device = vulkan::Device::attach(counted_handles, vulkan::Capability::import_memory |
                                                                      vulkan::Capability::modifiers);
    if (!counted_device) return fail("attach with counted entry points", counted_device.error());
    if (uncounted_functions) {
        std::fprintf(stderr, "bench_import: some entry points are not counted\n");
        return 1;
    }
    constexpr int counted_hits = 1000;
    std::uint64_t miss_syscalls = 0, hit_syscalls = 0, miss_vulkan = 0, hit_vulkan = 0;
    bool counted_ok = true;
    test::SyscallTap tap;
    const bool tapped = tap.run([&](test::SyscallTap& t) {
        vulkan::ImportCache counted(*counted_device);
        std::uint64_t before = t.count(), vk_before = vulkan_calls.load();
        counted_ok = counted_ok && counted.import(*desc).ok();  // the miss, for scale
        miss_syscalls = t.count() - before;
        miss_vulkan = vulkan_calls.load() - vk_before;
        before = t.count();
        vk_before = vulkan_calls.load();
        for (int i = 0; i < counted_hits; ++i) counted_ok = counted_ok && counted.import(*desc).ok();
        hit_syscalls = t.count() - before;
        hit_vulkan = vulkan_calls.load() - vk_before;
    });
    if (!tapped) {
        std::fprintf(stderr, "bench_import: %s\n", tap.error().c_str());
        return 1;
    }
    if (!counted_ok || miss_syscalls == 0 || miss_vulkan == 0) {
        std::fprintf(stderr, "bench_import: the counted run failed (or counted nothing for a miss: %llu syscalls, "
                             "%llu Vulkan calls)\n",
                     static_cast<unsigned long long>(miss_syscalls), static_cast<unsigned long long>(miss_vulkan));
        return 1;
    }

    // --- Hit cost with 4096 live entries over 4: one dma-buf, imported with 4096 extents. ---
    rlimit files{};
    if (::getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < 16384) {
        files.rlim_cur = std::max<rlim_t>(files.rlim_cur, std::min<rlim_t>(files.rlim_max, 16384));
        if (files.rlim_cur < 16384) files.rlim_max = files.rlim_cur = 16384;  // root may raise the hard limit
        (void)::setrlimit(RLIMIT_NOFILE, &files);
    }
    ImageRequest row_request;
    row_request.width = 4096;
    row_request.height = 4;  // 64 KiB: lavapipe wants at least that much memory per image
    row_request.fourcc = fourcc::XRGB8888;
    auto rows = udmabuf->allocate(row_request);
    if (!rows) return fail("allocate the scaling buffer", rows.error());
    const auto hit_cost = [&](std::size_t entries) -> Result<double> {
        vulkan::ImportCache scaled(device, {.max_entries = entries});
        std::vector<BufferDesc> keys;
        for (std::size_t i = 0; i < entries; ++i) {
            auto key = rows->dup();
            if (!key) return key.error();
            key->width = static_cast<std::uint32_t>(i + 1);  // same buffer and stride, its own entry
            auto imported = scaled.import(*key);
            if (!imported) return imported.error().with_context("scaling: import " + std::to_string(i + 1));
            keys.push_back(std::move(*key));
        }
        // Hits rotate over four entries spread across the cache, so that each moves in the LRU.
        std::vector<const BufferDesc*> hot;
        for (std::size_t i = 0; i < 4; ++i) hot.push_back(&keys[i * entries / 4]);
        std::vector<double> samples;
        for (int round = 0; round < 9; ++round) {
            std::size_t k = 0;
            samples.push_back(per_call_ns(1, 4000, [&] { ok = ok && scaled.import(*hot[k++ & 3]).ok(); }));
        }
        return median(samples);
    };
    std::vector<double> scaling;
    double small_cost = 0, large_cost = 0;
    for (int round = 0; round < 5; ++round) {
        auto small = hit_cost(4);
        if (!small) return fail("scaling with 4 entries", small.error());
        auto large = hit_cost(4096);
        if (!large) return fail("scaling with 4096 entries", large.error());
        small_cost = *small;
        large_cost = *large;
        scaling.push_back(large_cost / small_cost);
    }
    if (!ok) {
        std::fprintf(stderr, "bench_import: a hit failed while timing the scaling\n");
        return 1;
    }

    const auto stats = cache.stats();
    std::printf("# a miss made %llu system calls and %llu Vulkan calls; %d hits made %llu and %llu\n",
                static_cast<unsigned long long>(miss_syscalls), static_cast<unsigned long long>(miss_vulkan), counted_hits,
                static_cast<unsigned long long>(hit_syscalls), static_cast<unsigned long long>(hit_vulkan));
    std::printf("# hit with 4 live entries %.0f ns, with 4096 %.0f ns (last round)\n", small_cost, large_cost);
    std::printf("metric cache_hit_syscalls %.3g\n", static_cast<double>(hit_syscalls) / counted_hits);
    std::printf("metric cache_hit_vulkan_calls %.3g\n", static_cast<double>(hit_vulkan) / counted_hits);
    std::printf("metric cache_hit_scaling %.2f\n", median(scaling));
    std::printf("# last round: fresh import %.0f ns, cache hit %.0f ns, fstat %.0f ns, new fd + hit %.0f ns; "
                "cache: %llu hits, %llu misses\n",
                fresh, hit, stat, new_fd_hit, static_cast<unsigned long long>(stats.hits),
                static_cast<unsigned long long>(stats.misses));
    std::printf("# import_fresh_over_cached per round: %.0f to %.0f\n",
                *std::min_element(fresh_over_cached.begin(), fresh_over_cached.end()),
                *std::max_element(fresh_over_cached.begin(), fresh_over_cached.end()));
    std::printf("metric import_fresh_over_cached %.1f\n", median(fresh_over_cached));
    std::printf("metric cache_hit_over_fstat %.2f\n", median(hit_over_fstat));
    std::printf("metric new_fd_hit_over_fstat %.2f\n", median(new_fd_over_fstat));
    return 0;
}
