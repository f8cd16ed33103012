// SPDX-License-Identifier: MIT
// Fuzzes the parsing of SYNC_IOC_FILE_INFO results (SyncFile::fences() and status()): a struct
// sync_file_info whose num_fences and status are anything, and an array of struct
// sync_fence_info with names that need not be terminated and any status values. The result never
// has more entries than the array or than the kernel reported, and names stay within their
// fields.
//
// Input: the bytes of a struct sync_file_info (56 bytes: name[32], status, num_fences, flags,
// pad, sync_fence_info pointer), then the array the kernel filled: as many whole struct
// sync_fence_info (80 bytes each) as the rest holds.

#include <dmabridge/kernel/sync_file.hpp>

#include <cstring>
#include <vector>

#include "kernel/sync_file_info.hpp"
#include "fuzz_input.hpp"

using namespace dmabridge;

namespace {

FenceStatus expected_status(std::int32_t s) {
    return s > 0 ? FenceStatus::signaled : s == 0 ? FenceStatus::active : FenceStatus::error;
}

template <std::size_t N>
void check_name(const std::string& got, const char (&field)[N]) {
    FUZZ_CHECK(got.size() <= N);
    FUZZ_CHECK(got.find('\0') == std::string::npos);
    FUZZ_CHECK(std::memcmp(got.data(), field, got.size()) == 0);
    FUZZ_CHECK(got.size() == N || field[got.size()] == '\0');
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    fuzz::Input in(data, size);
    sync_file_info info;
    in.take_bytes(&info, sizeof info);
    FUZZ_CHECK(detail::fence_status(info.status) == expected_status(info.status));

    // The array as the library allocates it (aligned, its own memory), filled with the rest.
    const std::size_t capacity = in.rest().size() / sizeof(sync_fence_info);
    std::vector<sync_fence_info> raw(capacity);
    in.take_bytes(raw.data(), capacity * sizeof(sync_fence_info));

    const std::vector<FenceInfo> fences = detail::parse_fence_infos(raw, info.num_fences);
    FUZZ_CHECK(fences.size() == std::min<std::size_t>(capacity, info.num_fences));
    for (std::size_t i = 0; i < fences.size(); ++i) {
        check_name(fences[i].driver, raw[i].driver_name);
        check_name(fences[i].timeline, raw[i].obj_name);
        FUZZ_CHECK(fences[i].status == expected_status(raw[i].status));
    }
    return 0;
}
