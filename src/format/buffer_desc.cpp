// SPDX-License-Identifier: MIT
#include <dmabridge/format/buffer_desc.hpp>
#include <dmabridge/format/format.hpp>

#include <cerrno>
#include <span>
#include <string>
#include <vector>

#include "base/checked_math.hpp"

namespace dmabridge {
namespace {

constexpr std::uint64_t u32_max = 0xffffffffu;

Error invalid(std::string message) { return Error::library(Errc::invalid_argument, std::move(message)); }

std::string n(std::uint64_t v) { return std::to_string(v); }

}  // namespace

namespace {

// plane_buffers: nullptr when every plane has a buffer of its own.
Status validate(const ImageLayout& layout, const std::uint32_t* plane_buffers) {
    const auto& [width, height, fourcc, modifier, planes] = layout;
    const std::string what = "buffer " + n(width) + "x" + n(height) + " " + fourcc_to_string(fourcc) + " " +
                             modifier_to_string(modifier);
    if (width == 0 || height == 0) return invalid(what + ": the extent is empty");
    const FormatInfo* info = find_format(fourcc);
    if (!info) return Error::library(Errc::unknown_format, what + ": unknown DRM fourcc " + fourcc_to_string(fourcc));

    const std::size_t count = planes.size();
    // No planes at all: a description that was moved from (or never filled), not a malformed one.
    if (count == 0) return Error::library(Errc::empty_object, what + ": no planes (moved from?)");
    const bool plain = modifier == modifier::linear || modifier == modifier::invalid;
    if (plain && count != info->plane_count)
        return invalid(what + ": " + n(count) + " planes, the format has " + n(info->plane_count));
    if (!plain && (count < info->plane_count || count > max_planes))
        return invalid(what + ": " + n(count) + " planes, the format needs " + n(info->plane_count) + " to " +
                       n(max_planes) + " with this modifier");

    // Each plane's bytes [begin, end) in its buffer; for auxiliary planes only their first row
    // is known (the rest of their size is the modifier's business).
    struct Span {
        std::uint64_t begin, end;
        bool colour;
    };
    std::vector<Span> spans(count);
    for (std::size_t i = 0; i < count; ++i) {
        const PlaneLayout& p = planes[i];
        const std::string plane = what + ": plane " + n(i);
        if (p.offset > u32_max) return invalid(plane + ": offset " + n(p.offset) + " does not fit in 32 bits");
        if (p.stride > u32_max) return invalid(plane + ": stride " + n(p.stride) + " does not fit in 32 bits");
        if (p.offset >= p.buffer_size)
            return invalid(plane + ": offset " + n(p.offset) + " >= buffer size " + n(p.buffer_size));
        if (i >= info->plane_count) {
            // An auxiliary plane: at least one row of it must be inside the buffer.
            if (p.stride == 0) return invalid(plane + " (auxiliary): stride 0");
            if (p.offset + p.stride > p.buffer_size)  // both fit in 32 bits: no overflow
                return invalid(plane + " (auxiliary): offset " + n(p.offset) + " + stride " + n(p.stride) + " = " +
                               n(p.offset + p.stride) + " > buffer size " + n(p.buffer_size));
            spans[i] = {p.offset, p.offset + 1, false};
            continue;
        }

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
        spans[i] = {p.offset, *end, true};
    }
    // Planes that share a buffer must not overlap. An auxiliary plane's extent is unknown past
    // its first byte, so it may neither start inside another plane nor at another's offset.
    for (std::size_t i = 0; i < count; ++i) {
        for (std::size_t j = i + 1; j < count; ++j) {
            if (!plane_buffers || plane_buffers[i] != plane_buffers[j]) continue;
            const Span& a = spans[i];
            const Span& b = spans[j];
            if (a.begin < b.end && b.begin < a.end)
                return invalid(what + ": planes " + n(i) + " and " + n(j) + " overlap in buffer " +
                               n(plane_buffers[i]) + ": plane " + n(i) + " uses bytes " + n(a.begin) + " to " +
                               n(a.end - 1) + (a.colour ? "" : " (auxiliary, first byte)") + ", plane " + n(j) +
                               " bytes " + n(b.begin) + " to " + n(b.end - 1) +
                               (b.colour ? "" : " (auxiliary, first byte)"));
        }
    }
    return {};
}

}  // namespace

Status validate_layout(const ImageLayout& layout) { return validate(layout, nullptr); }

Status validate_layout(const ImageLayout& layout, std::span<const std::uint32_t> plane_buffers) {
    if (plane_buffers.size() < layout.planes.size())
        return invalid("validate layout: " + n(plane_buffers.size()) + " buffer numbers for " +
                       n(layout.planes.size()) + " planes");
    return validate(layout, plane_buffers.data());
}

ImageLayout BufferDesc::layout() const {
    ImageLayout l{width, height, fourcc, modifier, {}};
    l.planes.reserve(planes.size());
    for (const auto& p : planes) l.planes.push_back({p.offset, p.stride, p.buffer.size()});
    return l;
}

std::vector<std::size_t> BufferDesc::plane_buffer_indices() const {
    // Numbered by identity: two fds of one buffer are one buffer. At most max_planes planes in a
    // valid description, so the quadratic search is a handful of comparisons.
    std::vector<std::size_t> index(planes.size());
    std::size_t distinct = 0;
    for (std::size_t i = 0; i < planes.size(); ++i) {
        index[i] = distinct;
        for (std::size_t j = 0; j < i; ++j)
            if (planes[j].buffer.id() == planes[i].buffer.id()) {
                index[i] = index[j];
                break;
            }
        if (index[i] == distinct) ++distinct;
    }
    return index;
}

std::vector<const DmaBuf*> BufferDesc::distinct_buffers() const {
    std::vector<const DmaBuf*> out;
    const auto index = plane_buffer_indices();
    for (std::size_t i = 0; i < planes.size(); ++i)
        if (index[i] == out.size()) out.push_back(&planes[i].buffer);
    return out;
}

Status BufferDesc::check_planes(std::string_view operation) const {
    const std::string what(operation);
    if (planes.empty()) return invalid(what + ": the description has no planes");
    if (planes.size() > max_planes)
        return invalid(what + ": " + n(planes.size()) + " planes > at most " + n(max_planes));
    for (std::size_t i = 0; i < planes.size(); ++i)
        if (planes[i].buffer.fd() < 0)
            return Error::library(Errc::empty_object, what + ": plane " + n(i) + " has no dma-buf (moved from or released)");
    return {};
}

Status BufferDesc::validate() const {
    for (std::size_t i = 0; i < planes.size(); ++i)
        if (planes[i].buffer.fd() < 0)
            return invalid("buffer " + fourcc_to_string(fourcc) + ": plane " + n(i) + " has no dma-buf");
    const auto index = plane_buffer_indices();
    std::vector<std::uint32_t> buffers(index.begin(), index.end());
    return validate_layout(layout(), buffers);
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
