// SPDX-License-Identifier: MIT
#include <dmabridge/queue/consumer.hpp>

#include <cerrno>
#include <deque>
#include <string>

#include <poll.h>

#include "base/sys.hpp"
#include "queue/timeline_link.hpp"
#include "queue/transport.hpp"

namespace dmabridge::queue {

namespace wire = dmabridge::detail::wire;

namespace {
using wire::max_buffers;

struct Entry {
    bool announced = false;
    BufferDesc desc;
    bool queued = false;    // a frame of it waits to be acquired
    bool acquired = false;  // the application holds it
};

struct Pending {
    BufferIndex buffer;
    std::optional<SyncFile> fence;
    std::optional<std::uint64_t> point;
    FrameInfo info;
};

Error closed_error() { return Error::library(Errc::empty_object, "queue consumer: used after move"); }
}  // namespace

struct Consumer::State {
    Connection connection;
    Mode mode = Mode::fifo;
    bool hello = false;
    // A deque: growing it at the end (an announcement of a higher id) keeps every Entry where it
    // is, so the BufferDesc pointers handed out (AcquiredFrame::desc, buffer()) stay valid for
    // the Consumer's life, as the header promises. A vector would move them on reallocation.
    std::deque<Entry> buffers;
    std::deque<Pending> ready;
    std::optional<Error> failed;
    ConsumerStats stats;
    // Timelines (ConsumerOptions::timeline_device): the device (a dup), this consumer's release
    // timeline, the producer's acquire timeline once its hello offered it, and the last points
    // seen each way (0 before the first).
    UniqueFd timeline_device;
    std::optional<Timeline> release_timeline;
    std::optional<Timeline> acquire_timeline;
    bool negotiated = false;
    std::uint64_t last_acquire_point = 0;
    std::uint64_t last_release_point = 0;

    // The first failure is final. The connection is shut down (the producer sees the hang-up at
    // once) but its fd stays open until the Consumer is destroyed: the application's event loop
    // polls that fd number, and closing it under the loop would let a later open() reuse the
    // number for something else (libwayland keeps its display fd for the same reason).
    Status fail(Error e) {
        if (!failed) {
            failed = e.with_context("queue consumer");
            detail::ConnectionAccess::transport(connection)->shutdown();
        }
        return *failed;
    }

    Status send_release(BufferIndex b, const SyncFile* fence, std::uint64_t point = 0) {
        const wire::Encoded bytes =
            wire::encode(wire::Release{b, fence ? wire::flag_fence : (point ? wire::flag_point : 0u), point});
        const int fd = fence ? fence->fd() : -1;
        auto sent = detail::ConnectionAccess::transport(connection)->send(bytes.view(), fence ? std::span<const int>(&fd, 1) : std::span<const int>());
        // A producer that hung up is reported as such, whichever of receive and send saw it first.
        if (!sent && sent.error().is_errno(EPIPE))
            return Error::from_errno(ECONNRESET, "the producer closed the connection (send: EPIPE)");
        return sent;
    }

    Status handle(detail::Received& msg) {
        auto parsed = wire::parse_message(msg.view(), msg.fds.size());
        if (!parsed) return fail(parsed.error());
        if (!hello && !std::holds_alternative<wire::Hello>(*parsed))
            return fail(Error::library(Errc::invalid_argument, std::string("the producer sent a ") +
                                                                   wire::type_name(*parsed) + " before its hello"));
        if (const auto* h = std::get_if<wire::Hello>(&*parsed)) {
            if (hello) return fail(Error::library(Errc::invalid_argument, "the producer sent a second hello"));
            hello = true;
            mode = h->mode == 1 ? Mode::mailbox : Mode::fifo;
            if (h->flags & wire::hello_flag_timeline) return take_offer(std::move(msg.fds[0]));
            return {};
        }
        if (const auto* a = std::get_if<wire::Announce>(&*parsed)) {
            const std::string what = "announce of buffer " + std::to_string(a->buffer);
            if (a->buffer >= max_buffers)
                return fail(Error::library(Errc::invalid_argument, what + ": ids go up to " + std::to_string(max_buffers - 1)));
            if (a->buffer < buffers.size() && buffers[a->buffer].announced)
                return fail(Error::library(Errc::invalid_argument, what + ": announced before"));
            std::vector<std::optional<DmaBuf>> bufs;
            for (std::size_t i = 0; i < msg.fds.size(); ++i) {
                auto d = DmaBuf::adopt(std::move(msg.fds[i]));
                if (!d) return fail(d.error().with_context(what + " fd " + std::to_string(i)));
                bufs.emplace_back(std::move(*d));
            }
            BufferDesc desc;
            desc.width = a->width;
            desc.height = a->height;
            desc.fourcc = a->fourcc;
            desc.modifier = a->modifier;
            std::vector<int> holder(bufs.size(), -1);  // the plane that took fd i
            for (std::uint32_t i = 0; i < a->plane_count; ++i) {
                const auto& p = a->planes[i];
                if (holder[p.fd_index] < 0) {
                    holder[p.fd_index] = static_cast<int>(i);
                    desc.planes.push_back(PlaneDesc{std::move(*bufs[p.fd_index]), p.offset, p.stride});
                } else {
                    auto d = desc.planes[static_cast<std::size_t>(holder[p.fd_index])].buffer.dup();
                    if (!d) return fail(d.error().with_context(what));
                    desc.planes.push_back(PlaneDesc{std::move(*d), p.offset, p.stride});
                }
            }
            if (auto v = desc.validate(); !v) return fail(v.error().with_context(what));
            if (buffers.size() <= a->buffer) buffers.resize(a->buffer + 1);
            buffers[a->buffer].announced = true;
            buffers[a->buffer].desc = std::move(desc);
            ++stats.buffers_announced;
            return {};
        }
        if (const auto* f = std::get_if<wire::Frame>(&*parsed)) {
            // Built only for an error: this is every frame's path.
            const auto what = [f] { return "frame " + std::to_string(f->sequence) + " of buffer " + std::to_string(f->buffer); };
            if (f->buffer >= buffers.size() || !buffers[f->buffer].announced)
                return fail(Error::library(Errc::invalid_argument, what() + ": buffer never announced"));
            Entry& e = buffers[f->buffer];
            if (e.queued || e.acquired)
                return fail(Error::library(Errc::invalid_argument,
                                           what() + ": this consumer still holds the buffer (" +
                                               (e.acquired ? "acquired" : "queued") + ")"));
            std::optional<SyncFile> fence;
            if (f->flags & wire::flag_fence) {
                auto sf = SyncFile::adopt(std::move(msg.fds[0]));
                if (!sf) return fail(sf.error().with_context(what() + " acquire fence"));
                fence = std::move(*sf);
            }
            std::optional<std::uint64_t> point;
            if (f->flags & wire::flag_point) {
                if (!acquire_timeline)
                    return fail(Error::library(Errc::invalid_argument, what() + ": acquire point " + std::to_string(f->point) +
                                                                           " but the producer offered no timeline"));
                // The first point may be anywhere: a consumer that joins late meets a timeline
                // that has run for a long time. From then on points rise in bounded steps.
                if (last_acquire_point != 0 || f->point == 0)
                    if (auto ok = detail::check_point_step(last_acquire_point, f->point, what() + " acquire point"); !ok)
                        return fail(ok.error());
                last_acquire_point = f->point;
                point = f->point;
            }
            ++stats.frames_received;
            if (mode == Mode::mailbox) {
                while (!ready.empty()) {
                    const BufferIndex old = ready.front().buffer;
                    ready.pop_front();
                    buffers[old].queued = false;
                    ++stats.frames_replaced;
                    if (auto r = send_release(old, nullptr); !r) return fail(r.error().with_context("give back replaced buffer " + std::to_string(old)));
                }
            }
            e.queued = true;
            ready.push_back(Pending{f->buffer, std::move(fence), point, FrameInfo{f->sequence, f->timestamp_ns}});
            return {};
        }
        return fail(Error::library(Errc::invalid_argument, std::string("the producer sent a ") + wire::type_name(*parsed)));
    }

    // The producer's hello offered its acquire timeline as `fd`.
    Status take_offer(UniqueFd fd) {
        if (!release_timeline) {
            // Not wanted: close it as any untrusted fd (a peer's FUSE file must not make us wait).
            auto link = dmabridge::detail::fd_link(fd.get(), "the producer's acquire timeline");
            if (link) dmabridge::detail::close_untrusted(std::move(fd), *link);
            return {};
        }
        auto t = detail::import_peer_timeline(timeline_device.get(), std::move(fd), "the producer's acquire timeline");
        if (!t) return fail(t.error());
        acquire_timeline = std::move(*t);
        auto mine = release_timeline->export_fd();
        if (!mine) return fail(mine.error().with_context("send the release timeline"));
        const wire::Encoded bytes = wire::encode(wire::ReleaseTimeline{});
        const int fds[1] = {mine->get()};
        if (auto sent = detail::ConnectionAccess::transport(connection)->send(bytes.view(), fds); !sent)
            return fail(sent.error().with_context("send the release timeline"));
        negotiated = true;
        return {};
    }

    // Reads one message; false when none waited.
    Result<bool> read_one() {
        auto got = detail::ConnectionAccess::transport(connection)->receive();
        if (!got) return fail(got.error()).error();
        if (!*got) return false;
        if (auto h = handle(**got); !h) return h.error();
        return true;
    }

    // Reads what waits: in FIFO until a frame is ready, in mailbox everything.
    Result<std::size_t> read_available() {
        std::size_t count = 0;
        for (;;) {
            if (mode == Mode::fifo && !ready.empty() && hello) return count;
            auto r = read_one();
            if (!r) return r.error();
            if (!*r) return count;
            ++count;
        }
    }

    Result<WaitStatus> wait_readable(Timeout timeout) {
        auto w = dmabridge::detail::poll_fd(connection.fd(), POLLIN, timeout, "queue consumer: wait for the producer");
        return w;
    }

};

Consumer::Consumer(std::unique_ptr<State> state) noexcept : state_(std::move(state)) {}
Consumer::Consumer(Consumer&&) noexcept = default;
Consumer& Consumer::operator=(Consumer&&) noexcept = default;
Consumer::~Consumer() = default;

Result<Consumer> Consumer::create(Connection connection, ConsumerOptions options) {
    if (!connection.valid()) return Error::library(Errc::empty_object, "queue consumer: create with an empty connection");
    auto state = std::make_unique<State>();
    if (options.timeline_device >= 0) {
        auto t = Timeline::create(options.timeline_device);
        if (!t) return t.error().with_context("queue consumer: create the release timeline");
        auto device = UniqueFd::dup_of(options.timeline_device);
        if (!device) return device.error().with_context("queue consumer: timeline device");
        state->timeline_device = std::move(*device);
        state->release_timeline = std::move(*t);
    }
    state->connection = std::move(connection);
    return Consumer(std::move(state));
}

Result<AcquiredFrame> Consumer::acquire(Timeout timeout) {
    if (!state_) return closed_error();
    auto& s = *state_;
    // Frames that arrived before the connection failed are still handed out.
    if (s.failed && s.ready.empty()) return *s.failed;
    const dmabridge::detail::Deadline deadline(timeout);
    for (;;) {
        if (!s.failed && (s.mode == Mode::fifo ? s.ready.empty() : true)) {
            auto r = s.read_available();
            if (!r && s.ready.empty()) return r.error();
        }
        if (!s.ready.empty()) {
            Pending p = std::move(s.ready.front());
            s.ready.pop_front();
            Entry& e = s.buffers[p.buffer];
            e.queued = false;
            e.acquired = true;
            ++s.stats.frames_acquired;
            return AcquiredFrame{p.buffer, &e.desc, std::move(p.fence), p.point, p.info};
        }
        if (s.failed) return *s.failed;
        const auto wait = deadline.wait_timeout();
        if (!wait)
            return Error::from_errno(ETIMEDOUT, "queue consumer: no frame within " + std::to_string(timeout.count()) + " ms");
        auto w = s.wait_readable(*wait);
        if (!w) return s.fail(w.error()).error();
    }
}

Result<WaitStatus> Consumer::wait_ready(const AcquiredFrame& frame, Timeout timeout) const {
    if (!state_) return closed_error();
    if (frame.acquire_fence) return frame.acquire_fence->wait(timeout);
    if (frame.acquire_point) {
        const auto& s = *state_;
        if (!s.acquire_timeline)
            return Error::library(Errc::invalid_argument, "queue consumer: wait_ready of a frame with an acquire point, "
                                                          "but this consumer has no acquire timeline");
        auto w = s.acquire_timeline->wait(*frame.acquire_point, timeout);
        if (!w || *w == WaitStatus::ready) return w;
        // Timed out. A point nothing submitted, from a producer that is gone, never comes.
        auto submitted = s.acquire_timeline->wait(*frame.acquire_point, Timeout{0}, PointState::submitted);
        if (submitted && *submitted == WaitStatus::timed_out) {
            bool gone = s.failed.has_value();
            if (!gone && s.connection.is_socket()) {
                pollfd p{s.connection.fd(), 0, 0};  // POLLHUP is reported whatever the events asked
                gone = ::poll(&p, 1, 0) == 1 && (p.revents & POLLHUP);
            }
            if (gone)
                return Error::from_errno(ECONNRESET, "queue consumer: acquire point " + std::to_string(*frame.acquire_point) +
                                                         " of buffer " + std::to_string(frame.buffer) +
                                                         " was never submitted and the producer hung up");
        }
        return w;
    }
    if (!frame.desc) return Error::library(Errc::invalid_argument, "queue consumer: wait_ready of a frame without a buffer");
    // Implicit sync: the writers' fences of every distinct dma-buf. Planes of one buffer share
    // its fences, so a second wait on them returns at once. One deadline for all planes: the
    // caller's timeout bounds the whole wait, not each plane's (planes x timeout).
    const ::dmabridge::detail::Deadline deadline(timeout);
    for (const PlaneDesc& p : frame.desc->planes) {
        const auto left = deadline.wait_timeout();
        auto w = p.buffer.wait(Access::read, left ? *left : Timeout{0});
        if (!w || *w == WaitStatus::timed_out) return w;
    }
    return WaitStatus::ready;
}

Status Consumer::release(BufferIndex buffer, std::optional<SyncFile> release_fence) {
    if (!state_) return closed_error();
    auto& s = *state_;
    if (buffer >= s.buffers.size() || !s.buffers[buffer].acquired)
        return Error::library(Errc::invalid_argument, "queue consumer: release of buffer " + std::to_string(buffer) +
                                                          " which this consumer has not acquired");
    if (release_fence && !release_fence->valid())
        return Error::library(Errc::empty_object, "queue consumer: release of buffer " + std::to_string(buffer) + " with an empty fence");
    s.buffers[buffer].acquired = false;
    if (s.failed) return *s.failed;
    if (auto r = s.send_release(buffer, release_fence ? &*release_fence : nullptr); !r)
        return s.fail(r.error().with_context("release buffer " + std::to_string(buffer)));
    return {};
}

Status Consumer::release_point(BufferIndex buffer, std::uint64_t point) {
    if (!state_) return closed_error();
    auto& s = *state_;
    const std::string what = "queue consumer: release of buffer " + std::to_string(buffer) + " with point " + std::to_string(point);
    if (!s.release_timeline)
        return Error::library(Errc::unsupported, what + ": this consumer has no release timeline (ConsumerOptions::timeline_device)");
    if (buffer >= s.buffers.size() || !s.buffers[buffer].acquired)
        return Error::library(Errc::invalid_argument, what + ": the buffer is not acquired by this consumer");
    if (auto ok = detail::check_point_step(s.last_release_point, point, what); !ok) return ok.error();
    if (s.failed) {
        s.buffers[buffer].acquired = false;
        return *s.failed;
    }
    std::optional<SyncFile> fence;
    if (!s.negotiated) {  // a producer without timelines gets the point as a sync_file
        auto f = s.release_timeline->export_sync_file(point);
        if (!f) return f.error().with_context(what);
        fence = std::move(*f);
    }
    s.buffers[buffer].acquired = false;
    s.last_release_point = point;
    if (auto r = s.send_release(buffer, fence ? &*fence : nullptr, fence ? 0 : point); !r)
        return s.fail(r.error().with_context("release buffer " + std::to_string(buffer)));
    return {};
}

const Timeline* Consumer::acquire_timeline() const noexcept {
    return state_ && state_->acquire_timeline ? &*state_->acquire_timeline : nullptr;
}
Timeline* Consumer::release_timeline() noexcept {
    return state_ && state_->release_timeline ? &*state_->release_timeline : nullptr;
}
bool Consumer::uses_timelines() const noexcept { return state_ && state_->negotiated; }

Result<std::size_t> Consumer::dispatch(Timeout timeout) {
    if (!state_) return closed_error();
    auto& s = *state_;
    if (s.failed) return *s.failed;
    if (timeout != Timeout{0}) {
        auto w = s.wait_readable(timeout);
        if (!w) return s.fail(w.error()).error();
        if (*w == WaitStatus::timed_out) return std::size_t{0};
    }
    std::size_t count = 0;
    for (;;) {
        auto r = s.read_one();
        if (!r) return r.error();
        if (!*r) return count;
        ++count;
    }
}

int Consumer::fd() const noexcept { return state_ ? state_->connection.fd() : -1; }
Mode Consumer::mode() const noexcept { return state_ ? state_->mode : Mode::fifo; }

const BufferDesc* Consumer::buffer(BufferIndex index) const noexcept {
    if (!state_ || index >= state_->buffers.size() || !state_->buffers[index].announced) return nullptr;
    return &state_->buffers[index].desc;
}

std::size_t Consumer::buffer_count() const noexcept { return state_ ? static_cast<std::size_t>(state_->stats.buffers_announced) : 0; }
std::size_t Consumer::queued_count() const noexcept { return state_ ? state_->ready.size() : 0; }

Result<PeerCredentials> Consumer::producer_credentials() const {
    if (!state_) return closed_error();
    if (state_->failed) return *state_->failed;
    return state_->connection.peer_credentials();
}

ConsumerStats Consumer::stats() const noexcept { return state_ ? state_->stats : ConsumerStats{}; }

}  // namespace dmabridge::queue
