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
#include <fstream>
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

int fail(const std::string& what, const Error& e) {
    std::fprintf(stderr, "bench_import: %s: %s\n", what.c_str(), e.message().c_str());
    return 1;
}

}  // namespace

int main(int argc, char** argv) {
    const std::string json_path = argc > 1 ? argv[1] : "";
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

    // Fresh imports: everything a cache miss costs (checks, queries, image, memory import, bind).
    volatile bool ok = true;
    const double fresh = per_call_ns(5, 20, [&] {
        auto image = device.import_image(*desc);
        ok = ok && image.ok();
    });
    vulkan::ImportCache cache(device);
    if (auto first = cache.import(*desc); !first) return fail("import", first.error());
    const double hit = per_call_ns(7, 20000, [&] {
        auto image = cache.import(*desc);
        ok = ok && image.ok();
    });
    const int fd = desc->planes[0].buffer.fd();
    const double stat = per_call_ns(7, 20000, [&] {
        struct stat st {};
        ok = ok && ::fstat(fd, &st) == 0;
    });
    const double new_fd_hit = per_call_ns(7, 5000, [&] {
        auto copy = DmaBuf::import_fd(fd);  // a buffer arriving again as a new fd
        if (!copy) {
            ok = false;
            return;
        }
        BufferDesc again{desc->width, desc->height, desc->fourcc, desc->modifier, {}};
        again.planes.push_back({std::move(*copy), desc->planes[0].offset, desc->planes[0].stride});
        ok = ok && cache.import(again).ok();
    });
    if (!ok) {
        std::fprintf(stderr, "bench_import: an operation failed while timing\n");
        return 1;
    }
    const auto stats = cache.stats();
    std::printf("# fresh import %.0f ns, cache hit %.0f ns, fstat %.0f ns, new fd + hit %.0f ns; "
                "cache: %llu hits, %llu misses\n",
                fresh, hit, stat, new_fd_hit, static_cast<unsigned long long>(stats.hits),
                static_cast<unsigned long long>(stats.misses));
    const double fresh_over_cached = fresh / hit;
    const double hit_over_fstat = hit / stat;
    const double new_fd_over_fstat = new_fd_hit / stat;
    std::printf("metric import_fresh_over_cached %.1f\n", fresh_over_cached);
    std::printf("metric cache_hit_over_fstat %.2f\n", hit_over_fstat);
    std::printf("metric new_fd_hit_over_fstat %.2f\n", new_fd_over_fstat);
    if (!json_path.empty()) {
        std::ofstream out(json_path);
        out << "{\n  \"import_fresh_over_cached\": " << fresh_over_cached << ",\n  \"cache_hit_over_fstat\": "
            << hit_over_fstat << ",\n  \"new_fd_hit_over_fstat\": " << new_fd_over_fstat << "\n}\n";
    }
    return 0;
}
