// SPDX-License-Identifier: MIT
// The report as JSON and as text.
#include <cstdio>
#include <sstream>

#include <dmabridge/format/fourcc.hpp>

#include "report.hpp"

namespace dmabridge::info {
namespace {

std::string quoted(const std::string& s) {
    std::string out = "\"";
    for (char c : s) {
        switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\t': out += "\\t"; break;
        default:
            if (static_cast<unsigned char>(c) < 0x20) {
                char buf[8];
                std::snprintf(buf, sizeof buf, "\\u%04x", c);
                out += buf;
            } else {
                out += c;
            }
        }
    }
    return out + "\"";
}

std::string modifier_hex(std::uint64_t m) {
    char buf[24];
    std::snprintf(buf, sizeof buf, "0x%016llx", static_cast<unsigned long long>(m));
    return buf;
}

// [{"fourcc": "XR24", "modifiers": ["0x0000000000000000", ...]}, ...]
std::string json_formats(const FormatSet& set) {
    std::string out = "[";
    bool first = true;
    for (std::uint32_t code : set.fourccs()) {
        out += (first ? "" : ", ") + std::string("{\"fourcc\": ") + quoted(fourcc_to_string(code)) + ", \"modifiers\": [";
        bool first_mod = true;
        for (auto m : set.modifiers(code)) {
            out += (first_mod ? "" : ", ") + quoted(modifier_hex(m));
            first_mod = false;
        }
        out += "]}";
        first = false;
    }
    return out + "]";
}

std::string json_strings(const std::vector<std::string>& v) {
    std::string out = "[";
    for (std::size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + quoted(v[i]);
    return out + "]";
}

std::string json_v4l2_formats(const std::vector<V4l2FormatInfo>& formats) {
    std::string out = "[";
    for (std::size_t i = 0; i < formats.size(); ++i) {
        const auto& f = formats[i];
        out += (i ? ", " : "") + std::string("{\"v4l2\": ") + quoted(v4l2::fourcc_name(f.v4l2)) +
               ", \"drm\": " + (f.drm ? quoted(fourcc_to_string(f.drm)) : "null") + ", \"sizes\": [";
        for (std::size_t s = 0; s < f.sizes.size(); ++s)
            out += (s ? ", " : "") + quoted(std::to_string(f.sizes[s].width) + "x" + std::to_string(f.sizes[s].height));
        out += "]}";
    }
    return out + "]";
}

std::string json_memory(const v4l2::MemorySupport& m) {
    return std::string("{\"mmap\": ") + (m.mmap ? "true" : "false") + ", \"dmabuf\": " + (m.dmabuf ? "true" : "false") +
           ", \"exports\": " + (m.exports ? "true" : "false") + ", \"in_use\": " + (m.in_use ? "true" : "false") + "}";
}

std::string text_formats(const FormatSet& set) {
    std::string out;
    for (std::uint32_t code : set.fourccs()) {
        // Appended piece by piece: GCC 12 at -O3 flags `"..." + std::string&&` here with a
        // false -Wrestrict, which breaks the Release build of ci/bench.
        if (!out.empty()) out += ' ';
        out += fourcc_to_string(code);
        auto mods = set.modifiers(code);
        if (!(mods.size() == 1 && mods[0] == modifier::linear)) {
            out += "(";
            for (std::size_t i = 0; i < mods.size(); ++i) {
                if (i) out += ',';
                out += modifier_to_string(mods[i]);
            }
            out += ")";
        }
    }
    return out.empty() ? "-" : out;
}

}  // namespace

std::string to_json(const Report& r) {
    std::ostringstream o;
    o << "{\n  \"schema\": 1,\n";
    o << "  \"kernel\": {\"release\": " << quoted(r.kernel.release) << ", \"udmabuf\": "
      << (r.kernel.udmabuf ? "true" : "false") << ", \"dma_heaps\": " << json_strings(r.kernel.heaps)
      << ", \"sync_file\": " << quoted(r.kernel.sync_file) << "},\n";
    o << "  \"vulkan\": [";
    for (std::size_t i = 0; i < r.vulkan.size(); ++i) {
        const auto& v = r.vulkan[i];
        o << (i ? ",\n    " : "\n    ") << "{\"name\": " << quoted(v.name) << ", \"driver\": " << quoted(v.driver)
          << ", \"driver_info\": " << quoted(v.driver_info) << ", \"api_version\": " << quoted(v.api_version)
          << ", \"capabilities\": " << json_strings(v.capabilities) << ", \"importable\": " << json_formats(v.importable)
          << ", \"exportable\": " << json_formats(v.exportable) << ", \"storage\": " << json_formats(v.storage)
          << ", \"color_attachment\": " << json_formats(v.color_attachment) << ", \"drm_nodes\": " << quoted(v.drm_nodes)
          << ", \"error\": " << quoted(v.error) << "}";
    }
    o << "\n  ],\n  \"drm\": [";
    for (std::size_t i = 0; i < r.drm.size(); ++i) {
        const auto& d = r.drm[i];
        o << (i ? ",\n    " : "\n    ") << "{\"primary_node\": " << quoted(d.primary_node)
          << ", \"render_node\": " << quoted(d.render_node) << ", \"driver\": " << quoted(d.driver)
          << ", \"syncobj\": " << (d.syncobj ? "true" : "false")
          << ", \"syncobj_timeline\": " << (d.syncobj_timeline ? "true" : "false")
          << ", \"syncobj_eventfd\": " << (d.syncobj_eventfd ? "true" : "false")
          << ", \"gbm_node\": " << quoted(d.gbm_node) << ", \"gbm_formats\": " << json_formats(d.gbm_formats)
          << ", \"planes\": [";
        for (std::size_t p = 0; p < d.plane_formats.size(); ++p) o << (p ? ", " : "") << json_formats(d.plane_formats[p]);
        o << "], \"plane_types\": " << json_strings(d.plane_types) << ", \"connectors\": " << json_strings(d.connectors)
          << ", \"planes_note\": " << quoted(d.planes_note) << ", \"error\": " << quoted(d.error) << "}";
    }
    o << "\n  ],\n  \"v4l2\": [";
    for (std::size_t i = 0; i < r.v4l2.size(); ++i) {
        const auto& v = r.v4l2[i];
        o << (i ? ",\n    " : "\n    ") << "{\"path\": " << quoted(v.path) << ", \"driver\": " << quoted(v.driver)
          << ", \"card\": " << quoted(v.card) << ", \"capture\": " << (v.capture ? "true" : "false")
          << ", \"output\": " << (v.output ? "true" : "false")
          << ", \"capture_formats\": " << json_v4l2_formats(v.capture_formats)
          << ", \"output_formats\": " << json_v4l2_formats(v.output_formats)
          << ", \"capture_memory\": " << json_memory(v.capture_memory)
          << ", \"output_memory\": " << json_memory(v.output_memory) << ", \"error\": " << quoted(v.error) << "}";
    }
    o << "\n  ],\n  \"egl\": [";
    for (std::size_t i = 0; i < r.egl.size(); ++i) {
        const auto& e = r.egl[i];
        o << (i ? ",\n    " : "\n    ") << "{\"index\": " << e.index << ", \"software\": " << (e.software ? "true" : "false")
          << ", \"drm_node\": " << quoted(e.drm_node) << ", \"vendor\": " << quoted(e.vendor)
          << ", \"version\": " << quoted(e.version) << ", \"extensions\": " << json_strings(e.extensions)
          << ", \"importable\": " << json_formats(e.importable) << ", \"external_only\": " << json_formats(e.external_only)
          << ", \"error\": " << quoted(e.error) << "}";
    }
    o << "\n  ],\n  \"matrix\": [";
    for (std::size_t i = 0; i < r.matrix.size(); ++i) {
        const auto& m = r.matrix[i];
        o << (i ? ",\n    " : "\n    ") << "{\"exporter\": " << quoted(m.exporter) << ", \"importer\": "
          << quoted(m.importer) << ", \"formats\": " << json_formats(m.common) << "}";
    }
    o << "\n  ]\n}\n";
    return o.str();
}

std::string to_text(const Report& r) {
    std::ostringstream o;
    o << "kernel " << r.kernel.release << ": udmabuf " << (r.kernel.udmabuf ? "yes" : "no") << ", dma-heaps ";
    for (const auto& h : r.kernel.heaps) o << h << " ";
    if (r.kernel.heaps.empty()) o << "none ";
    o << "\n  dma-buf sync_file export/import: " << r.kernel.sync_file << "\n\n";
    o << "Vulkan devices\n";
    for (const auto& v : r.vulkan) {
        o << "  " << (v.name.empty() ? "(none)" : v.name) << "  [" << v.driver << ", " << v.driver_info << ", Vulkan "
          << v.api_version << "]\n    offers:";
        for (const auto& c : v.capabilities) o << " " << c;
        o << "\n    import (sampled): " << text_formats(v.importable) << "\n    import (storage): "
          << text_formats(v.storage) << "\n    import (colour):  " << text_formats(v.color_attachment)
          << "\n    export:           " << text_formats(v.exportable) << "\n    DRM nodes: "
          << (v.drm_nodes.empty() ? "unknown (no VK_EXT_physical_device_drm)" : v.drm_nodes) << "\n";
        if (!v.error.empty()) o << "    error: " << v.error << "\n";
    }
    o << "\nDRM devices\n";
    for (const auto& d : r.drm) {
        o << "  " << d.primary_node << " " << d.render_node << "  [" << d.driver << "]  GBM: "
          << (d.gbm_node.empty() ? "cannot allocate" : "allocates on " + d.gbm_node) << "\n";
        o << "    syncobj: " << (!d.syncobj ? "no"
                                 : !d.syncobj_timeline ? "binary only, no timelines"
                                 : d.syncobj_eventfd ? "timelines, eventfd waits"
                                                     : "timelines, no eventfd waits (before Linux 6.6)")
          << "\n";
        if (!d.gbm_node.empty()) o << "    formats: " << text_formats(d.gbm_formats) << "\n";
        if (!d.connectors.empty()) {
            o << "    connectors:";
            for (const auto& c : d.connectors) o << " " << c << ";";
            o << "\n";
        }
        for (std::size_t p = 0; p < d.plane_formats.size(); ++p)
            o << "    plane " << (p < d.plane_types.size() ? d.plane_types[p] : std::to_string(p)) << ": "
              << text_formats(d.plane_formats[p]) << "\n";
        if (!d.planes_note.empty()) o << "    planes: " << d.planes_note << "\n";
        if (!d.error.empty() && d.gbm_node.empty()) o << "    " << d.error << "\n";
    }
    o << "\nV4L2 devices\n";
    for (const auto& v : r.v4l2) {
        if (!v.error.empty() && v.driver.empty()) {
            o << "  " << v.path << "  cannot be opened: " << v.error << "\n";
            continue;
        }
        o << "  " << v.path << "  " << v.card << " [" << v.driver << "]";
        if (v.capture) o << "  capture (" << (v.capture_memory.exports ? "exports" : "no export")
                         << (v.capture_memory.dmabuf ? ", imports" : "")
                         << (v.capture_memory.in_use ? ", in use" : "") << ")";
        if (v.output) o << "  output (" << (v.output_memory.dmabuf ? "imports" : "no import") << ")";
        o << "\n";
        for (const auto* list : {&v.capture_formats, &v.output_formats}) {
            if (list->empty()) continue;
            o << "    " << (list == &v.capture_formats ? "capture:" : "output: ");
            for (const auto& f : *list) o << " " << v4l2::fourcc_name(f.v4l2);
            o << "\n";
        }
        if (!v.error.empty()) o << "    error: " << v.error << "\n";
    }
    o << "\nEGL devices\n";
    for (const auto& e : r.egl) {
        if (!e.error.empty() && e.vendor.empty()) {
            o << "  device " << e.index << ": " << e.error << "\n";
            continue;
        }
        o << "  device " << e.index << (e.software ? " (software)" : "") << (e.drm_node.empty() ? "" : " " + e.drm_node)
          << "  [" << e.vendor << ", EGL " << e.version << "]\n    offers:";
        for (const auto& x : e.extensions) o << " " << x;
        o << "\n    import:        " << text_formats(e.importable) << "\n    external only: "
          << text_formats(e.external_only) << "\n";
        if (!e.error.empty()) o << "    error: " << e.error << "\n";
    }
    o << "\nSharing (exporter -> importer: formats both accept; LINEAR unless marked)\n";
    for (const auto& m : r.matrix) o << "  " << m.exporter << " -> " << m.importer << ": " << text_formats(m.common) << "\n";
    return o.str();
}

}  // namespace dmabridge::info
