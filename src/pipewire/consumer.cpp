// SPDX-License-Identifier: MIT
#include <dmabridge/pipewire/consumer.hpp>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <pipewire/pipewire.h>
#include <spa/buffer/meta.h>

#include <dmabridge/format/format.hpp>
#include <dmabridge/format/fourcc.hpp>
#include <dmabridge/kernel/cpu_access.hpp>

#include "pipewire/context_state.hpp"
#include "pipewire/spa_format.hpp"
#include "pipewire/stream_common.hpp"
#include "pipewire/sync_points.hpp"

namespace dmabridge::pipewire {

namespace {

constexpr std::uint32_t max_datas = 4;

// What a buffer's description was made from: a peer that changes any of it gets a new one.
struct Signature {
    std::array<std::int64_t, max_datas> fds{};
    std::array<std::uint32_t, max_datas> offsets{};
    std::array<std::int32_t, max_datas> strides{};
    std::uint32_t count = 0;
    friend bool operator==(const Signature&, const Signature&) = default;
};

// The library's own read-only mapping of a shared-memory buffer's memfd: libpipewire maps
// nothing for this consumer (no PW_STREAM_FLAG_MAP_BUFFERS: it would map whatever fd a peer
// marks MAPPABLE, dma-bufs and other files included, before any check). Made only after the fd
// answered F_GET_SEALS (shmem: memfds and /dev/shm files, never a file system that could stall
// a page fault) and its size covers the buffer.
class MemfdView {
public:
    MemfdView() = default;
    MemfdView(MemfdView&& o) noexcept
        : base_(std::exchange(o.base_, nullptr)), length_(std::exchange(o.length_, 0)), shift_(o.shift_),
          sealed_(o.sealed_), key_(o.key_) {}
    MemfdView& operator=(MemfdView&& o) noexcept {
        if (this != &o) {
            reset();
            base_ = std::exchange(o.base_, nullptr);
            length_ = std::exchange(o.length_, 0);
            shift_ = o.shift_;
            sealed_ = o.sealed_;
            key_ = o.key_;
        }
        return *this;
    }
    MemfdView(const MemfdView&) = delete;
    MemfdView& operator=(const MemfdView&) = delete;
    ~MemfdView() { reset(); }

    // Maps `d` (a MemFd data) unless it is mapped already with the same fd, offset and size.
    Status map(const spa_data& d) {
        const std::array<std::uint64_t, 3> key{static_cast<std::uint64_t>(d.fd), d.mapoffset, d.maxsize};
        if (base_ != nullptr && key == key_) return {};
        reset();
        const int fd = static_cast<int>(d.fd);
        if (d.fd < 0 || d.fd > INT32_MAX || d.maxsize == 0)
            return Error::library(Errc::invalid_argument, "shared memory: fd " + std::to_string(d.fd) + ", size " +
                                                              std::to_string(d.maxsize));
        const int seals = ::fcntl(fd, F_GET_SEALS);
        if (seals < 0)
            return Error::library(Errc::invalid_argument, "shared memory: fd " + std::to_string(fd) +
                                                              " is no memfd (F_GET_SEALS: " + std::strerror(errno) + ")");
        struct stat st {};
        if (::fstat(fd, &st) != 0) return Error::from_errno(errno, "shared memory: fstat");
        const std::uint64_t end = std::uint64_t{d.mapoffset} + d.maxsize;
        if (st.st_size < 0 || static_cast<std::uint64_t>(st.st_size) < end)
            return Error::library(Errc::invalid_argument, "shared memory: the memfd holds " + std::to_string(st.st_size) +
                                                              " bytes, the buffer ends at " + std::to_string(end));
        const long page = ::sysconf(_SC_PAGESIZE);
        const std::uint64_t pg = page > 0 ? static_cast<std::uint64_t>(page) : 4096;
        const std::uint64_t first = d.mapoffset / pg * pg;
        void* addr = ::mmap(nullptr, end - first, PROT_READ, MAP_SHARED, fd, static_cast<off_t>(first));
        if (addr == MAP_FAILED) return Error::from_errno(errno, "shared memory: mmap");
        base_ = addr;
        length_ = end - first;
        shift_ = d.mapoffset - first;
        sealed_ = (seals & F_SEAL_SHRINK) != 0;
        key_ = key;
        return {};
    }
    // The buffer's bytes (maxsize of them).
    const std::byte* data() const noexcept { return static_cast<const std::byte*>(base_) + shift_; }
    // Whether the producer can no longer shrink the memfd: reads through the mapping are safe
    // (a read past a shrunk file's end raises SIGBUS).
    bool sealed() const noexcept { return sealed_; }
    void reset() noexcept {
        if (base_ != nullptr) ::munmap(base_, length_);
        base_ = nullptr;
        length_ = 0;
    }

private:
    void* base_ = nullptr;
    std::uint64_t length_ = 0, shift_ = 0;
    bool sealed_ = false;
    std::array<std::uint64_t, 3> key_{};
};

// One PipeWire buffer, from add_buffer to remove_buffer.
struct Entry {
    std::uint32_t id = 0;
    bool out = false;          // acquired and not released
    // Heap-held so that its address, which frames hand out, survives the Entry moving to the
    // orphans when PipeWire removes the buffer under a held frame.
    std::unique_ptr<BufferDesc> desc;
    Signature signature;
    bool wrap_tried = false;   // shared memory: udmabuf was tried once for this buffer
    bool wrapped = false;
    MemfdView view;            // shared memory (MemFd): the library's mapping
    // Explicit sync: the buffer's timelines, imported from its SyncObj datas (again when the
    // peer changes their fds), heap-held as `desc` is, and the last points seen.
    std::unique_ptr<Timeline> acquire, release;
    std::array<std::int64_t, 2> timeline_fds{-1, -1};
    std::uint64_t acquire_point = 0, release_point = 0;
};

// What a frame held across its buffer's removal keeps until release().
struct Orphan {
    std::unique_ptr<BufferDesc> desc;
    std::unique_ptr<Timeline> acquire, release;
};

}  // namespace

struct Consumer::Impl {
    std::shared_ptr<detail::ContextState> context;
    ConsumerOptions options;
    std::vector<std::uint32_t> shm_fourccs;
    pw_stream* stream = nullptr;
    spa_hook listener{};
    detail::StreamStatus status;
    std::optional<Negotiated> negotiated;
    std::optional<Negotiated> pending;
    std::map<pw_buffer*, Entry> entries;
    // Buffers PipeWire removed (a renegotiation, the producer gone) while the application still
    // held a frame of them: their descriptions (and dma-buf references) live until release().
    std::map<std::uint32_t, Orphan> orphans;
    std::uint32_t next_id = 0;
    // The dma-buf identities of removed buffers, until take_removed_buffers() hands them out.
    std::vector<BufferId> removed;
    ConsumerStats stats;
    std::string last_rejection;
    std::string last_wrap_refusal;  // why udmabuf did not take a memfd (then frames are copied)
    // Pairs the application's importer refused (refuse_import()): never offered again.
    FormatSet refused;
    std::string last_import_refusal;
    UniqueFd timeline_device;  // explicit sync taken when set

    ~Impl() {
        if (stream != nullptr) {
            spa_hook_remove(&listener);
            pw_stream_destroy(stream);
        }
    }

    std::vector<const spa_pod*> enum_formats(spa_pod_builder* b) const {
        std::vector<const spa_pod*> params;
        const detail::SizeOffer any{};
        for (std::uint32_t f : options.formats.fourccs()) {
            std::vector<std::uint64_t> mods;
            for (std::uint64_t m : options.formats.modifiers(f))
                if (!refused.contains(f, m)) mods.push_back(m);
            // A fourcc whose every modifier was refused is offered as shared memory only.
            if (!mods.empty()) params.push_back(detail::build_enum_format(b, f, mods, false, any));
        }
        for (std::uint32_t f : shm_fourccs) params.push_back(detail::build_enum_format(b, f, {}, false, any));
        return params;
    }

    // Offers the formats again, without the refused pairs: a change of EnumFormat is what makes
    // PipeWire renegotiate the link.
    void offer_again() {
        std::array<std::uint8_t, 8192> storage{};
        spa_pod_builder b = SPA_POD_BUILDER_INIT(storage.data(), static_cast<uint32_t>(storage.size()));
        auto params = enum_formats(&b);
        if (params.empty()) {
            // Nothing left to offer: PipeWire would keep the old list. Fail as a negotiation
            // with no common format does.
            status.fail(Error::library(Errc::unsupported, "consumer " + options.target +
                                                              ": every format offered was refused at import "
                                                              "(last: " + last_import_refusal + ")"));
            pw_stream_set_error(stream, -EINVAL, "%s", status.error->message().c_str());
            return;
        }
        pw_stream_update_params(stream, params.data(), static_cast<uint32_t>(params.size()));
    }

    void on_format(const spa_pod* param) {
        negotiated.reset();
        pending.reset();
        if (param == nullptr) return;
        auto peer = detail::parse_format(param);
        if (!peer) {
            status.fail(peer.error().with_context("consumer " + options.target + ": the negotiated format"));
            pw_stream_set_error(stream, -EINVAL, "%s", status.error->message().c_str());
            return;
        }
        // An open modifier is the producer's to fixate; the fixed format follows.
        if (peer->modifier_unfixed) return;
        Negotiated n{peer->width, peer->height, peer->fourcc, peer->has_modifier ? peer->modifier : modifier::linear,
                     peer->has_modifier};
        if (n.dmabuf && !options.formats.contains(n.fourcc, n.modifier)) {
            status.fail(Error::library(Errc::unsupported, "consumer " + options.target + ": the producer fixed " +
                                                              fourcc_to_string(n.fourcc) + " " +
                                                              modifier_to_string(n.modifier) +
                                                              ", which this consumer did not offer"));
            pw_stream_set_error(stream, -EINVAL, "%s", status.error->message().c_str());
            return;
        }
        pending = n;
        std::array<std::uint8_t, 1024> storage{};
        spa_pod_builder b = SPA_POD_BUILDER_INIT(storage.data(), static_cast<uint32_t>(storage.size()));
        // Shared memory: memfds (which udmabuf can wrap) or plain memory (GStreamer's pipewiresink
        // sends MemPtr whatever is asked: those frames are copied).
        const std::uint32_t types =
            n.dmabuf ? (1u << SPA_DATA_DmaBuf) : ((1u << SPA_DATA_MemFd) | (1u << SPA_DATA_MemPtr));
        // Explicit sync is the producer's to offer: a consumer takes it by listing the metadata
        // and a Buffers param that names it, ahead of the plain one.
        std::vector<const spa_pod*> params;
        if (timeline_device) {
            params.push_back(detail::build_sync_buffers_accept(&b, types));
            params.push_back(detail::build_sync_timeline_meta(&b));
        }
        params.push_back(detail::build_buffers(&b, 0, 0, 0, 0, types));
        params.push_back(detail::build_header_meta(&b));
        pw_stream_update_params(stream, params.data(), static_cast<uint32_t>(params.size()));
    }

    void on_state(pw_stream_state state, const char* error) {
        status.on_state(state, error, "consumer " + options.target);
        if (!context->connected) status.on_connection_lost(context->error, "consumer " + options.target);
        if (state == PW_STREAM_STATE_STREAMING && pending) negotiated = pending;
    }

    void on_add_buffer(pw_buffer* buffer) { entries[buffer].id = next_id++; }

    // The buffer's dma-bufs, each once, for the application to evict from its caches.
    void report_removed(const BufferDesc* desc) {
        if (desc == nullptr) return;
        for (const PlaneDesc& p : desc->planes)
            if (p.buffer.valid() && std::find(removed.begin(), removed.end(), p.buffer.id()) == removed.end())
                removed.push_back(p.buffer.id());
    }

    void on_remove_buffer(pw_buffer* buffer) {
        auto it = entries.find(buffer);
        if (it == entries.end()) return;
        ++stats.buffers_removed;
        if (it->second.out) {
            // Reported at release(); the timelines stay valid for the held frame meanwhile.
            orphans.emplace(it->second.id, Orphan{std::move(it->second.desc), std::move(it->second.acquire),
                                                  std::move(it->second.release)});
        } else {
            report_removed(it->second.desc.get());
        }
        entries.erase(it);
    }

    // Explicit sync: the buffer's timelines (imported once per pair of fds) and the frame's
    // points, checked: the SyncObj datas `planes` and `planes` + 1 must be syncobjs this
    // consumer's device imports, and the points non-zero and above the buffer's last ones.
    Status take_points(Entry& entry, const spa_buffer* sb, std::uint32_t planes, const spa_meta_sync_timeline& stl,
                       ConsumerFrame& f) {
        if (!timeline_device)
            return Error::library(Errc::invalid_argument, "SyncTimeline metadata that this consumer did not take");
        const char* names[2] = {"acquire", "release"};
        for (std::uint32_t k = 0; k < detail::sync_datas; ++k) {
            const spa_data& d = sb->datas[planes + k];
            const std::string what = "data " + std::to_string(planes + k) + " (the " + names[k] + " timeline)";
            if (d.type != SPA_DATA_SyncObj)
                return Error::library(Errc::invalid_argument, what + ": data type " + std::to_string(d.type) +
                                                                  ", not SyncObj");
            if (d.fd < 0 || d.fd > INT32_MAX)
                return Error::library(Errc::invalid_argument, what + ": fd " + std::to_string(d.fd));
            auto& timeline = k == 0 ? entry.acquire : entry.release;
            if (timeline && entry.timeline_fds[k] == d.fd) continue;
            auto imported = Timeline::import(timeline_device.get(), static_cast<int>(d.fd));
            if (!imported) return imported.error().with_context(what + ": not a syncobj this device imports");
            timeline = std::make_unique<Timeline>(std::move(*imported));
            entry.timeline_fds[k] = d.fd;
            // A new timeline starts its points again.
            (k == 0 ? entry.acquire_point : entry.release_point) = 0;
        }
        if (stl.acquire_point == 0 || stl.acquire_point <= entry.acquire_point)
            return Error::library(Errc::invalid_argument, "acquire point " + std::to_string(stl.acquire_point) +
                                                              " is not above the buffer's last, " +
                                                              std::to_string(entry.acquire_point));
        if (stl.release_point == 0 || stl.release_point <= entry.release_point)
            return Error::library(Errc::invalid_argument, "release point " + std::to_string(stl.release_point) +
                                                              " is not above the buffer's last, " +
                                                              std::to_string(entry.release_point));
        entry.acquire_point = stl.acquire_point;
        entry.release_point = stl.release_point;
        f.acquire_timeline = entry.acquire.get();
        f.acquire_point = stl.acquire_point;
        f.release_timeline = entry.release.get();
        f.release_point = stl.release_point;
        return {};
    }

    // A frame's dma-buf description, made once per buffer (again only when the peer changes the
    // buffer's fds, offsets or strides). Every number is the peer's: checked before use.
    Status describe_dmabuf(Entry& entry, const spa_buffer* sb, const Negotiated& n) {
        Signature sig;
        sig.count = sb->n_datas;
        for (std::uint32_t i = 0; i < sb->n_datas; ++i) {
            const spa_data& d = sb->datas[i];
            if (d.type != SPA_DATA_DmaBuf)
                return Error::library(Errc::invalid_argument, "plane " + std::to_string(i) + ": data type " +
                                                                  std::to_string(d.type) + " in a dma-buf stream");
            if (d.fd < 0 || d.fd > INT32_MAX)
                return Error::library(Errc::invalid_argument, "plane " + std::to_string(i) + ": fd " + std::to_string(d.fd));
            if (d.chunk == nullptr || d.chunk->stride <= 0)
                return Error::library(Errc::invalid_argument,
                                      "plane " + std::to_string(i) + ": stride " +
                                          std::to_string(d.chunk ? d.chunk->stride : 0) + " is not positive");
            sig.fds[i] = d.fd;
            sig.offsets[i] = d.chunk->offset;
            sig.strides[i] = d.chunk->stride;
        }
        if (entry.desc && entry.signature == sig) return {};
        BufferDesc desc;
        desc.width = n.width;
        desc.height = n.height;
        desc.fourcc = n.fourcc;
        desc.modifier = n.modifier;
        for (std::uint32_t i = 0; i < sb->n_datas; ++i) {
            // Planes of one fd share one DmaBuf reference (and so one identity for the caches).
            Result<DmaBuf> buf = Error::library(Errc::invalid_argument, "");
            for (std::uint32_t j = 0; j < i; ++j)
                if (sig.fds[j] == sig.fds[i]) {
                    buf = desc.planes[j].buffer.dup();
                    break;
                }
            if (!buf && buf.error().message().empty()) buf = DmaBuf::import_fd(static_cast<int>(sig.fds[i]));
            if (!buf) return buf.error().with_context("plane " + std::to_string(i));
            desc.planes.push_back(PlaneDesc{std::move(*buf), sig.offsets[i], static_cast<std::uint64_t>(sig.strides[i])});
        }
        if (auto ok = desc.validate(); !ok) return ok.error();
        entry.desc = std::make_unique<BufferDesc>(std::move(desc));
        entry.signature = sig;
        ++stats.descriptions_built;
        return {};
    }

    // A shared-memory frame: checked against its mapping, then wrapped (udmabuf, no copy) or
    // copied into a dma-buf of the copy allocator.
    Status describe_shm(Entry& entry, const spa_buffer* sb, const Negotiated& n, ConsumerFrame& f) {
        auto info = format_info(n.fourcc);
        if (!info) return info.error();
        const std::uint32_t planes = (*info)->plane_count;
        const spa_data& d0 = sb->datas[0];
        if (d0.type != SPA_DATA_MemFd && d0.type != SPA_DATA_MemPtr)
            return Error::library(Errc::invalid_argument, "data type " + std::to_string(d0.type) + " in a shared-memory stream");
        // MemPtr memory is mapped by libpipewire (its own pool); a MemFd is mapped here, checked.
        const std::byte* base = static_cast<const std::byte*>(d0.data);
        bool readable = true;  // reads through `base` cannot raise SIGBUS
        if (d0.type == SPA_DATA_MemFd) {
            if (auto mapped = entry.view.map(d0); !mapped) return mapped.error();
            base = entry.view.data();
            readable = entry.view.sealed();
        }
        if (base == nullptr) return Error::library(Errc::invalid_argument, "shared memory that is not mapped");
        ImageLayout layout{n.width, n.height, n.fourcc, modifier::linear, {}};
        for (std::uint32_t p = 0; p < planes; ++p) {
            // One data per plane in the same memory, or one data holding every plane: the
            // second plane then follows the first (offset + stride x rows).
            const spa_data& d = sb->datas[std::min(p, sb->n_datas - 1)];
            if (d.type != d0.type || d.fd != d0.fd || d.data != d0.data || d.chunk == nullptr || d.chunk->stride <= 0)
                return Error::library(Errc::invalid_argument, "plane " + std::to_string(p) + ": no usable chunk");
            std::uint64_t offset = d.chunk->offset % (d.maxsize ? d.maxsize : 1);
            std::uint64_t stride = static_cast<std::uint64_t>(d.chunk->stride);
            if (p > 0 && sb->n_datas == 1) {
                offset = layout.planes[p - 1].offset +
                         layout.planes[p - 1].stride * (*info)->plane_rows(p - 1, n.height);
                stride = layout.planes[0].stride / (*info)->planes[0].hsub * (*info)->planes[p].bytes_per_block /
                         (*info)->planes[0].bytes_per_block * (*info)->planes[0].hsub / (*info)->planes[p].hsub;
            }
            layout.planes.push_back(PlaneLayout{offset, stride, d0.maxsize});
        }
        if (auto ok = validate_layout(layout); !ok) return ok.error();
        // A memfd the producer may still shrink is not handed out as a span: a read past its new
        // end would raise SIGBUS in the application. Its frames arrive through `desc` only.
        if (readable) f.memory = {base, d0.maxsize};
        f.plane_count = planes;
        for (std::uint32_t p = 0; p < planes; ++p) {
            f.offsets[p] = layout.planes[p].offset;
            f.strides[p] = layout.planes[p].stride;
        }
        const long page = ::sysconf(_SC_PAGESIZE);
        const std::uint64_t pg = page > 0 ? static_cast<std::uint64_t>(page) : 4096;
        if (options.udmabuf != nullptr && d0.type != SPA_DATA_MemFd && !entry.wrap_tried) {
            entry.wrap_tried = true;
            last_wrap_refusal = "buffer " + std::to_string(entry.id) + ": data type " + std::to_string(d0.type) +
                                " is not a memfd";
        }
        if (options.udmabuf != nullptr && d0.type == SPA_DATA_MemFd && !entry.wrap_tried) {
            entry.wrap_tried = true;
            // PipeWire packs every buffer of a stream into one memfd at offsets that are rarely
            // page-aligned: wrap the whole pages around this buffer (udmabuf takes pages only)
            // and shift the planes by the buffer's place in the first page.
            const std::uint64_t first = d0.mapoffset / pg * pg;
            const std::uint64_t last = (static_cast<std::uint64_t>(d0.mapoffset) + d0.maxsize + pg - 1) / pg * pg;
            const std::uint64_t shift = d0.mapoffset - first;
            auto buf = options.udmabuf->wrap_memfd(static_cast<int>(d0.fd), first, last - first);
            if (buf) {
                BufferDesc desc;
                desc.width = n.width;
                desc.height = n.height;
                desc.fourcc = n.fourcc;
                desc.modifier = modifier::linear;
                for (std::uint32_t p = 0; p < planes; ++p) {
                    auto ref = p == 0 ? std::move(*buf) : desc.planes[0].buffer.dup();
                    if (!ref) return ref.error();
                    desc.planes.push_back(
                        PlaneDesc{std::move(*ref), shift + layout.planes[p].offset, layout.planes[p].stride});
                }
                if (auto valid = desc.validate(); valid) {
                    entry.desc = std::make_unique<BufferDesc>(std::move(desc));
                    entry.wrapped = true;
                    ++stats.shm_wrapped;
                } else {
                    last_wrap_refusal = valid.error().message();
                }
            } else {
                last_wrap_refusal = buf.error().message();
            }
        }
        if (entry.wrapped) {
            f.desc = entry.desc.get();
            return {};
        }
        if (options.copy_allocator == nullptr) {
            ++stats.shm_cpu_only;
            return {};
        }
        if (!entry.desc) {
            ImageRequest req;
            req.width = n.width;
            req.height = n.height;
            req.fourcc = n.fourcc;
            req.name = "pipewire-copy";
            auto desc = options.copy_allocator->allocate(req);
            if (!desc) return desc.error().with_context("copy target");
            entry.desc = std::make_unique<BufferDesc>(std::move(*desc));
        }
        const BufferDesc& dst = *entry.desc;
        // The copy goes through plane 0's mapping: every plane must live in that dma-buf.
        for (const auto& plane : dst.planes)
            if (plane.buffer.id() != dst.planes[0].buffer.id())
                return Error::library(Errc::unsupported, "copy target: the allocator made planes in separate dma-bufs");
        // A memfd the producer may shrink must not be read through its mapping: a read past its
        // new end raises SIGBUS and kills this process. Read such a file with pread instead.
        const bool through_mapping = readable;
        auto map = Mapping::map(dst.planes[0].buffer, Access::write);
        if (!map) return map.error().with_context("copy target");
        auto access = CpuAccess::begin(dst.planes[0].buffer, Access::write);
        if (!access) return access.error().with_context("copy target");
        for (std::uint32_t p = 0; p < planes && p < dst.planes.size(); ++p) {
            const std::uint64_t row = *(*info)->row_bytes(p, n.width);
            const std::uint32_t rows = (*info)->plane_rows(p, n.height);
            std::byte* out = map->data() + dst.planes[p].offset;
            for (std::uint32_t y = 0; y < rows; ++y) {
                const std::uint64_t at = layout.planes[p].offset + y * layout.planes[p].stride;
                if (through_mapping) {
                    std::memcpy(out + y * dst.planes[p].stride, base + at, row);
                    continue;
                }
                const ssize_t got = ::pread(static_cast<int>(d0.fd), out + y * dst.planes[p].stride, row,
                                            static_cast<off_t>(d0.mapoffset + at));
                if (got != static_cast<ssize_t>(row)) {
                    (void)access->end();
                    return Error::library(Errc::invalid_argument,
                                          "shared-memory frame: the producer's memfd ends before plane " +
                                              std::to_string(p) + " row " + std::to_string(y) + " (offset " +
                                              std::to_string(d0.mapoffset + at) + ")");
                }
            }
        }
        if (auto ok = access->end(); !ok) return ok.error().with_context("copy target");
        ++stats.shm_copies;
        f.desc = &dst;
        f.copied = true;
        return {};
    }
};

namespace {

void on_state_changed(void* data, pw_stream_state, pw_stream_state state, const char* error) {
    static_cast<Consumer::Impl*>(data)->on_state(state, error);
}
void on_param_changed(void* data, uint32_t id, const spa_pod* param) {
    if (id == SPA_PARAM_Format) static_cast<Consumer::Impl*>(data)->on_format(param);
}
void on_add_buffer(void* data, pw_buffer* buffer) { static_cast<Consumer::Impl*>(data)->on_add_buffer(buffer); }
void on_remove_buffer(void* data, pw_buffer* buffer) { static_cast<Consumer::Impl*>(data)->on_remove_buffer(buffer); }

const pw_stream_events consumer_events = [] {
    pw_stream_events e{};
    e.version = PW_VERSION_STREAM_EVENTS;
    e.state_changed = on_state_changed;
    e.param_changed = on_param_changed;
    e.add_buffer = on_add_buffer;
    e.remove_buffer = on_remove_buffer;
    return e;
}();

}  // namespace

Result<Consumer> Consumer::create(Context& context, ConsumerOptions options) {
    const std::string what = "pipewire::Consumer::create " + options.target;
    if (!context.state()) return Error::library(Errc::empty_object, what + ": the context is empty (moved from)");
    if (!context.connected() && context.state()->error) return context.state()->error->with_context(what);
    auto impl = std::make_unique<Impl>();
    impl->context = context.state();
    if (options.timeline_device >= 0) {
        if (auto ok = Timeline::supported(options.timeline_device); !ok) return ok.error().with_context(what + ": timeline_device");
        auto device = UniqueFd::dup_of(options.timeline_device);
        if (!device) return device.error().with_context(what + ": timeline_device");
        impl->timeline_device = std::move(*device);
    }
    auto shm = detail::shm_offer(options.formats, options.accept_shm, options.shm_fourccs, what);
    if (!shm) return shm.error();
    impl->shm_fourccs = std::move(*shm);
    impl->options = std::move(options);
    const ConsumerOptions& o = impl->options;
    const std::string name = o.name.empty() ? std::string("dmabridge-consumer") : o.name;
    pw_properties* props = pw_properties_new(PW_KEY_MEDIA_TYPE, "Video", PW_KEY_MEDIA_CATEGORY, "Capture",
                                             PW_KEY_MEDIA_ROLE, "Camera", PW_KEY_NODE_NAME, name.c_str(), nullptr);
    if (!o.target.empty()) pw_properties_set(props, PW_KEY_TARGET_OBJECT, o.target.c_str());
    impl->stream = pw_stream_new(impl->context->core, name.c_str(), props);
    if (impl->stream == nullptr) return Error::from_errno(errno, what + ": pw_stream_new");
    pw_stream_add_listener(impl->stream, &impl->listener, &consumer_events, impl.get());
    std::array<std::uint8_t, 8192> storage{};
    spa_pod_builder b = SPA_POD_BUILDER_INIT(storage.data(), static_cast<uint32_t>(storage.size()));
    auto params = impl->enum_formats(&b);
    const int res = pw_stream_connect(impl->stream, PW_DIRECTION_INPUT, PW_ID_ANY,
                                      static_cast<pw_stream_flags>(PW_STREAM_FLAG_AUTOCONNECT),
                                      params.data(), static_cast<uint32_t>(params.size()));
    if (res < 0) return Error::from_errno(-res, what + ": pw_stream_connect");
    return Consumer(std::move(impl));
}

Consumer::Consumer(std::unique_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}
Consumer::Consumer(Consumer&&) noexcept = default;
Consumer& Consumer::operator=(Consumer&&) noexcept = default;
Consumer::~Consumer() = default;

StreamState Consumer::state() const noexcept { return impl_ ? impl_->status.state : StreamState::error; }
std::optional<Error> Consumer::error() const {
    if (!impl_) return Error::library(Errc::empty_object, "pipewire::Consumer: moved from");
    return impl_->status.error;
}
std::optional<Negotiated> Consumer::negotiated() const { return impl_ ? impl_->negotiated : std::nullopt; }

Result<std::optional<ConsumerFrame>> Consumer::acquire() {
    if (!impl_) return Error::library(Errc::empty_object, "pipewire::Consumer::acquire: the consumer is empty (moved from)");
    if (impl_->status.error) return *impl_->status.error;
    while (true) {
        if (!impl_->negotiated) return std::optional<ConsumerFrame>{};
        pw_buffer* buffer = pw_stream_dequeue_buffer(impl_->stream);
        if (buffer == nullptr) return std::optional<ConsumerFrame>{};
        auto it = impl_->entries.find(buffer);
        const spa_buffer* sb = buffer->buffer;
        const Negotiated& n = *impl_->negotiated;
        Status ok;
        ConsumerFrame f;
        if (it != impl_->entries.end() && sb != nullptr && sb->n_datas > 0 && sb->datas[0].chunk != nullptr &&
            sb->datas[0].chunk->size == 0) {
            // No data: a buffer the producer never filled (PipeWire's input side can point at a
            // buffer id of the previous set during a renegotiation, and hand out the new buffer
            // of that id before the producer sent it). Not a frame, and not the peer's fault.
            ++impl_->stats.frames_empty;
            pw_stream_queue_buffer(impl_->stream, buffer);
            continue;
        }
        // With the SyncTimeline metadata the last two datas are timelines: the planes are the rest.
        // The metadata alone is not enough: PipeWire attaches it whenever both sides list it,
        // also to buffers of a plain Buffers param (a producer that offers no explicit-sync
        // layout); those have no SyncObj data and are implicit sync.
        const spa_meta_sync_timeline* stl = detail::sync_timeline_meta(sb);
        if (stl != nullptr && (sb->n_datas <= detail::sync_datas || sb->datas[sb->n_datas - 1].type != SPA_DATA_SyncObj))
            stl = nullptr;
        spa_buffer planes{};
        if (sb != nullptr) {
            planes = *sb;
            if (stl != nullptr) planes.n_datas -= detail::sync_datas;  // more than sync_datas: checked above
        }
        if (it == impl_->entries.end()) {
            ok = Error::library(Errc::invalid_argument, "a buffer PipeWire never announced");
        } else if (sb == nullptr || planes.n_datas == 0 || planes.n_datas > max_datas) {
            ok = Error::library(Errc::invalid_argument,
                                std::to_string(sb ? sb->n_datas : 0) + " datas (1 to 4 planes" +
                                    (stl ? " and 2 timelines" : "") + " expected)");
        } else if ((sb->datas[0].chunk && (sb->datas[0].chunk->flags & SPA_CHUNK_FLAG_CORRUPTED)) != 0) {
            ok = Error::library(Errc::invalid_argument, "the producer marked the frame corrupted");
        } else if (stl != nullptr && !(ok = impl_->take_points(it->second, sb, planes.n_datas, *stl, f))) {
            // the points or timelines were refused: `ok` says why
        } else if (n.dmabuf) {
            ok = impl_->describe_dmabuf(it->second, &planes, n);
            if (ok) {
                f.desc = it->second.desc.get();
                f.dmabuf = true;
                f.plane_count = static_cast<std::uint32_t>(f.desc->planes.size());
                for (std::uint32_t p = 0; p < f.plane_count; ++p) {
                    f.offsets[p] = f.desc->planes[p].offset;
                    f.strides[p] = f.desc->planes[p].stride;
                }
            }
        } else {
            ok = impl_->describe_shm(it->second, &planes, n, f);
        }
        if (!ok) {
            // Rejected: back to the producer at once, the reason kept.
            impl_->last_rejection = "consumer " + impl_->options.target + ": frame rejected: " + ok.error().message();
            ++impl_->stats.frames_rejected;
            pw_stream_queue_buffer(impl_->stream, buffer);
            continue;
        }
        if (auto* h = static_cast<const spa_meta_header*>(
                spa_buffer_find_meta_data(sb, SPA_META_Header, sizeof(spa_meta_header)))) {
            f.sequence = h->seq;
            f.timestamp_ns = h->pts;
        }
        it->second.out = true;
        if (f.acquire_timeline != nullptr) ++impl_->stats.timeline_frames;
        f.format = n;
        f.buffer_id = it->second.id;
        f.handle = buffer;
        ++impl_->stats.frames_acquired;
        return std::optional<ConsumerFrame>{f};
    }
}

Status Consumer::release(const ConsumerFrame& frame, PointBy release) {
    if (!impl_) return Error::library(Errc::empty_object, "pipewire::Consumer::release: the consumer is empty (moved from)");
    // A frame of a buffer PipeWire removed meanwhile: its description goes now; nothing to return
    // (nor to signal: the producer let go of the buffer).
    if (auto orphan = impl_->orphans.find(frame.buffer_id); orphan != impl_->orphans.end()) {
        impl_->report_removed(orphan->second.desc.get());
        impl_->orphans.erase(orphan);
        return {};
    }
    auto* buffer = static_cast<pw_buffer*>(frame.handle);
    auto it = impl_->entries.find(buffer);
    if (it == impl_->entries.end() || !it->second.out || it->second.id != frame.buffer_id)
        return Error::library(Errc::invalid_argument, "pipewire::Consumer::release: buffer " +
                                                          std::to_string(frame.buffer_id) + " is not acquired");
    it->second.out = false;
    Status signalled;
    Entry& entry = it->second;
    if (frame.release_timeline != nullptr && entry.release && frame.release_timeline == entry.release.get() &&
        release == PointBy::implicit_fences) {
        // The point stands for this consumer's accesses: every fence on the dma-bufs now (its
        // GPU reads through implicit sync), signalled at once after CPU reads. Submitted before
        // the buffer goes back, which is how the producer tells a read frame from a recycled one.
        signalled = detail::fence_point(*entry.release, frame.release_point, entry.desc.get(), Access::write);
        if (!signalled) (void)entry.release->signal(frame.release_point);
    }
    pw_stream_queue_buffer(impl_->stream, buffer);
    if (!signalled) return signalled.error().with_context("pipewire::Consumer::release: buffer " +
                                                          std::to_string(frame.buffer_id) + ": release point " +
                                                          std::to_string(frame.release_point));
    return {};
}

bool Consumer::uses_timelines() const noexcept {
    if (!impl_) return false;
    return std::any_of(impl_->entries.begin(), impl_->entries.end(), [](const auto& e) { return e.second.acquire != nullptr; });
}

Status Consumer::refuse_import(const ConsumerFrame& frame, const Error& why) {
    const char* what = "pipewire::Consumer::refuse_import";
    if (!impl_) return Error::library(Errc::empty_object, std::string(what) + ": the consumer is empty (moved from)");
    if (!frame.dmabuf)
        return Error::library(Errc::invalid_argument, std::string(what) + ": buffer " + std::to_string(frame.buffer_id) +
                                                          " is shared memory, which has no modifier to refuse");
    const bool orphan = impl_->orphans.count(frame.buffer_id) != 0;
    auto it = impl_->entries.find(static_cast<pw_buffer*>(frame.handle));
    if (!orphan && (it == impl_->entries.end() || !it->second.out || it->second.id != frame.buffer_id))
        return Error::library(Errc::invalid_argument,
                              std::string(what) + ": buffer " + std::to_string(frame.buffer_id) + " is not acquired");
    const std::uint32_t code = frame.format.fourcc;
    const std::uint64_t mod = frame.format.modifier;
    if (auto r = release(frame); !r) return r;
    if (impl_->refused.contains(code, mod)) {  // a late frame of a pair already refused
        if (impl_->status.error) return *impl_->status.error;
        return {};
    }
    impl_->refused.add(code, mod);
    ++impl_->stats.imports_refused;
    impl_->last_import_refusal = fourcc_to_string(code) + " " + modifier_to_string(mod) + " (buffer " +
                                 std::to_string(frame.buffer_id) + "): " + why.message();
    if (impl_->status.error) return *impl_->status.error;
    impl_->offer_again();
    return {};
}

FormatSet Consumer::refused_formats() const { return impl_ ? impl_->refused : FormatSet{}; }

std::string Consumer::last_import_refusal() const { return impl_ ? impl_->last_import_refusal : std::string(); }

std::vector<BufferId> Consumer::take_removed_buffers() {
    return impl_ ? std::exchange(impl_->removed, {}) : std::vector<BufferId>{};
}

const ConsumerStats& Consumer::stats() const noexcept {
    static const ConsumerStats empty{};
    return impl_ ? impl_->stats : empty;
}

std::string Consumer::last_rejection() const { return impl_ ? impl_->last_rejection : std::string(); }

std::string Consumer::last_wrap_refusal() const { return impl_ ? impl_->last_wrap_refusal : std::string(); }

}  // namespace dmabridge::pipewire
