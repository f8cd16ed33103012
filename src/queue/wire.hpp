// SPDX-License-Identifier: MIT
#pragma once
// The buffer queue's wire format, apart from any I/O so that it can be fuzzed. Not part of the
// public API.
//
// Every message is one datagram (one SOCK_SEQPACKET record, or one in-process message):
//   header (16 bytes): u32 magic "DMBQ", u16 version, u16 type, u32 payload length, u32 fd count
//   payload: fixed little-endian fields of the type (below), nothing else.
// The fds travel beside the bytes (SCM_RIGHTS); the header says how many belong to the message,
// and parse_message() refuses a message whose received fd count differs. Reserved fields must be
// zero, so every accepted message encodes back to the same bytes.

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <variant>

#include <dmabridge/base/result.hpp>
#include <dmabridge/format/format.hpp>

namespace dmabridge::detail::wire {

inline constexpr std::uint32_t magic = 0x51424d44;  // "DMBQ" in memory order
inline constexpr std::uint16_t version = 1;
inline constexpr std::size_t header_size = 16;
/// The largest message: an announcement of max_planes planes.
inline constexpr std::size_t max_message_size = header_size + 32 + 24 * max_planes;
/// The most fds one message may carry (an announcement with one dma-buf per plane).
inline constexpr std::size_t max_fds = max_planes;
/// Buffer ids go from 0 to max_buffers - 1: a producer announces at most this many buffers, and
/// a consumer refuses an announcement of a higher id.
inline constexpr std::size_t max_buffers = 64;

enum class Type : std::uint16_t {
    hello = 1,     ///< producer -> consumer, first message: the queue's mode
    announce = 2,  ///< producer -> consumer: a buffer's description and its dma-bufs
    frame = 3,     ///< producer -> consumer: a buffer to acquire, with an optional acquire fence
    release = 4,   ///< consumer -> producer: a buffer given back, with an optional release fence
    /// consumer -> producer, at most once, only in answer to a hello that offered timelines:
    /// the consumer took the producer's acquire timeline and sends its own release timeline
    /// (one syncobj fd). From then on releases may carry release points.
    release_timeline = 5,
};

/// flags bit of frame and release: one sync_file fd travels with the message.
inline constexpr std::uint32_t flag_fence = 1;
/// flags bit of frame and release: the payload ends with a u64 point of the sender's timeline
/// (the acquire timeline for a frame, the release timeline for a release) instead of a fence fd.
/// Never together with flag_fence; the point is never 0.
inline constexpr std::uint32_t flag_point = 2;
/// flags bit of hello: the producer offers explicit sync on DRM syncobj timelines; one fd, its
/// acquire timeline, travels with the hello. A consumer that does not want it closes the fd and
/// answers nothing (frames and releases then carry sync_files, as without the offer).
/// Compatibility: a consumer from before this bit (#21) refuses a hello with it set (reserved
/// fields must be zero), so a producer sets it only when the application opted in.
inline constexpr std::uint32_t hello_flag_timeline = 1;

struct Hello {
    std::uint32_t mode = 0;  ///< 0 FIFO, 1 mailbox
    std::uint32_t flags = 0;  ///< hello_flag_timeline
    friend bool operator==(const Hello&, const Hello&) = default;
};

struct AnnouncedPlane {
    std::uint32_t fd_index = 0;  ///< which of the message's fds holds the plane
    std::uint64_t offset = 0;
    std::uint64_t stride = 0;
    friend bool operator==(const AnnouncedPlane&, const AnnouncedPlane&) = default;
};

struct Announce {
    std::uint32_t buffer = 0;
    std::uint32_t width = 0;
    std::uint32_t height = 0;
    std::uint32_t fourcc = 0;
    std::uint64_t modifier = 0;
    std::uint32_t plane_count = 0;
    std::array<AnnouncedPlane, max_planes> planes{};
    std::uint32_t fd_count = 0;  ///< distinct dma-bufs (1 to plane_count); every one is used
    friend bool operator==(const Announce&, const Announce&) = default;
};

struct Frame {
    std::uint32_t buffer = 0;
    std::uint32_t flags = 0;  ///< flag_fence: an acquire fence travels with it; flag_point: `point`
    std::uint64_t sequence = 0;
    std::int64_t timestamp_ns = 0;
    std::uint64_t point = 0;  ///< with flag_point: the acquire point; else 0 (not on the wire)
    friend bool operator==(const Frame&, const Frame&) = default;
};

struct Release {
    std::uint32_t buffer = 0;
    std::uint32_t flags = 0;  ///< flag_fence: a release fence travels with it; flag_point: `point`
    std::uint64_t point = 0;  ///< with flag_point: the release point; else 0 (not on the wire)
    friend bool operator==(const Release&, const Release&) = default;
};

/// The consumer's release timeline (its fd travels with the message); the payload is 8 reserved
/// bytes, zero.
struct ReleaseTimeline {
    friend bool operator==(const ReleaseTimeline&, const ReleaseTimeline&) = default;
};

using Message = std::variant<Hello, Announce, Frame, Release, ReleaseTimeline>;

/// The number of fds a valid message of this content carries.
std::size_t fd_count(const Message& message) noexcept;

/// One encoded message.
struct Encoded {
    std::array<std::byte, max_message_size> bytes{};
    std::size_t size = 0;
    std::span<const std::byte> view() const noexcept { return {bytes.data(), size}; }
};

/// Encodes `message` (which must be valid: parse_message(encode(m), fd_count(m)) gives m back).
Encoded encode(const Message& message) noexcept;

/// Parses one received datagram of `bytes` that arrived with `fds_received` fds. Checks, before
/// reading any field of the payload: the size holds a header, the magic, the version, a known
/// type, the payload length (exactly the type's size; for announce, its plane count's), and the
/// fd count (the header's must equal `fds_received` and the type's). Then the fields: reserved
/// ones zero, flags known, plane count 1..max_planes, every fd index below the fd count and every
/// fd used by a plane. Errors are Errc::invalid_argument naming the field and the numbers. Pure.
Result<Message> parse_message(std::span<const std::byte> bytes, std::size_t fds_received);

/// "hello", "announce", "frame", "release", "release timeline", for messages.
const char* type_name(const Message& message) noexcept;

}  // namespace dmabridge::detail::wire
