// SPDX-License-Identifier: MIT
#include <dmabridge/pipewire/producer.hpp>

#include <algorithm>
#include <array>
#include <cerrno>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <pipewire/pipewire.h>
#include <spa/buffer/meta.h>
#include <spa/param/video/format.h>

#include <dmabridge/alloc/udmabuf.hpp>
#include <dmabridge/base/unique_fd.hpp>
#include <dmabridge/format/format.hpp>
#include <dmabridge/format/fourcc.hpp>

#include "pipewire/context_state.hpp"
#include "pipewire/spa_format.hpp"
#include "pipewire/stream_common.hpp"
#include "pipewire/sync_points.hpp"

namespace dmabridge::pipewire {

namespace {

constexpr std::uint32_t max_buffers = 16;

// One buffer of the stream: a dma-buf image, or a sealed memfd mapped here.
struct Slot {
    std::uint32_t index = 0;
    pw_buffer* buffer = nullptr;
    std::optional<BufferDesc> desc;
    Negotiated format;  // what the buffer was allocated for
    // Each data's chunk size, written to the chunk only by queue(): until the buffer was filled
    // and sent, its chunks say "no data" (size 0), so that a consumer handed a buffer that was
    // never sent (PipeWire's input side can point at a buffer id of the previous set during a
    // renegotiation) can tell it from a frame.
    std::array<std::uint32_t, 4> chunk_sizes{};
    UniqueFd memfd;
    void* map = nullptr;
    std::size_t map_size = 0;
    bool dequeued = false;
    // Explicit sync, where the consumer took it: the buffer's two timelines (their fds are the
    // buffer's SyncObj datas) and the last points sent.
    std::optional<Timeline> acquire, release;
    UniqueFd acquire_fd, release_fd;
    std::uint64_t acquire_point = 0, release_point = 0;

    Slot() = default;
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;
    ~Slot() {
        if (map != nullptr) ::munmap(map, map_size);
    }
};

}  // namespace

struct Producer::Impl {
    std::shared_ptr<detail::ContextState> context;
    ProducerOptions options;
    std::vector<std::uint32_t> shm_fourccs;  // fourccs offered as shared memory
    pw_stream* stream = nullptr;
    spa_hook listener{};
    detail::StreamStatus status;
    std::optional<Negotiated> negotiated;
    std::optional<Negotiated> pending;  // the format being set up (buffers not yet in place)
    LinearLayout shm_layout{};
    std::vector<std::unique_ptr<Slot>> slots;
    // Buffers PipeWire removed while the application held them dequeued: kept (mapped, with
    // their dma-bufs) until queue() drops them, so that the application never writes into
    // memory that went away.
    std::vector<std::unique_ptr<Slot>> orphans;
    std::uint32_t next_index = 0;  // buffer numbers are never reused
    // The offer before the last reconfigure(), until a format of the new offer arrives: a format
    // PipeWire set from the old offer meanwhile is still served (its renegotiation follows).
    struct Offer {
        std::uint32_t width = 0, height = 0;
        FormatSet formats;
    };
    std::optional<Offer> previous;
    UniqueFd timeline_device;  // explicit sync offered when set
    std::uint32_t pending_blocks = 0;  // plane datas of the pending format's buffers
    ProducerStats stats;

    ~Impl() {
        if (stream != nullptr) {
            spa_hook_remove(&listener);
            pw_stream_destroy(stream);
        }
    }

    // The EnumFormat list: dma-buf offers per fourcc (modifiers open), then shared memory.
    std::vector<const spa_pod*> enum_formats(spa_pod_builder* b, std::optional<std::uint32_t> fixed_fourcc = {},
                                             std::uint64_t fixed_modifier = 0) const {
        std::vector<const spa_pod*> params;
        const detail::SizeOffer size{options.width, options.height, options.framerate};
        if (fixed_fourcc) {
            const std::uint64_t mod[1] = {fixed_modifier};
            params.push_back(detail::build_enum_format(b, *fixed_fourcc, mod, true, size));
        }
        for (std::uint32_t f : options.formats.fourccs()) {
            auto mods = options.formats.modifiers(f);
            params.push_back(detail::build_enum_format(b, f, mods, false, size));
        }
        for (std::uint32_t f : shm_fourccs) params.push_back(detail::build_enum_format(b, f, {}, false, size));
        return params;
    }

    // An image of `width` x `height`: the negotiated format's size, which after a reconfigure()
    // may still be the previous offer's until PipeWire renegotiated.
    ImageRequest request(std::uint32_t width, std::uint32_t height, std::uint32_t fourcc, std::uint64_t modifier) const {
        ImageRequest r;
        r.width = width;
        r.height = height;
        r.fourcc = fourcc;
        r.modifiers = {modifier};
        r.name = "pipewire:" + options.name.substr(0, 20);
        return r;
    }

    void fail(Error e) {
        status.fail(std::move(e));
        if (stream != nullptr) pw_stream_set_error(stream, -EIO, "%s", status.error->message().c_str());
    }

    void on_format(const spa_pod* param) {
        negotiated.reset();
        pending.reset();
        if (param == nullptr) return;  // the format was cleared: buffers go away
        auto peer = detail::parse_format(param);
        if (!peer) return fail(peer.error().with_context("producer " + options.name + ": the negotiated format"));
        std::array<std::uint8_t, 8192> storage{};
        spa_pod_builder b = SPA_POD_BUILDER_INIT(storage.data(), static_cast<uint32_t>(storage.size()));
        if (peer->has_modifier && peer->modifier_unfixed) {
            // PipeWire's procedure: the producer fixates. The first of our modifiers, in our
            // order, that the consumer listed and that the allocator really allocates.
            std::optional<std::uint64_t> chosen;
            for (std::uint64_t m : options.formats.modifiers(peer->fourcc)) {
                if (std::find(peer->choices.begin(), peer->choices.end(), m) == peer->choices.end()) continue;
                ++stats.fixation_tests;
                if (options.allocator && options.allocator->allocate(request(peer->width, peer->height, peer->fourcc, m))) {
                    chosen = m;
                    break;
                }
            }
            if (!chosen)
                return fail(Error::library(Errc::unsupported,
                                           "producer " + options.name + ": no modifier of " +
                                               fourcc_to_string(peer->fourcc) +
                                               " that the consumer lists can be allocated"));
            auto params = enum_formats(&b, peer->fourcc, *chosen);
            pw_stream_update_params(stream, params.data(), static_cast<uint32_t>(params.size()));
            return;
        }
        Negotiated n{peer->width, peer->height, peer->fourcc, peer->has_modifier ? peer->modifier : modifier::linear,
                     peer->has_modifier};
        const bool current = n.width == options.width && n.height == options.height &&
                             (!n.dmabuf || options.formats.contains(n.fourcc, n.modifier));
        const bool old = previous && n.width == previous->width && n.height == previous->height &&
                         (!n.dmabuf || previous->formats.contains(n.fourcc, n.modifier));
        if (!current && !old && (n.width != options.width || n.height != options.height))
            return fail(Error::library(Errc::invalid_argument,
                                       "producer " + options.name + ": negotiated size " + std::to_string(n.width) +
                                           "x" + std::to_string(n.height) + " is not the offered " +
                                           std::to_string(options.width) + "x" + std::to_string(options.height)));
        auto info = format_info(n.fourcc);
        if (!info) return fail(info.error());
        std::uint32_t blocks = (*info)->plane_count, size = 0, stride = 0, types = 0;
        if (n.dmabuf) {
            if (!current && !old)
                return fail(Error::library(Errc::unsupported, "producer " + options.name + ": the consumer fixed " +
                                                                  fourcc_to_string(n.fourcc) + " " +
                                                                  modifier_to_string(n.modifier) +
                                                                  ", which this producer did not offer"));
            types = 1u << SPA_DATA_DmaBuf;
        } else {
            auto layout = linear_layout(n.fourcc, n.width, n.height);
            if (!layout) return fail(layout.error());
            shm_layout = *layout;
            size = static_cast<std::uint32_t>(layout->size);
            stride = static_cast<std::uint32_t>(layout->strides[0]);
            types = 1u << SPA_DATA_MemFd;
        }
        pending = n;
        pending_blocks = blocks;
        if (current) previous.reset();
        std::vector<const spa_pod*> params;
        if (timeline_device) {
            // Explicit sync first; a consumer that does not list the SyncTimeline metadata
            // cannot take these buffers and gets the plain ones that follow.
            params.push_back(detail::build_sync_buffers(&b, options.buffer_count, blocks, size, stride, types));
            params.push_back(detail::build_sync_timeline_meta(&b));
        }
        params.push_back(detail::build_buffers(&b, options.buffer_count, blocks, size, stride, types));
        params.push_back(detail::build_header_meta(&b));
        // A format of the offer before reconfigure(): PipeWire negotiated from what it knew of
        // the old offer. Serve it, and announce the new offer again so that the link negotiates
        // once more (a renegotiation is triggered by a change of EnumFormat, and nothing else
        // would follow).
        if (!current) {
            auto offer = enum_formats(&b);
            params.insert(params.end(), offer.begin(), offer.end());
        }
        pw_stream_update_params(stream, params.data(), static_cast<uint32_t>(params.size()));
    }

    void on_add_buffer(pw_buffer* buffer) {
        if (!pending) return fail(Error::library(Errc::invalid_argument, "producer: a buffer arrived before a format"));
        spa_buffer* sb = buffer->buffer;
        auto slot = std::make_unique<Slot>();
        slot->index = next_index++;
        slot->buffer = buffer;
        const auto& n = *pending;
        const std::string what = "producer " + options.name + ": buffer " + std::to_string(slot->index);
        // With the SyncTimeline metadata the last two datas are the timelines, not planes.
        // The metadata alone is not enough: metas are negotiated apart from the Buffers param,
        // and only the explicit-sync one has the two extra datas.
        const bool sync = detail::sync_timeline_meta(sb) != nullptr && pending_blocks != 0 &&
                          sb->n_datas == pending_blocks + detail::sync_datas;
        const std::uint32_t datas = sync ? sb->n_datas - detail::sync_datas : sb->n_datas;
        if (datas == 0 || datas > slot->chunk_sizes.size())
            return fail(Error::library(Errc::invalid_argument,
                                       what + ": PipeWire gave " + std::to_string(sb->n_datas) + " datas (1 to 4 " +
                                           (sync ? "planes and 2 timelines" : "planes") + " expected)"));
        if (sync) {
            if (!timeline_device)
                return fail(Error::library(Errc::invalid_argument, what + ": SyncTimeline metadata this producer did not offer"));
            if (auto ok = add_timelines(*slot, sb, datas, what); !ok) return fail(ok.error());
        }
        if (n.dmabuf) {
            if (options.allocator == nullptr) return fail(Error::library(Errc::invalid_argument, what + ": no allocator"));
            auto desc = options.allocator->allocate(request(n.width, n.height, n.fourcc, n.modifier));
            if (!desc) return fail(desc.error().with_context(what));
            if (auto ok = desc->validate(); !ok) return fail(ok.error().with_context(what));
            if (datas < desc->planes.size())
                return fail(Error::library(Errc::invalid_argument, what + ": PipeWire gave " + std::to_string(datas) +
                                                                       " datas for " +
                                                                       std::to_string(desc->planes.size()) + " planes"));
            if ((sb->datas[0].type & (1u << SPA_DATA_DmaBuf)) == 0)
                return fail(Error::library(Errc::unsupported, what + ": the stream does not allow dma-buf data"));
            for (std::uint32_t i = 0; i < datas; ++i) {
                spa_data& d = sb->datas[i];
                const PlaneDesc& p = desc->planes[std::min<std::size_t>(i, desc->planes.size() - 1)];
                d.type = SPA_DATA_DmaBuf;
                d.flags = SPA_DATA_FLAG_READWRITE | SPA_DATA_FLAG_MAPPABLE;
                d.fd = p.buffer.fd();
                d.mapoffset = 0;
                d.maxsize = static_cast<uint32_t>(p.buffer.size());
                d.data = nullptr;
                d.chunk->offset = static_cast<uint32_t>(p.offset);
                d.chunk->stride = static_cast<int32_t>(p.stride);
                slot->chunk_sizes[i] = static_cast<uint32_t>(p.buffer.size() - p.offset);
                d.chunk->size = 0;  // no data until queue() (see chunk_sizes)
                d.chunk->flags = 0;
            }
            slot->desc = std::move(*desc);
        } else {
            const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
            const std::size_t size = (shm_layout.size + page - 1) / page * page;
            if ((sb->datas[0].type & (1u << SPA_DATA_MemFd)) == 0)
                return fail(Error::library(Errc::unsupported, what + ": the stream does not allow memfd data"));
            slot->memfd = UniqueFd(::memfd_create("dmabridge-pipewire", MFD_CLOEXEC | MFD_ALLOW_SEALING));
            if (!slot->memfd) return fail(Error::from_errno(errno, what + ": memfd_create"));
            if (::ftruncate(slot->memfd.get(), static_cast<off_t>(size)) != 0)
                return fail(Error::from_errno(errno, what + ": ftruncate " + std::to_string(size)));
            // The size is fixed for the consumer's sake (no SIGBUS from a shrink); writes stay
            // allowed, which lets udmabuf wrap the memfd on either side.
            if (::fcntl(slot->memfd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0)
                return fail(Error::from_errno(errno, what + ": seal the memfd"));
            slot->map = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, slot->memfd.get(), 0);
            if (slot->map == MAP_FAILED) {
                slot->map = nullptr;
                return fail(Error::from_errno(errno, what + ": mmap " + std::to_string(size)));
            }
            slot->map_size = size;
            for (std::uint32_t i = 0; i < datas; ++i) {
                spa_data& d = sb->datas[i];
                const std::uint32_t p = std::min(i, shm_layout.plane_count - 1);
                d.type = SPA_DATA_MemFd;
                d.flags = SPA_DATA_FLAG_READWRITE | SPA_DATA_FLAG_MAPPABLE;
                d.fd = slot->memfd.get();
                d.mapoffset = 0;
                d.maxsize = static_cast<uint32_t>(size);
                d.data = slot->map;
                d.chunk->offset = static_cast<uint32_t>(shm_layout.offsets[p]);
                d.chunk->stride = static_cast<int32_t>(shm_layout.strides[p]);
                slot->chunk_sizes[i] = static_cast<uint32_t>(shm_layout.size - shm_layout.offsets[p]);
                d.chunk->size = 0;
                d.chunk->flags = 0;
            }
            if (options.udmabuf != nullptr) {
                // The application renders into a dma-buf over the very pages the consumer maps.
                auto wrapped = options.udmabuf->wrap_memfd(slot->memfd.get(), 0, size);
                if (wrapped) {
                    BufferDesc desc;
                    desc.width = n.width;
                    desc.height = n.height;
                    desc.fourcc = n.fourcc;
                    desc.modifier = modifier::linear;
                    for (std::uint32_t p = 0; p < shm_layout.plane_count; ++p) {
                        auto buf = p == 0 ? std::move(*wrapped) : desc.planes[0].buffer.dup();
                        if (!buf) return fail(buf.error().with_context(what));
                        desc.planes.push_back(PlaneDesc{std::move(*buf), shm_layout.offsets[p], shm_layout.strides[p]});
                    }
                    slot->desc = std::move(desc);
                }
            }
        }
        ++stats.buffers_allocated;
        slot->format = n;
        buffer->user_data = slot.get();
        slots.push_back(std::move(slot));
    }

    // The buffer's acquire and release timelines, made on the producer's device and shared as
    // the SyncObj datas that follow its `datas` planes.
    Status add_timelines(Slot& slot, spa_buffer* sb, std::uint32_t datas, const std::string& what) {
        for (std::uint32_t k = 0; k < detail::sync_datas; ++k) {
            auto t = Timeline::create(timeline_device.get());
            if (!t) return t.error().with_context(what + ": make its " + (k == 0 ? "acquire" : "release") + " timeline");
            auto fd = t->export_fd();
            if (!fd) return fd.error().with_context(what);
            spa_data& d = sb->datas[datas + k];
            d.type = SPA_DATA_SyncObj;
            d.flags = SPA_DATA_FLAG_READWRITE;
            d.fd = fd->get();
            d.mapoffset = 0;
            d.maxsize = 0;
            d.data = nullptr;
            if (d.chunk != nullptr) *d.chunk = spa_chunk{};
            (k == 0 ? slot.acquire : slot.release) = std::move(*t);
            (k == 0 ? slot.acquire_fd : slot.release_fd) = std::move(*fd);
        }
        return {};
    }

    void on_remove_buffer(pw_buffer* buffer) {
        auto* slot = static_cast<Slot*>(buffer->user_data);
        auto it = std::find_if(slots.begin(), slots.end(), [&](const auto& s) { return s.get() == slot; });
        if (it != slots.end()) {
            ++stats.buffers_removed;
            if ((*it)->dequeued) {
                (*it)->buffer = nullptr;
                orphans.push_back(std::move(*it));
            }
            slots.erase(it);
        }
        buffer->user_data = nullptr;
    }

    void on_state(pw_stream_state state, const char* error) {
        status.on_state(state, error, "producer " + options.name);
        if (!context->connected) status.on_connection_lost(context->error, "producer " + options.name);
        if (state == PW_STREAM_STATE_STREAMING && pending) {
            negotiated = pending;
            ++stats.negotiations;
        }
    }
};

namespace {

void on_state_changed(void* data, pw_stream_state, pw_stream_state state, const char* error) {
    static_cast<Producer::Impl*>(data)->on_state(state, error);
}
void on_param_changed(void* data, uint32_t id, const spa_pod* param) {
    if (id == SPA_PARAM_Format) static_cast<Producer::Impl*>(data)->on_format(param);
}
void on_add_buffer(void* data, pw_buffer* buffer) { static_cast<Producer::Impl*>(data)->on_add_buffer(buffer); }
void on_remove_buffer(void* data, pw_buffer* buffer) { static_cast<Producer::Impl*>(data)->on_remove_buffer(buffer); }

const pw_stream_events producer_events = [] {
    pw_stream_events e{};
    e.version = PW_VERSION_STREAM_EVENTS;
    e.state_changed = on_state_changed;
    e.param_changed = on_param_changed;
    e.add_buffer = on_add_buffer;
    e.remove_buffer = on_remove_buffer;
    return e;
}();

// The checks create() and reconfigure() share on an offer's size and dma-buf formats.
Status check_offer(std::uint32_t width, std::uint32_t height, const FormatSet& formats, const Allocator* allocator,
                   const std::string& what) {
    if (width == 0 || height == 0 || width > 16384 || height > 16384)
        return Error::library(Errc::invalid_argument,
                              what + ": size " + std::to_string(width) + "x" + std::to_string(height) + " outside 1..16384");
    if (!formats.empty() && allocator == nullptr)
        return Error::library(Errc::invalid_argument, what + ": dma-buf formats offered without an allocator");
    return {};
}

// The fourccs offered as shared memory, each of which must have a linear layout at this size.
Result<std::vector<std::uint32_t>> shm_fourccs_for(std::uint32_t width, std::uint32_t height, const FormatSet& formats,
                                                   bool offer_shm, std::span<const std::uint32_t> extra,
                                                   const std::string& what) {
    auto shm = detail::shm_offer(formats, offer_shm, extra, what);
    if (!shm) return shm.error();
    for (std::uint32_t f : *shm)
        if (auto layout = linear_layout(f, width, height); !layout) return layout.error().with_context(what);
    return shm;
}

}  // namespace

Result<Producer> Producer::create(Context& context, ProducerOptions options) {
    const std::string what = "pipewire::Producer::create " + options.name;
    if (!context.state()) return Error::library(Errc::empty_object, what + ": the context is empty (moved from)");
    if (!context.connected() && context.state()->error) return context.state()->error->with_context(what);
    if (options.name.empty()) return Error::library(Errc::invalid_argument, what + ": the node needs a name");
    if (auto ok = check_offer(options.width, options.height, options.formats, options.allocator, what); !ok)
        return ok.error();
    if (options.buffer_count < 2 || options.buffer_count > max_buffers)
        return Error::library(Errc::invalid_argument,
                              what + ": buffer_count " + std::to_string(options.buffer_count) + " outside 2..16");
    if (options.framerate == 0 || options.framerate > 1000)
        return Error::library(Errc::invalid_argument, what + ": framerate " + std::to_string(options.framerate));
    auto impl = std::make_unique<Impl>();
    impl->context = context.state();
    if (options.timeline_device >= 0) {
        if (auto ok = Timeline::supported(options.timeline_device); !ok) return ok.error().with_context(what + ": timeline_device");
        auto device = UniqueFd::dup_of(options.timeline_device);
        if (!device) return device.error().with_context(what + ": timeline_device");
        impl->timeline_device = std::move(*device);
    }
    auto shm = shm_fourccs_for(options.width, options.height, options.formats, options.offer_shm, options.shm_fourccs, what);
    if (!shm) return shm.error();
    impl->shm_fourccs = std::move(*shm);
    impl->options = std::move(options);
    const ProducerOptions& o = impl->options;
    pw_properties* props = pw_properties_new(PW_KEY_MEDIA_TYPE, "Video", PW_KEY_MEDIA_CATEGORY, "Capture",
                                             PW_KEY_MEDIA_ROLE, "Camera", PW_KEY_MEDIA_CLASS, "Video/Source",
                                             PW_KEY_NODE_NAME, o.name.c_str(), nullptr);
    impl->stream = pw_stream_new(impl->context->core, o.name.c_str(), props);
    if (impl->stream == nullptr) return Error::from_errno(errno, what + ": pw_stream_new");
    pw_stream_add_listener(impl->stream, &impl->listener, &producer_events, impl.get());
    std::array<std::uint8_t, 8192> storage{};
    spa_pod_builder b = SPA_POD_BUILDER_INIT(storage.data(), static_cast<uint32_t>(storage.size()));
    auto params = impl->enum_formats(&b);
    const int res = pw_stream_connect(impl->stream, PW_DIRECTION_OUTPUT, PW_ID_ANY,
                                      static_cast<pw_stream_flags>(PW_STREAM_FLAG_DRIVER | PW_STREAM_FLAG_ALLOC_BUFFERS),
                                      params.data(), static_cast<uint32_t>(params.size()));
    if (res < 0) return Error::from_errno(-res, what + ": pw_stream_connect");
    return Producer(std::move(impl));
}

Producer::Producer(std::unique_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}
Producer::Producer(Producer&&) noexcept = default;
Producer& Producer::operator=(Producer&&) noexcept = default;
Producer::~Producer() = default;

StreamState Producer::state() const noexcept { return impl_ ? impl_->status.state : StreamState::error; }
std::optional<Error> Producer::error() const {
    if (!impl_) return Error::library(Errc::empty_object, "pipewire::Producer: moved from");
    return impl_->status.error;
}
std::optional<Negotiated> Producer::negotiated() const { return impl_ ? impl_->negotiated : std::nullopt; }
std::uint32_t Producer::node_id() const noexcept {
    return impl_ && impl_->stream ? pw_stream_get_node_id(impl_->stream) : SPA_ID_INVALID;
}

Result<std::optional<ProducerFrame>> Producer::dequeue() {
    if (!impl_) return Error::library(Errc::empty_object, "pipewire::Producer::dequeue: the producer is empty (moved from)");
    if (impl_->status.error) return *impl_->status.error;
    if (!impl_->negotiated) return std::optional<ProducerFrame>{};
    pw_buffer* buffer = pw_stream_dequeue_buffer(impl_->stream);
    if (buffer == nullptr) return std::optional<ProducerFrame>{};
    auto* slot = static_cast<Slot*>(buffer->user_data);
    if (slot == nullptr) {
        pw_stream_queue_buffer(impl_->stream, buffer);
        return std::optional<ProducerFrame>{};
    }
    slot->dequeued = true;
    ProducerFrame f;
    f.index = slot->index;
    f.desc = slot->desc ? &*slot->desc : nullptr;
    f.format = slot->format;
    if (slot->acquire && slot->release) {
        // A buffer back from a consumer that read it has its release point submitted (a
        // Consumer submits it before it returns the buffer). One whose point nothing submitted
        // was never read: PipeWire 1.4 recycles a frame the consumer did not take, and has no
        // flag to say so (1.6's UNSCHEDULED_RELEASE). Its point is signalled here, so that no
        // wait for it hangs.
        if (slot->release_point != 0) {
            auto submitted = slot->release->last_submitted();
            if (submitted && *submitted < slot->release_point) {
                if (auto ok = slot->release->signal(slot->release_point); ok) ++impl_->stats.releases_unscheduled;
            }
        }
        f.acquire_timeline = &*slot->acquire;
        f.acquire_point = slot->acquire_point + 1;
        f.release_timeline = &*slot->release;
        f.release_point = slot->release_point;
    }
    if (slot->map != nullptr) {
        f.memory = {static_cast<std::byte*>(slot->map), slot->map_size};
        f.plane_count = impl_->shm_layout.plane_count;
        for (std::uint32_t p = 0; p < f.plane_count && p < 4; ++p) {
            f.offsets[p] = impl_->shm_layout.offsets[p];
            f.strides[p] = impl_->shm_layout.strides[p];
        }
    } else if (slot->desc) {
        f.plane_count = static_cast<std::uint32_t>(slot->desc->planes.size());
        for (std::uint32_t p = 0; p < f.plane_count && p < 4; ++p) {
            f.offsets[p] = slot->desc->planes[p].offset;
            f.strides[p] = slot->desc->planes[p].stride;
        }
    }
    return std::optional<ProducerFrame>{f};
}

Status Producer::queue(const ProducerFrame& frame, std::uint64_t sequence, std::int64_t timestamp_ns, PointBy acquire) {
    if (!impl_) return Error::library(Errc::empty_object, "pipewire::Producer::queue: the producer is empty (moved from)");
    auto orphan = std::find_if(impl_->orphans.begin(), impl_->orphans.end(),
                               [&](const auto& s) { return s->index == frame.index; });
    if (orphan != impl_->orphans.end()) {
        impl_->orphans.erase(orphan);
        if (impl_->status.error) return *impl_->status.error;  // the daemon lost, among others
        return Error::library(Errc::not_found, "pipewire::Producer::queue: buffer " + std::to_string(frame.index) +
                                                   " was removed by a renegotiation or a lost consumer; the frame is dropped");
    }
    auto it = std::find_if(impl_->slots.begin(), impl_->slots.end(),
                           [&](const auto& s) { return s->index == frame.index; });
    if (it == impl_->slots.end() || !(*it)->dequeued)
        return Error::library(Errc::invalid_argument, "pipewire::Producer::queue: buffer " + std::to_string(frame.index) +
                                                          " is not dequeued");
    Slot& slot = **it;
    // A failed stream (the daemon lost, among others) takes no more frames: the buffer stays the
    // Producer's until PipeWire removes it or the Producer goes.
    if (impl_->status.error) {
        slot.dequeued = false;
        return *impl_->status.error;
    }
    spa_buffer* sb = slot.buffer->buffer;
    if (auto* stl = detail::sync_timeline_meta(sb); stl != nullptr && slot.acquire && slot.release) {
        const std::uint64_t point = slot.acquire_point + 1;
        if (acquire == PointBy::implicit_fences) {
            if (auto ok = detail::fence_point(*slot.acquire, point, slot.desc ? &*slot.desc : nullptr, Access::read); !ok)
                return ok.error().with_context("pipewire::Producer::queue: buffer " + std::to_string(frame.index) +
                                               ": acquire point " + std::to_string(point));
        }
        slot.acquire_point = point;
        slot.release_point += 1;
        stl->flags = 0;
        stl->padding = 0;
        stl->acquire_point = slot.acquire_point;
        stl->release_point = slot.release_point;
        ++impl_->stats.timeline_frames;
    }
    slot.dequeued = false;
    for (std::uint32_t i = 0; i < sb->n_datas && i < slot.chunk_sizes.size(); ++i)
        sb->datas[i].chunk->size = slot.chunk_sizes[i];
    if (auto* h = static_cast<spa_meta_header*>(
            spa_buffer_find_meta_data(slot.buffer->buffer, SPA_META_Header, sizeof(spa_meta_header)))) {
        h->pts = timestamp_ns;
        h->flags = 0;
        h->seq = sequence;
        h->dts_offset = 0;
    }
    pw_stream_queue_buffer(impl_->stream, slot.buffer);
    pw_stream_trigger_process(impl_->stream);
    ++impl_->stats.frames_queued;
    return {};
}

Status Producer::reconfigure(std::uint32_t width, std::uint32_t height, FormatSet formats,
                             std::vector<std::uint32_t> shm_fourccs) {
    if (!impl_)
        return Error::library(Errc::empty_object, "pipewire::Producer::reconfigure: the producer is empty (moved from)");
    if (impl_->status.error) return *impl_->status.error;
    ProducerOptions& o = impl_->options;
    const std::string what = "pipewire::Producer::reconfigure " + o.name + " to " + std::to_string(width) + "x" +
                             std::to_string(height);
    if (auto ok = check_offer(width, height, formats, o.allocator, what); !ok) return ok.error();
    auto shm = shm_fourccs_for(width, height, formats, o.offer_shm, shm_fourccs, what);
    if (!shm) return shm.error();
    // Every check passed: the offer changes, and the old one stays acceptable until PipeWire set
    // a format of the new one.
    impl_->previous = Impl::Offer{o.width, o.height, o.formats};
    o.width = width;
    o.height = height;
    o.formats = std::move(formats);
    o.shm_fourccs = std::move(shm_fourccs);
    impl_->shm_fourccs = std::move(*shm);
    std::array<std::uint8_t, 8192> storage{};
    spa_pod_builder b = SPA_POD_BUILDER_INIT(storage.data(), static_cast<uint32_t>(storage.size()));
    auto params = impl_->enum_formats(&b);
    // Only the EnumFormat params are replaced: PipeWire's links see the change and negotiate
    // again (the Format is cleared and set anew, which removes every buffer first).
    if (const int res = pw_stream_update_params(impl_->stream, params.data(), static_cast<uint32_t>(params.size()));
        res < 0)
        return Error::from_errno(-res, what + ": pw_stream_update_params");
    ++impl_->stats.reconfigurations;
    return {};
}

Result<WaitStatus> Producer::wait_released(const ProducerFrame& frame, Timeout timeout) const {
    if (!impl_)
        return Error::library(Errc::empty_object, "pipewire::Producer::wait_released: the producer is empty (moved from)");
    if (frame.release_timeline == nullptr || frame.release_point == 0) return WaitStatus::ready;
    return frame.release_timeline->wait(frame.release_point, timeout);
}

bool Producer::uses_timelines() const noexcept {
    if (!impl_) return false;
    return std::any_of(impl_->slots.begin(), impl_->slots.end(), [](const auto& s) { return s->acquire.has_value(); });
}

const ProducerStats& Producer::stats() const noexcept {
    static const ProducerStats empty{};
    return impl_ ? impl_->stats : empty;
}

}  // namespace dmabridge::pipewire
