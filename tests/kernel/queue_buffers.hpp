// SPDX-License-Identifier: MIT
#pragma once
// The queue tests' buffers: udmabuf buffers of 64x64 XRGB8888 that the CPU fills with a pattern
// per frame sequence, which the consumers (tests/kernel/queue_peer.cpp among them) check.
#include <dmabridge/alloc/udmabuf.hpp>
#include <dmabridge/format/buffer_desc.hpp>
#include <dmabridge/kernel/cpu_access.hpp>

#include <cstdint>
#include <vector>

#include <doctest/doctest.h>

namespace dmabridge::test {

inline constexpr std::uint32_t queue_side = 64;

/// Word i of the frame with sequence s.
inline std::uint32_t queue_pattern(std::uint64_t s, std::size_t i) {
    return static_cast<std::uint32_t>(s * 2654435761u) ^ static_cast<std::uint32_t>(i);
}

inline std::vector<BufferDesc> make_queue_buffers(std::size_t count) {
    auto alloc = UdmabufAllocator::open();
    REQUIRE_MESSAGE(alloc, (alloc ? "" : alloc.error().message()));
    std::vector<BufferDesc> out;
    for (std::size_t i = 0; i < count; ++i) {
        auto buf = alloc->allocate_bytes(queue_side * queue_side * 4, "queue-test");
        REQUIRE(buf);
        BufferDesc d;
        d.width = queue_side;
        d.height = queue_side;
        d.fourcc = fourcc::XRGB8888;
        d.planes.push_back(PlaneDesc{std::move(*buf), 0, queue_side * 4});
        out.push_back(std::move(d));
    }
    return out;
}

/// Writes the pattern of `sequence` into the buffer through a CPU mapping.
inline void fill_queue_pattern(const BufferDesc& desc, std::uint64_t sequence) {
    const DmaBuf& buf = desc.planes[0].buffer;
    auto map = Mapping::map(buf, Access::write);
    REQUIRE(map);
    auto access = CpuAccess::begin(buf, Access::write);
    REQUIRE(access);
    auto* p = reinterpret_cast<std::uint32_t*>(map->data());
    for (std::size_t i = 0; i < queue_side * queue_side; ++i) p[i] = queue_pattern(sequence, i);
    REQUIRE(access->end());
}

}  // namespace dmabridge::test
