// SPDX-License-Identifier: MIT
#include <dmabridge/kernel/completion.hpp>

namespace dmabridge {
namespace {

class SyncFileCompletion final : public Completion {
public:
    explicit SyncFileCompletion(SyncFile fence) : fence_(std::move(fence)) {}
    bool done() const override {
        // A status that cannot be read (the fd is ours and valid, so this is not expected)
        // counts as ended, as does a fence that signalled with an error.
        auto status = fence_.status();
        return !status || *status != FenceStatus::active;
    }
    Result<WaitStatus> wait(Timeout timeout) const override { return fence_.wait(timeout); }
    std::string describe() const override { return "sync_file fd " + std::to_string(fence_.fd()); }

private:
    SyncFile fence_;
};

}  // namespace

std::shared_ptr<const Completion> completion_of(SyncFile fence) {
    return std::make_shared<SyncFileCompletion>(std::move(fence));
}

}  // namespace dmabridge
