// SPDX-License-Identifier: MIT
// GBM and Vulkan accept each other's descriptions: a GBM (vgem) buffer imported by Vulkan, and a
// Vulkan export imported by GBM, both without a copy.
#include <dmabridge/alloc/gbm_allocator.hpp>
#include <dmabridge/kernel/cpu_access.hpp>
#include <dmabridge/vulkan/import_cache.hpp>

#include <cstring>

#include <fcntl.h>
#include <gbm.h>
#include <sys/stat.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include "vk_fixture.hpp"

using namespace dmabridge;
using namespace dmabridge::test;

TEST_CASE_FIXTURE(VkTest, "a GBM buffer written by the CPU is read exactly by Vulkan") {
    auto gbm = GbmAllocator::open();
    REQUIRE(gbm);
    ImageRequest r;
    r.width = 64;
    r.height = 40;
    r.fourcc = fourcc::XRGB8888;
    r.name = "gbm-to-vulkan";
    auto desc = gbm->allocate(r);
    REQUIRE_MESSAGE(desc, (desc ? "" : desc.error().message()));
    REQUIRE(desc->modifier == modifier::linear);
    const auto pattern = make_pattern(fourcc::XRGB8888, 64, 40, 99);
    {
        const auto& plane = desc->planes[0];
        auto map = Mapping::map(plane.buffer, Access::write);
        REQUIRE(map);
        auto cpu = CpuAccess::begin(plane.buffer, Access::write);
        REQUIRE(cpu);
        for (std::uint32_t y = 0; y < 40; ++y)
            std::memcpy(map->data() + plane.offset + y * plane.stride, pattern[0].data() + y * 256, 256);
    }
    vulkan::ImportCache cache(device_b().device());
    auto image = cache.import(*desc);
    REQUIRE_MESSAGE(image, (image ? "" : image.error().message()));
    CHECK(device_b().download(**image, fourcc::XRGB8888) == pattern);
}

TEST_CASE_FIXTURE(VkTest, "a Vulkan export is imported by GBM as the same buffer") {
    ImageRequest r;
    r.width = 128;
    r.height = 32;
    r.fourcc = fourcc::ARGB8888;
    auto exported = device_a().device().export_image(r);
    REQUIRE(exported);
    const auto& plane = exported->desc.planes[0];

    auto gbm = GbmAllocator::open();  // to learn which node allocates
    REQUIRE(gbm);
    UniqueFd node(::open(gbm->node().c_str(), O_RDWR | O_CLOEXEC));
    REQUIRE(node.valid());
    gbm_device* device = gbm_create_device(node.get());
    REQUIRE(device != nullptr);
    gbm_import_fd_modifier_data data{};
    data.width = r.width;
    data.height = r.height;
    data.format = r.fourcc;
    data.num_fds = 1;
    data.fds[0] = plane.buffer.fd();
    data.strides[0] = static_cast<int>(plane.stride);
    data.offsets[0] = static_cast<int>(plane.offset);
    data.modifier = exported->desc.modifier;
    gbm_bo* bo = gbm_bo_import(device, GBM_BO_IMPORT_FD_MODIFIER, &data, GBM_BO_USE_RENDERING);
    CHECK_MESSAGE(bo != nullptr, "gbm_bo_import: " << std::strerror(errno));
    if (bo) {
        CHECK(gbm_bo_get_width(bo) == r.width);
        CHECK(gbm_bo_get_height(bo) == r.height);
        CHECK(gbm_bo_get_stride_for_plane(bo, 0) == plane.stride);
        // Exported again from GBM, it is the very same dma-buf: nothing was copied.
        int fd = gbm_bo_get_fd_for_plane(bo, 0);
        REQUIRE(fd >= 0);
        auto again = DmaBuf::adopt(UniqueFd(fd));
        REQUIRE(again);
        CHECK(again->id() == plane.buffer.id());
        gbm_bo_destroy(bo);
    }
    gbm_device_destroy(device);
}
