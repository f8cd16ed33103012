// SPDX-License-Identifier: MIT
#pragma once
/// @file completion.hpp
/// Completion: one piece of device work that ends once, held by whoever must not act before it
/// ends. Import caches hold one for every recorded use of a buffer and destroy the import only
/// after all of them ended; each API supplies its own kind (a sync_file, a Vulkan submission's
/// fence, a timeline semaphore value, ...).
///
/// A Completion owns what it waits on (a sync_file fd, a reference that keeps a fence from being
/// reset and reused), so that no later call of the application can turn a finished wait into
/// one that never ends.

#include <memory>
#include <string>

#include <dmabridge/base/access.hpp>
#include <dmabridge/base/result.hpp>
#include <dmabridge/kernel/sync_file.hpp>

namespace dmabridge {

/// One piece of work that completes once and then stays complete.
/// Thread safety: every member may be called from several threads at once.
class Completion {
public:
    /// Releases what the completion owns (a sync_file fd, a fence reference) without waiting.
    virtual ~Completion() = default;

    /// True once the work has ended (never blocks; one syscall or API call at most). A
    /// completion whose state cannot be read (a lost device, a fence with an error) counts as
    /// ended: nothing will run any more that could use the buffer.
    virtual bool done() const = 0;
    /// Blocks until the work ended or `timeout` passed (any huge value, and `forever`, wait
    /// without limit). Errors only where the wait itself failed.
    virtual Result<WaitStatus> wait(Timeout timeout) const = 0;
    /// What is waited on, for messages: "sync_file fd 12", "timeline semaphore 0x... value 7".
    virtual std::string describe() const = 0;
};

/// A Completion that ends when every fence of `fence` has signalled. Owns the sync_file.
std::shared_ptr<const Completion> completion_of(SyncFile fence);

}  // namespace dmabridge
