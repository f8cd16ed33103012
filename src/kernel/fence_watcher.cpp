// SPDX-License-Identifier: MIT
#include <dmabridge/kernel/fence_watcher.hpp>

#include <algorithm>
#include <atomic>
#include <map>
#include <optional>
#include <string>
#include <mutex>
#include <thread>
#include <vector>

#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <xf86drm.h>

#include "base/sys.hpp"

namespace dmabridge {

namespace {
using clock_type = detail::deadline_clock;
constexpr std::uint64_t wake_key = 0;  // the eventfd's epoll key; watch ids start at 1

Error moved_from(const char* what) {
    return Error::library(Errc::empty_object, std::string("fence watcher: ") + what + ": this watcher was moved from");
}
}  // namespace

struct FenceWatcher::State {
    UniqueFd epoll;
    UniqueFd wake;  // eventfd: wakes the watcher thread (stop, earlier deadlines)
    mutable std::mutex mutex;
    struct Watch {
        UniqueFd fd;  // our own dup: epoll keys on the open file, and it must outlive the watch
        WatchCallback callback;
        std::optional<clock_type::time_point> deadline;
        // What the watched object needs alive: a timeline point's syncobj (as an fd), whose
        // eventfd entries the kernel frees, unsignalled, with the syncobj.
        UniqueFd keep_alive;
    };
    std::map<WatchId, Watch> watches;
    WatchId next_id = 1;
    std::thread thread;
    std::atomic<bool> stopping{false};

    void poke() const {
        const std::uint64_t one = 1;
        (void)!::write(wake.get(), &one, sizeof one);
    }

    Result<WatchId> add(int fd, std::uint32_t events, WatchCallback callback, Timeout timeout, const char* what,
                        UniqueFd keep_alive = {}) {
        auto copy = UniqueFd::dup_of(fd);
        if (!copy) return copy.error().with_context(what);
        std::lock_guard lock(mutex);
        const WatchId id = next_id++;
        epoll_event ev{};
        ev.events = events | EPOLLONESHOT;
        ev.data.u64 = id;
        if (::epoll_ctl(epoll.get(), EPOLL_CTL_ADD, copy->get(), &ev) != 0)
            return detail::last_error(std::string(what) + ": epoll_ctl");
        // Saturated: Timeout::max() and other huge values never pass, they do not wrap.
        Watch w{std::move(*copy), std::move(callback), detail::deadline_after(timeout), std::move(keep_alive)};
        if (w.deadline == clock_type::time_point::max()) w.deadline.reset();
        const bool timed = w.deadline.has_value();
        watches.emplace(id, std::move(w));
        if (timed) poke();  // a sleeping dispatcher must learn the new deadline
        return id;
    }

    // Removes a watch and returns its callback (empty when it was not pending).
    WatchCallback take(WatchId id) {
        std::lock_guard lock(mutex);
        auto it = watches.find(id);
        if (it == watches.end()) return {};
        ::epoll_ctl(epoll.get(), EPOLL_CTL_DEL, it->second.fd.get(), nullptr);
        WatchCallback cb = std::move(it->second.callback);
        watches.erase(it);
        return cb;
    }

    Timeout next_timeout() const {
        std::lock_guard lock(mutex);
        std::optional<clock_type::time_point> earliest;
        for (const auto& [id, w] : watches)
            if (w.deadline && (!earliest || *w.deadline < *earliest)) earliest = w.deadline;
        if (!earliest) return forever;
        auto left = std::chrono::ceil<Timeout>(*earliest - clock_type::now());
        return std::max(left, Timeout{0});
    }

    Result<std::size_t> dispatch(Timeout timeout) {
        Timeout wait = timeout;
        const Timeout deadline_wait = next_timeout();
        if (deadline_wait.count() >= 0 && (wait.count() < 0 || deadline_wait < wait)) wait = deadline_wait;
        epoll_event events[64];
        int n;
        do {
            n = ::epoll_wait(epoll.get(), events, 64, static_cast<int>(std::min<long long>(wait.count(), 0x7fffffff)));
        } while (n < 0 && errno == EINTR);
        if (n < 0) return detail::last_error("fence watcher: epoll_wait");

        std::vector<std::pair<WatchId, WaitStatus>> due;
        for (int i = 0; i < n; ++i) {
            if (const std::uint64_t key = events[i].data.u64; key == wake_key) {
                std::uint64_t count;
                (void)!::read(wake.get(), &count, sizeof count);
                continue;
            }
            const WatchId id = events[i].data.u64;
            due.emplace_back(id, WaitStatus::ready);
        }
        {
            std::lock_guard lock(mutex);
            const auto now = clock_type::now();
            for (const auto& entry : watches) {
                const WatchId id = entry.first;
                const auto& deadline = entry.second.deadline;
                if (deadline && *deadline <= now &&
                    std::none_of(due.begin(), due.end(), [id](const auto& d) { return d.first == id; }))
                    due.emplace_back(id, WaitStatus::timed_out);
            }
        }
        std::size_t ran = 0;
        for (const auto& [id, status] : due) {
            // Taken one at a time, so that a callback can cancel a watch that is due in this batch.
            if (WatchCallback cb = take(id)) {
                cb(id, status);
                ++ran;
            }
        }
        return ran;
    }

    // The dispatch thread's body. It uses only this State (on the heap), never the FenceWatcher
    // object: a watcher may be moved while its thread runs.
    void run() {
        while (!stopping) {
            auto r = dispatch(forever);
            if (!r) detail::log_message(LogLevel::error, r.error().message());
        }
    }
};

FenceWatcher::FenceWatcher(std::unique_ptr<State> state) noexcept : state_(std::move(state)) {}
FenceWatcher::FenceWatcher(FenceWatcher&&) noexcept = default;
FenceWatcher& FenceWatcher::operator=(FenceWatcher&& other) noexcept {
    if (this != &other) {
        if (state_) stop();
        state_ = std::move(other.state_);
    }
    return *this;
}
FenceWatcher::~FenceWatcher() {
    if (state_) stop();
}

Result<FenceWatcher> FenceWatcher::create() {
    auto state = std::make_unique<State>();
    state->epoll.reset(::epoll_create1(EPOLL_CLOEXEC));
    if (!state->epoll) return detail::last_error("fence watcher: epoll_create1");
    state->wake.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!state->wake) return detail::last_error("fence watcher: eventfd");
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = wake_key;
    if (::epoll_ctl(state->epoll.get(), EPOLL_CTL_ADD, state->wake.get(), &ev) != 0)
        return detail::last_error("fence watcher: epoll_ctl");
    return FenceWatcher(std::move(state));
}

Result<WatchId> FenceWatcher::watch(const DmaBuf& buf, Access access, WatchCallback callback, Timeout timeout) {
    if (!state_) return moved_from("watch dma-buf");
    if (access != Access::read && access != Access::write && access != Access::read_write)
        return Error::library(Errc::invalid_argument, "watch dma-buf: invalid access");
    // As for poll(): EPOLLIN when the writers are done, EPOLLOUT when every fence is.
    return state_->add(buf.fd(), access == Access::read ? EPOLLIN : EPOLLOUT, std::move(callback), timeout,
                       "watch dma-buf");
}

Result<WatchId> FenceWatcher::watch(const SyncFile& fence, WatchCallback callback, Timeout timeout) {
    if (!state_) return moved_from("watch sync_file");
    return state_->add(fence.fd(), EPOLLIN, std::move(callback), timeout, "watch sync_file");
}

Result<WatchId> FenceWatcher::watch(const Timeline& timeline, std::uint64_t point, WatchCallback callback,
                                    Timeout timeout, PointState state) {
    const std::string what = "watch point " + std::to_string(point) + " of a syncobj timeline";
    if (!state_) return moved_from(what.c_str());
    if (!timeline.valid()) return Error::library(Errc::empty_object, "fence watcher: " + what + ": the Timeline is empty (moved from)");
    UniqueFd event(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!event) return detail::last_error("fence watcher: " + what + ": eventfd");
    // The kernel's eventfd entry holds no reference to the syncobj: were the timeline destroyed,
    // the entry would go unsignalled and the watch would never end. The watch keeps it alive.
    auto keep = timeline.export_fd();
    if (!keep) return keep.error().with_context("fence watcher: " + what);
    // The kernel signals the eventfd once the point reaches the state, from a fence callback or
    // once a fence is submitted for it; the eventfd then reads as readable like a sync_file.
    const std::uint32_t flags = state == PointState::submitted ? DRM_SYNCOBJ_WAIT_FLAGS_WAIT_AVAILABLE : 0;
    if (drmSyncobjEventfd(timeline.device_fd(), timeline.handle(), point, event.get(), flags) == 0)
        return state_->add(event.get(), EPOLLIN, std::move(callback), timeout, "watch timeline point", std::move(*keep));
    const int err = errno;
    if (err != EINVAL && err != ENOTTY)
        return Error::from_errno(err, "fence watcher: " + what + ": DRM_IOCTL_SYNCOBJ_EVENTFD");
    // No SYNCOBJ_EVENTFD (before Linux 6.6): what can be watched without it.
    auto submitted = timeline.wait(point, Timeout{0}, PointState::submitted);
    if (!submitted) return submitted.error().with_context("fence watcher");
    if (*submitted != WaitStatus::ready)
        return Error::library(Errc::unsupported,
                              "fence watcher: " + what + ": the kernel has no DRM_IOCTL_SYNCOBJ_EVENTFD (Linux 6.6) "
                              "and nothing was submitted for the point yet; watch it once submitted");
    if (state == PointState::submitted) {
        const std::uint64_t one = 1;  // submitted already: readable at once
        if (::write(event.get(), &one, sizeof one) != sizeof one)
            return detail::last_error("fence watcher: " + what + ": eventfd write");
        return state_->add(event.get(), EPOLLIN, std::move(callback), timeout, "watch timeline point");
    }
    auto fence = timeline.export_sync_file(point);
    if (!fence) return fence.error().with_context("fence watcher");
    return state_->add(fence->fd(), EPOLLIN, std::move(callback), timeout, "watch timeline point");
}

bool FenceWatcher::cancel(WatchId id) { return state_ && static_cast<bool>(state_->take(id)); }

std::size_t FenceWatcher::pending() const {
    if (!state_) return 0;
    std::lock_guard lock(state_->mutex);
    return state_->watches.size();
}

int FenceWatcher::fd() const noexcept { return state_ ? state_->epoll.get() : -1; }

Timeout FenceWatcher::next_timeout() const {
    // A moved-from watcher has nothing to wait for: an event loop must not sleep on it.
    return state_ ? state_->next_timeout() : Timeout{0};
}

Result<std::size_t> FenceWatcher::dispatch(Timeout timeout) {
    if (!state_) return moved_from("dispatch");
    return state_->dispatch(timeout);
}

Status FenceWatcher::start() {
    if (!state_) return moved_from("start");
    State& s = *state_;
    if (s.thread.joinable()) return Error::library(Errc::invalid_argument, "fence watcher: already started");
    s.stopping = false;
    // The thread holds the heap State, not `this`: moving the watcher moves only the pointer,
    // and the State outlives the thread (every owner stops the thread before freeing it).
    s.thread = std::thread([state = &s] { state->run(); });
    return {};
}

void FenceWatcher::stop() {
    if (!state_) return;
    auto& s = *state_;
    if (!s.thread.joinable()) return;
    s.stopping = true;
    s.poke();
    s.thread.join();
}

}  // namespace dmabridge
