// SPDX-License-Identifier: MIT
#include "report.hpp"

#include <algorithm>
#include <filesystem>

#include <cerrno>
#include <cstring>

#include <fcntl.h>
#include <sys/utsname.h>
#include <xf86drm.h>
#include <xf86drmMode.h>

#include <dmabridge/dmabridge.hpp>
#include <dmabridge/egl/context.hpp>
#include <dmabridge/vulkan/context.hpp>

namespace dmabridge::info {
namespace {

bool wanted(const Filters& f, const std::string& a, const std::string& b = {}) {
    return f.device.empty() || a.find(f.device) != std::string::npos || b.find(f.device) != std::string::npos;
}

FormatSet filtered(const FormatSet& set, const Filters& f) {
    if (!f.fourcc) return set;
    FormatSet out;
    for (auto m : set.modifiers(*f.fourcc)) out.add(*f.fourcc, m);
    return out;
}

// Every fourcc of dmabridge's format table, as the candidates to probe allocators with.
std::vector<std::uint32_t> table_fourccs() {
    std::vector<std::uint32_t> out;
    for (std::uint32_t code : {fourcc::XRGB8888, fourcc::ARGB8888, fourcc::XBGR8888, fourcc::ABGR8888,
                               fourcc::XRGB2101010, fourcc::ARGB2101010, fourcc::XBGR2101010, fourcc::ABGR2101010,
                               fourcc::RGB888, fourcc::BGR888, fourcc::RGB565, fourcc::R8, fourcc::R16, fourcc::GR88,
                               fourcc::NV12, fourcc::NV21, fourcc::NV16, fourcc::P010, fourcc::YUYV, fourcc::UYVY,
                               fourcc::YUV420, fourcc::YVU420})
        out.push_back(code);
    return out;
}

KernelInfo kernel_info() {
    KernelInfo k;
    utsname u{};
    if (::uname(&u) == 0) k.release = u.release;
    k.udmabuf = udmabuf_available();
    k.heaps = list_dma_heaps();
    // Probed on a real buffer, not guessed from the version: from udmabuf, a dma-heap, or GBM on
    // a DRM device (the only exporter of kernels older than udmabuf and dma-heaps).
    std::optional<DmaBuf> probe;
    if (auto u_alloc = UdmabufAllocator::open()) {
        if (auto b = u_alloc->allocate_bytes(4096, "probe")) probe = std::move(*b);
    }
    if (!probe) {
        if (auto h_alloc = DmaHeapAllocator::open())
            if (auto b = h_alloc->allocate_bytes(4096, "probe")) probe = std::move(*b);
    }
    if (!probe) {
        if (auto gbm = GbmAllocator::open()) {
            ImageRequest r;
            r.width = 64;
            r.height = 64;
            r.fourcc = fourcc::XRGB8888;
            r.name = "probe";
            if (auto desc = gbm->allocate(r)) probe = std::move(desc->planes[0].buffer);
        }
    }
    if (!probe) {
        k.sync_file = "unknown (no udmabuf, dma-heap or GBM device to probe with)";
        return k;
    }
    auto exported = probe->export_sync_file(Access::read);
    if (!exported) {
        k.sync_file = exported.error().is(Errc::unsupported)
                          ? "not supported by this kernel (SyncBridge falls back to cpu_wait: the CPU waits for fences)"
                          : exported.error().message();
        return k;
    }
    auto imported = probe->import_sync_file(*exported, Access::write);
    k.sync_file = imported ? "supported" : imported.error().message();
    return k;
}

std::string version_string(std::uint32_t v) {
    return std::to_string(VK_API_VERSION_MAJOR(v)) + "." + std::to_string(VK_API_VERSION_MINOR(v)) + "." +
           std::to_string(VK_API_VERSION_PATCH(v));
}

std::vector<VulkanInfo> vulkan_info(const Filters& f) {
    std::vector<VulkanInfo> out;
    auto devices = vulkan::list_physical_devices();
    if (!devices) {
        VulkanInfo v;
        v.error = devices.error().message();
        out.push_back(v);
        return out;
    }
    using vulkan::Capability;
    const std::pair<Capability, const char*> names[] = {
        {Capability::import_memory, "import_memory"}, {Capability::export_memory, "export_memory"},
        {Capability::modifiers, "modifiers"},         {Capability::sync_fd, "sync_fd"},
        {Capability::foreign_queue, "foreign_queue"}, {Capability::drm_nodes, "drm_nodes"}};
    for (const auto& d : *devices) {
        if (!wanted(f, d.name, d.driver)) continue;
        VulkanInfo v;
        v.name = d.name;
        v.driver = d.driver;
        v.driver_info = d.driver_info;
        v.api_version = version_string(d.api_version);
        for (const auto& [cap, name] : names)
            if (any(d.offered & cap)) v.capabilities.emplace_back(name);
        vulkan::ContextOptions options;
        options.device_name = d.name;
        options.required = Capability::modifiers;
        options.optional = Capability::all;
        auto ctx = vulkan::Context::create(options);
        if (!ctx) {
            v.error = ctx.error().message();
        } else {
            vulkan::ImageOptions sampled;
            sampled.usage = VK_IMAGE_USAGE_SAMPLED_BIT;
            if (ctx->device().has(Capability::import_memory))
                v.importable = filtered(ctx->device().importable_formats(sampled), f);
            if (ctx->device().has(Capability::export_memory))
                v.exportable = filtered(ctx->device().exportable_formats(), f);
            vulkan::ImageOptions storage, attachment;
            storage.usage = VK_IMAGE_USAGE_STORAGE_BIT;
            attachment.usage = VK_IMAGE_USAGE_COLOR_ATTACHMENT_BIT;
            if (ctx->device().has(Capability::import_memory)) {
                v.storage = filtered(ctx->device().importable_formats(storage), f);
                v.color_attachment = filtered(ctx->device().importable_formats(attachment), f);
            }
            if (auto nodes = ctx->device().drm_nodes()) {
                auto id = [](std::int64_t major, std::int64_t minor) {
                    return std::to_string(major) + ":" + std::to_string(minor);
                };
                if (nodes->has_primary) v.drm_nodes = "primary " + id(nodes->primary_major, nodes->primary_minor);
                if (nodes->has_render)
                    v.drm_nodes += (v.drm_nodes.empty() ? "" : ", ") + std::string("render ") +
                                   id(nodes->render_major, nodes->render_minor);
            }
        }
        out.push_back(std::move(v));
    }
    return out;
}

// The formats each KMS plane of the primary node scans out (drmModeGetPlane; LINEAR is what
// every plane takes, modifiers beyond it would need the IN_FORMATS blob).
// The KMS planes as the library sees them (kms::Device: IN_FORMATS with modifiers, the plain list
// with LINEAR otherwise), so that the tool and the library never disagree.
void plane_formats(DrmInfo& d, const Filters& f) {
    if (d.primary_node.empty()) return;
    auto device = kms::Device::open(d.primary_node);
    if (!device) {
        d.planes_note = device.error().message();
        return;
    }
    for (const auto& plane : device->planes()) {
        d.plane_formats.push_back(filtered(plane.formats, f));
        d.plane_types.push_back(std::string(kms::to_string(plane.type)) + " " + std::to_string(plane.id));
    }
    for (const auto& c : device->connectors())
        d.connectors.push_back(c.name + (c.writeback ? " (writeback)" : c.connected ? " (connected)" : " (disconnected)"));
    if (d.plane_formats.empty()) d.planes_note = "no KMS planes";
}

std::vector<DrmInfo> drm_info(const Filters& f) {
    std::vector<DrmInfo> out;
    auto devices = list_drm_devices();
    if (!devices) {
        DrmInfo d;
        d.error = devices.error().message();
        out.push_back(d);
        return out;
    }
    for (const auto& dev : *devices) {
        if (!wanted(f, dev.primary_node + " " + dev.render_node, dev.driver)) continue;
        DrmInfo d;
        d.primary_node = dev.primary_node;
        d.render_node = dev.render_node;
        d.driver = dev.driver;
        d.syncobj = dev.syncobj;
        d.syncobj_timeline = dev.syncobj_timeline;
        d.syncobj_eventfd = dev.syncobj_eventfd;
        // GBM's own choice of node (render first, then primary), on this device only.
        std::string tried;
        for (const std::string* node : {&dev.render_node, &dev.primary_node}) {
            if (node->empty()) continue;
            auto gbm = GbmAllocator::open(*node);
            if (!gbm) {
                tried += (tried.empty() ? "" : "; ") + gbm.error().message();
                continue;
            }
            for (std::uint32_t code : table_fourccs()) {
                ImageRequest r;
                r.width = 64;
                r.height = 64;
                r.fourcc = code;
                r.name = "dmabridge-info";
                if (auto desc = gbm->allocate(r)) d.gbm_formats.add(code, desc->modifier);
            }
            if (!d.gbm_formats.empty()) {
                d.gbm_node = *node;
                break;
            }
            tried += (tried.empty() ? "" : "; ") + *node + ": GBM allocates nothing";
        }
        d.gbm_formats = filtered(d.gbm_formats, f);
        plane_formats(d, f);
        if (d.gbm_node.empty()) d.error = tried;
        out.push_back(std::move(d));
    }
    return out;
}

std::vector<V4l2FormatInfo> v4l2_formats(const v4l2::Device& dev, v4l2::Direction dir, const Filters& f,
                                         std::string& error) {
    std::vector<V4l2FormatInfo> out;
    auto formats = dev.formats(dir);
    if (!formats) {
        error = formats.error().message();
        return out;
    }
    for (std::uint32_t code : *formats) {
        V4l2FormatInfo fi;
        fi.v4l2 = code;
        fi.drm = v4l2::drm_fourcc_for(code);
        if (f.fourcc && fi.drm != *f.fourcc) continue;
        if (auto sizes = dev.frame_sizes(code)) fi.sizes = *sizes;
        out.push_back(std::move(fi));
    }
    return out;
}

std::vector<V4l2Info> v4l2_info(const Filters& f) {
    std::vector<std::string> nodes;
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator("/dev", ec))
        if (entry.path().filename().string().rfind("video", 0) == 0) nodes.push_back(entry.path().string());
    std::sort(nodes.begin(), nodes.end(), [](const std::string& a, const std::string& b) {
        return a.size() != b.size() ? a.size() < b.size() : a < b;
    });
    std::vector<V4l2Info> out;
    for (const auto& node : nodes) {
        V4l2Info v;
        v.path = node;
        auto dev = v4l2::Device::open(node);
        if (!dev) {
            if (!wanted(f, node)) continue;
            v.error = dev.error().message();  // reported; the others are still listed
            out.push_back(std::move(v));
            continue;
        }
        v.driver = dev->capabilities().driver;
        v.card = dev->capabilities().card;
        if (!wanted(f, node + " " + v.card, v.driver)) continue;
        v.capture = dev->capabilities().capture && dev->capabilities().streaming;
        v.output = dev->capabilities().output && dev->capabilities().streaming;
        if (v.capture) {
            v.capture_formats = v4l2_formats(*dev, v4l2::Direction::capture, f, v.error);
            if (auto m = dev->memory_support(v4l2::Direction::capture)) v.capture_memory = *m;
            else v.error = m.error().message();
        }
        if (v.output) {
            v.output_formats = v4l2_formats(*dev, v4l2::Direction::output, f, v.error);
            if (auto m = dev->memory_support(v4l2::Direction::output)) v.output_memory = *m;
            else v.error = m.error().message();
        }
        out.push_back(std::move(v));
    }
    return out;
}

// The EGL devices and what their displays import (no context is made: nothing changes the
// caller's current EGL binding).
std::vector<EglInfo> egl_info(const Filters& f) {
    std::vector<EglInfo> out;
    auto devices = egl::list_devices();
    if (!devices) {
        EglInfo e;
        e.error = devices.error().message();
        out.push_back(std::move(e));
        return out;
    }
    for (const auto& d : *devices) {
        EglInfo e;
        e.index = d.index;
        e.software = d.software;
        e.drm_node = d.drm_node;
        const std::string name = "egl:device " + std::to_string(d.index) + (d.software ? " (software)" : "") +
                                 (d.drm_node.empty() ? "" : " " + d.drm_node);
        if (!f.device.empty() && name.find(f.device) == std::string::npos) continue;
        if (auto p = egl::probe_device(d.index)) {
            e.vendor = p->vendor;
            e.version = p->version;
            e.extensions = p->extensions;
            e.importable = filtered(p->formats.importable, f);
            e.external_only = filtered(p->formats.external_only, f);
        } else {
            e.error = p.error().message();
        }
        out.push_back(std::move(e));
    }
    return out;
}

FormatSet linear_set(const std::vector<V4l2FormatInfo>& formats) {
    FormatSet s;
    for (const auto& fi : formats)
        if (fi.drm) s.add(fi.drm, modifier::linear);  // V4L2 buffers are linear
    return s;
}

}  // namespace

Report gather(const Filters& f) {
    Report r;
    r.kernel = kernel_info();
    r.vulkan = vulkan_info(f);
    r.drm = drm_info(f);
    r.v4l2 = v4l2_info(f);
    r.egl = egl_info(f);

    FormatSet plain;  // udmabuf and dma-heaps make LINEAR buffers of any layout dmabridge knows
    for (std::uint32_t code : table_fourccs()) plain.add(code, modifier::linear);
    plain = filtered(plain, f);
    if (r.kernel.udmabuf) r.exporters.push_back({"udmabuf", plain});
    for (const auto& h : r.kernel.heaps) r.exporters.push_back({"dma-heap:" + h, plain});
    for (const auto& v : r.v4l2) {
        if (v.capture && v.capture_memory.exports) r.exporters.push_back({"v4l2:" + v.path, linear_set(v.capture_formats)});
        if (v.output && v.output_memory.dmabuf) r.importers.push_back({"v4l2:" + v.path, linear_set(v.output_formats)});
    }
    for (const auto& d : r.drm)
        if (!d.gbm_node.empty()) r.exporters.push_back({"gbm:" + d.gbm_node, d.gbm_formats});
    for (const auto& v : r.vulkan) {
        if (!v.error.empty()) continue;
        if (!v.exportable.empty()) r.exporters.push_back({"vulkan:" + v.name, v.exportable});
        if (!v.importable.empty()) r.importers.push_back({"vulkan:" + v.name, v.importable});
    }
    for (const auto& e : r.egl) {
        if (!e.error.empty() || e.importable.empty()) continue;
        r.importers.push_back({"egl:device " + std::to_string(e.index) + (e.software ? " (software)" : "") +
                                   (e.drm_node.empty() ? "" : " " + e.drm_node),
                               e.importable});
    }
    for (const auto& e : r.exporters)
        for (const auto& i : r.importers)
            if (e.name != i.name) r.matrix.push_back({e.name, i.name, e.formats.intersect(i.formats)});
    return r;
}

}  // namespace dmabridge::info
