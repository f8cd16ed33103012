// SPDX-License-Identifier: MIT
// Built against the installed package by ci/test, through CMake and through pkg-config.
#include <dmabridge/dmabridge.hpp>

#include <cstdio>
#include <cstring>

#include <sys/mman.h>

int main() {
    using namespace dmabridge;
    auto layout = linear_layout(fourcc::NV12, 640, 480);
    if (!layout || layout->plane_count != 2) return 1;
    // A memfd is no dma-buf: the installed library must say so.
    auto refused = DmaBuf::adopt(UniqueFd(::memfd_create("consumer", MFD_CLOEXEC)));
    if (refused || !refused.error().is(Errc::not_a_dmabuf)) return 2;
    // The camera frame converter is in the installed library (its shader embedded): without a
    // device it refuses at once.
    auto converter = vulkan::FrameConverter::create(vulkan::Device{});
    if (converter || !converter.error().is(Errc::empty_object)) return 4;
    std::printf("dmabridge %s: NV12 640x480 needs %llu bytes\n", DMABRIDGE_VERSION_STRING,
                static_cast<unsigned long long>(layout->size));
    return std::strcmp(DMABRIDGE_VERSION_STRING, "") == 0 ? 3 : 0;
}
