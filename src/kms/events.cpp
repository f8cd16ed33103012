// SPDX-License-Identifier: MIT
// kms::Device's page-flip events: read from the DRM fd without blocking, parsed with bounds
// checks (a drm_event's length is the kernel's word, but a short or torn read must never make
// us read past the buffer), and matched to the flips Commit::flip() recorded, so that the
// framebuffers a flip replaced are let go only once it completed.
#include <dmabridge/kms/device.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <poll.h>
#include <unistd.h>
#include <drm.h>

#include "base/sys.hpp"
#include "kms/device_state.hpp"

namespace dmabridge::kms {

namespace {

// Events kept for dispatch_events() while wait_flip() reads: beyond this an application that
// never dispatches would grow it forever.
constexpr std::size_t max_undelivered = 256;

// Reads what is waiting on the fd (after a poll of `timeout_ms`, -1 none) and completes the
// flips whose last event arrived. Returns the events read; `replaced` gets the framebuffers to
// let go (outside every lock).
Result<std::vector<FlipEvent>> read_events(Device::State& st, int timeout_ms,
                                           std::vector<std::shared_ptr<Framebuffer::Core>>& replaced) {
    std::vector<FlipEvent> events;
    pollfd p{st.fd.get(), POLLIN, 0};
    int ready = 0;
    do ready = ::poll(&p, 1, timeout_ms);
    while (ready < 0 && errno == EINTR);
    if (ready < 0) return detail::last_error("kms events: poll of the DRM fd");
    if (ready == 0 || !(p.revents & POLLIN)) return events;
    // The kernel hands out whole events only, as many as fit.
    alignas(8) char buf[4096];
    ssize_t got = 0;
    do got = ::read(st.fd.get(), buf, sizeof buf);
    while (got < 0 && errno == EINTR);
    if (got < 0) {
        if (errno == EAGAIN) return events;
        return detail::last_error("kms events: read of the DRM fd");
    }
    std::size_t at = 0;
    const auto size = static_cast<std::size_t>(got);
    while (size - at >= sizeof(drm_event)) {
        drm_event head;
        std::memcpy(&head, buf + at, sizeof head);
        if (head.length < sizeof(drm_event) || head.length > size - at) {
            detail::log_message(LogLevel::warning, "kms events: an event of length " + std::to_string(head.length) +
                                                       " at byte " + std::to_string(at) + " of " + std::to_string(size) +
                                                       " read; dropping the rest");
            break;
        }
        if (head.type == DRM_EVENT_FLIP_COMPLETE && head.length >= sizeof(drm_event_vblank)) {
            drm_event_vblank v;
            std::memcpy(&v, buf + at, sizeof v);
            FlipEvent e;
            e.flip = v.user_data;
            e.crtc = v.crtc_id;
            e.sequence = v.sequence;
            e.timestamp = std::chrono::seconds(v.tv_sec) + std::chrono::microseconds(v.tv_usec);
            events.push_back(e);
        }
        at += head.length;
    }
    std::lock_guard lock(st.display_mutex);
    for (const FlipEvent& e : events) {
        auto it = st.pending.find(e.flip);
        if (it == st.pending.end()) continue;  // a CRTC the kernel added, after completion
        auto& left = it->second.crtcs_left;
        left.erase(std::remove(left.begin(), left.end(), e.crtc), left.end());
        if (!left.empty()) continue;
        st.show_locked(e.flip, it->second.planes, replaced);
        for (auto& kept : it->second.keep) replaced.push_back(std::move(kept));
        st.pending.erase(it);
    }
    return events;
}

Error empty(const char* what) {
    return Error::library(Errc::empty_object, std::string(what) + ": the kms::Device is empty (moved from)");
}

}  // namespace

Result<std::vector<FlipEvent>> Device::dispatch_events() {
    if (!state_) return empty("kms dispatch_events");
    State& st = *state_;
    std::vector<std::shared_ptr<Framebuffer::Core>> replaced;  // let go after the locks
    std::vector<FlipEvent> out;
    {
        std::lock_guard reader(st.event_mutex);
        auto got = read_events(st, 0, replaced);
        std::lock_guard lock(st.display_mutex);
        out.assign(st.undelivered.begin(), st.undelivered.end());
        st.undelivered.clear();
        if (!got) {
            if (out.empty()) return got.error();
            // The events read before are not lost: the error comes again with the next call.
            return out;
        }
        out.insert(out.end(), got->begin(), got->end());
    }
    return out;
}

Result<WaitStatus> Device::wait_flip(std::uint64_t flip, Timeout timeout) {
    if (!state_) return empty("kms wait_flip");
    State& st = *state_;
    const detail::Deadline deadline(timeout);
    for (;;) {
        std::vector<std::shared_ptr<Framebuffer::Core>> replaced;
        {
            std::lock_guard reader(st.event_mutex);
            {
                std::lock_guard lock(st.display_mutex);
                if (!st.pending.count(flip)) return WaitStatus::ready;
            }
            const auto ms = deadline.wait_ms();
            // One last look without waiting once the deadline passed: the event may be there.
            auto got = read_events(st, ms ? *ms : 0, replaced);
            if (!got) return got.error().with_context("kms wait_flip " + std::to_string(flip));
            std::lock_guard lock(st.display_mutex);
            for (const FlipEvent& e : *got) {
                if (st.undelivered.size() >= max_undelivered) st.undelivered.pop_front();
                st.undelivered.push_back(e);
            }
            if (!st.pending.count(flip)) return WaitStatus::ready;
            if (!ms) return WaitStatus::timed_out;
        }
    }
}

bool Device::flip_pending(std::uint32_t crtc) const {
    if (!state_) return false;
    std::lock_guard lock(state_->display_mutex);
    for (const auto& entry : state_->pending)
        if (std::find(entry.second.crtcs_left.begin(), entry.second.crtcs_left.end(), crtc) != entry.second.crtcs_left.end())
            return true;
    return false;
}

}  // namespace dmabridge::kms
