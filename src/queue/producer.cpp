// SPDX-License-Identifier: MIT
#include <dmabridge/queue/producer.hpp>

#include <algorithm>
#include <cerrno>
#include <deque>
#include <memory>
#include <span>
#include <string>

#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <dmabridge/kernel/fence_watcher.hpp>

#include "base/sys.hpp"
#include "queue/timeline_link.hpp"
#include "queue/transport.hpp"

namespace dmabridge::queue {

namespace wire = dmabridge::detail::wire;
using dmabridge::detail::last_error;

namespace {
using wire::max_buffers;
using Clock = dmabridge::detail::deadline_clock;

// epoll keys: 0 the fence watcher, 1.. the consumers (ConsumerId), this one the policy timer.
constexpr std::uint64_t timer_key = ~std::uint64_t{0};
// How often dispatch() polls buffers whose fences the FenceWatcher could not take.
constexpr int unwatched_poll_ms = 50;

// A deadline of the policy is set when it is not negative; as everywhere in the library, huge
// values (Timeout::max()) mean no limit, and are not added to a time point (which would wrap).
bool limited(Timeout t) noexcept { return t.count() >= 0 && t < std::chrono::hours(24 * 365 * 100); }
std::string ms(Timeout t) { return std::to_string(t.count()) + " ms"; }

struct Peer {
    ConsumerId id = 0;
    Connection connection;
    std::vector<bool> holds;                   // holds[b]: a frame of buffer b was queued to it and not released
    std::vector<Clock::time_point> held_since; // when that frame was queued (for the release deadline)
    std::size_t held = 0;                      // how many holds[] are set
    bool lost = false;
    // Timelines: the consumer's release timeline once it sent it (then frames queued with
    // queue_point() carry points to it), and the last release point it sent.
    // Shared: a release point the watcher cannot take is polled on it after the consumer is gone.
    std::shared_ptr<Timeline> release_timeline;
    std::uint64_t last_release_point = 0;
    // Offered timelines and has not answered yet: a consumer that takes the offer sends its
    // release timeline before anything else, so its first release without one means "no".
    bool answer_pending = false;
};

// A release fence being watched, with the consumer that sent it (for the fence timeout).
struct FenceWait {
    ConsumerId consumer = 0;
    WatchId watch = 0;
    Clock::time_point deadline;
    bool expired = false;  // the timeout passed: the consumer was dropped, the buffer still waits
    std::uint64_t point = 0;  // a release point of the consumer's release timeline; 0 for a sync_file
};

struct Slot {
    BufferDesc desc;
    wire::Announce announce;
    std::vector<int> fds;  // the distinct dma-bufs' fds, in announce fd_index order (borrowed from desc)
    bool dequeued = false;
    std::uint32_t holders = 0;          // consumers holding it
    std::uint32_t pending_fences = 0;   // release fences (or a lost consumer's GPU work) not signalled
    std::vector<FenceWait> fence_waits; // the release fences among them when a fence timeout is set; release points always
    // Waits the FenceWatcher could not take (watch() failed: no fd for its dup, epoll_ctl
    // refused). The buffer stays out of rotation, since the consumer's GPU may still use it, and
    // every dispatch() polls these (no new fd needed) until they are done.
    std::vector<SyncFile> unwatched_fences;
    // Release points the watcher could not take (before Linux 6.6 a point nobody submitted yet
    // cannot be watched): polled the same way, on the consumer's timeline.
    struct UnwatchedPoint {
        std::shared_ptr<Timeline> timeline;
        std::uint64_t point = 0;
        ConsumerId consumer = 0;
    };
    std::vector<UnwatchedPoint> unwatched_points;
    bool unwatched_gpu = false;  // a lost consumer's implicit fences on the dma-bufs
    bool free() const noexcept {
        return !dequeued && holders == 0 && pending_fences == 0 && !unwatched();
    }
    bool unwatched() const noexcept { return unwatched_gpu || !unwatched_fences.empty() || !unwatched_points.empty(); }

    // True when no implicit fence of any of its dma-bufs is pending (one poll each).
    bool idle() const noexcept {
        for (const PlaneDesc& p : desc.planes) {
            auto w = p.buffer.wait(Access::read_write, Timeout{0});
            if (!w || *w != WaitStatus::ready) return false;
        }
        return true;
    }
};

Error closed_error() { return Error::library(Errc::empty_object, "queue producer: used after move"); }
}  // namespace

struct Producer::State {
    ProducerOptions options;
    UniqueFd epoll;
    FenceWatcher watcher;
    // Wakes the epoll set when a release deadline or a release-fence timeout passes; only made
    // when ProducerOptions sets one (otherwise nothing here costs a system call per frame).
    UniqueFd timer;
    Clock::time_point timer_at = Clock::time_point::max();  // what the timer is armed for
    // A deque: add_buffer() appends, and appending to a deque moves no element, so the
    // BufferDesc pointers buffer() hands out stay valid for the Producer's life (a vector would
    // move every Slot when it reallocates).
    std::deque<Slot> slots;
    std::vector<std::unique_ptr<Peer>> peers;
    ConsumerId next_id = 1;
    std::size_t next_slot = 0;
    ProducerStats stats;
    // Timelines (ProducerOptions::timeline_device): the device (a dup) and the acquire timeline
    // offered to every consumer, and the last point queue_point() sent.
    UniqueFd timeline_device;
    std::optional<Timeline> acquire_timeline;
    std::uint64_t last_acquire_point = 0;
    // Losses found and not yet reported. lose() only records them; notify() calls
    // on_consumer_lost once the operation that found them has finished its loops, so a callback
    // that adds or drops consumers, adds buffers or destroys the Producer changes nothing that
    // a loop is walking.
    std::deque<std::pair<ConsumerId, Error>> unreported;
    // Set while notify() runs a callback: the destructor sets *destroyed, so notify() knows not
    // to touch the State again when the callback destroyed the Producer.
    bool* destroyed = nullptr;

    State(ProducerOptions o, UniqueFd e, FenceWatcher w)
        : options(std::move(o)), epoll(std::move(e)), watcher(std::move(w)) {}
    ~State() {
        if (destroyed) *destroyed = true;
    }
    State(const State&) = delete;
    State& operator=(const State&) = delete;

    // Reports the recorded losses. False when a callback destroyed the Producer (this State is
    // gone then: the caller must return at once without touching it).
    [[nodiscard]] bool notify() {
        if (unreported.empty()) return true;
        bool gone = false;
        bool* const outer = destroyed;  // a callback may call into the Producer: notify() nests
        destroyed = &gone;
        while (!unreported.empty()) {
            auto [id, reason] = std::move(unreported.front());
            unreported.pop_front();
            if (!options.on_consumer_lost) continue;
            // A copy: if the callback destroys the Producer, the std::function it runs in
            // must not be destroyed with it.
            auto callback = options.on_consumer_lost;
            callback(id, reason);
            if (gone) {
                if (outer) *outer = true;
                return false;
            }
        }
        destroyed = outer;
        return true;
    }

    Status send(Peer& peer, const wire::Message& m, std::span<const int> fds) {
        const wire::Encoded bytes = wire::encode(m);
        return detail::ConnectionAccess::transport(peer.connection)->send(bytes.view(), fds);
    }

    Peer* find(ConsumerId id) {
        for (auto& p : peers)
            if (p->id == id && !p->lost) return p.get();
        return nullptr;
    }

    // Marks the buffer as waiting for `fence`, released by `consumer` (nothing when it already
    // signalled).
    void wait_then_free(std::size_t index, SyncFile fence, ConsumerId consumer) {
        auto st = fence.status();
        if (st && *st != FenceStatus::active) return;
        auto w = watcher.watch(fence, [this, index](WatchId id, WaitStatus) {
            Slot& slot = slots[index];
            --slot.pending_fences;
            std::erase_if(slot.fence_waits, [id](const FenceWait& f) { return f.watch == id; });
        });
        if (!w) {
            // Not "free now": the consumer's GPU may still write the buffer. Keep the fence and
            // poll it at each dispatch() until it signals.
            detail_log("watch a release fence of buffer " + std::to_string(index) + ": " + w.error().message() +
                       "; the buffer stays out of rotation until the fence signals");
            slots[index].unwatched_fences.push_back(std::move(fence));
            return;
        }
        ++slots[index].pending_fences;
        if (limited(options.release_fence_timeout))
            slots[index].fence_waits.push_back(
                FenceWait{consumer, *w, *dmabridge::detail::deadline_after(options.release_fence_timeout), false});
    }

    // Marks the buffer as waiting for release `point` of `peer`'s release timeline.
    void wait_point_then_free(std::size_t index, Peer& peer, std::uint64_t point) {
        // Already signalled (a consumer whose use ended before it released): free now, one
        // ioctl instead of a watch's five or so system calls.
        if (auto last = peer.release_timeline->last_signalled(); last && *last >= point) return;
        auto w = watcher.watch(*peer.release_timeline, point, [this, index](WatchId id, WaitStatus) {
            Slot& slot = slots[index];
            --slot.pending_fences;
            std::erase_if(slot.fence_waits, [id](const FenceWait& f) { return f.watch == id; });
        }, forever);
        if (!w) {
            // Not "free now": the consumer's GPU may still use the buffer until the point
            // signals. Poll the point at each dispatch() (one ioctl) until it does.
            detail_log("watch release point " + std::to_string(point) + " of buffer " + std::to_string(index) +
                       " from consumer " + std::to_string(peer.id) + ": " + w.error().message() +
                       "; the buffer stays out of rotation until the point signals");
            slots[index].unwatched_points.push_back(Slot::UnwatchedPoint{peer.release_timeline, point, peer.id});
            return;
        }
        ++slots[index].pending_fences;
        const auto deadline = limited(options.release_fence_timeout)
                                  ? *dmabridge::detail::deadline_after(options.release_fence_timeout)
                                  : Clock::time_point::max();
        slots[index].fence_waits.push_back(FenceWait{peer.id, *w, deadline, false, point});
    }

    // Gives buffer `b`, which a lost consumer held (or released with a point nobody submitted),
    // back once the GPU is done with it: the dma-bufs' implicit fences, all of them.
    void reclaim_after_gpu(std::size_t b) {
        Slot& slot = slots[b];
        if (slot.idle()) {  // no GPU work on it: back now, without a watch
            ++stats.buffers_reclaimed;
            return;
        }
        for (int fd_index = 0; fd_index < static_cast<int>(slot.fds.size()); ++fd_index) {
            const DmaBuf* buf = nullptr;
            for (const auto& p : slot.desc.planes)
                if (p.buffer.fd() == slot.fds[static_cast<std::size_t>(fd_index)]) buf = &p.buffer;
            if (!buf) continue;
            auto w = watcher.watch(*buf, Access::read_write, [this, b](WatchId, WaitStatus) {
                --slots[b].pending_fences;
                ++stats.buffers_reclaimed;
            });
            if (w) {
                ++slot.pending_fences;
            } else {
                // Not "free now": the lost consumer's GPU work may still use it. Poll it
                // at each dispatch() instead until it is idle.
                detail_log("watch buffer " + std::to_string(b) + " of a lost consumer: " + w.error().message() +
                           "; the buffer stays out of rotation until it is idle");
                slot.unwatched_gpu = true;
            }
        }
    }

    // Returns the buffers whose unwatched fences are all done.
    void recheck_unwatched() {
        for (Slot& slot : slots) {
            std::erase_if(slot.unwatched_fences, [](const SyncFile& f) {
                auto st = f.status();
                return st && *st != FenceStatus::active;
            });
            std::erase_if(slot.unwatched_points, [](const Slot::UnwatchedPoint& u) {
                auto last = u.timeline->last_signalled();
                return last && *last >= u.point;
            });
            if (slot.unwatched_gpu && slot.idle()) {
                slot.unwatched_gpu = false;
                ++stats.buffers_reclaimed;
            }
        }
    }

    // Drops the consumers that broke the policy of ProducerOptions by `now`.
    void enforce(Clock::time_point now) {
        if (limited(options.release_deadline)) {
            for (auto& p : peers) {
                if (p->lost || p->held == 0) continue;
                for (std::size_t b = 0; b < p->holds.size(); ++b) {
                    if (!p->holds[b] || now - p->held_since[b] < options.release_deadline) continue;
                    lose(*p, Error::from_errno(ETIMEDOUT, "consumer " + std::to_string(p->id) + " held buffer " +
                                                              std::to_string(b) + " longer than the release deadline of " +
                                                              ms(options.release_deadline)));
                    break;
                }
            }
        }
        if (limited(options.release_fence_timeout)) {
            // lose() changes fence_waits (a release point nobody submitted gives its buffer
            // back): collect first, drop after the loops.
            std::vector<std::pair<ConsumerId, Error>> late;
            for (std::size_t b = 0; b < slots.size(); ++b) {
                for (FenceWait& f : slots[b].fence_waits) {
                    if (f.expired || now < f.deadline) continue;
                    f.expired = true;
                    ++stats.release_fence_timeouts;
                    const std::string what =
                        (f.point ? "release point " + std::to_string(f.point) : std::string("the release fence")) +
                        " of buffer " + std::to_string(b) + " from consumer " + std::to_string(f.consumer) +
                        " did not signal within " + ms(options.release_fence_timeout) +
                        "; the buffer stays out of rotation until it does";
                    if (find(f.consumer)) late.emplace_back(f.consumer, Error::from_errno(ETIMEDOUT, what));
                    else detail_log(what);
                }
            }
            for (auto& [id, why] : late)
                if (Peer* p = find(id)) lose(*p, why);
        }
    }

    // Arms the timer for the next deadline of the policy (one timerfd_settime when it moved).
    void rearm() {
        if (!timer) return;
        Clock::time_point next = Clock::time_point::max();
        if (limited(options.release_deadline))
            for (const auto& p : peers)
                for (std::size_t b = 0; b < p->holds.size() && p->held > 0; ++b)
                    if (p->holds[b] && !p->lost) next = std::min(next, p->held_since[b] + options.release_deadline);
        for (const Slot& slot : slots)
            for (const FenceWait& f : slot.fence_waits)
                if (!f.expired) next = std::min(next, f.deadline);
        if (next == timer_at) return;
        timer_at = next;
        itimerspec spec{};  // all zero: disarmed
        if (next != Clock::time_point::max()) {
            // steady_clock is CLOCK_MONOTONIC on Linux; a zero it_value would disarm, so at
            // least 1 ns.
            const auto ns = std::max<std::int64_t>(
                1, std::chrono::duration_cast<std::chrono::nanoseconds>(next.time_since_epoch()).count());
            spec.it_value.tv_sec = static_cast<time_t>(ns / 1000000000);
            spec.it_value.tv_nsec = static_cast<long>(ns % 1000000000);
        }
        if (::timerfd_settime(timer.get(), TFD_TIMER_ABSTIME, &spec, nullptr) != 0)
            detail_log("arm the policy timer: " + last_error("timerfd_settime").message());
    }

    static void detail_log(const std::string& m) { dmabridge::detail::log_message(LogLevel::warning, "queue producer: " + m); }

    // Drops a consumer: closes its connection and returns what it held once the GPU is done
    // with it (the dma-bufs' implicit fences, all of them).
    void lose(Peer& peer, const Error& reason) {
        if (peer.lost) return;
        peer.lost = true;
        ::epoll_ctl(epoll.get(), EPOLL_CTL_DEL, peer.connection.fd(), nullptr);
        peer.held = 0;
        for (std::size_t b = 0; b < peer.holds.size(); ++b) {
            if (!peer.holds[b]) continue;
            peer.holds[b] = false;
            --slots[b].holders;
            reclaim_after_gpu(b);
        }
        // Release points of this consumer that nothing submitted: a dead process cannot submit
        // them any more, so they would keep the buffer for good. The buffer comes back as if the
        // consumer still held it. Submitted points are still waited for (the GPU runs).
        if (peer.release_timeline) {
            for (std::size_t b = 0; b < slots.size(); ++b) {
                auto& waits = slots[b].fence_waits;
                for (std::size_t i = 0; i < waits.size();) {
                    const FenceWait f = waits[i];
                    if (f.consumer != peer.id || f.point == 0) { ++i; continue; }
                    auto submitted = peer.release_timeline->wait(f.point, Timeout{0}, PointState::submitted);
                    if (submitted && *submitted == WaitStatus::ready) { ++i; continue; }
                    if (!watcher.cancel(f.watch)) { ++i; continue; }  // its callback ran meanwhile
                    waits.erase(waits.begin() + static_cast<std::ptrdiff_t>(i));
                    --slots[b].pending_fences;
                    ++stats.abandoned_points;
                    detail_log("release point " + std::to_string(f.point) + " of buffer " + std::to_string(b) +
                               " from consumer " + std::to_string(peer.id) +
                               " was never submitted; the buffer comes back once its implicit fences are done");
                    reclaim_after_gpu(b);
                }
            }
        }
        for (std::size_t b = 0; b < slots.size(); ++b) {
            auto& points = slots[b].unwatched_points;
            const auto before = points.size();
            std::erase_if(points, [&](const Slot::UnwatchedPoint& u) {
                if (u.consumer != peer.id) return false;
                auto submitted = u.timeline->wait(u.point, Timeout{0}, PointState::submitted);
                return !(submitted && *submitted == WaitStatus::ready);  // never submitted: abandoned
            });
            for (auto n = before - points.size(); n > 0; --n) {
                ++stats.abandoned_points;
                reclaim_after_gpu(b);
            }
        }
        { Connection closing(std::move(peer.connection)); }  // the consumer sees the hang-up now
        ++stats.consumers_lost;
        detail_log("consumer " + std::to_string(peer.id) + " dropped: " + reason.message());
        unreported.emplace_back(peer.id, reason);  // reported by notify(), after the caller's loops
    }

    void erase_lost() {
        std::erase_if(peers, [](const std::unique_ptr<Peer>& p) { return p->lost; });
    }

    // One message from `peer`; false when the peer was dropped.
    bool read_one(Peer& peer, bool* nothing = nullptr) {
        auto got = detail::ConnectionAccess::transport(peer.connection)->receive();
        if (!got) {
            lose(peer, got.error().with_context("consumer " + std::to_string(peer.id)));
            return false;
        }
        if (nothing) *nothing = !*got;
        if (!*got) return true;
        detail::Received& msg = **got;
        auto parsed = wire::parse_message(msg.view(), msg.fds.size());
        if (!parsed) {
            lose(peer, parsed.error().with_context("consumer " + std::to_string(peer.id)));
            return false;
        }
        if (std::holds_alternative<wire::ReleaseTimeline>(*parsed)) {
            const std::string who = "consumer " + std::to_string(peer.id);
            if (!acquire_timeline || peer.release_timeline) {
                lose(peer, Error::library(Errc::invalid_argument, who + " sent a release timeline " +
                                                                      (peer.release_timeline ? "a second time" : "but none was offered")));
                return false;
            }
            auto t = detail::import_peer_timeline(timeline_device.get(), std::move(msg.fds[0]), who + " release timeline");
            if (!t) {
                lose(peer, t.error());
                return false;
            }
            peer.release_timeline = std::make_shared<Timeline>(std::move(*t));
            peer.answer_pending = false;
            return true;
        }
        const auto* rel = std::get_if<wire::Release>(&*parsed);
        if (!rel) {
            lose(peer, Error::library(Errc::invalid_argument, "consumer " + std::to_string(peer.id) + " sent a " +
                                                                  wire::type_name(*parsed) + ", only release is allowed"));
            return false;
        }
        if (rel->buffer >= slots.size()) {
            lose(peer, Error::library(Errc::invalid_argument, "consumer " + std::to_string(peer.id) +
                                                                  " released unknown buffer " + std::to_string(rel->buffer) +
                                                                  " (the queue has " + std::to_string(slots.size()) + ")"));
            return false;
        }
        if (!peer.holds[rel->buffer]) {
            lose(peer, Error::library(Errc::invalid_argument, "consumer " + std::to_string(peer.id) + " released buffer " +
                                                                  std::to_string(rel->buffer) +
                                                                  " which it does not hold (never queued to it, or released twice)"));
            return false;
        }
        std::optional<SyncFile> fence;
        if (rel->flags & wire::flag_fence) {
            auto f = SyncFile::adopt(std::move(msg.fds[0]));
            if (!f) {
                lose(peer, f.error().with_context("consumer " + std::to_string(peer.id) + " release fence of buffer " +
                                                  std::to_string(rel->buffer)));
                return false;
            }
            fence = std::move(*f);
        }
        peer.answer_pending = false;
        if (rel->flags & wire::flag_point) {
            const std::string what = "consumer " + std::to_string(peer.id) + " release of buffer " + std::to_string(rel->buffer);
            if (!peer.release_timeline) {
                lose(peer, Error::library(Errc::invalid_argument, what + ": release point " + std::to_string(rel->point) +
                                                                      " without a release timeline"));
                return false;
            }
            if (auto ok = detail::check_point_step(peer.last_release_point, rel->point, what); !ok) {
                lose(peer, ok.error());
                return false;
            }
            peer.last_release_point = rel->point;
        }
        peer.holds[rel->buffer] = false;
        --peer.held;
        --slots[rel->buffer].holders;
        ++stats.releases;
        if (fence) wait_then_free(rel->buffer, std::move(*fence), peer.id);
        if (rel->flags & wire::flag_point) {
            ++stats.release_points;
            wait_point_then_free(rel->buffer, peer, rel->point);
            if (peer.lost) return false;
        }
        return true;
    }

    Result<std::size_t> dispatch(Timeout timeout) {
        epoll_event events[16];
        const auto deadline = dmabridge::detail::deadline_after(timeout);
        // Buffers whose fences could not be watched are polled: no event will say they are done,
        // so wake at least every unwatched_poll_ms while there are any.
        const bool polling = std::any_of(slots.begin(), slots.end(), [](const Slot& s) { return s.unwatched(); });
        int wait_ms = dmabridge::detail::poll_ms_until(deadline);
        if (polling && (wait_ms < 0 || wait_ms > unwatched_poll_ms)) wait_ms = unwatched_poll_ms;
        int n;
        do {
            n = ::epoll_wait(epoll.get(), events, 16, wait_ms);
        } while (n < 0 && errno == EINTR);
        if (n < 0) return last_error("queue producer: epoll_wait");
        std::size_t handled = 0;
        for (int i = 0; i < n; ++i) {
            if (events[i].data.u64 == 0) {
                auto d = watcher.dispatch(Timeout{0});
                if (!d) return d.error().with_context("queue producer");
                handled += *d;
            } else if (events[i].data.u64 == timer_key) {
                std::uint64_t expirations;
                [[maybe_unused]] ssize_t r = ::read(timer.get(), &expirations, sizeof expirations);
                timer_at = Clock::time_point::max();  // fired: rearm() below sets it again
                ++handled;
            } else if (Peer* p = find(events[i].data.u64)) {
                read_one(*p);
                ++handled;
            }
        }
        if (timer) enforce(Clock::now());
        if (polling) recheck_unwatched();
        erase_lost();
        rearm();
        return handled;
    }

    // Sends a frame of dequeued buffer `index` to every consumer: with `point` (not 0) to those
    // that negotiated timelines, with `fence` (when given) to the others.
    void queue_frame(BufferIndex index, const SyncFile* fence, std::uint64_t point, FrameInfo info) {
        Slot& slot = slots[index];
        const wire::Frame with_fence{index, fence ? wire::flag_fence : 0u, info.sequence, info.timestamp_ns, 0};
        const wire::Frame with_point{index, wire::flag_point, info.sequence, info.timestamp_ns, point};
        const int fence_fd = fence ? fence->fd() : -1;
        const std::span<const int> fds = fence ? std::span<const int>(&fence_fd, 1) : std::span<const int>();
        const auto now = timer ? Clock::now() : Clock::time_point{};
        const std::size_t limit = options.max_held_per_consumer;
        for (auto& p : peers) {
            if (p->lost) continue;
            // Releases the consumer sent and nobody read yet count as released: read them first.
            for (bool nothing = false; limit > 0 && p->held >= limit && !nothing;)
                if (!read_one(*p, &nothing)) break;
            if (p->lost) continue;
            if (limit > 0 && p->held >= limit) {
                lose(*p, Error::library(Errc::limit_exceeded,
                                        "consumer " + std::to_string(p->id) + " holds " + std::to_string(p->held) +
                                            " buffers (queued or acquired, not released), the limit is " +
                                            std::to_string(limit) + "; frame of buffer " + std::to_string(index) + " not sent"));
                continue;
            }
            const bool by_point = point != 0 && p->release_timeline;
            if (auto r = by_point ? send(*p, with_point, {}) : send(*p, with_fence, fds); !r) {
                lose(*p, r.error().with_context("queue frame of buffer " + std::to_string(index) + " to consumer " +
                                                std::to_string(p->id)));
                continue;
            }
            p->holds[index] = true;
            p->held_since[index] = now;
            ++p->held;
            ++slot.holders;
        }
        slot.dequeued = false;
        ++stats.frames_queued;
        erase_lost();
        rearm();
    }

    std::optional<std::size_t> take_free() {
        for (std::size_t k = 0; k < slots.size(); ++k) {
            const std::size_t i = (next_slot + k) % slots.size();
            if (slots[i].free()) {
                next_slot = (i + 1) % slots.size();
                return i;
            }
        }
        return std::nullopt;
    }
};

Producer::Producer(std::unique_ptr<State> state) noexcept : state_(std::move(state)) {}
Producer::Producer(Producer&&) noexcept = default;
Producer& Producer::operator=(Producer&&) noexcept = default;
Producer::~Producer() = default;

Result<Producer> Producer::create(ProducerOptions options) {
    UniqueFd ep(::epoll_create1(EPOLL_CLOEXEC));
    if (!ep) return last_error("queue producer: epoll_create1");
    auto watcher = FenceWatcher::create();
    if (!watcher) return watcher.error().with_context("queue producer");
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = 0;
    if (::epoll_ctl(ep.get(), EPOLL_CTL_ADD, watcher->fd(), &ev) != 0) return last_error("queue producer: epoll_ctl(watcher)");
    UniqueFd timer;
    if (limited(options.release_deadline) || limited(options.release_fence_timeout)) {
        timer.reset(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
        if (!timer) return last_error("queue producer: timerfd_create");
        ev.data.u64 = timer_key;
        if (::epoll_ctl(ep.get(), EPOLL_CTL_ADD, timer.get(), &ev) != 0) return last_error("queue producer: epoll_ctl(timer)");
    }
    UniqueFd timeline_device;
    std::optional<Timeline> acquire_timeline;
    if (options.timeline_device >= 0) {
        auto t = Timeline::create(options.timeline_device);
        if (!t) return t.error().with_context("queue producer: create the acquire timeline");
        auto device = UniqueFd::dup_of(options.timeline_device);
        if (!device) return device.error().with_context("queue producer: timeline device");
        timeline_device = std::move(*device);
        acquire_timeline = std::move(*t);
    }
    auto state = std::make_unique<State>(std::move(options), std::move(ep), std::move(*watcher));
    state->timer = std::move(timer);
    state->timeline_device = std::move(timeline_device);
    state->acquire_timeline = std::move(acquire_timeline);
    return Producer(std::move(state));
}

Result<BufferIndex> Producer::add_buffer(BufferDesc desc) {
    if (!state_) return closed_error();
    auto& s = *state_;
    if (s.slots.size() >= max_buffers)
        return Error::library(Errc::limit_exceeded, "queue producer: add_buffer: the queue holds " +
                                                        std::to_string(max_buffers) + " buffers already");
    if (auto v = desc.validate(); !v) return v.error().with_context("queue producer: add_buffer");
    if (desc.planes.size() > max_planes)
        return Error::library(Errc::invalid_argument, "queue producer: add_buffer: " + std::to_string(desc.planes.size()) + " planes");
    Slot slot;
    const auto index = static_cast<BufferIndex>(s.slots.size());
    slot.announce.buffer = index;
    slot.announce.width = desc.width;
    slot.announce.height = desc.height;
    slot.announce.fourcc = desc.fourcc;
    slot.announce.modifier = desc.modifier;
    slot.announce.plane_count = static_cast<std::uint32_t>(desc.planes.size());
    std::vector<BufferId> ids;
    for (std::size_t i = 0; i < desc.planes.size(); ++i) {
        const PlaneDesc& p = desc.planes[i];
        auto it = std::find(ids.begin(), ids.end(), p.buffer.id());
        if (it == ids.end()) {
            ids.push_back(p.buffer.id());
            slot.fds.push_back(p.buffer.fd());
            it = ids.end() - 1;
        }
        slot.announce.planes[i] = {static_cast<std::uint32_t>(it - ids.begin()), p.offset, p.stride};
    }
    slot.announce.fd_count = static_cast<std::uint32_t>(slot.fds.size());
    slot.desc = std::move(desc);
    s.slots.push_back(std::move(slot));
    for (auto& p : s.peers) {
        p->holds.push_back(false);
        p->held_since.emplace_back();
        if (auto r = s.send(*p, s.slots.back().announce, s.slots.back().fds); !r)
            s.lose(*p, r.error().with_context("announce buffer " + std::to_string(index) + " to consumer " + std::to_string(p->id)));
    }
    s.erase_lost();
    (void)s.notify();  // last: the callback may destroy the Producer; the buffer was added either way
    return index;
}

const BufferDesc* Producer::buffer(BufferIndex index) const noexcept {
    if (!state_ || index >= state_->slots.size()) return nullptr;
    return &state_->slots[index].desc;
}

std::size_t Producer::buffer_count() const noexcept { return state_ ? state_->slots.size() : 0; }

Result<ConsumerId> Producer::add_consumer(Connection connection) {
    if (!state_) return closed_error();
    if (!connection.valid()) return Error::library(Errc::empty_object, "queue producer: add_consumer with an empty connection");
    auto& s = *state_;
    auto peer = std::make_unique<Peer>();
    peer->id = s.next_id++;
    peer->connection = std::move(connection);
    peer->holds.assign(s.slots.size(), false);
    peer->held_since.assign(s.slots.size(), Clock::time_point{});
    const std::string who = "queue producer: add consumer " + std::to_string(peer->id);
    const std::uint32_t mode = s.options.mode == Mode::mailbox ? 1u : 0u;
    if (s.acquire_timeline) {
        // The offer: the acquire timeline goes with the hello (one fd, exported for this send).
        auto fd = s.acquire_timeline->export_fd();
        if (!fd) return fd.error().with_context(who + ": export the acquire timeline");
        const int fds[1] = {fd->get()};
        if (auto r = s.send(*peer, wire::Hello{mode, wire::hello_flag_timeline}, fds); !r) return r.error().with_context(who);
        peer->answer_pending = true;
    } else if (auto r = s.send(*peer, wire::Hello{mode, 0}, {}); !r) {
        return r.error().with_context(who);
    }
    for (const Slot& slot : s.slots)
        if (auto r = s.send(*peer, slot.announce, slot.fds); !r) return r.error().with_context(who);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = peer->id;
    if (::epoll_ctl(s.epoll.get(), EPOLL_CTL_ADD, peer->connection.fd(), &ev) != 0) return last_error(who + ": epoll_ctl");
    const ConsumerId id = peer->id;
    s.peers.push_back(std::move(peer));
    return id;
}

std::size_t Producer::consumer_count() const noexcept { return state_ ? state_->peers.size() : 0; }

Result<PeerCredentials> Producer::consumer_credentials(ConsumerId id) const {
    if (!state_) return closed_error();
    Peer* p = state_->find(id);
    if (!p) return Error::library(Errc::not_found, "queue producer: no consumer " + std::to_string(id));
    return p->connection.peer_credentials();
}

Result<BufferIndex> Producer::dequeue(Timeout timeout) {
    if (!state_) return closed_error();
    auto& s = *state_;
    if (s.slots.empty()) return Error::library(Errc::invalid_argument, "queue producer: dequeue from a queue without buffers");
    const dmabridge::detail::Deadline deadline(timeout);
    for (bool first = true;; first = false) {
        if (auto i = s.take_free()) {
            s.slots[*i].dequeued = true;
            return static_cast<BufferIndex>(*i);
        }
        // No buffer is free; only a consumer's release or a release fence can free one.
        std::size_t queued = 0, fencing = 0;
        for (const Slot& slot : s.slots) {
            queued += slot.holders > 0;
            fencing += slot.pending_fences > 0 || slot.unwatched();
        }
        // With none at a consumer or fencing, every buffer is dequeued by the application itself
        // and a wait would never end (with `forever`, a hang): refuse at once.
        if (queued == 0 && fencing == 0)
            return Error::from_errno(EDEADLK, "queue producer: all " + std::to_string(s.slots.size()) +
                                                  " buffers are dequeued by the application; queue or cancel one "
                                                  "before dequeueing again");
        // Even a zero timeout reads what waits once before giving up.
        const auto wait = deadline.wait_timeout();
        if (!first && !wait)
            return Error::from_errno(ETIMEDOUT, "queue producer: no free buffer within " + std::to_string(timeout.count()) +
                                                    " ms: " + std::to_string(s.slots.size()) + " buffers, " +
                                                    std::to_string(queued) + " queued to consumers, " +
                                                    std::to_string(fencing) + " waiting for release fences");
        auto d = s.dispatch(wait.value_or(Timeout{0}));
        if (!s.notify())
            return Error::library(Errc::empty_object, "queue producer: dequeue: the on_consumer_lost callback destroyed the producer");
        if (!d) return d.error();
    }
}

Status Producer::queue(BufferIndex index, std::optional<SyncFile> acquire_fence, FrameInfo info) {
    if (!state_) return closed_error();
    auto& s = *state_;
    if (index >= s.slots.size() || !s.slots[index].dequeued)
        return Error::library(Errc::invalid_argument, "queue producer: queue buffer " + std::to_string(index) +
                                                          " which is not dequeued (" + std::to_string(s.slots.size()) + " buffers)");
    if (acquire_fence && !acquire_fence->valid())
        return Error::library(Errc::empty_object, "queue producer: queue buffer " + std::to_string(index) + " with an empty acquire fence");
    s.queue_frame(index, acquire_fence ? &*acquire_fence : nullptr, 0, info);
    (void)s.notify();  // last: the callback may destroy the Producer; the frame is queued either way
    return {};
}

Status Producer::queue_point(BufferIndex index, std::uint64_t point, FrameInfo info) {
    if (!state_) return closed_error();
    auto& s = *state_;
    const std::string what = "queue producer: queue buffer " + std::to_string(index) + " with acquire point " + std::to_string(point);
    if (!s.acquire_timeline)
        return Error::library(Errc::unsupported, what + ": this producer has no acquire timeline (ProducerOptions::timeline_device)");
    if (index >= s.slots.size() || !s.slots[index].dequeued)
        return Error::library(Errc::invalid_argument, what + ": the buffer is not dequeued (" + std::to_string(s.slots.size()) + " buffers)");
    if (auto ok = detail::check_point_step(s.last_acquire_point, point, what); !ok) return ok.error();
    // A consumer's answer to the offer may wait unread: read what waits from those that have
    // not answered, so that one that took the offer gets the point.
    for (auto& p : s.peers)
        for (bool nothing = false; p->answer_pending && !p->lost && !nothing;)
            if (!s.read_one(*p, &nothing)) break;
    s.erase_lost();
    // Consumers without timelines get the point as a sync_file: export it once for all of them.
    std::optional<SyncFile> fence;
    for (const auto& p : s.peers) {
        if (p->lost || p->release_timeline) continue;
        auto f = s.acquire_timeline->export_sync_file(point);
        if (!f) {
            const Error e = f.error().with_context(what + " (for consumer " + std::to_string(p->id) + ", which has no timelines)");
            (void)s.notify();  // consumers lost while reading their answers; may destroy the Producer
            return e;
        }
        fence = std::move(*f);
        break;
    }
    s.last_acquire_point = point;
    s.queue_frame(index, fence ? &*fence : nullptr, point, info);
    (void)s.notify();
    return {};
}

Timeline* Producer::acquire_timeline() noexcept {
    return state_ && state_->acquire_timeline ? &*state_->acquire_timeline : nullptr;
}

Result<bool> Producer::consumer_uses_timelines(ConsumerId id) const {
    if (!state_) return closed_error();
    Peer* p = state_->find(id);
    if (!p) return Error::library(Errc::not_found, "queue producer: no consumer " + std::to_string(id));
    return p->release_timeline != nullptr;
}

Status Producer::cancel(BufferIndex index) {
    if (!state_) return closed_error();
    if (index >= state_->slots.size() || !state_->slots[index].dequeued)
        return Error::library(Errc::invalid_argument, "queue producer: cancel buffer " + std::to_string(index) + " which is not dequeued");
    state_->slots[index].dequeued = false;
    return {};
}

Result<std::size_t> Producer::dispatch(Timeout timeout) {
    if (!state_) return closed_error();
    State& s = *state_;
    auto handled = s.dispatch(timeout);
    (void)s.notify();  // last: the callback may destroy the Producer
    return handled;
}

Status Producer::drop(ConsumerId id) {
    if (!state_) return closed_error();
    State& s = *state_;
    Peer* p = s.find(id);
    if (!p) return Error::library(Errc::not_found, "queue producer: drop: no consumer " + std::to_string(id));
    s.lose(*p, Error::from_errno(ECANCELED, "consumer " + std::to_string(id) + " dropped by the application"));
    s.erase_lost();
    s.rearm();
    (void)s.notify();
    return {};
}

int Producer::fd() const noexcept { return state_ ? state_->epoll.get() : -1; }

std::size_t Producer::free_count() const noexcept {
    if (!state_) return 0;
    return static_cast<std::size_t>(std::count_if(state_->slots.begin(), state_->slots.end(), [](const Slot& s) { return s.free(); }));
}

ProducerStats Producer::stats() const noexcept { return state_ ? state_->stats : ProducerStats{}; }

}  // namespace dmabridge::queue
