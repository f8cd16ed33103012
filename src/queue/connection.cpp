// SPDX-License-Identifier: MIT
#include <dmabridge/queue/connection.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <vector>

#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "base/sys.hpp"
#include "queue/transport.hpp"

namespace dmabridge::queue {

using dmabridge::detail::last_error;
namespace wire = dmabridge::detail::wire;

namespace detail {

Status send_datagram(int socket, std::span<const std::byte> bytes, std::span<const int> fds, bool nonblocking) {
    if (fds.size() > max_datagram_fds)
        return Error::library(Errc::invalid_argument, "send on socket " + std::to_string(socket) + ": " +
                                                          std::to_string(fds.size()) + " fds, at most " +
                                                          std::to_string(max_datagram_fds));
    iovec iov{const_cast<std::byte*>(bytes.data()), bytes.size()};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * max_datagram_fds)] = {};
    if (!fds.empty()) {
        msg.msg_control = control;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
        auto* c = reinterpret_cast<cmsghdr*>(control);  // the first header: msg_controllen >= CMSG_SPACE(0)
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
        std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
    }
    const int flags = MSG_NOSIGNAL | (nonblocking ? MSG_DONTWAIT : 0);
    ssize_t n;
    do {
        n = ::sendmsg(socket, &msg, flags);
    } while (n < 0 && errno == EINTR);
    if (n < 0) return last_error("queue send on socket " + std::to_string(socket));
    return {};
}

namespace {

// --- Unix SOCK_SEQPACKET socket ---

class SocketTransport final : public Transport {
public:
    explicit SocketTransport(UniqueFd s) noexcept : socket_(std::move(s)) {}

    Status send(std::span<const std::byte> bytes, std::span<const int> fds) override {
        if (fds.size() > wire::max_fds)
            return Error::library(Errc::invalid_argument, "queue send: " + std::to_string(fds.size()) + " fds, at most " +
                                                              std::to_string(wire::max_fds));
        return send_datagram(socket_.get(), bytes, fds, true);
    }

    Result<std::optional<Received>> receive() override {
        std::optional<Received> out(std::in_place);
        // One byte more than the largest message: a longer datagram shows as MSG_TRUNC or as
        // a size above max_message_size.
        std::byte buf[wire::max_message_size + 1];
        iovec iov{buf, sizeof buf};
        // Room for more fds than any message may carry, so that an over-count arrives whole
        // (and is closed here) rather than being cut by the kernel.
        alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4 * wire::max_fds)];
        msghdr msg{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control;
        msg.msg_controllen = sizeof control;
        ssize_t n;
        do {
            n = ::recvmsg(socket_.get(), &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        } while (n < 0 && errno == EINTR);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) return std::optional<Received>{};
            return last_error("queue receive on socket " + std::to_string(socket_.get()));
        }
        // Own every fd that arrived before anything else, whatever the message turns out to be.
        std::size_t cmsg_count = 0;
        bool foreign_cmsg = false;
        for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
            ++cmsg_count;
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS && c->cmsg_len >= CMSG_LEN(0)) {
                const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                for (std::size_t i = 0; i < count; ++i) {
                    int fd;
                    std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
                    out->fds.emplace_back(fd);
                }
            } else {
                foreign_cmsg = true;
            }
        }
        if (msg.msg_flags & MSG_CTRUNC)
            return Error::library(Errc::invalid_argument, "queue receive: the peer sent more fds than fit (" +
                                                              std::to_string(out->fds.size()) + " arrived, MSG_CTRUNC)");
        if (foreign_cmsg || cmsg_count > 1)
            return Error::library(Errc::invalid_argument, "queue receive: " + std::to_string(cmsg_count) +
                                                              " control messages, expected at most one SCM_RIGHTS");
        if (n == 0 && out->fds.empty())
            return Error::from_errno(ECONNRESET, "queue receive: the peer closed the connection");
        if ((msg.msg_flags & MSG_TRUNC) || static_cast<std::size_t>(n) > wire::max_message_size)
            return Error::library(Errc::invalid_argument,
                                  "queue receive: a message longer than the " + std::to_string(wire::max_message_size) +
                                      "-byte maximum");
        if (out->fds.size() > wire::max_fds)
            return Error::library(Errc::invalid_argument, "queue receive: " + std::to_string(out->fds.size()) +
                                                              " fds in one message, at most " + std::to_string(wire::max_fds));
        std::memcpy(out->bytes.data(), buf, static_cast<std::size_t>(n));
        out->size = static_cast<std::size_t>(n);
        return out;
    }

    void shutdown() noexcept override {
        if (!socket_) return;
        // SHUT_RDWR: the peer reads end-of-file and its sends fail with EPIPE, while this fd
        // stays a valid socket that polls readable (POLLIN|POLLHUP) for as long as it is open.
        ::shutdown(socket_.get(), SHUT_RDWR);
        // Datagrams already queued would keep their fds in flight until close: take them now
        // and close their fds (bounded by the socket's receive buffer).
        for (int i = 0; i < 4096; ++i) {
            auto r = receive();
            if (!r || !*r) break;
        }
    }

    int fd() const noexcept override { return socket_.get(); }
    bool is_socket() const noexcept override { return true; }
    Result<PeerCredentials> peer_credentials() const override {
        ucred cred{};
        socklen_t len = sizeof cred;
        if (::getsockopt(socket_.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
            return last_error("queue: SO_PEERCRED of socket " + std::to_string(socket_.get()));
        return PeerCredentials{cred.pid, cred.uid, cred.gid};
    }
    UniqueFd take_socket() noexcept override { return std::move(socket_); }

private:
    UniqueFd socket_;
};

// --- in-process channel ---

struct LocalMessage {
    wire::Encoded bytes;
    std::vector<UniqueFd> fds;
};

// The most messages that wait for one end; a sender past it gets EAGAIN, as from a full socket.
constexpr std::size_t max_local_messages = 4096;

// The messages waiting for one end, oldest first: a ring of slots that grows (doubling, up to
// max_local_messages) and never shrinks, so a channel whose ends keep up with each other
// allocates nothing per message. (A std::deque of these messages, about 180 bytes each, allocated
// and freed a block every two messages: one of each per camera frame in each direction.)
class LocalRing {
public:
    bool empty() const noexcept { return count_ == 0; }
    std::size_t size() const noexcept { return count_; }
    LocalMessage& front() noexcept { return slots_[head_]; }
    // Drops the oldest message (closing any fds it still holds).
    void pop_front() noexcept {
        slots_[head_].fds.clear();
        head_ = (head_ + 1) % slots_.size();
        --count_;
    }
    // A slot at the back for the caller to fill; the ring must hold fewer than
    // max_local_messages. May allocate only when the ring is full.
    LocalMessage& push_back() {
        if (count_ == slots_.size()) grow();
        LocalMessage& m = slots_[(head_ + count_) % slots_.size()];
        ++count_;
        return m;
    }
    void clear() noexcept {
        while (!empty()) pop_front();
    }

private:
    void grow() {
        std::vector<LocalMessage> bigger(std::max<std::size_t>(8, slots_.size() * 2));
        for (std::size_t i = 0; i < count_; ++i) bigger[i] = std::move(slots_[(head_ + i) % slots_.size()]);
        slots_ = std::move(bigger);
        head_ = 0;
    }
    std::vector<LocalMessage> slots_;
    std::size_t head_ = 0;
    std::size_t count_ = 0;
};

// The eventfd of each end is a doorbell, not a counter: it is rung when a message arrives and the
// bell is silent, and silenced only by a receive() that finds the queue empty. A sender and a
// receiver that keep up with each other (a camera's frames and their releases, both sides awake)
// so make no system call per message; a receiver that drains the queue and then polls pays one
// read() for the readiness it finds stale. Invariant: queue[i] non-empty or end 1-i closed
// implies event[i] readable (rung[i]).
struct LocalShared {
    std::mutex mutex;
    LocalRing queue[2];                 // queue[i]: messages for end i
    UniqueFd event[2];                  // event[i]: end i's doorbell
    bool rung[2] = {false, false};      // event[i] is readable now
    bool closed[2] = {false, false};
};

void signal_event(int fd) noexcept {
    const std::uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(fd, &one, sizeof one);
}

void clear_event(int fd) noexcept {
    std::uint64_t value;
    [[maybe_unused]] ssize_t n = ::read(fd, &value, sizeof value);
}

class LocalTransport final : public Transport {
public:
    LocalTransport(std::shared_ptr<LocalShared> shared, int side) noexcept : shared_(std::move(shared)), side_(side) {}
    ~LocalTransport() override {
        std::lock_guard lock(shared_->mutex);
        shared_->closed[side_] = true;
        shared_->queue[side_].clear();
        ring(1 - side_);  // the peer's receive() reports the hang-up
    }

    Status send(std::span<const std::byte> bytes, std::span<const int> fds) override {
        if (bytes.size() > wire::max_message_size || fds.size() > wire::max_fds)
            return Error::library(Errc::invalid_argument, "queue send: message too large (" + std::to_string(bytes.size()) +
                                                              " bytes, " + std::to_string(fds.size()) + " fds)");
        // The receiver gets its own fds, as through a socket; made before the lock is taken.
        std::vector<UniqueFd> own;  // no allocation for a message without fds (most of them)
        for (int fd : fds) {
            auto d = UniqueFd::dup_of(fd);
            if (!d) return d.error().with_context("queue send (in-process)");
            own.push_back(std::move(*d));
        }
        std::lock_guard lock(shared_->mutex);
        const int peer = 1 - side_;
        if (shared_->closed[side_]) return Error::from_errno(EPIPE, "queue send (in-process): this end was shut down");
        if (shared_->closed[peer]) return Error::from_errno(EPIPE, "queue send (in-process): the peer closed the connection");
        auto& q = shared_->queue[peer];
        if (q.size() >= max_local_messages)
            return Error::from_errno(EAGAIN, "queue send (in-process): the peer reads nothing (" +
                                                 std::to_string(max_local_messages) + " messages wait)");
        LocalMessage& m = q.push_back();
        std::memcpy(m.bytes.bytes.data(), bytes.data(), bytes.size());
        m.bytes.size = bytes.size();
        m.fds = std::move(own);
        ring(peer);
        return {};
    }

    Result<std::optional<Received>> receive() override {
        std::lock_guard lock(shared_->mutex);
        auto& q = shared_->queue[side_];
        if (shared_->closed[side_])  // shut down: nothing more arrives, and the doorbell stays rung
            return Error::from_errno(ECONNRESET, "queue receive (in-process): this end was shut down");
        if (q.empty()) {
            if (shared_->closed[1 - side_])
                return Error::from_errno(ECONNRESET, "queue receive (in-process): the peer closed the connection");
            if (shared_->rung[side_]) {  // a stale ring: silence it before the caller polls again
                clear_event(shared_->event[side_].get());
                shared_->rung[side_] = false;
            }
            return std::optional<Received>{};
        }
        std::optional<Received> out(std::in_place);
        LocalMessage& m = q.front();
        std::memcpy(out->bytes.data(), m.bytes.bytes.data(), m.bytes.size);
        out->size = m.bytes.size;
        out->fds = std::move(m.fds);
        q.pop_front();
        // The doorbell stays rung (see LocalShared): silencing it here would cost a read() now
        // and a write() for the next message.
        return out;
    }

    void shutdown() noexcept override {
        std::lock_guard lock(shared_->mutex);
        shared_->closed[side_] = true;
        shared_->queue[side_].clear();  // their fds close here
        ring(1 - side_);                // the peer's receive() reports the hang-up
        // This end's doorbell stays rung for good: its receive() no longer runs to silence it.
        ring(side_);
    }

    int fd() const noexcept override { return shared_->event[side_].get(); }
    bool is_socket() const noexcept override { return false; }
    Result<PeerCredentials> peer_credentials() const override {
        return PeerCredentials{::getpid(), ::getuid(), ::getgid()};
    }

private:
    // Rings end `end`'s doorbell unless it is rung already. Called with the mutex held.
    void ring(int end) noexcept {
        if (shared_->rung[end]) return;
        signal_event(shared_->event[end].get());
        shared_->rung[end] = true;
    }

    std::shared_ptr<LocalShared> shared_;
    int side_;
};

}  // namespace
}  // namespace detail

Connection::Connection(std::unique_ptr<detail::Transport> t) noexcept : transport_(std::move(t)) {}
Connection::Connection() noexcept = default;
Connection::Connection(Connection&&) noexcept = default;
Connection& Connection::operator=(Connection&&) noexcept = default;
Connection::~Connection() = default;

bool Connection::valid() const noexcept { return transport_ != nullptr; }
bool Connection::is_socket() const noexcept { return transport_ && transport_->is_socket(); }
int Connection::fd() const noexcept { return transport_ ? transport_->fd() : -1; }

Result<PeerCredentials> Connection::peer_credentials() const {
    if (!transport_) return Error::library(Errc::empty_object, "queue connection: peer credentials of an empty connection");
    return transport_->peer_credentials();
}

Result<UniqueFd> Connection::release_socket() {
    if (!transport_) return Error::library(Errc::empty_object, "queue connection: release_socket of an empty connection");
    if (!transport_->is_socket())
        return Error::library(Errc::invalid_argument, "queue connection: release_socket of an in-process channel");
    UniqueFd s = transport_->take_socket();
    transport_.reset();
    return s;
}

Result<std::pair<Connection, Connection>> Connection::local_pair() {
    auto shared = std::make_shared<detail::LocalShared>();
    for (auto& e : shared->event) {
        e.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
        if (!e) return last_error("queue: eventfd for an in-process channel");
    }
    return std::pair<Connection, Connection>(Connection(std::make_unique<detail::LocalTransport>(shared, 0)),
                                             Connection(std::make_unique<detail::LocalTransport>(shared, 1)));
}

Result<std::pair<Connection, Connection>> Connection::socket_pair() {
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) != 0) return last_error("queue: socketpair(SOCK_SEQPACKET)");
    return std::pair<Connection, Connection>(Connection(std::make_unique<detail::SocketTransport>(UniqueFd(fds[0]))),
                                             Connection(std::make_unique<detail::SocketTransport>(UniqueFd(fds[1]))));
}

Result<Connection> Connection::from_socket(UniqueFd socket) {
    if (!socket) return Error::library(Errc::empty_object, "queue: from_socket of an empty fd");
    int type = 0;
    socklen_t len = sizeof type;
    if (::getsockopt(socket.get(), SOL_SOCKET, SO_TYPE, &type, &len) != 0)
        return last_error("queue: from_socket: fd " + std::to_string(socket.get()) + " is not a socket");
    sockaddr_storage addr{};
    socklen_t alen = sizeof addr;
    if (::getsockname(socket.get(), reinterpret_cast<sockaddr*>(&addr), &alen) != 0)
        return last_error("queue: from_socket: getsockname of fd " + std::to_string(socket.get()));
    if (addr.ss_family != AF_UNIX || type != SOCK_SEQPACKET)
        return Error::library(Errc::invalid_argument, "queue: from_socket: fd " + std::to_string(socket.get()) +
                                                          " is a socket of family " + std::to_string(addr.ss_family) +
                                                          " type " + std::to_string(type) +
                                                          ", expected AF_UNIX SOCK_SEQPACKET");
    if (::fcntl(socket.get(), F_SETFD, FD_CLOEXEC) != 0) return last_error("queue: from_socket: F_SETFD");
    return Connection(std::make_unique<detail::SocketTransport>(std::move(socket)));
}

namespace {
Result<sockaddr_un> unix_address(std::string_view path) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof addr.sun_path)
        return Error::library(Errc::invalid_argument, "queue: socket path of " + std::to_string(path.size()) +
                                                          " bytes (1 to " + std::to_string(sizeof addr.sun_path - 1) + ")");
    std::memcpy(addr.sun_path, path.data(), path.size());
    return addr;
}
}  // namespace

Result<Connection> Connection::connect(std::string_view path) {
    auto addr = unix_address(path);
    if (!addr) return addr.error();
    UniqueFd s(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    if (!s) return last_error("queue: socket(SOCK_SEQPACKET)");
    int r;
    do {
        r = ::connect(s.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr);
    } while (r != 0 && errno == EINTR);
    if (r != 0) return last_error("queue: connect to " + std::string(path));
    return Connection(std::make_unique<detail::SocketTransport>(std::move(s)));
}

Listener::Listener(Listener&& o) noexcept
    : socket_(std::move(o.socket_)), lock_(std::move(o.lock_)), path_(std::move(o.path_)), dev_(o.dev_), ino_(o.ino_),
      lock_dev_(o.lock_dev_), lock_ino_(o.lock_ino_) {
    o.path_.clear();
}
Listener& Listener::operator=(Listener&& o) noexcept {
    if (this != &o) {
        remove_files();
        socket_ = std::move(o.socket_);
        lock_ = std::move(o.lock_);
        path_ = std::move(o.path_);
        dev_ = o.dev_;
        ino_ = o.ino_;
        lock_dev_ = o.lock_dev_;
        lock_ino_ = o.lock_ino_;
        o.path_.clear();
    }
    return *this;
}
Listener::~Listener() { remove_files(); }

namespace {
// Unlinks `path` only while it is still the file (device, inode) this Listener made: someone may
// have removed it and put another producer's socket there.
void unlink_if_same(const std::string& path, dev_t dev, ino_t ino) noexcept {
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0 && st.st_dev == dev && st.st_ino == ino) ::unlink(path.c_str());
}
}  // namespace

void Listener::remove_files() noexcept {
    if (path_.empty()) return;
    // The socket first, while the lock still keeps another Listener from binding there.
    if (socket_) unlink_if_same(path_, dev_, ino_);
    if (lock_) unlink_if_same(path_ + ".lock", lock_dev_, lock_ino_);
    socket_.reset();
    lock_.reset();
    path_.clear();
}

Result<Listener> Listener::listen(std::string_view path, mode_t mode) {
    auto addr = unix_address(path);
    if (!addr) return addr.error();
    const std::string p(path);
    const std::string lock_path = p + ".lock";
    if (!unix_address(lock_path))
        return Error::library(Errc::invalid_argument, "queue: listen on " + p + ": the path is " + std::to_string(p.size()) +
                                                          " bytes, at most " +
                                                          std::to_string(sizeof(sockaddr_un::sun_path) - 1 - 5) +
                                                          " to leave room for its \".lock\"");
    Listener l;
    // The lock serializes every Listener of this path: the stale check, unlink and bind below
    // cannot interleave with another producer's.
    l.lock_.reset(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, mode));
    if (!l.lock_) return last_error("queue: listen on " + p + ": open lock file " + lock_path);
    int r;
    do {
        r = ::flock(l.lock_.get(), LOCK_EX | LOCK_NB);
    } while (r != 0 && errno == EINTR);
    if (r != 0) {
        if (errno == EWOULDBLOCK)
            return Error::from_errno(EADDRINUSE, "queue: listen on " + p + ": another producer holds " + lock_path);
        return last_error("queue: listen on " + p + ": flock " + lock_path);
    }
    struct stat st {};
    if (::fstat(l.lock_.get(), &st) != 0) return last_error("queue: listen on " + p + ": fstat " + lock_path);
    l.lock_dev_ = st.st_dev;
    l.lock_ino_ = st.st_ino;
    if (::lstat(p.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return Error::from_errno(EADDRINUSE, "queue: listen on " + p + ": a file that is not a socket is there");
        // A non-blocking probe: a live listener whose backlog is full would block a plain
        // connect() until it accepts, maybe forever. Only ECONNREFUSED (nobody listens) or
        // ENOENT (gone meanwhile) make the path free; anything else means someone may live there.
        UniqueFd probe(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
        if (!probe) return last_error("queue: listen on " + p + ": socket for the probe");
        do {
            r = ::connect(probe.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr);
        } while (r != 0 && errno == EINTR);
        const int err = r == 0 ? 0 : errno;
        if (err != ECONNREFUSED && err != ENOENT)
            return Error::from_errno(EADDRINUSE, "queue: listen on " + p + ": another producer listens there (probe: " +
                                                     (err == 0 ? std::string("connected") : std::string(std::strerror(err))) + ")");
        ::unlink(p.c_str());
    }
    l.socket_.reset(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!l.socket_) return last_error("queue: socket(SOCK_SEQPACKET)");
    if (::bind(l.socket_.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr) != 0)
        return last_error("queue: bind " + p);
    l.path_ = p;  // from here on, remove_files() cleans up on every return
    if (::lstat(p.c_str(), &st) != 0) return last_error("queue: listen on " + p + ": lstat after bind");
    l.dev_ = st.st_dev;
    l.ino_ = st.st_ino;
    if (::chmod(p.c_str(), mode) != 0 || ::listen(l.socket_.get(), 16) != 0) return last_error("queue: listen on " + p);
    return l;
}

Result<Connection> Listener::accept() {
    if (!socket_) return Error::library(Errc::empty_object, "queue: accept on an empty listener");
    int fd;
    do {
        fd = ::accept4(socket_.get(), nullptr, nullptr, SOCK_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) return last_error("queue: accept on " + path_);
    return Connection(std::make_unique<detail::SocketTransport>(UniqueFd(fd)));
}

}  // namespace dmabridge::queue
