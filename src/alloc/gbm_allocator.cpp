// SPDX-License-Identifier: MIT
#include <dmabridge/alloc/gbm_allocator.hpp>
#include <dmabridge/kernel/devices.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <iterator>
#include <string>
#include <vector>

#include <fcntl.h>
#include <gbm.h>
#include <unistd.h>
#include <xf86drm.h>

#include "alloc/memory_allocator.hpp"
#include "base/sys.hpp"

namespace dmabridge {

struct GbmAllocator::State {
    UniqueFd fd;
    gbm_device* device = nullptr;
    std::string node;
    ~State() {
        if (device) gbm_device_destroy(device);
    }
};

namespace {

struct BoDeleter {
    void operator()(gbm_bo* bo) const { gbm_bo_destroy(bo); }
};
using BoPtr = std::unique_ptr<gbm_bo, BoDeleter>;

// Whether the device can make a small linear buffer: render nodes of drivers that only have
// dumb buffers (vgem) can open a GBM device but refuse every allocation.
bool can_allocate(gbm_device* device) {
    gbm_bo* bo = gbm_bo_create(device, 64, 64, GBM_FORMAT_XRGB8888, GBM_BO_USE_LINEAR);
    if (!bo) return false;
    gbm_bo_destroy(bo);
    return true;
}

// Exports a plane as a read-write dma-buf. gbm_bo_get_fd_for_plane exports read-only on some
// drivers (vgem's dumb buffers among them), and a read-only dma-buf cannot be mapped for
// writing; exporting the plane's GEM handle ourselves with DRM_RDWR can.
int export_plane(int drm_fd, gbm_bo* bo, int plane) {
    const gbm_bo_handle handle = gbm_bo_get_handle_for_plane(bo, plane);
    int fd = -1;
    if (handle.s32 > 0 && drmPrimeHandleToFD(drm_fd, handle.u32, DRM_CLOEXEC | DRM_RDWR, &fd) == 0) return fd;
    return gbm_bo_get_fd_for_plane(bo, plane);
}

}  // namespace

Result<std::unique_ptr<GbmAllocator::State>> GbmAllocator::open_node(const std::string& node) {
    auto state = std::make_unique<GbmAllocator::State>();
    state->node = node;
    state->fd.reset(::open(node.c_str(), O_RDWR | O_CLOEXEC));
    if (!state->fd) return detail::last_error("gbm: open " + node);
    // What is not a DRM node, or a DRM node GBM cannot allocate on, fails here with the reason,
    // not at the first allocation.
    if (auto ok = detail::check_device_node(state->fd.get(), node, "dri/", "a DRM device node", "gbm: open");
        !ok)
        return ok.error();
    drmVersionPtr version = drmGetVersion(state->fd.get());
    if (!version)
        return Error::library(Errc::invalid_argument, "gbm: open " + node + ": not a DRM device (DRM_IOCTL_VERSION: " +
                                                          std::strerror(errno) + ")");
    const std::string driver = version->name ? version->name : "";
    drmFreeVersion(version);
    state->device = gbm_create_device(state->fd.get());
    if (!state->device)
        return Error::library(Errc::unsupported, "gbm: gbm_create_device failed on " + node + " (" + driver + ")");
    if (!can_allocate(state->device))
        return Error::library(Errc::unsupported,
                              "gbm: open " + node + " (" + driver +
                                  "): GBM cannot allocate a 64x64 linear XRGB8888 buffer there (drivers with only "
                                  "dumb buffers, such as vgem, allocate on their primary node, not the render node)");
    return state;
}

GbmAllocator::GbmAllocator(std::unique_ptr<State> state) noexcept : state_(std::move(state)) {}
GbmAllocator::GbmAllocator(GbmAllocator&&) noexcept = default;
GbmAllocator& GbmAllocator::operator=(GbmAllocator&&) noexcept = default;
GbmAllocator::~GbmAllocator() = default;

Result<GbmAllocator> GbmAllocator::open(std::string_view node) {
    if (!node.empty()) {
        auto state = open_node(std::string(node));
        if (!state) return state.error();
        return GbmAllocator(std::move(*state));
    }
    auto devices = list_drm_devices();
    if (!devices) return devices.error().with_context("gbm: find a DRM device");
    std::string tried;
    for (const auto& d : *devices) {
        for (const std::string* path : {&d.render_node, &d.primary_node}) {
            if (path->empty()) continue;
            auto state = open_node(*path);
            if (state) {
                detail::log_message(LogLevel::info, "gbm: allocating on " + *path + " (" + d.driver + ")");
                return GbmAllocator(std::move(*state));
            }
            tried += (tried.empty() ? "" : "; ") + state.error().message();
        }
    }
    if (tried.empty()) return Error::library(Errc::not_found, "gbm: no DRM device on this machine");
    return Error::library(Errc::unsupported, "gbm: no DRM node can allocate buffers (" + tried + ")");
}

namespace {
Error moved_from(const std::string& what) {
    return Error::library(Errc::empty_object, "gbm: " + what + ": the allocator holds no device (moved from)");
}
const std::string no_node;
}  // namespace

std::string GbmAllocator::backend_name() const { return "gbm:" + node(); }
const std::string& GbmAllocator::node() const noexcept { return state_ ? state_->node : no_node; }
std::string GbmAllocator::gbm_backend() const {
    if (!state_) return {};
    const char* name = gbm_device_get_backend_name(state_->device);
    return name ? name : "";
}

Result<BufferDesc> GbmAllocator::allocate(const ImageRequest& request) {
    if (!state_) return moved_from(detail::describe_request(request));
    const std::string what = backend_name() + ": " + detail::describe_request(request);
    if (auto ok = detail::check_image_request(request, backend_name()); !ok) return ok.error();
    // The least any layout of the image takes (linear, unpadded): a request beyond the machine's
    // memory must fail here, not in the kernel (drivers allocate such sizes by waking the OOM
    // killer, or fail late with a bare errno).
    {
        auto least = linear_layout(request.fourcc, request.width, request.height, LinearLayoutOptions{1, 1});
        if (!least) return least.error().with_context(what);
        if (auto fits = detail::check_fits_memory(what, least->size, detail::Commit::device); !fits)
            return fits.error();
    }
    const auto& mods = request.modifiers;
    const bool linear_only = mods.empty() || (mods.size() == 1 && mods[0] == modifier::linear);

    auto listed = [&](std::uint64_t m) { return std::find(mods.begin(), mods.end(), m) != mods.end(); };
    std::string list;
    for (auto m : mods) list += (list.empty() ? "" : ", ") + modifier_to_string(m);
    if (list.empty()) list = "LINEAR";

    errno = 0;
    int err = 0;
    std::string why;
    BoPtr bo;
    bool known_linear = false;
    if (!linear_only) {
        // GBM refuses INVALID inside a list: it is asked for by allocating without one.
        std::vector<std::uint64_t> explicit_mods;
        std::copy_if(mods.begin(), mods.end(), std::back_inserter(explicit_mods),
                     [](std::uint64_t m) { return m != modifier::invalid; });
        if (!explicit_mods.empty())
            bo.reset(gbm_bo_create_with_modifiers2(state_->device, request.width, request.height, request.fourcc,
                                                   explicit_mods.data(), static_cast<unsigned>(explicit_mods.size()),
                                                   GBM_BO_USE_RENDERING));
        if (!bo && listed(modifier::invalid))
            bo.reset(gbm_bo_create(state_->device, request.width, request.height, request.fourcc, GBM_BO_USE_RENDERING));
        err = errno;
        // Drivers without modifier support ignore the list and answer INVALID ("implicit"):
        // such a buffer is only what the caller asked for if the caller accepts implicit.
        if (bo && !listed(gbm_bo_get_modifier(bo.get()))) {
            why = "GBM chose modifier " + modifier_to_string(gbm_bo_get_modifier(bo.get())) +
                  ", which is not in the list (the driver has no modifier support; add "
                  "modifier::invalid to accept an implicit layout)";
            bo.reset();
        }
    }
    // Linear is asked for with GBM_BO_USE_LINEAR: drivers without modifier support (dumb
    // buffers) can honour it, and it is the one case where an implicit modifier is known.
    if (!bo && (linear_only || listed(modifier::linear))) {
        errno = 0;
        bo.reset(gbm_bo_create(state_->device, request.width, request.height, request.fourcc, GBM_BO_USE_LINEAR));
        err = errno;
        known_linear = true;
    }
    if (!bo) {
        const std::string context = what + " with modifiers [" + list + "]";
        if (!why.empty()) return Error::library(Errc::unsupported, context + ": " + why);
        return Error::from_errno(err ? err : EINVAL, context);
    }

    BufferDesc desc;
    desc.width = request.width;
    desc.height = request.height;
    desc.fourcc = request.fourcc;
    desc.modifier = gbm_bo_get_modifier(bo.get());
    if (desc.modifier == modifier::invalid && known_linear) desc.modifier = modifier::linear;
    const std::string label = request.name.empty() ? std::string(detail::default_buffer_name) : request.name;
    const int planes = gbm_bo_get_plane_count(bo.get());
    if (planes <= 0 || planes > static_cast<int>(max_planes))
        return Error::library(Errc::unsupported, what + ": GBM reports " + std::to_string(planes) + " planes");
    for (int p = 0; p < planes; ++p) {
        int fd = export_plane(state_->fd.get(), bo.get(), p);
        if (fd < 0) return detail::last_error(what + ": export plane " + std::to_string(p));
        auto buf = DmaBuf::adopt(UniqueFd(fd));
        if (!buf) return buf.error().with_context(what + ": plane " + std::to_string(p));
        detail::name_buffer(*buf, label, what + ": plane " + std::to_string(p));
        desc.planes.push_back({std::move(*buf), gbm_bo_get_offset(bo.get(), p), gbm_bo_get_stride_for_plane(bo.get(), p)});
    }
    if (auto ok = desc.validate(); !ok) return ok.error().with_context(backend_name() + ": GBM's layout");
    return desc;
}

}  // namespace dmabridge
