// SPDX-License-Identifier: MIT
// Fuzzes the buffer queue's wire format (src/queue/wire.cpp): any datagram a peer can send,
// with any number of fds beside it. A message that parses encodes back to exactly the bytes that
// arrived, with as many fds as arrived; its fields stay within their limits.
//
// Input: u8 fds (the number of fds that "arrived", taken modulo 8), then the datagram's bytes.

#include <cstring>

#include "queue/wire.hpp"
#include "fuzz_input.hpp"

using namespace dmabridge::detail;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    fuzz::Input in(data, size);
    const std::size_t fds = in.take<std::uint8_t>() % 8;
    const auto rest = in.rest();
    const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(rest.data()), rest.size());
    auto parsed = wire::parse_message(bytes, fds);
    if (!parsed) {
        FUZZ_CHECK(!parsed.error().message().empty());
        return 0;
    }
    FUZZ_CHECK(wire::fd_count(*parsed) == fds);
    FUZZ_CHECK(fds <= wire::max_fds);
    if (const auto* a = std::get_if<wire::Announce>(&*parsed)) {
        FUZZ_CHECK(a->plane_count >= 1 && a->plane_count <= wire::max_fds);
        for (std::uint32_t i = 0; i < a->plane_count; ++i) FUZZ_CHECK(a->planes[i].fd_index < fds);
    }
    // A point travels only with flag_point, never with a fence fd, and is never 0.
    if (const auto* f = std::get_if<wire::Frame>(&*parsed)) {
        FUZZ_CHECK(!((f->flags & wire::flag_point) && (f->flags & wire::flag_fence)));
        FUZZ_CHECK(((f->flags & wire::flag_point) != 0) == (f->point != 0));
    }
    if (const auto* r = std::get_if<wire::Release>(&*parsed)) {
        FUZZ_CHECK(!((r->flags & wire::flag_point) && (r->flags & wire::flag_fence)));
        FUZZ_CHECK(((r->flags & wire::flag_point) != 0) == (r->point != 0));
    }
    const wire::Encoded again = wire::encode(*parsed);
    FUZZ_CHECK(again.size == bytes.size());
    FUZZ_CHECK(std::memcmp(again.bytes.data(), bytes.data(), bytes.size()) == 0);
    return 0;
}
