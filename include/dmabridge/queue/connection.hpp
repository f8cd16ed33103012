// SPDX-License-Identifier: MIT
#pragma once
/// @file queue/connection.hpp
/// The link between a queue's Producer and one Consumer: an in-process channel, or a Unix
/// SOCK_SEQPACKET socket that carries fds with SCM_RIGHTS (a socketpair for a parent and its
/// child, a socket path for independent processes). Producer and Consumer work the same over
/// either, so switching is one line:
///
///     auto [to_consumer, to_producer] = *queue::Connection::local_pair();   // one process
///     auto [to_consumer, to_producer] = *queue::Connection::socket_pair();  // parent and child
///
/// A Connection is a transport only; the protocol (announcements, frames, releases) belongs to
/// Producer and Consumer. Everything a peer sends is checked there, fds included.

#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include <sys/types.h>

#include <dmabridge/base/result.hpp>
#include <dmabridge/base/unique_fd.hpp>

namespace dmabridge::queue {

namespace detail {
// Internal (src/queue/transport.hpp): the transport behind a Connection, and how Producer and
// Consumer reach it. Not part of the API: the installed headers only name them.
class Transport;
struct ConnectionAccess;
}  // namespace detail

/// Who is at the other end of a connection: SO_PEERCRED for a socket (the peer's pid, uid and
/// gid when it connected; for a socketpair, those of the process that made the pair, whoever
/// holds the other end now), this process's own for an in-process channel.
struct PeerCredentials {
    pid_t pid = 0;  ///< the peer's process id
    uid_t uid = 0;  ///< its effective user id
    gid_t gid = 0;  ///< its effective group id
};

/// One end of a link. Move-only; a moved-from Connection is empty (valid() false, fd() -1, and
/// Producer::add_consumer / Consumer::create refuse it with Errc::empty_object).
/// Thread safety: one end belongs to one thread at a time; the two ends of an in-process pair
/// may be used from different threads.
class Connection {
public:
    /// Two ends of an in-process channel (a mutex-guarded message list and one eventfd per
    /// direction: two fds). Sending dups the message's fds for the receiver, as the kernel does
    /// for a socket, so each side owns its own fds exactly as across processes.
    static Result<std::pair<Connection, Connection>> local_pair();
    /// Two ends of a socketpair(AF_UNIX, SOCK_SEQPACKET), close-on-exec. Hand one end's socket
    /// to a child with release_socket() (and dup2 it to a known fd before exec).
    static Result<std::pair<Connection, Connection>> socket_pair();
    /// Adopts a connected socket (e.g. inherited from a parent). Checks with getsockopt that it is
    /// an AF_UNIX SOCK_SEQPACKET socket (Errc::invalid_argument otherwise, saying what it is) and
    /// sets close-on-exec. The fd is closed on error; an empty fd is Errc::empty_object.
    static Result<Connection> from_socket(UniqueFd socket);
    /// Connects to a Listener's path (socket + connect: two syscalls). Errors: connect's errno
    /// (ENOENT no such path, ECONNREFUSED nobody listens, EACCES the path's permissions).
    static Result<Connection> connect(std::string_view path);

    /// An empty Connection (valid() false).
    Connection() noexcept;
    /// Moves: the transport goes with the new object; the moved-from Connection is empty.
    /// Assignment closes the end held before, as the destructor does.
    Connection(Connection&&) noexcept;
    Connection& operator=(Connection&&) noexcept;
    /// Closes this end: the peer's next receive sees the hang-up (ECONNRESET) and its sends
    /// fail (EPIPE).
    ~Connection();

    /// True while this end holds a transport.
    bool valid() const noexcept;
    /// True for a socket, false for an in-process channel (or an empty Connection).
    bool is_socket() const noexcept;
    /// The fd that is readable when a message (or the peer's hang-up) waits: the socket, or the
    /// in-process channel's eventfd. -1 when empty. The eventfd may also be readable when
    /// nothing waits: it stays readable after the last message was taken, until a receive finds
    /// the channel empty (so two ends that keep up with each other make no system call per
    /// message); the Producer's and Consumer's dispatch() and acquire() then find nothing and
    /// the next poll sleeps.
    int fd() const noexcept;
    /// The peer's credentials (one getsockopt for a socket; none in-process). Errc::empty_object when empty.
    Result<PeerCredentials> peer_credentials() const;
    /// Gives up the socket (to pass it to a child); the Connection is then empty. Refused with
    /// Errc::invalid_argument for an in-process channel, Errc::empty_object when empty.
    Result<UniqueFd> release_socket();

private:
    friend class Listener;
    friend struct detail::ConnectionAccess;
    explicit Connection(std::unique_ptr<detail::Transport> t) noexcept;
    std::unique_ptr<detail::Transport> transport_;
};

/// A listening SOCK_SEQPACKET socket at a path, for consumers in independent processes. The
/// path's permissions decide who may connect (the socket file is created with `mode`); the
/// application may also check each accepted Connection's peer_credentials(). Move-only.
///
/// Like libwayland's display sockets, a Listener holds an exclusive flock() on "<path>.lock"
/// (created next to the socket with `mode`) for its whole life: two producers starting at once
/// cannot both decide that a socket file is stale and replace each other's socket. The
/// destructor removes the socket file and the lock file only while they are still the ones it
/// created (same st_dev and st_ino as at bind/open): a path that someone removed and reused
/// for another socket is left alone.
/// Thread safety: one thread at a time.
class Listener {
public:
    /// Takes the lock, then socket, bind, chmod and listen (about eight syscalls). An existing
    /// socket file at `path` is replaced only when nobody listens on it: a non-blocking connect
    /// is refused (ECONNREFUSED). A live listener, even one whose backlog is full (the connect
    /// answers EAGAIN or EINPROGRESS; this never blocks), fails with EADDRINUSE; so does any
    /// other existing file, and a lock another Listener holds. Paths longer than sun_path minus
    /// the ".lock" suffix (102 bytes) are refused with Errc::invalid_argument; failing to open
    /// or create the lock file gives its errno (e.g. EACCES).
    static Result<Listener> listen(std::string_view path, mode_t mode = 0600);
    /// Moves: the socket, the lock and the duty to remove the files go with the new object;
    /// the moved-from Listener is empty (fd() -1, path() empty) and removes nothing.
    /// Assignment first removes the target's own files, as the destructor does.
    Listener(Listener&&) noexcept;
    Listener& operator=(Listener&&) noexcept;
    /// Removes the socket file and the lock file (only while still the ones it created, see
    /// above), then closes the socket and releases the lock. Connections accepted earlier stay.
    ~Listener();

    /// Readable when a consumer waits to be accepted. -1 when empty.
    int fd() const noexcept { return socket_.get(); }
    /// The socket's path as given to listen(); empty when moved from.
    const std::string& path() const noexcept { return path_; }

    /// Accepts one waiting consumer (accept4, non-blocking): EAGAIN when none waits;
    /// Errc::empty_object on a moved-from Listener.
    Result<Connection> accept();

private:
    Listener() noexcept = default;
    void remove_files() noexcept;
    UniqueFd socket_;
    UniqueFd lock_;     // holds the flock on lock_path()
    std::string path_;
    dev_t dev_ = 0;     // of the socket file this Listener bound
    ino_t ino_ = 0;
    dev_t lock_dev_ = 0;
    ino_t lock_ino_ = 0;
};

}  // namespace dmabridge::queue
