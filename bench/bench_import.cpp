// SPDX-License-Identifier: MIT
// Import benchmark: what the import cache saves, and how close a cache hit comes to the floor of
// identifying a buffer (one fstat of its fd). Everything is measured in one run and reported as
// ratios, because absolute times on a shared, emulated machine mean little.
//
//   metric import_fresh_over_cached R   fresh import of 1920x1080 XRGB8888 / cache hit  (goal >= 100)
//   metric cache_hit_over_fstat R       cache hit / one fstat() of the dma-buf fd      (goal <= 3)
//   metric new_fd_hit_over_fstat R      adopt a new fd of a cached buffer + hit / fstat (no goal)
#include <dmabridge/dmabridge.hpp>
#include <dmabridge/vulkan/context.hpp>
#include <dmabridge/vulkan/import_cache.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include <sys/stat.h>

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

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

int fail(const std::string& what, const Error& e) {
    std::fprintf(stderr, "bench_import: %s: %s\n", what.c_str(), e.message().c_str());
    return 1;
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
    const auto stats = cache.stats();
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
