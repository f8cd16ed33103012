// SPDX-License-Identifier: MIT
#include <dmabridge/pipewire/stream_state.hpp>

namespace dmabridge::pipewire {

const char* to_string(StreamState state) noexcept {
    switch (state) {
        case StreamState::error: return "error";
        case StreamState::unconnected: return "unconnected";
        case StreamState::connecting: return "connecting";
        case StreamState::paused: return "paused";
        case StreamState::streaming: return "streaming";
    }
    return "unknown";
}

}  // namespace dmabridge::pipewire
