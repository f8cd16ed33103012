// SPDX-License-Identifier: MIT
#pragma once
// dmabridge-info's model: what this machine can share, gathered with the library's own code
// (devices, allocators, Vulkan modifier queries, FormatSet intersection), so that the tool and
// the library never disagree.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <dmabridge/format/format_set.hpp>
#include <dmabridge/v4l2/device.hpp>

namespace dmabridge::info {

struct KernelInfo {
    std::string release;
    bool udmabuf = false;
    std::vector<std::string> heaps;
    std::string sync_file;  // "supported", "not supported by this kernel", or why it is unknown
};

struct VulkanInfo {
    std::string name, driver, driver_info, api_version;
    std::vector<std::string> capabilities;  // import_memory, export_memory, modifiers, ...
    FormatSet importable, exportable;        // sampled usage / the library's default usage
    FormatSet storage, color_attachment;     // importable as storage images / colour attachments
    std::string drm_nodes;                   // "primary 226:0, render 226:128" (VK_EXT_physical_device_drm)
    std::string error;                       // why formats could not be queried
};

struct DrmInfo {
    std::string primary_node, render_node, driver;
    bool syncobj = false, syncobj_timeline = false, syncobj_eventfd = false;  // DrmDevice's probes
    std::string gbm_node;  // where GBM allocates; empty when it cannot
    FormatSet gbm_formats;
    std::vector<FormatSet> plane_formats;  // per KMS plane of the primary node (kms::Device: IN_FORMATS)
    std::vector<std::string> plane_types;  // per plane: "primary 31", "overlay 40", "cursor 45"
    std::vector<std::string> connectors;   // "Virtual-1 (connected)", "Writeback-1 (writeback)"
    std::string planes_note;               // why there are none: kms::Device's error
    std::string error;
};

struct EglInfo {
    int index = 0;                        // position in eglQueryDevicesEXT's list
    bool software = false;                // EGL_MESA_device_software
    std::string drm_node, vendor, version;
    std::vector<std::string> extensions;  // the ones dmabridge's EGL adapter uses
    FormatSet importable, external_only;  // eglQueryDmaBufFormatsEXT / ModifiersEXT
    std::string error;
};

struct V4l2FormatInfo {
    std::uint32_t v4l2 = 0, drm = 0;
    std::vector<v4l2::FrameSize> sizes;
};

struct V4l2Info {
    std::string path, driver, card;
    bool capture = false, output = false;
    std::vector<V4l2FormatInfo> capture_formats, output_formats;
    v4l2::MemorySupport capture_memory, output_memory;
    std::string error;
};

// One side of a share: who exports (or imports) which (fourcc, modifier) pairs.
struct Participant {
    std::string name;  // e.g. "v4l2:/dev/video0", "vulkan:llvmpipe (...)", "gbm:/dev/dri/card0"
    FormatSet formats;
};

struct MatrixEntry {
    std::string exporter, importer;
    FormatSet common;
};

struct Report {
    KernelInfo kernel;
    std::vector<VulkanInfo> vulkan;
    std::vector<DrmInfo> drm;
    std::vector<V4l2Info> v4l2;
    std::vector<EglInfo> egl;
    std::vector<Participant> exporters, importers;
    std::vector<MatrixEntry> matrix;
};

struct Filters {
    std::string device;                  // keep devices whose name or path contains this
    std::optional<std::uint32_t> fourcc;  // keep only this DRM fourcc in format lists
};

/// Looks at everything. Devices that cannot be opened are listed with their error.
Report gather(const Filters& filters);

/// The report as JSON (schema in tools/dmabridge_info/README.md) and as aligned text.
std::string to_json(const Report& report);
std::string to_text(const Report& report);

}  // namespace dmabridge::info
