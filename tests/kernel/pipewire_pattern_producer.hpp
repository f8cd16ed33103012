// SPDX-License-Identifier: MIT
#pragma once
// The producer side that the pipewire tests, their peer process and bench_pipewire share: a
// pipewire::Producer of LINEAR dma-bufs from udmabuf (no shared memory), and the writing of the
// test pattern (pipewire_pattern.hpp) into a frame's dma-buf under CPU access, as a camera's
// writes would land.

#include <cstdint>
#include <string>

#include <dmabridge/alloc/udmabuf.hpp>
#include <dmabridge/format/buffer_desc.hpp>
#include <dmabridge/format/fourcc.hpp>
#include <dmabridge/kernel/cpu_access.hpp>
#include <dmabridge/pipewire/producer.hpp>

#include "pipewire_pattern.hpp"

namespace dmabridge::test {

/// Options of a producer `name` of `width` x `height` `code` LINEAR dma-bufs from `udmabuf`
/// (which must outlive the producer), no shared memory.
inline pipewire::ProducerOptions dmabuf_producer_options(const std::string& name, std::uint32_t width,
                                                         std::uint32_t height, UdmabufAllocator& udmabuf,
                                                         std::uint32_t code = fourcc::XRGB8888) {
    pipewire::ProducerOptions o;
    o.name = name;
    o.width = width;
    o.height = height;
    o.formats.add(code, modifier::linear);
    o.allocator = &udmabuf;
    o.offer_shm = false;
    return o;
}

/// Writes pattern frame `frame` into plane 0 of `desc` through a mapping, inside a CPU access
/// (the dma-buf's cache maintenance). Errors: the mapping's or the access's.
inline Status fill_pattern_frame(const BufferDesc& desc, std::uint32_t frame) {
    const PlaneDesc& p = desc.planes[0];
    auto map = Mapping::map(p.buffer, Access::write);
    if (!map) return map.error().with_context("map the frame");
    auto access = CpuAccess::begin(p.buffer, Access::write);
    if (!access) return access.error().with_context("begin CPU access");
    fill_pattern(map->data() + p.offset, p.stride, desc.width, desc.height, frame);
    return access->end();
}

}  // namespace dmabridge::test
