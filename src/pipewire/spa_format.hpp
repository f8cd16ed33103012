// SPDX-License-Identifier: MIT
#pragma once
// PipeWire's video formats as dmabridge's (fourcc, modifier) pairs: the EnumFormat and Buffers
// params both ends send, and the reading of a format a peer sent (untrusted: every field is
// checked for its type before it is read).

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <spa/pod/builder.h>

#include <dmabridge/base/result.hpp>
#include <dmabridge/format/format_set.hpp>

namespace dmabridge::pipewire::detail {

/// The SPA video format of a DRM fourcc (DRM names bytes from the most significant end of a
/// little-endian word, SPA in memory order: XRGB8888 is BGRx); nullopt when PipeWire has none.
std::optional<std::uint32_t> spa_video_format(std::uint32_t fourcc) noexcept;
/// The DRM fourcc of an SPA video format; nullopt when dmabridge has none.
std::optional<std::uint32_t> drm_fourcc(std::uint32_t spa_format) noexcept;

/// The fourccs a stream offers as shared memory: `formats`' fourccs then `extra`, each once
/// (none when `shm` is false). Checks that PipeWire has a video format for every fourcc offered
/// (Errc::unsupported) and that something is offered (Errc::invalid_argument); `what` starts
/// the messages.
Result<std::vector<std::uint32_t>> shm_offer(const FormatSet& formats, bool shm, std::span<const std::uint32_t> extra,
                                            const std::string& what);

/// What an EnumFormat says about size: one size (a producer) or any size (a consumer).
struct SizeOffer {
    std::uint32_t width = 0;   ///< 0: any size up to 16384 x 16384
    std::uint32_t height = 0;
    std::uint32_t framerate = 0;  ///< 0: any rate
};

/// An EnumFormat object for `fourcc`. `modifiers` empty: a shared-memory offer (no modifier
/// property); `fixed`: the single modifier modifiers[0], MANDATORY (a producer's fixated
/// answer); otherwise an enumeration with MANDATORY | DONT_FIXATE.
const spa_pod* build_enum_format(spa_pod_builder* b, std::uint32_t fourcc, std::span<const std::uint64_t> modifiers,
                                 bool fixed, const SizeOffer& size);

/// A Buffers param: `count` buffers (a range 2..16 around it when `count` is not 0), `blocks`
/// datas per buffer, `size` and `stride` of the first (0: left out), the allowed SPA data types
/// as a mask of (1 << SPA_DATA_*).
const spa_pod* build_buffers(spa_pod_builder* b, std::uint32_t count, std::uint32_t blocks, std::uint32_t size,
                             std::uint32_t stride, std::uint32_t data_types);
/// A Buffers param for explicit sync: as build_buffers() with `blocks` + 2 datas (the last two
/// the acquire and release syncobjs, SPA_DATA_SyncObj added to `data_types`), usable only where
/// the SyncTimeline metadata was negotiated too (SPA_PARAM_BUFFERS_metaType, MANDATORY): a peer
/// without it falls through to the next, plain Buffers param.
const spa_pod* build_sync_buffers(spa_pod_builder* b, std::uint32_t count, std::uint32_t blocks, std::uint32_t size,
                                  std::uint32_t stride, std::uint32_t data_types);
/// A consumer's Buffers param taking explicit sync: the data types (SPA_DATA_SyncObj added) and
/// the SyncTimeline metadata type. A producer's explicit-sync param requires metaType
/// (MANDATORY), so only a consumer that lists it too can intersect with it.
const spa_pod* build_sync_buffers_accept(spa_pod_builder* b, std::uint32_t data_types);
/// A Meta param asking for the header metadata (sequence, pts).
const spa_pod* build_header_meta(spa_pod_builder* b);
/// A Meta param offering the SyncTimeline metadata (struct spa_meta_sync_timeline): both sides
/// list it where both take explicit sync.
const spa_pod* build_sync_timeline_meta(spa_pod_builder* b);

/// A video format a peer sent, read field by field.
struct PeerFormat {
    std::uint32_t fourcc = 0;
    std::uint32_t width = 0;
    std::uint32_t height = 0;
    bool has_modifier = false;
    /// The modifier property still carries DONT_FIXATE: the producer must pick one of `choices`.
    bool modifier_unfixed = false;
    std::uint64_t modifier = 0;           ///< the modifier (the default when unfixed)
    std::vector<std::uint64_t> choices;   ///< every modifier listed (unfixed only)
};
/// Reads a Format param. Errors (Errc::unsupported or Errc::invalid_argument): not raw video,
/// a format or size missing or of the wrong type, a size of 0 or above 16384, a video format
/// dmabridge has no fourcc for.
Result<PeerFormat> parse_format(const spa_pod* param);

}  // namespace dmabridge::pipewire::detail
