// SPDX-License-Identifier: MIT
// Fuzzes description validation: validate_layout() with fuzzer-chosen extent, fourcc, modifier,
// plane count, offsets, strides and buffer sizes. BufferDesc::validate() checks that every plane
// holds a dma-buf and then runs exactly this on BufferDesc::layout() (the dma-buf sizes as
// numbers): DmaBufs cannot be made on a host without a dma-buf exporter, the numbers can.
//
// Input: u32 width, u32 height, u32 fourcc, u64 modifier, u8 plane count (0-7), then per plane
// u64 offset, u64 stride, u64 buffer size.

#include <dmabridge/format/buffer_desc.hpp>

#include "fuzz_input.hpp"
#include "layout_oracle.hpp"

using namespace dmabridge;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    fuzz::Input in(data, size);
    ImageLayout layout;
    layout.width = in.take<std::uint32_t>();
    layout.height = in.take<std::uint32_t>();
    layout.fourcc = in.take<std::uint32_t>();
    layout.modifier = in.take<std::uint64_t>();
    const unsigned count = in.take<std::uint8_t>() % 8;
    for (unsigned i = 0; i < count; ++i) {
        PlaneLayout p;
        p.offset = in.take<std::uint64_t>();
        p.stride = in.take<std::uint64_t>();
        p.buffer_size = in.take<std::uint64_t>();
        layout.planes.push_back(p);
    }

    const Status status = validate_layout(layout);
    if (status) {
        fuzz::check_accepted_layout_fits(layout);
    } else {
        const Error& e = status.error();
        FUZZ_CHECK(e.code() == static_cast<int>(Errc::invalid_argument) ||
                   e.code() == static_cast<int>(Errc::unknown_format) ||
                   (e.code() == static_cast<int>(Errc::empty_object) && layout.planes.empty()));
        FUZZ_CHECK(!e.message().empty());
    }

    return 0;
}
