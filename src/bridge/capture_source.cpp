// SPDX-License-Identifier: MIT
#include <dmabridge/bridge/capture_source.hpp>

#include <algorithm>
#include <array>
#include <cerrno>
#include <ctime>
#include <stdexcept>

#include <cstring>
#include <vector>

#include <linux/videodev2.h>
#include <poll.h>
#include <sys/epoll.h>

#include <dmabridge/base/log.hpp>
#include <dmabridge/base/unique_fd.hpp>
#include <dmabridge/v4l2/buffer_ring.hpp>

#include "base/sys.hpp"

namespace dmabridge::v4l2 {


// The producer of a stream that stop() ended while its consumers still held some of its buffers
// (acquired, queued to them, or released with a fence that had not signalled). It stays, with its
// consumers connected, until every such buffer came back; only then is it destroyed (its consumers
// see the end of the stream). A buffer it still lends never goes to the driver, whichever stream
// runs meanwhile: the driver would overwrite a frame a consumer, or its GPU, may still read.
struct Draining {
    queue::Producer producer;
    std::uint64_t serial = 0;  // what Buffer::lender records
};

// Where a buffer of the ring is, as the current stream sees it. A buffer is in exactly one place:
//   stream   the stream's producer has it (free, queued to consumers, or waiting for their
//            release fences), or no stream runs;
//   in_hand  dequeued from the producer (or from the driver) and not yet handed on: after an error
//            on the way (on_returned, QBUF) it is no consumer's, and stop() gives it back;
//   driver   queued to the driver for capture;
//   parked   free in the current stream, but a draining producer still lends it: it waits for
//            that producer to return it before it goes to the driver.
enum class Place : std::uint8_t { stream, in_hand, driver, parked };

// One buffer of the ring. Invariants: parked implies lender != 0 (a buffer waits only for a
// lender), driver implies lender == 0 (the driver never gets a buffer a consumer may still read).
struct Buffer {
    Place place = Place::stream;
    // The serial of the draining producer that still lends it (an older stream's consumers hold
    // it, or their release fences have not signalled); 0: none.
    std::uint64_t lender = 0;
};

struct CaptureSource::State {
    std::string who;
    std::optional<Device> device;
    Format format;
    double frame_rate = 0;
    std::optional<BufferRing> ring;  // after device: stops streaming before the device closes
    std::optional<queue::Producer> producer;
    std::function<Status(queue::BufferIndex)> on_returned;
    std::size_t with_driver = 0;
    std::size_t incomplete_in_a_row = 0;
    CaptureStats stats;
    std::vector<Buffer> buffers;  // by ring index
    std::vector<std::unique_ptr<Draining>> draining;
    std::uint64_t next_serial = 1;
    UniqueFd drain_epoll;  // the draining producers' fds, one fd to poll (created on first use)
    bool drain_unwatched = false;  // a draining producer's fd could not join drain_epoll

    Status to_driver(std::uint32_t index) {
        if (auto ok = ring->queue(index); !ok) return ok.error().with_context(who + ": re-queue");
        ++with_driver;
        buffers[index].place = Place::driver;
        return {};
    }
    // A buffer free in the current stream goes to the driver (after on_returned), unless a
    // draining producer still lends it: then it waits, parked, for that producer to return it.
    Status give_back(std::uint32_t index) {
        if (buffers[index].lender != 0) {
            buffers[index].place = Place::parked;
            return {};
        }
        if (on_returned)
            if (auto ok = on_returned(index); !ok) return ok.error();
        return to_driver(index);
    }
    // Every buffer the producer has free goes back to the driver (or is parked).
    Result<std::size_t> return_free() {
        std::size_t n = 0;
        while (producer->free_count() > 0) {
            auto index = producer->dequeue(Timeout{0});  // a free buffer: no system call
            if (!index) return index.error().with_context(who);
            buffers[*index].place = Place::in_hand;
            if (auto ok = give_back(*index); !ok) return ok.error();
            n += buffers[*index].lender == 0;
        }
        return n;
    }
    // Reads what the draining producers' consumers sent; every buffer they returned is free
    // again: to the driver when the current stream parked it. A producer that lends nothing more
    // is destroyed. Returns how many buffers went to the driver.
    Result<std::size_t> drain() {
        std::size_t n = 0;
        for (auto& d : draining) {
            if (auto ran = d->producer.dispatch(Timeout{0}); !ran) return ran.error().with_context(who + ": draining");
            while (d->producer.free_count() > 0) {
                auto index = d->producer.dequeue(Timeout{0});
                if (!index) return index.error().with_context(who + ": draining");
                Buffer& b = buffers[*index];
                if (b.lender != d->serial) continue;  // lent by an older stream: not this one's
                b.lender = 0;
                if (b.place == Place::parked) {
                    b.place = Place::in_hand;
                    if (auto ok = give_back(*index); !ok) return ok.error();
                    ++n;
                }
            }
        }
        std::erase_if(draining, [&](const std::unique_ptr<Draining>& d) {
            if (std::any_of(buffers.begin(), buffers.end(), [&](const Buffer& b) { return b.lender == d->serial; }))
                return false;
            (void)::epoll_ctl(drain_epoll.get(), EPOLL_CTL_DEL, d->producer.fd(), nullptr);
            return true;
        });
        if (draining.empty()) drain_unwatched = false;
        return n;
    }
    // One frame from the driver, when it has one.
    Result<std::size_t> take_frame();
};

Result<CaptureSource> CaptureSource::open(const CaptureOptions& options, std::string who) {
    auto st = std::make_unique<State>();
    st->who = std::move(who);
    auto device = options.device.empty() ? Device::find(Direction::capture)
                                         : Device::open(options.device);
    if (!device) return device.error().with_context(st->who);
    st->device.emplace(std::move(*device));
    const auto& caps = st->device->capabilities();
    if (!caps.capture || !caps.streaming)
        return Error::library(Errc::unsupported, st->who + ": " + st->device->path() + " (" + caps.driver +
                                                     ") cannot stream video capture");
    const std::uint32_t pixel_format = options.pixel_format ? options.pixel_format : V4L2_PIX_FMT_YUYV;
    auto format = st->device->set_format(Direction::capture, options.width, options.height, pixel_format);
    if (!format) return format.error().with_context(st->who);
    st->format = *format;
    if (options.fps != 0) {
        auto interval = st->device->set_frame_interval(Direction::capture, {1, options.fps});
        if (!interval) return interval.error().with_context(st->who);
        st->frame_rate = interval->numerator ? static_cast<double>(interval->denominator) / interval->numerator : 0;
    }
    if (options.ring_size == 0) return Error::library(Errc::invalid_argument, st->who + ": a ring of 0 buffers");
    auto ring = BufferRing::create_exported(*st->device, Direction::capture, options.ring_size);
    if (!ring) return ring.error().with_context(st->who);
    st->ring.emplace(std::move(*ring));
    st->buffers.assign(st->ring->size(), Buffer{});
    return CaptureSource(std::move(st));
}

CaptureSource::CaptureSource(std::unique_ptr<State> state) noexcept : state_(std::move(state)) {}
CaptureSource::CaptureSource(CaptureSource&&) noexcept = default;
CaptureSource& CaptureSource::operator=(CaptureSource&&) noexcept = default;
CaptureSource::~CaptureSource() {
    if (state_) (void)stop();
}

const Device& CaptureSource::device() const noexcept {
    static const Device empty;  // what a moved-from source answers: every call fails with empty_object
    return state_ ? *state_->device : empty;
}
const Format& CaptureSource::format() const noexcept {
    static const Format empty{};
    return state_ ? state_->format : empty;
}
double CaptureSource::frame_rate() const noexcept { return state_ ? state_->frame_rate : 0; }
std::size_t CaptureSource::size() const noexcept { return state_ ? state_->ring->size() : 0; }
const BufferDesc& CaptureSource::buffer(std::uint32_t index) const {
    if (!state_) throw std::out_of_range("capture source: buffer of an empty (moved-from) CaptureSource");
    return state_->ring->buffer(index);
}
queue::Producer* CaptureSource::producer() noexcept {
    return state_ && state_->producer ? &*state_->producer : nullptr;
}
bool CaptureSource::streaming() const noexcept { return state_ && state_->producer; }
std::size_t CaptureSource::with_driver() const noexcept { return state_ ? state_->with_driver : 0; }
int CaptureSource::device_fd() const noexcept {
    return state_ && state_->producer && state_->with_driver ? state_->device->fd() : -1;
}
int CaptureSource::producer_fd() const noexcept { return state_ && state_->producer ? state_->producer->fd() : -1; }
int CaptureSource::draining_fd() const noexcept {
    return state_ && !state_->draining.empty() ? state_->drain_epoll.get() : -1;
}
std::size_t CaptureSource::lent() const noexcept {
    return state_ ? static_cast<std::size_t>(std::count_if(state_->buffers.begin(), state_->buffers.end(),
                                                           [](const Buffer& b) { return b.lender != 0; }))
                  : 0;
}
CaptureStats CaptureSource::stats() const noexcept { return state_ ? state_->stats : CaptureStats{}; }

void CaptureSource::on_returned(std::function<Status(queue::BufferIndex)> callback) {
    if (state_) state_->on_returned = std::move(callback);
}

Status CaptureSource::start(queue::ProducerOptions options) {
    if (!state_) return Error::library(Errc::empty_object, "capture start: the CaptureSource is empty (moved from)");
    State& st = *state_;
    if (st.producer) return Error::library(Errc::invalid_argument, st.who + ": the camera streams already");
    if (auto drained = st.drain(); !drained) return drained.error();
    auto producer = queue::Producer::create(std::move(options));
    if (!producer) return producer.error().with_context(st.who);
    for (std::uint32_t i = 0; i < st.ring->size(); ++i) {
        auto desc = st.ring->buffer(i).dup();
        if (!desc) return desc.error().with_context(st.who);
        auto index = producer->add_buffer(std::move(*desc));
        if (!index) return index.error().with_context(st.who);
    }
    st.producer.emplace(std::move(*producer));
    st.stats = {};
    st.incomplete_in_a_row = 0;
    st.with_driver = 0;
    // Every buffer is free: all of them to the driver (on_returned sees them: no frame yet).
    if (auto n = st.return_free(); !n) {
        (void)stop();
        return n.error();
    }
    if (auto ok = st.ring->stream_on(); !ok) {
        (void)stop();
        return ok.error().with_context(st.who);
    }
    return {};
}

Result<queue::Consumer> CaptureSource::start_local(queue::ProducerOptions options) {
    if (!state_) return Error::library(Errc::empty_object, "capture start: the CaptureSource is empty (moved from)");
    auto pair = queue::Connection::local_pair();
    if (!pair) return pair.error().with_context(state_->who);
    auto consumer = queue::Consumer::create(std::move(pair->second));
    if (!consumer) return consumer.error().with_context(state_->who);
    if (auto ok = start(std::move(options)); !ok) return ok.error();
    if (auto id = state_->producer->add_consumer(std::move(pair->first)); !id) {
        (void)stop();
        return id.error().with_context(state_->who);
    }
    return consumer;
}

Status CaptureSource::stop() {
    if (!state_ || !state_->producer) return {};
    State& st = *state_;
    // STREAMOFF first: the driver gives every buffer back and writes no more.
    Status off = st.ring->stream_off();
    st.with_driver = 0;
    queue::Producer producer = std::move(*st.producer);
    st.producer.reset();
    // Buffers with the driver, parked for an older stream, or in hand are no consumer's: the
    // producer has them dequeued, and takes them back.
    for (std::uint32_t i = 0; i < st.buffers.size(); ++i) {
        if (st.buffers[i].place != Place::stream) (void)producer.cancel(i);
        st.buffers[i].place = Place::stream;
    }
    // Read the releases already sent, then take back whatever is free; what is not is lent.
    (void)producer.dispatch(Timeout{0});
    std::vector<bool> returned(st.buffers.size(), false);
    while (producer.free_count() > 0) {
        auto index = producer.dequeue(Timeout{0});
        if (!index) break;
        returned[*index] = true;
    }
    bool lends = false;
    auto d = std::make_unique<Draining>(Draining{std::move(producer), st.next_serial++});
    for (std::uint32_t i = 0; i < st.buffers.size(); ++i)
        if (!returned[i] && st.buffers[i].lender == 0) {
            st.buffers[i].lender = d->serial;
            lends = true;
        }
    if (lends) {
        // Kept, consumers connected, until they return what they hold (pump() drains it).
        if (!st.drain_epoll) st.drain_epoll = UniqueFd(::epoll_create1(EPOLL_CLOEXEC));
        epoll_event ev{};
        ev.events = EPOLLIN;
        if (!st.drain_epoll || ::epoll_ctl(st.drain_epoll.get(), EPOLL_CTL_ADD, d->producer.fd(), &ev) != 0) {
            // Without a way to wait for it, keep it anyway: pump() then dispatches it each call.
            st.drain_unwatched = true;
            dmabridge::detail::log_message(LogLevel::warning, st.who + ": cannot watch a stopped stream's producer: " + std::strerror(errno));
        }
        st.draining.push_back(std::move(d));
    }
    if (!off) return off.error().with_context(st.who);
    return {};
}

Result<std::size_t> CaptureSource::State::take_frame() {
    auto d = ring->dequeue(Timeout{0});
    if (!d) return d.error().with_context(who);
    if (!d->has_value()) return std::size_t{0};
    --with_driver;
    const Dequeued frame = **d;
    buffers[frame.index].place = Place::in_hand;
    if (frame.error) {
        ++stats.driver_errors;
        if (auto ok = to_driver(frame.index); !ok) return ok.error();
        return std::size_t{0};
    }
    if (frame.incomplete) {
        // Fewer bytes than the layout covers (bytesused), or not where it says: the rest of the
        // buffer is an older frame's. Nobody gets it.
        ++stats.incomplete_frames;
        // A driver that never fills the layout (data always at an offset) would starve the
        // consumers: give up after every buffer of the ring came back so, twice.
        // The buffer goes back first: giving up must not take it out of circulation.
        if (auto ok = to_driver(frame.index); !ok) return ok.error();
        if (++incomplete_in_a_row > 2 * ring->size())
            return Error::library(Errc::unsupported,
                                  who + ": " + device->path() + " delivered " + std::to_string(incomplete_in_a_row) +
                                      " frames in a row that do not fill the frame layout from byte 0 (buffer plane 0: "
                                      "bytesused " +
                                      std::to_string(frame.plane_bytes_used[0]) + ", data_offset " +
                                      std::to_string(frame.plane_data_offset[0]) + ")");
        return std::size_t{0};
    }
    incomplete_in_a_row = 0;
    timespec now{};
    clock_gettime(CLOCK_MONOTONIC, &now);
    const queue::FrameInfo info{frame.sequence, static_cast<std::int64_t>(now.tv_sec) * 1000000000 + now.tv_nsec};
    // Implicit sync: the driver adds no fences, its frame is complete once dequeued.
    if (auto ok = producer->queue(frame.index, std::nullopt, info); !ok) return ok.error().with_context(who);
    buffers[frame.index].place = Place::stream;
    ++stats.frames_queued;
    return std::size_t{1};
}

Result<PumpResult> CaptureSource::pump(Timeout timeout) {
    if (!state_) return Error::library(Errc::empty_object, "capture pump: the CaptureSource is empty (moved from)");
    State& st = *state_;
    if (!st.producer && st.draining.empty())
        return Error::library(Errc::invalid_argument, st.who + ": the camera is not streaming");
    PumpResult result;
    // Buffers freed since the last call (a release without a fence, a frame queued to nobody).
    std::size_t returned_now = 0;
    if (st.producer) {
        auto returned = st.return_free();
        if (!returned) return returned.error();
        returned_now += *returned;
    }
    // The device only when it has buffers to fill: nothing else can come from it.
    const bool drains = !st.draining.empty();
    std::array<pollfd, 3> fds{pollfd{st.producer && st.with_driver ? st.device->fd() : -1, POLLIN, 0},
                              pollfd{st.producer ? st.producer->fd() : -1, POLLIN, 0},
                              pollfd{drains ? st.drain_epoll.get() : -1, POLLIN, 0}};
    const int wait_ms = returned_now ? 0 : static_cast<int>(std::min<long long>(timeout.count(), 1LL << 30));
    const int ready = ::poll(fds.data(), fds.size(), wait_ms);
    if (ready < 0 && errno != EINTR) return Error::from_errno(errno, st.who + ": poll");
    if (ready == 0 && wait_ms > 0)
        return Error::from_errno(ETIMEDOUT, st.who + ": no frame from " + st.device->path() +
                                                " and no buffer back from a consumer within " +
                                                std::to_string(timeout.count()) + " ms (" +
                                                std::to_string(st.ring->size()) + " buffers, " +
                                                std::to_string(st.with_driver) + " with the driver, " +
                                                std::to_string(lent()) + " held by consumers of a stopped stream)");
    if (drains && ((ready > 0 && fds[2].revents) || !st.drain_epoll || st.drain_unwatched)) {
        auto drained = st.drain();
        if (!drained) return drained.error();
        returned_now += *drained;
    }
    if (ready > 0 && fds[1].revents) {
        // Releases and their fences: the buffers freed go to the driver below.
        if (auto ran = st.producer->dispatch(Timeout{0}); !ran) return ran.error().with_context(st.who);
    }
    if (ready > 0 && fds[0].revents) {
        auto queued = st.take_frame();
        if (!queued) return queued.error();
        result.frames_queued += *queued;
    }
    if (st.producer) {
        auto returned = st.return_free();
        if (!returned) return returned.error();
        returned_now += *returned;
    }
    result.buffers_returned = returned_now;
    return result;
}

}  // namespace dmabridge::v4l2
