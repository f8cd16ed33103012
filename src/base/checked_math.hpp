// SPDX-License-Identifier: MIT
#pragma once
// Overflow-checked unsigned arithmetic: every size computed from untrusted numbers goes through
// these, so that a hostile stride or offset cannot wrap into a small, "valid" value.

#include <cstdint>
#include <optional>

namespace dmabridge::detail {

inline std::optional<std::uint64_t> add(std::uint64_t a, std::uint64_t b) noexcept {
    std::uint64_t r;
    if (__builtin_add_overflow(a, b, &r)) return std::nullopt;
    return r;
}

inline std::optional<std::uint64_t> mul(std::uint64_t a, std::uint64_t b) noexcept {
    std::uint64_t r;
    if (__builtin_mul_overflow(a, b, &r)) return std::nullopt;
    return r;
}

/// `value` rounded up to a multiple of `alignment` (a power of two), or nothing on overflow.
inline std::optional<std::uint64_t> align_up(std::uint64_t value, std::uint64_t alignment) noexcept {
    auto sum = add(value, alignment - 1);
    if (!sum) return std::nullopt;
    return *sum & ~(alignment - 1);
}

inline constexpr std::uint64_t ceil_div(std::uint64_t a, std::uint64_t b) noexcept {
    return a / b + (a % b != 0);
}

inline constexpr bool is_power_of_two(std::uint64_t v) noexcept { return v != 0 && (v & (v - 1)) == 0; }

}  // namespace dmabridge::detail
