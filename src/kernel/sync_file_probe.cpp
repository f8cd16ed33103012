// SPDX-License-Identifier: MIT
#include "kernel/sync_file_probe.hpp"

namespace dmabridge::detail {

Result<std::string> probe_sync_file_ioctls(const DmaBuf& buf) {
    auto fence = buf.export_sync_file(Access::read);
    if (!fence) {
        if (!fence.error().is(Errc::unsupported)) return fence.error();
        return fence.error().message();
    }
    if (auto back = buf.import_sync_file(*fence, Access::read); !back) {
        if (!back.error().is(Errc::unsupported)) return back.error();
        return back.error().message();
    }
    return std::string();
}

}  // namespace dmabridge::detail
