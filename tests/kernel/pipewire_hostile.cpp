// SPDX-License-Identifier: MIT
// The hostile producer of pipewire_hostile.hpp: libpipewire used directly, since dmabridge's own
// Producer refuses to describe buffers falsely.

#include "pipewire_hostile.hpp"

#include <chrono>
#include <climits>
#include <csignal>
#include <cstdio>
#include <memory>
#include <optional>
#include <vector>

#include <cerrno>

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <pipewire/pipewire.h>
#include <spa/buffer/meta.h>
#include <spa/param/buffers.h>
#include <spa/param/video/format-utils.h>
#include <spa/pod/builder.h>

#include <dmabridge/alloc/udmabuf.hpp>
#include <dmabridge/base/unique_fd.hpp>
#include <dmabridge/format/fourcc.hpp>
#include <dmabridge/kernel/cpu_access.hpp>
#include <dmabridge/kernel/timeline.hpp>

#include "pipewire_pattern.hpp"
#include "pipewire_pattern_producer.hpp"

namespace dmabridge::test {
namespace {

// memfd-shrink: set by SIGUSR1 (the test sends it once a frame arrived intact).
volatile std::sig_atomic_t shrink_requested = 0;
void on_sigusr1(int) { shrink_requested = 1; }

int setup_failed(const char* what) {
    std::fprintf(stderr, "pipewire_peer hostile: %s\n", what);
    return 2;
}

struct Slot {
    UniqueFd fd;        // the fd described (memfd or pipe end), owned here
    UniqueFd pipe_other;
    std::optional<BufferDesc> desc;  // dmabuf-layout, syncobj-*: the real dma-buf
    UniqueFd sync_fds[2];            // syncobj-*: what the two SyncObj datas carry
    void* map = nullptr;
    std::size_t map_size = 0;
};

struct Hostile {
    std::string kind;
    unsigned width = 0, height = 0;
    std::size_t stride = 0, size = 0;  // of a LINEAR XRGB8888 frame, page-rounded size
    bool dmabuf = false;
    pw_stream* stream = nullptr;
    spa_hook listener{};
    std::vector<std::unique_ptr<Slot>> slots;
    std::optional<UdmabufAllocator> udmabuf;
    UniqueFd timeline_device;            // syncobj-points: real timelines
    std::vector<Timeline> timelines;     // kept alive while their fds are out
    bool sync = false;                   // a syncobj-* kind: SyncTimeline buffers only
    std::uint32_t frame = 0;
    bool failed = false;
    bool shrunk = false;
    pw_stream_state state = PW_STREAM_STATE_UNCONNECTED;

    const spa_pod* enum_format(spa_pod_builder* b) const {
        spa_pod_frame f;
        spa_pod_builder_push_object(b, &f, SPA_TYPE_OBJECT_Format, SPA_PARAM_EnumFormat);
        const spa_rectangle sz{width, height};
        const spa_fraction rate{30, 1};
        spa_pod_builder_add(b, SPA_FORMAT_mediaType, SPA_POD_Id(SPA_MEDIA_TYPE_video), SPA_FORMAT_mediaSubtype,
                            SPA_POD_Id(SPA_MEDIA_SUBTYPE_raw), SPA_FORMAT_VIDEO_format, SPA_POD_Id(SPA_VIDEO_FORMAT_BGRx),
                            SPA_FORMAT_VIDEO_size, SPA_POD_Rectangle(&sz), SPA_FORMAT_VIDEO_framerate,
                            SPA_POD_Fraction(&rate), 0);
        if (dmabuf) {
            // One fixed modifier (LINEAR), MANDATORY: nothing left for anyone to fixate.
            spa_pod_builder_prop(b, SPA_FORMAT_VIDEO_modifier, SPA_POD_PROP_FLAG_MANDATORY);
            spa_pod_builder_long(b, static_cast<std::int64_t>(modifier::linear));
        }
        return static_cast<const spa_pod*>(spa_pod_builder_pop(b, &f));
    }

    void on_format(const spa_pod* param) {
        if (param == nullptr) return;
        std::uint8_t storage[512];
        spa_pod_builder b = SPA_POD_BUILDER_INIT(storage, sizeof storage);
        const int types = dmabuf ? (1 << SPA_DATA_DmaBuf) : (1 << SPA_DATA_MemFd);
        if (sync) {
            // Explicit sync only: three datas (the plane, then the two timelines), which need the
            // SyncTimeline metadata.
            spa_pod_frame f;
            spa_pod_builder_push_object(&b, &f, SPA_TYPE_OBJECT_ParamBuffers, SPA_PARAM_Buffers);
            spa_pod_builder_add(&b, SPA_PARAM_BUFFERS_buffers, SPA_POD_Int(4), SPA_PARAM_BUFFERS_blocks, SPA_POD_Int(3),
                                SPA_PARAM_BUFFERS_dataType, SPA_POD_CHOICE_FLAGS_Int(types | (1 << SPA_DATA_SyncObj)), 0);
            spa_pod_builder_prop(&b, SPA_PARAM_BUFFERS_metaType, SPA_POD_PROP_FLAG_MANDATORY);
            spa_pod_builder_int(&b, 1 << SPA_META_SyncTimeline);
            const spa_pod* params[2] = {static_cast<const spa_pod*>(spa_pod_builder_pop(&b, &f)),
                                        static_cast<const spa_pod*>(spa_pod_builder_add_object(
                                            &b, SPA_TYPE_OBJECT_ParamMeta, SPA_PARAM_Meta, SPA_PARAM_META_type,
                                            SPA_POD_Id(SPA_META_SyncTimeline), SPA_PARAM_META_size,
                                            SPA_POD_Int(static_cast<int>(sizeof(spa_meta_sync_timeline)))))};
            pw_stream_update_params(stream, params, 2);
            return;
        }
        const spa_pod* params[1] = {static_cast<const spa_pod*>(spa_pod_builder_add_object(
            &b, SPA_TYPE_OBJECT_ParamBuffers, SPA_PARAM_Buffers, SPA_PARAM_BUFFERS_buffers, SPA_POD_Int(4),
            SPA_PARAM_BUFFERS_blocks, SPA_POD_Int(1), SPA_PARAM_BUFFERS_size, SPA_POD_Int(static_cast<int>(size)),
            SPA_PARAM_BUFFERS_stride, SPA_POD_Int(static_cast<int>(stride)), SPA_PARAM_BUFFERS_dataType,
            SPA_POD_CHOICE_FLAGS_Int(types)))};
        pw_stream_update_params(stream, params, 1);
    }

    UniqueFd memfd(std::size_t bytes, bool seal) {
        UniqueFd fd(::memfd_create("hostile", MFD_CLOEXEC | MFD_ALLOW_SEALING));
        if (!fd || ::ftruncate(fd.get(), static_cast<off_t>(bytes)) != 0) return {};
        if (seal && ::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) return {};
        return fd;
    }

    void on_add_buffer(pw_buffer* buffer) {
        auto slot = std::make_unique<Slot>();
        spa_data& d = buffer->buffer->datas[0];
        d.flags = SPA_DATA_FLAG_READWRITE | SPA_DATA_FLAG_MAPPABLE;
        d.mapoffset = 0;
        d.maxsize = static_cast<std::uint32_t>(size);
        d.data = nullptr;
        if (kind == "dmabuf-pipe" || kind == "memfd-pipe") {
            int p[2];
            if (::pipe2(p, O_CLOEXEC) != 0) return fail("pipe2");
            slot->fd = UniqueFd(p[0]);
            slot->pipe_other = UniqueFd(p[1]);
        } else if (kind == "dmabuf-layout" || sync) {
            ImageRequest req;
            req.width = width;
            req.height = height;
            req.fourcc = fourcc::XRGB8888;
            auto desc = udmabuf->allocate(req);
            if (!desc) return fail("udmabuf allocate");
            slot->fd = UniqueFd(::fcntl(desc->planes[0].buffer.fd(), F_DUPFD_CLOEXEC, 0));
            d.maxsize = static_cast<std::uint32_t>(desc->planes[0].buffer.size());
            slot->desc = std::move(*desc);
        } else {
            // memfd-short claims a whole frame over a single page; the others are a full frame.
            const std::size_t bytes = kind == "memfd-short" ? static_cast<std::size_t>(::sysconf(_SC_PAGESIZE)) : size;
            slot->fd = memfd(bytes, kind != "memfd-shrink");
            if (!slot->fd) return fail("memfd");
            slot->map = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, slot->fd.get(), 0);
            if (slot->map == MAP_FAILED) return fail("mmap");
            slot->map_size = bytes;
        }
        if (sync) {
            if (buffer->buffer->n_datas < 3 || spa_buffer_find_meta(buffer->buffer, SPA_META_SyncTimeline) == nullptr)
                return fail("explicit sync was not negotiated");
            for (int k = 0; k < 2; ++k) {
                if (kind == "syncobj-memfd") {
                    slot->sync_fds[k] = memfd(4096, true);  // a SyncObj data that is no syncobj
                } else {
                    auto t = Timeline::create(timeline_device.get());
                    if (!t) return fail("timeline");
                    auto fd = t->export_fd();
                    if (!fd) return fail("timeline fd");
                    slot->sync_fds[k] = std::move(*fd);
                    timelines.push_back(std::move(*t));
                }
                if (!slot->sync_fds[k]) return fail("sync fd");
                spa_data& sd = buffer->buffer->datas[1 + k];
                sd.type = SPA_DATA_SyncObj;
                sd.flags = SPA_DATA_FLAG_READWRITE;
                sd.fd = slot->sync_fds[k].get();
                sd.mapoffset = 0;
                sd.maxsize = 0;
                sd.data = nullptr;
            }
        }
        d.type = dmabuf ? SPA_DATA_DmaBuf : SPA_DATA_MemFd;
        d.fd = slot->fd.get();
        d.chunk->offset = 0;
        d.chunk->stride = static_cast<std::int32_t>(stride);
        d.chunk->size = static_cast<std::uint32_t>(stride * height);
        std::fprintf(stderr, "pipewire_peer hostile: buffer %zu added (fd %lld)\n", slots.size(), static_cast<long long>(d.fd));
        buffer->user_data = slot.get();
        slots.push_back(std::move(slot));
    }

    void on_remove_buffer(pw_buffer* buffer) {
        auto* slot = static_cast<Slot*>(buffer->user_data);
        for (auto it = slots.begin(); it != slots.end(); ++it)
            if (it->get() == slot) {
                if (slot->map != nullptr) ::munmap(slot->map, slot->map_size);
                slots.erase(it);
                return;
            }
    }

    void fail(const char* what) {
        std::fprintf(stderr, "pipewire_peer hostile %s: %s failed\n", kind.c_str(), what);
        failed = true;
    }

    // Writes the next frame where there is memory for it, and its chunk (the lie, for
    // dmabuf-layout).
    void fill(pw_buffer* buffer) {
        auto* slot = static_cast<Slot*>(buffer->user_data);
        if (kind == "memfd-shrink" && shrink_requested != 0 && !shrunk) {
            for (auto& s : slots) (void)::ftruncate(s->fd.get(), 0);  // every buffer, mapped or not
            shrunk = true;
            std::fprintf(stderr, "pipewire_peer hostile: every memfd truncated to 0 bytes at frame %u\n", frame);
        }
        spa_chunk& c = *buffer->buffer->datas[0].chunk;
        c.offset = 0;
        c.stride = static_cast<std::int32_t>(stride);
        c.size = static_cast<std::uint32_t>(stride * height);
        // Not after the shrink: writing past a memfd's end raises SIGBUS here too.
        if (slot != nullptr && slot->map != nullptr && slot->map_size >= stride * height && !shrunk)
            fill_pattern(static_cast<std::byte*>(slot->map), stride, width, height, frame);
        if (sync && slot != nullptr && slot->desc) {
            // The frame itself is honest; its points are not: 0, or not above the buffer's last
            // (every buffer's first (1, 1) is accepted, every later one is not).
            const PlaneDesc& p = slot->desc->planes[0];
            c.offset = static_cast<std::uint32_t>(p.offset);
            c.stride = static_cast<std::int32_t>(p.stride);
            (void)fill_pattern_frame(*slot->desc, frame);
            if (auto* stl = static_cast<spa_meta_sync_timeline*>(
                    spa_buffer_find_meta_data(buffer->buffer, SPA_META_SyncTimeline, sizeof(spa_meta_sync_timeline)))) {
                const std::uint64_t n = frame + 1;
                stl->flags = 0;
                switch (kind == "syncobj-memfd" ? 3 : frame % 3) {
                case 0: stl->acquire_point = 0; stl->release_point = n; break;
                case 1: stl->acquire_point = n; stl->release_point = 0; break;
                case 2: stl->acquire_point = 1; stl->release_point = 1; break;
                default: stl->acquire_point = n; stl->release_point = n; break;  // fine points, false fds
                }
            }
            return;
        }
        if (slot != nullptr && slot->desc) {
            const PlaneDesc& p = slot->desc->planes[0];
            c.offset = static_cast<std::uint32_t>(p.offset);
            c.stride = static_cast<std::int32_t>(p.stride);
            switch (frame % 5) {
            case 0: c.offset = static_cast<std::uint32_t>(p.buffer.size()); break;  // past the end
            case 1: c.stride = static_cast<std::int32_t>(width * 4 - 4); break;      // rows overlap
            case 2: c.stride = INT32_MAX; break;                                     // far past the end
            case 3: c.offset = static_cast<std::uint32_t>(p.buffer.size() - 4096); break;  // rows run out
            default: c.stride = 0; break;
            }
        }
    }
};

void on_state(void* data, pw_stream_state, pw_stream_state state, const char* error) {
    static_cast<Hostile*>(data)->state = state;
    std::fprintf(stderr, "pipewire_peer hostile: state %s%s%s\n", pw_stream_state_as_string(state), error ? ": " : "",
                 error ? error : "");
}
void on_param(void* data, uint32_t id, const spa_pod* param) {
    if (id == SPA_PARAM_Format) static_cast<Hostile*>(data)->on_format(param);
}
void on_add(void* data, pw_buffer* b) { static_cast<Hostile*>(data)->on_add_buffer(b); }
void on_remove(void* data, pw_buffer* b) { static_cast<Hostile*>(data)->on_remove_buffer(b); }

}  // namespace

int run_hostile_producer(const std::string& kind, const std::string& name, unsigned width, unsigned height) {
    static const char* const kinds[] = {"dmabuf-memfd", "dmabuf-pipe",  "dmabuf-layout", "memfd-pipe",
                                        "memfd-short",  "memfd-shrink", "syncobj-memfd", "syncobj-points"};
    bool known = false;
    for (const char* k : kinds) known = known || kind == k;
    if (!known || width == 0 || height == 0) return setup_failed("unknown kind or size");
    Hostile h;
    h.kind = kind;
    h.width = width;
    h.height = height;
    h.stride = width * 4;
    const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    h.size = (h.stride * height + page - 1) / page * page;
    h.sync = kind.rfind("syncobj-", 0) == 0;
    h.dmabuf = kind.rfind("dmabuf-", 0) == 0 || h.sync;
    if (kind == "syncobj-points") {
        auto device = Timeline::open_device();
        if (!device) return setup_failed("timeline device");
        h.timeline_device = std::move(*device);
    }
    if (kind == "dmabuf-layout" || h.sync) {
        auto u = UdmabufAllocator::open();
        if (!u) return setup_failed("udmabuf");
        h.udmabuf.emplace(std::move(*u));
    }
    struct sigaction sa{};
    sa.sa_handler = on_sigusr1;
    sigemptyset(&sa.sa_mask);
    if (::sigaction(SIGUSR1, &sa, nullptr) != 0) return setup_failed("sigaction");
    pw_init(nullptr, nullptr);
    pw_loop* loop = pw_loop_new(nullptr);
    pw_context* context = loop ? pw_context_new(loop, nullptr, 0) : nullptr;
    pw_core* core = context ? pw_context_connect(context, nullptr, 0) : nullptr;
    if (core == nullptr) return setup_failed("connect to the daemon");
    h.stream = pw_stream_new(core, name.c_str(),
                             pw_properties_new(PW_KEY_MEDIA_TYPE, "Video", PW_KEY_MEDIA_CATEGORY, "Capture",
                                               PW_KEY_MEDIA_ROLE, "Camera", PW_KEY_MEDIA_CLASS, "Video/Source",
                                               PW_KEY_NODE_NAME, name.c_str(), nullptr));
    if (h.stream == nullptr) return setup_failed("pw_stream_new");
    pw_stream_events events{};
    events.version = PW_VERSION_STREAM_EVENTS;
    events.state_changed = on_state;
    events.param_changed = on_param;
    events.add_buffer = on_add;
    events.remove_buffer = on_remove;
    pw_stream_add_listener(h.stream, &h.listener, &events, &h);
    std::uint8_t storage[1024];
    spa_pod_builder b = SPA_POD_BUILDER_INIT(storage, sizeof storage);
    const spa_pod* params[1] = {h.enum_format(&b)};
    if (pw_stream_connect(h.stream, PW_DIRECTION_OUTPUT, PW_ID_ANY,
                          static_cast<pw_stream_flags>(PW_STREAM_FLAG_DRIVER | PW_STREAM_FLAG_ALLOC_BUFFERS), params,
                          1) < 0)
        return setup_failed("pw_stream_connect");
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    pw_loop_enter(loop);
    while (!h.failed && std::chrono::steady_clock::now() < end) {
        // SIGUSR1 interrupts the wait: EINTR is a turn like any other.
        if (const int n = pw_loop_iterate(loop, 10); n < 0 && n != -EINTR) break;
        // Frames only while streaming: buffers queued on a paused driver (the link still being
        // set up) stalled the stream now and then.
        if (h.state != PW_STREAM_STATE_STREAMING) continue;
        pw_buffer* buffer = pw_stream_dequeue_buffer(h.stream);
        if (buffer == nullptr) continue;
        h.fill(buffer);
        if (h.frame < 3) std::fprintf(stderr, "pipewire_peer hostile: frame %u queued\n", h.frame);
        ++h.frame;
        pw_stream_queue_buffer(h.stream, buffer);
        pw_stream_trigger_process(h.stream);
    }
    pw_loop_leave(loop);
    pw_stream_destroy(h.stream);
    pw_core_disconnect(core);
    pw_context_destroy(context);
    pw_loop_destroy(loop);
    return h.failed ? 2 : 0;
}

}  // namespace dmabridge::test
