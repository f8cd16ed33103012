// SPDX-License-Identifier: MIT
#pragma once
// The queue's transports: one datagram (bytes + fds) at a time. Not part of the public API.

#include <cstddef>
#include <optional>
#include <span>
#include <vector>

#include <dmabridge/base/result.hpp>
#include <dmabridge/base/unique_fd.hpp>
#include <dmabridge/queue/connection.hpp>

#include "queue/wire.hpp"

namespace dmabridge::queue::detail {

/// One received datagram. Every fd that arrived is owned here, so nothing leaks when the
/// message is refused.
struct Received {
    std::array<std::byte, dmabridge::detail::wire::max_message_size> bytes{};
    std::size_t size = 0;
    std::vector<UniqueFd> fds;
    std::span<const std::byte> view() const noexcept { return {bytes.data(), size}; }
};

/// The most fds send_datagram() passes: more than any message may carry, so that the tests'
/// hostile peers can send an over-count through the same code.
inline constexpr std::size_t max_datagram_fds = 16;

/// Sends one datagram with its fds (SCM_RIGHTS) on a SOCK_SEQPACKET socket, retrying EINTR;
/// `nonblocking` adds MSG_DONTWAIT (a full peer gives EAGAIN). The fds stay the caller's. No
/// SIGPIPE: a closed peer gives EPIPE.
Status send_datagram(int socket, std::span<const std::byte> bytes, std::span<const int> fds, bool nonblocking);

class Transport {
public:
    virtual ~Transport() = default;
    /// Sends one datagram; `fds` stay the caller's (the receiver gets its own). Never blocks:
    /// a full peer gives EAGAIN.
    virtual Status send(std::span<const std::byte> bytes, std::span<const int> fds) = 0;
    /// The next datagram, nothing when none waits, ECONNRESET once the peer closed. A datagram
    /// larger than max_message_size or with more than max_fds fds is an error (its fds closed).
    virtual Result<std::optional<Received>> receive() = 0;
    virtual int fd() const noexcept = 0;
    virtual bool is_socket() const noexcept = 0;
    virtual Result<PeerCredentials> peer_credentials() const = 0;
    /// Ends the link but keeps fd() open (the application's event loop may still poll it): the
    /// peer sees a hang-up, what waits unread is discarded (its fds closed), and fd() stays
    /// readable so that a poll wakes and the owner reports its error. Idempotent.
    virtual void shutdown() noexcept = 0;
    /// The socket fd for release_socket(); empty for in-process channels.
    virtual UniqueFd take_socket() noexcept { return {}; }
};

/// The private way from a Connection to its transport (nullptr when empty), for Producer and
/// Consumer; the public header only befriends this type.
struct ConnectionAccess {
    static Transport* transport(const Connection& c) noexcept { return c.transport_.get(); }
};

}  // namespace dmabridge::queue::detail
