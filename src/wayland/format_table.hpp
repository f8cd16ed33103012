// SPDX-License-Identifier: MIT
#pragma once
// The linux-dmabuf v4 feedback format table and tranche indices: parsing of what a compositor
// sends, all of it untrusted. Not part of the public API (tested directly by the host tests).

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include <dmabridge/base/result.hpp>
#include <dmabridge/format/format_set.hpp>

namespace dmabridge::wayland::detail {

/// One row of the format table: a DRM fourcc and a modifier.
struct FormatTableEntry {
    std::uint32_t fourcc = 0;
    std::uint64_t modifier = 0;
};

/// Bytes per table row on the wire: u32 format, u32 padding, u64 modifier (native endian).
inline constexpr std::size_t format_table_row_bytes = 16;

/// Tranche indices are 16-bit, so rows past this many can never be referenced: a larger table
/// is refused rather than mapped.
inline constexpr std::size_t max_format_table_rows = 65536;

/// Parses a format table. Fails (invalid_argument) when the size is zero or not a multiple of
/// 16, (limit_exceeded) when it has more than max_format_table_rows rows.
Result<std::vector<FormatTableEntry>> parse_format_table(std::span<const std::byte> bytes);

/// Reads `size` bytes of the table fd the compositor sent (pread from offset 0, short reads
/// continued) and parses them. Never maps the file: the compositor may shrink it at any time,
/// and a mapping read past its end would kill the process with SIGBUS. Fails (limit_exceeded)
/// for a size above max_format_table_rows rows before allocating or reading anything,
/// (invalid_argument) for size 0, an fd that is not a regular file, or a file that ends before
/// `size` bytes ("announced size N but the file has M bytes"). Costs an fstat and one or more
/// preads; does not take or close `fd`.
Result<std::vector<FormatTableEntry>> read_format_table(int fd, std::uint64_t size);

/// Adds the rows that a tranche's index array names to `out`. The array is u16 indices in
/// native endian; an odd byte count or an index past the table's end fails with
/// invalid_argument naming the index, and nothing is added then.
Status add_tranche_formats(const std::vector<FormatTableEntry>& table, std::span<const std::byte> indices,
                           FormatSet& out);

}  // namespace dmabridge::wayland::detail
