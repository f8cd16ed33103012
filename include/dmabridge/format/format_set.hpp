// SPDX-License-Identifier: MIT
#pragma once
/// @file format_set.hpp
/// FormatSet: which (DRM fourcc, modifier) pairs a participant accepts. Negotiation is set
/// intersection: what every participant of a share accepts is the intersection of their sets.

#include <cstdint>
#include <map>
#include <vector>

namespace dmabridge {

/// A set of (fourcc, modifier) pairs, ordered by fourcc; each fourcc's modifiers keep the order
/// they were added in (an exporter's order of preference). A plain value; not thread-safe.
class FormatSet {
public:
    /// Adds a pair; adding a pair already there changes nothing.
    void add(std::uint32_t fourcc, std::uint64_t modifier);
    /// True when the pair is in the set.
    bool contains(std::uint32_t fourcc, std::uint64_t modifier) const;
    /// The modifiers of `fourcc`, in insertion order; empty when the fourcc is absent.
    std::vector<std::uint64_t> modifiers(std::uint32_t fourcc) const;
    /// The fourccs in the set, ascending.
    std::vector<std::uint32_t> fourccs() const;
    /// The number of pairs.
    std::size_t size() const noexcept;
    /// True when the set holds no pair.
    bool empty() const noexcept { return formats_.empty(); }

    /// The pairs in both sets; modifiers keep this set's order.
    FormatSet intersect(const FormatSet& other) const;

    /// Equal when both hold the same pairs with each fourcc's modifiers in the same order.
    friend bool operator==(const FormatSet&, const FormatSet&) = default;


private:
    std::map<std::uint32_t, std::vector<std::uint64_t>> formats_;
};

}  // namespace dmabridge
