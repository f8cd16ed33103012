// SPDX-License-Identifier: MIT
#include <dmabridge/kms/output.hpp>

#include <string>

#include <dmabridge/format/fourcc.hpp>
#include <dmabridge/kms/commit.hpp>

namespace dmabridge::kms {

namespace {

std::string pair_name(std::uint32_t fourcc, std::uint64_t modifier) {
    return fourcc_to_string(fourcc) + " " + modifier_to_string(modifier);
}

}  // namespace

Result<Output> find_output(const Device& device, std::uint32_t fourcc, std::uint64_t modifier) {
    if (!device.valid()) return Error::library(Errc::empty_object, "kms find_output: the Device is empty (moved from)");
    Output o;
    bool found = false;
    for (const auto& c : device.connectors()) {
        if (c.writeback || !c.connected || c.modes.empty()) continue;
        for (const auto& crtc : device.crtcs()) {
            if (!(c.possible_crtcs & (1u << crtc.index))) continue;
            o.connector = c.id;
            o.crtc = crtc.id;
            o.crtc_index = crtc.index;
            found = true;
            break;
        }
        if (!found) continue;
        o.mode = c.modes.front();
        for (const auto& m : c.modes)
            if (m.preferred) {
                o.mode = m;
                break;
            }
        break;
    }
    if (!found)
        return Error::library(Errc::not_found, "kms find_output on " + device.driver() +
                                                   ": no connected output with a mode and a CRTC to drive it");
    for (const auto& c : device.connectors())
        if (c.writeback && (c.possible_crtcs & (1u << o.crtc_index))) {
            o.writeback = c.id;
            break;
        }
    std::string offered;
    for (const auto& p : device.planes()) {
        if (!(p.possible_crtcs & (1u << o.crtc_index)) || p.type == PlaneType::cursor) continue;
        if (!p.formats.contains(fourcc, modifier)) {
            offered += (offered.empty() ? "" : "; ") + std::string("plane ") + std::to_string(p.id) + " (" +
                       to_string(p.type) + ") takes " + std::to_string(p.formats.size()) + " pairs";
            continue;
        }
        if (p.type == PlaneType::primary && o.primary == 0) o.primary = p.id;
        if (p.type == PlaneType::overlay) o.overlays.push_back(p.id);
    }
    if (o.primary == 0 && o.overlays.empty())
        return Error::library(Errc::unsupported, "kms find_output on " + device.driver() + ": no plane of CRTC " +
                                                     std::to_string(o.crtc) + " scans out " +
                                                     pair_name(fourcc, modifier) + " (" + offered + ")");
    return o;
}

Result<Capture> capture(const Device& device, const Output& output, Allocator& allocator, std::uint32_t fourcc,
                        Timeout timeout) {
    const std::string what = "kms capture of CRTC " + std::to_string(output.crtc);
    if (!device.valid()) return Error::library(Errc::empty_object, what + ": the Device is empty (moved from)");
    if (output.writeback == 0)
        return Error::library(Errc::unsupported, what + ": the device has no writeback connector for this CRTC");
    ImageRequest request;
    request.width = output.mode.hdisplay;
    request.height = output.mode.vdisplay;
    request.fourcc = fourcc;
    request.name = "dmabridge-writeback";
    auto picture = allocator.allocate(request);
    if (!picture) return picture.error().with_context(what + " with " + allocator.backend_name());
    auto target = device.add_framebuffer(*picture);
    if (!target) return target.error().with_context(what);
    Commit route(device);
    route.capture(output.writeback, output.crtc, *target);
    auto fences = route.apply(true, timeout);
    if (!fences) return fences.error().with_context(what);
    if (!fences->writeback_fence)
        return Error::library(Errc::unsupported, what + ": the kernel gave no writeback fence");
    auto written = fences->writeback_fence->wait(timeout);
    if (!written) return written.error().with_context(what);
    if (*written != WaitStatus::ready)
        return Error(ErrorDomain::system, ETIME,
                     what + ": the writeback fence did not signal within " + std::to_string(timeout.count()) + " ms");
    // Let the connector go: a later commit on the CRTC need not carry a writeback target.
    Commit release(device);
    release.detach(output.writeback);
    if (auto done = release.apply(true, timeout); !done) return done.error().with_context(what + ": detach");
    return Capture{std::move(*picture)};
}

}  // namespace dmabridge::kms
