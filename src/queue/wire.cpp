// SPDX-License-Identifier: MIT
#include "queue/wire.hpp"

#include <bit>
#include <cstring>
#include <string>
#include <type_traits>

namespace dmabridge::detail::wire {
namespace {

constexpr std::size_t hello_size = 8;
constexpr std::size_t announce_fixed_size = 32;
constexpr std::size_t announce_plane_size = 24;
constexpr std::size_t frame_size = 24;
constexpr std::size_t release_size = 8;
constexpr std::size_t point_size = 8;  // the u64 point a frame or release adds with flag_point
constexpr std::size_t release_timeline_size = 8;

// The wire is little-endian whatever the host: every field goes through here.
template <typename T>
T little_endian(T value) noexcept {
    static_assert(std::is_integral_v<T>, "wire fields are integers");
    if constexpr (std::endian::native == std::endian::big) {
        using U = std::make_unsigned_t<T>;
        const auto in = static_cast<U>(value);
        U swapped = 0;
        for (std::size_t i = 0; i < sizeof in; ++i) swapped = static_cast<U>((swapped << 8) | ((in >> (8 * i)) & 0xffu));
        return static_cast<T>(swapped);
    }
    return value;
}

class Writer {
public:
    explicit Writer(Encoded& out) noexcept : out_(out) {}
    template <typename T>
    void put(T value) noexcept {
        value = little_endian(value);
        std::memcpy(out_.bytes.data() + out_.size, &value, sizeof value);
        out_.size += sizeof value;
    }

private:
    Encoded& out_;
};

class Reader {
public:
    explicit Reader(std::span<const std::byte> bytes) noexcept : bytes_(bytes) {}
    // Callers check the total size first; a read past the end is a bug, answered with zero.
    template <typename T>
    T get() noexcept {
        T value{};
        if (pos_ + sizeof value <= bytes_.size()) std::memcpy(&value, bytes_.data() + pos_, sizeof value);
        pos_ += sizeof value;
        return little_endian(value);
    }

private:
    std::span<const std::byte> bytes_;
    std::size_t pos_ = 0;
};

Error refuse(const std::string& what) {
    return Error::library(Errc::invalid_argument, "queue message: " + what);
}

std::size_t payload_size(const Message& m) noexcept {
    if (std::holds_alternative<Hello>(m)) return hello_size;
    if (const auto* a = std::get_if<Announce>(&m)) return announce_fixed_size + announce_plane_size * a->plane_count;
    if (const auto* f = std::get_if<Frame>(&m)) return frame_size + ((f->flags & flag_point) ? point_size : 0);
    if (const auto* r = std::get_if<Release>(&m)) return release_size + ((r->flags & flag_point) ? point_size : 0);
    return release_timeline_size;
}

}  // namespace

std::size_t fd_count(const Message& m) noexcept {
    if (const auto* h = std::get_if<Hello>(&m)) return (h->flags & hello_flag_timeline) ? 1 : 0;
    if (std::holds_alternative<ReleaseTimeline>(m)) return 1;
    if (const auto* a = std::get_if<Announce>(&m)) return a->fd_count;
    if (const auto* f = std::get_if<Frame>(&m)) return (f->flags & flag_fence) ? 1 : 0;
    if (const auto* r = std::get_if<Release>(&m)) return (r->flags & flag_fence) ? 1 : 0;
    return 0;
}

const char* type_name(const Message& m) noexcept {
    switch (m.index()) {
    case 0: return "hello";
    case 1: return "announce";
    case 2: return "frame";
    case 3: return "release";
    default: return "release timeline";
    }
}

Encoded encode(const Message& m) noexcept {
    Encoded out;
    Writer w(out);
    w.put(magic);
    w.put(version);
    w.put(static_cast<std::uint16_t>(m.index() + 1));
    w.put(static_cast<std::uint32_t>(payload_size(m)));
    w.put(static_cast<std::uint32_t>(fd_count(m)));
    if (const auto* h = std::get_if<Hello>(&m)) {
        w.put(h->mode);
        w.put(h->flags);
    } else if (const auto* a = std::get_if<Announce>(&m)) {
        w.put(a->buffer);
        w.put(a->width);
        w.put(a->height);
        w.put(a->fourcc);
        w.put(a->modifier);
        w.put(a->plane_count);
        w.put(std::uint32_t{0});
        for (std::uint32_t i = 0; i < a->plane_count && i < max_planes; ++i) {
            w.put(a->planes[i].fd_index);
            w.put(std::uint32_t{0});
            w.put(a->planes[i].offset);
            w.put(a->planes[i].stride);
        }
    } else if (const auto* f = std::get_if<Frame>(&m)) {
        w.put(f->buffer);
        w.put(f->flags);
        w.put(f->sequence);
        w.put(f->timestamp_ns);
        if (f->flags & flag_point) w.put(f->point);
    } else if (const auto* r = std::get_if<Release>(&m)) {
        w.put(r->buffer);
        w.put(r->flags);
        if (r->flags & flag_point) w.put(r->point);
    } else {
        w.put(std::uint32_t{0});
        w.put(std::uint32_t{0});
    }
    return out;
}

Result<Message> parse_message(std::span<const std::byte> bytes, std::size_t fds_received) {
    if (bytes.size() < header_size)
        return refuse(std::to_string(bytes.size()) + " bytes, shorter than the " + std::to_string(header_size) +
                      "-byte header");
    Reader r(bytes);
    const auto got_magic = r.get<std::uint32_t>();
    if (got_magic != magic) return refuse("bad magic " + std::to_string(got_magic));
    const auto got_version = r.get<std::uint16_t>();
    if (got_version != version)
        return refuse("version " + std::to_string(got_version) + ", this side speaks " + std::to_string(version));
    const auto type = r.get<std::uint16_t>();
    const auto length = r.get<std::uint32_t>();
    const auto fds = r.get<std::uint32_t>();
    if (length != bytes.size() - header_size)
        return refuse("payload length " + std::to_string(length) + " but " + std::to_string(bytes.size() - header_size) +
                      " bytes follow the header");
    if (fds != fds_received)
        return refuse("header announces " + std::to_string(fds) + " fds but " + std::to_string(fds_received) +
                      " arrived");
    if (fds > max_fds) return refuse(std::to_string(fds) + " fds, more than " + std::to_string(max_fds));

    auto expect_length = [&](const char* name, std::size_t want) -> Status {
        if (length != want)
            return refuse(std::string(name) + " payload of " + std::to_string(length) + " bytes, expected " +
                          std::to_string(want));
        return {};
    };
    auto check_sync_flags = [&](const char* name, std::uint32_t flags) -> Status {
        if (flags & ~(flag_fence | flag_point)) return refuse(std::string(name) + ": unknown flags " + std::to_string(flags));
        if ((flags & flag_fence) && (flags & flag_point))
            return refuse(std::string(name) + ": both a fence fd and a point (flags " + std::to_string(flags) + ")");
        return {};
    };
    auto expect_fds = [&](const char* name, std::size_t want) -> Status {
        if (fds != want)
            return refuse(std::string(name) + " with " + std::to_string(fds) + " fds, expected " + std::to_string(want));
        return {};
    };

    switch (static_cast<Type>(type)) {
    case Type::hello: {
        if (auto s = expect_length("hello", hello_size); !s) return s.error();
        Hello h;
        h.mode = r.get<std::uint32_t>();
        h.flags = r.get<std::uint32_t>();
        if (h.flags & ~hello_flag_timeline) return refuse("hello: unknown flags " + std::to_string(h.flags));
        if (auto s = expect_fds("hello", h.flags & hello_flag_timeline); !s) return s.error();
        if (h.mode > 1) return refuse("hello: unknown mode " + std::to_string(h.mode));
        return Message{h};
    }
    case Type::announce: {
        if (length < announce_fixed_size)
            return refuse("announce payload of " + std::to_string(length) + " bytes, shorter than " +
                          std::to_string(announce_fixed_size));
        const std::size_t plane_bytes = length - announce_fixed_size;
        if (plane_bytes % announce_plane_size != 0 || plane_bytes / announce_plane_size == 0 ||
            plane_bytes / announce_plane_size > max_planes)
            return refuse("announce payload of " + std::to_string(length) + " bytes is not 32 + 24 x (1 to " +
                          std::to_string(max_planes) + " planes)");
        Announce a;
        a.buffer = r.get<std::uint32_t>();
        a.width = r.get<std::uint32_t>();
        a.height = r.get<std::uint32_t>();
        a.fourcc = r.get<std::uint32_t>();
        a.modifier = r.get<std::uint64_t>();
        a.plane_count = r.get<std::uint32_t>();
        if (r.get<std::uint32_t>() != 0) return refuse("announce: reserved field not zero");
        if (a.plane_count != plane_bytes / announce_plane_size)
            return refuse("announce: plane count " + std::to_string(a.plane_count) + " but the payload holds " +
                          std::to_string(plane_bytes / announce_plane_size) + " planes");
        if (fds == 0 || fds > a.plane_count)
            return refuse("announce of " + std::to_string(a.plane_count) + " planes with " + std::to_string(fds) +
                          " fds (1 to the plane count)");
        a.fd_count = fds;
        std::array<bool, max_fds> used{};
        for (std::uint32_t i = 0; i < a.plane_count; ++i) {
            AnnouncedPlane& p = a.planes[i];
            p.fd_index = r.get<std::uint32_t>();
            if (r.get<std::uint32_t>() != 0)
                return refuse("announce plane " + std::to_string(i) + ": reserved field not zero");
            p.offset = r.get<std::uint64_t>();
            p.stride = r.get<std::uint64_t>();
            if (p.fd_index >= fds)
                return refuse("announce plane " + std::to_string(i) + ": fd index " + std::to_string(p.fd_index) +
                              " of " + std::to_string(fds) + " fds");
            used[p.fd_index] = true;
        }
        for (std::uint32_t i = 0; i < fds; ++i)
            if (!used[i]) return refuse("announce: fd " + std::to_string(i) + " is used by no plane");
        return Message{a};
    }
    case Type::frame: {
        // The flags decide the length: read them (inside the fixed part) before checking it.
        if (length < frame_size) return refuse("frame payload of " + std::to_string(length) + " bytes, expected " + std::to_string(frame_size) + " or " + std::to_string(frame_size + point_size));
        Frame f;
        f.buffer = r.get<std::uint32_t>();
        f.flags = r.get<std::uint32_t>();
        f.sequence = r.get<std::uint64_t>();
        f.timestamp_ns = r.get<std::int64_t>();
        if (auto s = check_sync_flags("frame", f.flags); !s) return s.error();
        if (auto s = expect_length("frame", frame_size + ((f.flags & flag_point) ? point_size : 0)); !s) return s.error();
        if (auto s = expect_fds("frame", f.flags & flag_fence); !s) return s.error();
        if (f.flags & flag_point) {
            f.point = r.get<std::uint64_t>();
            if (f.point == 0) return refuse("frame: acquire point 0 (points start at 1)");
        }
        return Message{f};
    }
    case Type::release: {
        if (length < release_size) return refuse("release payload of " + std::to_string(length) + " bytes, expected " + std::to_string(release_size) + " or " + std::to_string(release_size + point_size));
        Release rel;
        rel.buffer = r.get<std::uint32_t>();
        rel.flags = r.get<std::uint32_t>();
        if (auto s = check_sync_flags("release", rel.flags); !s) return s.error();
        if (auto s = expect_length("release", release_size + ((rel.flags & flag_point) ? point_size : 0)); !s) return s.error();
        if (auto s = expect_fds("release", rel.flags & flag_fence); !s) return s.error();
        if (rel.flags & flag_point) {
            rel.point = r.get<std::uint64_t>();
            if (rel.point == 0) return refuse("release: release point 0 (points start at 1)");
        }
        return Message{rel};
    }
    case Type::release_timeline: {
        if (auto s = expect_length("release timeline", release_timeline_size); !s) return s.error();
        if (auto s = expect_fds("release timeline", 1); !s) return s.error();
        if (r.get<std::uint32_t>() != 0 || r.get<std::uint32_t>() != 0) return refuse("release timeline: reserved field not zero");
        return Message{ReleaseTimeline{}};
    }
    }
    return refuse("unknown type " + std::to_string(type));
}

}  // namespace dmabridge::detail::wire
