// SPDX-License-Identifier: MIT
#pragma once
/// @file pipewire/stream_state.hpp
/// The states a PipeWire stream of dmabridge's (Producer, Consumer) goes through.

#include <cstdint>

namespace dmabridge::pipewire {

/// PipeWire's pw_stream_state, as dmabridge reports it.
enum class StreamState : std::uint8_t {
    error,        ///< failed: the stream's error() says why; nothing more will happen
    unconnected,  ///< not connected (the peer went away); the daemon lost is `error` instead
    connecting,   ///< waiting for the daemon and a link
    paused,       ///< linked, negotiating or idle
    streaming,    ///< a format and buffers are in place: frames flow
};

/// What was negotiated.
struct Negotiated {
    std::uint32_t width = 0;
    std::uint32_t height = 0;
    std::uint32_t fourcc = 0;
    std::uint64_t modifier = 0;
    bool dmabuf = false;  ///< false: shared memory
};

/// "error", "unconnected", "connecting", "paused" or "streaming".
const char* to_string(StreamState state) noexcept;

}  // namespace dmabridge::pipewire
