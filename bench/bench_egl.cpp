// SPDX-License-Identifier: MIT
// EGL import benchmark: what the import cache saves a GL renderer. Measured in one run, reported
// as a ratio (absolute times on a shared, emulated machine mean little).
//
//   metric egl_import_fresh_over_cached R   fresh 1920x1080 XRGB8888 import (eglCreateImage from the
//                                           dma-buf + a GL texture bound to it) / an import cache
//                                           hit for a new fd of the same buffer   (goal >= 100)
//
// The EGL display is Mesa's software device (llvmpipe), as in the tests.
#include <dmabridge/alloc/dma_heap.hpp>
#include <dmabridge/egl/context.hpp>
#include <dmabridge/egl/import_cache.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>
#include "bench_util.hpp"

using namespace dmabridge;
using clock_type = std::chrono::steady_clock;

namespace {

int fail(const std::string& what, const Error& e) { return bench::fail("bench_egl", what, e); }
using bench::median;

}  // namespace

int main() {
    auto headless = egl::Headless::create();
    if (!headless) return fail("EGL display and context", headless.error());
    const auto& ctx = headless->context();
    auto heap = DmaHeapAllocator::open();
    if (!heap) return fail("dma-heap", heap.error());
    ImageRequest r;
    r.width = 1920;
    r.height = 1080;
    r.fourcc = fourcc::XRGB8888;
    r.name = "bench-egl";
    auto desc = heap->allocate(r);
    if (!desc) return fail("allocate 1920x1080", desc.error());

    // Fresh imports: each builds an EGLImage and a texture; destroyed outside the timing.
    std::vector<double> fresh;
    for (int i = 0; i < 21; ++i) {
        const auto start = clock_type::now();
        auto image = ctx.import(*desc);
        const std::chrono::duration<double, std::nano> took = clock_type::now() - start;
        if (!image) return fail("fresh import", image.error());
        fresh.push_back(took.count());
    }

    // Cache hits for a new fd of the same buffer each round (a compositor's client sends the
    // buffer again): the fd is made outside the timing, the lookup inside.
    egl::ImportCache cache(ctx);
    auto first = cache.import(*desc);
    if (!first) return fail("cache import", first.error());
    std::vector<double> hits;
    for (int round = 0; round < 21; ++round) {
        auto again = desc->dup();
        if (!again) return fail("dup", again.error());
        constexpr int iterations = 2000;
        const auto start = clock_type::now();
        for (int i = 0; i < iterations; ++i) {
            auto hit = cache.import(*again);
            if (!hit) return fail("cache hit", hit.error());
        }
        const std::chrono::duration<double, std::nano> took = clock_type::now() - start;
        hits.push_back(took.count() / iterations);
    }
    if (cache.stats().misses != 1) {
        std::fprintf(stderr, "bench_egl: expected one miss, got %llu\n",
                     static_cast<unsigned long long>(cache.stats().misses));
        return 1;
    }
    const double fresh_ns = median(fresh), hit_ns = median(hits);
    std::printf("# egl fresh import %.0f us, cache hit %.0f ns\n", fresh_ns / 1000, hit_ns);
    std::printf("metric egl_import_fresh_over_cached %.1f\n", fresh_ns / hit_ns);
    first->reset();
    return 0;
}
