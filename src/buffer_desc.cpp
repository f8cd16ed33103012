// SPDX-License-Identifier: MIT
#include <dmabridge/buffer_desc.hpp>
#include <dmabridge/format.hpp>

#include <string>

#include "checked_math.hpp"

namespace dmabridge {
namespace {

constexpr std::uint64_t u32_max = 0xffffffffu;

Error invalid(std::string message) { return Error::library(Errc::invalid_argument, std::move(message)); }

std::string n(std::uint64_t v) { return std::to_string(v); }

}  // namespace

Status validate_layout(const ImageLayout& layout) {
    const auto& [width, height, fourcc, modifier, planes] = layout;
    const std::string what = "buffer " + n(width) + "x" + n(height) + " " + fourcc_to_string(fourcc) + " " +
                             modifier_to_string(modifier);
    if (width == 0 || height == 0) return invalid(what + ": the extent is empty");
    const FormatInfo* info = find_format(fourcc);
    if (!info) return Error::library(Errc::unknown_format, what + ": unknown DRM fourcc " + fourcc_to_string(fourcc));

    const std::size_t count = planes.size();
    const bool plain = modifier == modifier::linear || modifier == modifier::invalid;
    if (plain && count != info->plane_count)
        return invalid(what + ": " + n(count) + " planes, the format has " + n(info->plane_count));
    if (!plain && (count < info->plane_count || count > max_planes))
        return invalid(what + ": " + n(count) + " planes, the format needs " + n(info->plane_count) + " to " +
                       n(max_planes) + " with this modifier");

    for (std::size_t i = 0; i < count; ++i) {
        const PlaneLayout& p = planes[i];
        const std::string plane = what + ": plane " + n(i);
        if (p.offset > u32_max) return invalid(plane + ": offset " + n(p.offset) + " does not fit in 32 bits");
        if (p.stride > u32_max) return invalid(plane + ": stride " + n(p.stride) + " does not fit in 32 bits");
        if (p.offset >= p.buffer_size)
            return invalid(plane + ": offset " + n(p.offset) + " >= buffer size " + n(p.buffer_size));
        if (i >= info->plane_count) continue;  // auxiliary planes have modifier-defined layouts

        const auto row = info->row_bytes(static_cast<std::uint32_t>(i), width);
        const std::uint64_t rows = info->plane_rows(static_cast<std::uint32_t>(i), height);
        if (!row) return invalid(plane + ": the row size overflows");
        if (p.stride < *row)
            return invalid(plane + ": stride " + n(p.stride) + " < row size " + n(*row) + " (" + n(width) +
                           " pixels)");
        // The last byte read is offset + stride x (rows - 1) + row size - 1.
        auto body = detail::mul(p.stride, rows - 1);
        auto last = body ? detail::add(*body, *row) : std::nullopt;
        auto end = last ? detail::add(*last, p.offset) : std::nullopt;
        if (!end)
            return invalid(plane + ": offset " + n(p.offset) + " + stride " + n(p.stride) + " x " + n(rows) +
                           " rows overflows 64 bits");
        if (*end > p.buffer_size)
            return invalid(plane + ": offset " + n(p.offset) + " + stride " + n(p.stride) + " x " + n(rows - 1) +
                           " rows + row size " + n(*row) + " = " + n(*end) + " > buffer size " +
                           n(p.buffer_size));
    }
    return {};
}

ImageLayout BufferDesc::layout() const {
    ImageLayout l{width, height, fourcc, modifier, {}};
    l.planes.reserve(planes.size());
    for (const auto& p : planes) l.planes.push_back({p.offset, p.stride, p.buffer.size()});
    return l;
}

Status BufferDesc::validate() const {
    for (std::size_t i = 0; i < planes.size(); ++i)
        if (planes[i].buffer.fd() < 0)
            return invalid("buffer " + fourcc_to_string(fourcc) + ": plane " + n(i) + " has no dma-buf");
    return validate_layout(layout());
}

Result<BufferDesc> BufferDesc::dup() const {
    BufferDesc copy;
    copy.width = width;
    copy.height = height;
    copy.fourcc = fourcc;
    copy.modifier = modifier;
    copy.planes.reserve(planes.size());
    for (std::size_t i = 0; i < planes.size(); ++i) {
        auto buf = planes[i].buffer.dup();
        if (!buf) return buf.error().with_context("copy buffer description, plane " + n(i));
        copy.planes.push_back({std::move(*buf), planes[i].offset, planes[i].stride});
    }
    return copy;
}

std::string BufferDesc::describe() const {
    std::string s = n(width) + "x" + n(height) + " " + fourcc_to_string(fourcc) + " " + modifier_to_string(modifier);
    for (std::size_t i = 0; i < planes.size(); ++i)
        s += ", plane " + n(i) + ": offset " + n(planes[i].offset) + " stride " + n(planes[i].stride) + " (buffer " +
             n(planes[i].buffer.size()) + " bytes)";
    return s;
}

}  // namespace dmabridge
