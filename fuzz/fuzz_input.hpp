// SPDX-License-Identifier: MIT
#pragma once
// The fuzz targets' input reader: fixed-width little-endian fields one after the other, so that
// seed files can be written by a script (fuzz/make_corpus.py) and read by a person. A field past
// the end of the input reads as zero.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <span>
#include <type_traits>

namespace fuzz {

class Input {
public:
    Input(const std::uint8_t* data, std::size_t size) noexcept : data_(data), size_(size) {}

    /// The next sizeof(T) bytes as a T (little-endian on the hosts that run the fuzzers).
    template <typename T>
    T take() noexcept {
        static_assert(std::is_trivially_copyable_v<T>);
        T v{};
        const std::size_t n = std::min(sizeof v, size_ - pos_);
        std::memcpy(&v, data_ + pos_, n);
        pos_ += n;
        return v;
    }

    /// Fills `out` with the next bytes (zero past the end).
    void take_bytes(void* out, std::size_t n) noexcept {
        if (n == 0) return;
        const std::size_t have = std::min(n, size_ - pos_);
        std::memcpy(out, data_ + pos_, have);
        std::memset(static_cast<std::uint8_t*>(out) + have, 0, n - have);
        pos_ += have;
    }

    /// Everything not read yet.
    std::span<const std::uint8_t> rest() const noexcept { return {data_ + pos_, size_ - pos_}; }

private:
    const std::uint8_t* data_;
    std::size_t size_;
    std::size_t pos_ = 0;
};

}  // namespace fuzz

/// An invariant of the library that the input broke: report it and abort, so that libFuzzer keeps
/// the input as a crash.
#define FUZZ_CHECK(cond)                                                                        \
    do {                                                                                        \
        if (!(cond)) {                                                                          \
            std::fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #cond); \
            std::abort();                                                                       \
        }                                                                                       \
    } while (0)
