// SPDX-License-Identifier: MIT
// kms::Device: the device's resources through libdrm, and framebuffers whose GEM handles are
// reference counted per import file (see the header for why they must be).
#include <dmabridge/kms/device.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <utility>

#include <fcntl.h>
#include <unistd.h>
#include <drm_fourcc.h>
#include <xf86drm.h>
#include <xf86drmMode.h>

#include <dmabridge/format/fourcc.hpp>

#include "base/sys.hpp"
#include "kms/device_state.hpp"

namespace dmabridge::kms {

namespace {

std::string n(std::uint64_t v) { return std::to_string(v); }

Error empty(const std::string& what) { return Error::library(Errc::empty_object, what + ": the kms::Device is empty (moved from)"); }

std::string driver_name(int fd) {
    drmVersionPtr v = drmGetVersion(fd);
    if (!v) return {};
    std::string name = v->name ? v->name : "";
    drmFreeVersion(v);
    return name;
}

template <typename T, void (*Free)(T*)>
struct Owned {
    T* p;
    explicit Owned(T* ptr) : p(ptr) {}
    ~Owned() {
        if (p) Free(p);
    }
    Owned(const Owned&) = delete;
    Owned& operator=(const Owned&) = delete;
    T* operator->() const { return p; }
    explicit operator bool() const { return p != nullptr; }
};
using Resources = Owned<drmModeRes, drmModeFreeResources>;
using ConnectorRes = Owned<drmModeConnector, drmModeFreeConnector>;
using EncoderRes = Owned<drmModeEncoder, drmModeFreeEncoder>;
using CrtcRes = Owned<drmModeCrtc, drmModeFreeCrtc>;
using PlaneRes = Owned<drmModePlaneRes, drmModeFreePlaneResources>;
using PlaneInfo = Owned<drmModePlane, drmModeFreePlane>;
using Properties = Owned<drmModeObjectProperties, drmModeFreeObjectProperties>;
using Property = Owned<drmModePropertyRes, drmModeFreeProperty>;
using Blob = Owned<drmModePropertyBlobRes, drmModeFreePropertyBlob>;

// Sets the client caps the device needs; atomic is required.
Status set_caps(int fd, const std::string& who) {
    if (drmSetClientCap(fd, DRM_CLIENT_CAP_UNIVERSAL_PLANES, 1) != 0)
        return Error::library(Errc::unsupported, who + ": no universal planes (DRM_CLIENT_CAP_UNIVERSAL_PLANES: " +
                                                     std::strerror(errno) + ")");
    if (drmSetClientCap(fd, DRM_CLIENT_CAP_ATOMIC, 1) != 0)
        return Error::library(Errc::unsupported, who + ": the driver has no atomic modesetting (DRM_CLIENT_CAP_ATOMIC: " +
                                                     std::strerror(errno) + "); dmabridge::kms is atomic only");
    // Optional: only devices with writeback connectors accept it.
    (void)drmSetClientCap(fd, DRM_CLIENT_CAP_WRITEBACK_CONNECTORS, 1);
    return {};
}

// The timing fields Mode and drmModeModeInfo share by name, copied either way.
template <class From, class To>
void copy_timings(const From& m, To& out) {
    out.clock = m.clock;
    out.hdisplay = m.hdisplay;
    out.hsync_start = m.hsync_start;
    out.hsync_end = m.hsync_end;
    out.htotal = m.htotal;
    out.hskew = m.hskew;
    out.vdisplay = m.vdisplay;
    out.vsync_start = m.vsync_start;
    out.vsync_end = m.vsync_end;
    out.vtotal = m.vtotal;
    out.vscan = m.vscan;
    out.vrefresh = m.vrefresh;
    out.flags = m.flags;
    out.type = m.type;
}
}  // namespace

Mode mode_of(const drmModeModeInfo& m) {
    Mode out;
    copy_timings(m, out);
    out.name.assign(m.name, strnlen(m.name, sizeof m.name));
    out.preferred = (m.type & DRM_MODE_TYPE_PREFERRED) != 0;
    return out;
}

drmModeModeInfo modeinfo_of(const Mode& m) {
    drmModeModeInfo out{};
    copy_timings(m, out);
    // The kernel's name field is a fixed array; the name is cut to fit, always terminated.
    const std::size_t len = std::min(m.name.size(), sizeof out.name - 1);
    std::memcpy(out.name, m.name.data(), len);
    return out;
}

std::uint32_t Device::State::property_id(std::uint32_t object, std::uint32_t type, const std::string& name) {
    std::lock_guard lock(property_mutex);
    auto found = property_ids.find(object);
    if (found == property_ids.end()) {
        std::map<std::string, std::uint32_t> ids;
        Properties props(drmModeObjectGetProperties(fd.get(), object, type));
        // An object that does not exist (or of another type) has no properties: not cached, so
        // that the next commit asks again and its error names the object.
        if (!props) return 0;
        for (std::uint32_t i = 0; i < props->count_props; ++i) {
            Property prop(drmModeGetProperty(fd.get(), props->props[i]));
            if (prop) ids.emplace(prop->name, prop->prop_id);
        }
        found = property_ids.emplace(object, std::move(ids)).first;
    }
    auto id = found->second.find(name);
    return id == found->second.end() ? 0 : id->second;
}

void Device::State::show_locked(std::uint64_t commit, std::vector<PlaneAssignment>& assignments,
                                std::vector<std::shared_ptr<Framebuffer::Core>>& replaced) {
    for (PlaneAssignment& a : assignments) {
        auto it = shown.find(a.plane);
        if (it != shown.end()) {
            // A blocking commit made after this flip already replaced the plane's state.
            if (it->second.first > commit) continue;
            replaced.push_back(std::move(it->second.second.framebuffer));
            it->second = {commit, std::move(a)};
        } else {
            shown.emplace(a.plane, std::make_pair(commit, std::move(a)));
        }
    }
    assignments.clear();
}

std::uint32_t Mode::refresh_mhz() const noexcept {
    if (htotal == 0 || vtotal == 0) return vrefresh * 1000;
    std::uint64_t mhz = std::uint64_t{clock} * 1000000 / (std::uint64_t{htotal} * vtotal);
    if (flags & DRM_MODE_FLAG_INTERLACE) mhz *= 2;
    if (flags & DRM_MODE_FLAG_DBLSCAN) mhz /= 2;
    if (vscan > 1) mhz /= vscan;
    return static_cast<std::uint32_t>(mhz);
}

const char* to_string(PlaneType type) noexcept {
    switch (type) {
    case PlaneType::overlay: return "overlay";
    case PlaneType::primary: return "primary";
    case PlaneType::cursor: return "cursor";
    }
    return "unknown";
}

Status Device::State::read_resources() {
    const std::string who = "kms " + path + " (" + driver + ")";
    Resources res(drmModeGetResources(fd.get()));
    if (!res) return Error::library(Errc::unsupported, who + ": no modesetting resources (" + std::strerror(errno) + ")");
    min_width = res->min_width;
    max_width = res->max_width;
    min_height = res->min_height;
    max_height = res->max_height;
    std::vector<Crtc> new_crtcs;
    for (int i = 0; i < res->count_crtcs; ++i) {
        CrtcRes c(drmModeGetCrtc(fd.get(), res->crtcs[i]));
        if (!c) return detail::last_error(who + ": drmModeGetCrtc " + n(res->crtcs[i]));
        new_crtcs.push_back({c->crtc_id, static_cast<std::uint32_t>(i), c->mode_valid != 0});
    }
    std::vector<Connector> new_connectors;
    for (int i = 0; i < res->count_connectors; ++i) {
        ConnectorRes c(drmModeGetConnector(fd.get(), res->connectors[i]));
        if (!c) return detail::last_error(who + ": drmModeGetConnector " + n(res->connectors[i]));
        Connector out;
        out.id = c->connector_id;
        const char* type = drmModeGetConnectorTypeName(c->connector_type);
        out.name = std::string(type ? type : "Unknown") + "-" + n(c->connector_type_id);
        out.connected = c->connection == DRM_MODE_CONNECTED;
        out.writeback = c->connector_type == DRM_MODE_CONNECTOR_WRITEBACK;
        for (int m = 0; m < c->count_modes; ++m) out.modes.push_back(mode_of(c->modes[m]));
        for (int e = 0; e < c->count_encoders; ++e) {
            EncoderRes enc(drmModeGetEncoder(fd.get(), c->encoders[e]));
            if (enc) out.possible_crtcs |= enc->possible_crtcs;
        }
        new_connectors.push_back(std::move(out));
    }
    std::vector<Plane> new_planes;
    PlaneRes pres(drmModeGetPlaneResources(fd.get()));
    if (!pres) return detail::last_error(who + ": drmModeGetPlaneResources");
    for (std::uint32_t i = 0; i < pres->count_planes; ++i) {
        PlaneInfo p(drmModeGetPlane(fd.get(), pres->planes[i]));
        if (!p) return detail::last_error(who + ": drmModeGetPlane " + n(pres->planes[i]));
        Plane out;
        out.id = p->plane_id;
        out.possible_crtcs = p->possible_crtcs;
        bool have_blob = false;
        Properties props(drmModeObjectGetProperties(fd.get(), p->plane_id, DRM_MODE_OBJECT_PLANE));
        if (!props) return detail::last_error(who + ": properties of plane " + n(p->plane_id));
        for (std::uint32_t k = 0; k < props->count_props; ++k) {
            Property prop(drmModeGetProperty(fd.get(), props->props[k]));
            if (!prop) continue;
            const std::string name = prop->name;
            const std::uint64_t value = props->prop_values[k];
            if (name == "type") {
                out.type = value == DRM_PLANE_TYPE_PRIMARY ? PlaneType::primary
                           : value == DRM_PLANE_TYPE_CURSOR ? PlaneType::cursor
                                                            : PlaneType::overlay;
            } else if (name == "zpos") {
                out.zpos = value;
            } else if (name == "rotation") {
                out.rotation = true;
            } else if (name == "SCALING_FILTER") {
                out.scaling = true;
            } else if (name == "IN_FORMATS" && value != 0) {
                Blob blob(drmModeGetPropertyBlob(fd.get(), static_cast<std::uint32_t>(value)));
                if (!blob) continue;
                drmModeFormatModifierIterator iter{};
                while (drmModeFormatModifierBlobIterNext(blob.p, &iter)) out.formats.add(iter.fmt, iter.mod);
                have_blob = true;
            }
        }
        if (!have_blob)
            for (std::uint32_t f = 0; f < p->count_formats; ++f) out.formats.add(p->formats[f], modifier::linear);
        new_planes.push_back(std::move(out));
    }
    {
        std::lock_guard lock(property_mutex);
        property_ids.clear();
    }
    std::lock_guard lock(mutex);
    crtcs = std::move(new_crtcs);
    connectors = std::move(new_connectors);
    planes = std::move(new_planes);
    return {};
}

void Device::State::release_handles(const std::vector<std::uint32_t>& handles) noexcept {
    std::lock_guard lock(mutex);
    for (std::uint32_t h : handles) {
        auto it = handle_users.find(h);
        if (it == handle_users.end()) continue;  // never counted: nothing of ours to close
        if (--it->second > 0) continue;
        handle_users.erase(it);
        // The last framebuffer that used it is gone. Closing fails only for a handle the kernel
        // does not know, which cannot happen on a file nobody else uses.
        (void)drmCloseBufferHandle(import_fd.get(), h);
    }
}

void Device::State::remove_framebuffer(std::uint32_t id) noexcept {
    // CLOSEFB (Linux 6.8) leaves a plane that shows the framebuffer on; RMFB turns it off.
    if (closefb.load() != 0) {
        if (drmModeCloseFB(import_fd.get(), id) == 0) {
            closefb.store(1);
            return;
        }
        if (errno != EINVAL && errno != ENOTTY && errno != EOPNOTSUPP) {
            detail::log_message(LogLevel::warning, "kms: CLOSEFB of framebuffer " + n(id) + ": " + std::strerror(errno));
            return;
        }
        closefb.store(0);
    }
    if (drmModeRmFB(import_fd.get(), id) != 0)
        detail::log_message(LogLevel::warning, "kms: RMFB of framebuffer " + n(id) + ": " + std::strerror(errno));
}

namespace {

Result<Device::State*> fill(Device::State& st, const std::string& who) {
    st.driver = driver_name(st.fd.get());
    const std::string named = who + " (" + (st.driver.empty() ? "unknown driver" : st.driver) + ")";
    // Render-only drivers (vgem, most GPUs' render nodes) answer every KMS call with EOPNOTSUPP.
    if (drmModeRes* res = drmModeGetResources(st.fd.get()))
        drmModeFreeResources(res);
    else
        return Error::library(Errc::unsupported, named + ": no modesetting (no KMS resources: " +
                                                     std::strerror(errno) + "); a render-only driver?");
    if (auto ok = set_caps(st.fd.get(), named); !ok) return ok.error();
    // The device opened again for imports: handles on it are the library's alone.
    char* node = drmGetDeviceNameFromFd2(st.fd.get());
    if (!node) return Error::library(Errc::unsupported, who + ": cannot find the device node of the fd");
    st.path = node;
    free(node);
    st.import_fd = UniqueFd(::open(st.path.c_str(), O_RDWR | O_CLOEXEC));
    if (!st.import_fd) return detail::last_error(who + ": open " + st.path + " for imports");
    // Opening a primary node that nobody is master of makes the opener master (after a VT
    // switch, or next to an attached fd that dropped it): the import file must never keep it,
    // or the compositor's SET_MASTER would fail for as long as the device lives.
    if (drmIsMaster(st.import_fd.get())) (void)drmDropMaster(st.import_fd.get());
    st.owner = static_cast<int>(::getpid());
    if (auto ok = st.read_resources(); !ok) return ok.error();
    if (st.crtcs.empty()) return Error::library(Errc::unsupported, who + " (" + st.driver + "): no CRTCs");
    return &st;
}

}  // namespace

Result<Device> Device::open(const std::string& path) {
    if (!path.empty()) {
        auto st = std::make_shared<State>();
        st->fd = UniqueFd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
        if (!st->fd) return detail::last_error("kms: open " + path);
        if (auto ok = fill(*st, "kms " + path); !ok) return ok.error();
        return Device(std::move(st));
    }
    drmDevicePtr devices[64];
    const int count = drmGetDevices2(0, devices, 64);
    if (count < 0) return Error::from_errno(-count, "kms: drmGetDevices2");
    std::string tried;
    std::shared_ptr<State> found;
    for (int i = 0; i < count && !found; ++i) {
        if (!(devices[i]->available_nodes & (1 << DRM_NODE_PRIMARY))) continue;
        const std::string node = devices[i]->nodes[DRM_NODE_PRIMARY];
        auto st = std::make_shared<State>();
        st->fd = UniqueFd(::open(node.c_str(), O_RDWR | O_CLOEXEC));
        if (!st->fd) {
            tried += (tried.empty() ? "" : "; ") + node + ": " + std::strerror(errno);
            continue;
        }
        if (auto ok = fill(*st, "kms " + node); !ok) {
            tried += (tried.empty() ? "" : "; ") + ok.error().message();
            continue;
        }
        found = std::move(st);
    }
    drmFreeDevices(devices, count);
    if (!found)
        return Error::library(Errc::not_found, "kms: no DRM device with atomic modesetting: " +
                                                   (tried.empty() ? std::string("no primary node") : tried));
    return Device(std::move(found));
}

Result<Device> Device::attach(int fd) {
    if (fd < 0) return Error::library(Errc::empty_object, "kms attach: no fd (-1)");
    auto st = std::make_shared<State>();
    auto dup = UniqueFd::dup_of(fd);
    if (!dup) return dup.error().with_context("kms attach");
    st->fd = std::move(*dup);
    if (auto ok = fill(*st, "kms attach"); !ok) return ok.error();
    return Device(std::move(st));
}

namespace {

// The device's record of the display holds Cores that hold the state: the last Device lets go
// of it, outside the lock (a Core's destructor removes its framebuffer and takes the state's
// lock), or the state and its DRM files would keep each other alive.
void release_display(const std::shared_ptr<Device::State>& state) noexcept {
    if (!state) return;
    std::map<std::uint32_t, std::pair<std::uint64_t, PlaneAssignment>> shown;
    std::map<std::uint64_t, PendingFlip> pending;
    {
        std::lock_guard lock(state->display_mutex);
        shown.swap(state->shown);
        pending.swap(state->pending);
    }
}

}  // namespace

Device::Device(Device&&) noexcept = default;
Device& Device::operator=(Device&& other) noexcept {
    if (this != &other) {
        release_display(state_);
        state_ = std::move(other.state_);
    }
    return *this;
}
Device::~Device() { release_display(state_); }

int Device::fd() const noexcept { return state_ ? state_->fd.get() : -1; }

const std::string& Device::driver() const noexcept {
    static const std::string none;
    return state_ ? state_->driver : none;
}
const std::string& Device::path() const noexcept {
    static const std::string none;
    return state_ ? state_->path : none;
}
const std::vector<Connector>& Device::connectors() const noexcept {
    static const std::vector<Connector> none;
    return state_ ? state_->connectors : none;
}
const std::vector<Crtc>& Device::crtcs() const noexcept {
    static const std::vector<Crtc> none;
    return state_ ? state_->crtcs : none;
}
const std::vector<Plane>& Device::planes() const noexcept {
    static const std::vector<Plane> none;
    return state_ ? state_->planes : none;
}

Status Device::refresh() {
    if (!state_) return empty("kms refresh");
    return state_->read_resources();
}

std::size_t Device::gem_handles() const {
    if (!state_) return 0;
    std::lock_guard lock(state_->mutex);
    return state_->handle_users.size();
}

Result<Framebuffer> Device::add_framebuffer(const BufferDesc& desc) const {
    if (!state_) return empty("kms framebuffer of " + desc.describe());
    return make_framebuffer(state_, desc);
}

Result<Framebuffer> Device::make_framebuffer(const std::shared_ptr<State>& state, const BufferDesc& desc) {
    const std::string what = "kms framebuffer of " + desc.describe();
    State& st = *state;
    // Everything is checked before the first ioctl that takes the description's fds.
    if (auto ok = desc.validate(); !ok) return ok.error().with_context("kms framebuffer");
    if (desc.width < st.min_width || desc.width > st.max_width || desc.height < st.min_height ||
        desc.height > st.max_height)
        return Error::library(Errc::limit_exceeded, what + ": " + n(desc.width) + "x" + n(desc.height) +
                                                        " is outside the device's framebuffer sizes " + n(st.min_width) +
                                                        "x" + n(st.min_height) + " to " + n(st.max_width) + "x" +
                                                        n(st.max_height));
    if (desc.planes.size() > 4)
        return Error::library(Errc::invalid_argument, what + ": " + n(desc.planes.size()) + " planes; KMS takes 4");
    std::uint32_t pitches[4] = {}, offsets[4] = {}, handles[4] = {};
    std::uint64_t modifiers[4] = {};
    for (std::size_t p = 0; p < desc.planes.size(); ++p) {
        const auto& plane = desc.planes[p];
        if (plane.offset > UINT32_MAX || plane.stride > UINT32_MAX)
            return Error::library(Errc::limit_exceeded, what + ": plane " + n(p) + ": offset " + n(plane.offset) +
                                                            " or stride " + n(plane.stride) + " does not fit KMS's 32 bits");
        pitches[p] = static_cast<std::uint32_t>(plane.stride);
        offsets[p] = static_cast<std::uint32_t>(plane.offset);
        modifiers[p] = desc.modifier;
    }
    // One import per distinct dma-buf; each counts as one user of its handle.
    const auto bufs = desc.distinct_buffers();
    const auto plane_buf = desc.plane_buffer_indices();
    std::vector<std::uint32_t> imported;
    imported.reserve(bufs.size());
    {
        std::lock_guard lock(st.mutex);
        for (const DmaBuf* b : bufs) {
            std::uint32_t h = 0;
            if (drmPrimeFDToHandle(st.import_fd.get(), b->fd(), &h) != 0) {
                const int err = errno;
                for (std::uint32_t done : imported)
                    if (auto it = st.handle_users.find(done); it != st.handle_users.end() && --it->second == 0) {
                        st.handle_users.erase(it);
                        (void)drmCloseBufferHandle(st.import_fd.get(), done);
                    }
                return Error::from_errno(err, what + ": PRIME import of dma-buf fd " + n(static_cast<std::uint64_t>(b->fd())));
            }
            ++st.handle_users[h];
            imported.push_back(h);
        }
    }
    for (std::size_t p = 0; p < desc.planes.size(); ++p) handles[p] = imported[plane_buf[p]];
    auto core = std::make_shared<Framebuffer::Core>();
    core->device = state;
    core->handles = imported;  // released with the core, whatever happens below
    const bool explicit_modifier = desc.modifier != DRM_FORMAT_MOD_INVALID;
    std::uint32_t id = 0;
    if (drmModeAddFB2WithModifiers(st.import_fd.get(), desc.width, desc.height, desc.fourcc, handles, pitches, offsets,
                                   explicit_modifier ? modifiers : nullptr, &id,
                                   explicit_modifier ? DRM_MODE_FB_MODIFIERS : 0) != 0) {
        const int err = errno;
        return Error::from_errno(err, what + ": DRM_IOCTL_MODE_ADDFB2 (" + fourcc_to_string(desc.fourcc) + ", modifier " +
                                          modifier_to_string(desc.modifier) + ")");
    }
    core->id = id;
    Framebuffer fb;
    fb.core_ = std::move(core);
    fb.width_ = desc.width;
    fb.height_ = desc.height;
    fb.fourcc_ = desc.fourcc;
    fb.modifier_ = desc.modifier;
    return fb;
}

std::uint32_t Framebuffer::id() const noexcept { return core_ ? core_->id : 0; }

}  // namespace dmabridge::kms
