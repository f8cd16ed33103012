// SPDX-License-Identifier: MIT
#include <dmabridge/format/format_set.hpp>

#include <algorithm>

namespace dmabridge {

void FormatSet::add(std::uint32_t fourcc, std::uint64_t modifier) {
    auto& mods = formats_[fourcc];
    if (std::find(mods.begin(), mods.end(), modifier) == mods.end()) mods.push_back(modifier);
}

bool FormatSet::contains(std::uint32_t fourcc, std::uint64_t modifier) const {
    auto it = formats_.find(fourcc);
    return it != formats_.end() && std::find(it->second.begin(), it->second.end(), modifier) != it->second.end();
}

std::vector<std::uint64_t> FormatSet::modifiers(std::uint32_t fourcc) const {
    auto it = formats_.find(fourcc);
    return it == formats_.end() ? std::vector<std::uint64_t>{} : it->second;
}

std::vector<std::uint32_t> FormatSet::fourccs() const {
    std::vector<std::uint32_t> out;
    out.reserve(formats_.size());
    for (const auto& [code, mods] : formats_) out.push_back(code);
    return out;
}

std::size_t FormatSet::size() const noexcept {
    std::size_t n = 0;
    for (const auto& [code, mods] : formats_) n += mods.size();
    return n;
}

FormatSet FormatSet::intersect(const FormatSet& other) const {
    FormatSet out;
    for (const auto& [code, mods] : formats_)
        for (auto m : mods)
            if (other.contains(code, m)) out.add(code, m);
    return out;
}

}  // namespace dmabridge
