// SPDX-License-Identifier: MIT
#pragma once
// Parsing of what SYNC_IOC_FILE_INFO returns, apart from the ioctl, so that it can be fuzzed.
// Not part of the public API.

#include <cstdint>
#include <span>
#include <vector>

#include <linux/sync_file.h>

#include <dmabridge/kernel/sync_file.hpp>

namespace dmabridge::detail {

/// A SYNC_IOC_FILE_INFO status (sync_file_info::status or sync_fence_info::status) as a
/// FenceStatus: positive signalled, 0 active, negative an error.
FenceStatus fence_status(std::int32_t status) noexcept;

/// The fences of a sync_file from the second SYNC_IOC_FILE_INFO call: `filled` is the array the
/// library handed the kernel (its whole capacity), `reported` the num_fences the kernel wrote
/// back. Takes at most min(capacity, reported) entries; names are read up to their first NUL or
/// their array's end (the kernel terminates them, nothing here relies on it). Pure.
std::vector<FenceInfo> parse_fence_infos(std::span<const sync_fence_info> filled, std::uint32_t reported);

}  // namespace dmabridge::detail
