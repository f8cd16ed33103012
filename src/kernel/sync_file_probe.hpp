// SPDX-License-Identifier: MIT
#pragma once
// The kernel probe both sync bridges (Vulkan and EGL) make before choosing between sync_files and
// CPU waits.

#include <string>

#include <dmabridge/base/result.hpp>
#include <dmabridge/kernel/dmabuf.hpp>

namespace dmabridge::detail {

/// Asks the kernel, with the real ioctls on `buf`, whether dma-bufs export and import sync_files
/// (DMA_BUF_IOCTL_EXPORT/IMPORT_SYNC_FILE, Linux 6.0+): a read snapshot is exported and imported
/// back as a read fence, which changes nothing a reader or writer waits for. Returns an empty
/// string when they work, and why not when the kernel lacks them (Errc::unsupported: ENOTTY or
/// ENOSYS); any other failure is an error.
Result<std::string> probe_sync_file_ioctls(const DmaBuf& buf);

}  // namespace dmabridge::detail
