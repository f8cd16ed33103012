// SPDX-License-Identifier: MIT
#pragma once
/// @file unique_fd.hpp
/// UniqueFd: the one owner of a file descriptor, so that no fd in dmabridge is held by a bare int.

#include <utility>

#include <dmabridge/base/result.hpp>

namespace dmabridge {

/// Owns one file descriptor and closes it on destruction. Move-only.
/// Thread safety: like an int; distinct objects may be used from distinct threads.
class UniqueFd final {
public:
    /// Holds no fd (get() is -1).
    UniqueFd() noexcept = default;
    /// Takes ownership of `fd` (-1 for none).
    explicit UniqueFd(int fd) noexcept : fd_(fd) {}
    /// Closes the fd, if any. close() is not retried on EINTR: Linux releases the fd even then.
    ~UniqueFd() { reset(); }

    /// Moves: the fd goes with the new owner; `other` is left empty (-1). Assignment closes the
    /// fd held before.
    UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
    UniqueFd& operator=(UniqueFd&& other) noexcept {
        if (this != &other) reset(other.release());
        return *this;
    }
    UniqueFd(const UniqueFd&) = delete;
    UniqueFd& operator=(const UniqueFd&) = delete;

    /// Duplicates `fd` with F_DUPFD_CLOEXEC (one syscall). Fails with Errc::empty_object for -1 (an empty object), EBADF for a closed fd.
    static Result<UniqueFd> dup_of(int fd);

    /// The fd, still owned by this object; -1 when empty.
    int get() const noexcept { return fd_; }
    /// True when an fd is held (get() >= 0). Says nothing about whether the fd is still open.
    bool valid() const noexcept { return fd_ >= 0; }
    /// Same as valid().
    explicit operator bool() const noexcept { return valid(); }

    /// Gives up ownership and returns the fd; the caller must close it.
    [[nodiscard]] int release() noexcept { return std::exchange(fd_, -1); }
    /// Closes the current fd (if any) and takes ownership of `fd`. Resetting to the fd already
    /// held keeps it open.
    void reset(int fd = -1) noexcept;

    /// A new owner of a duplicate of this fd (F_DUPFD_CLOEXEC). Errc::empty_object when empty.

    Result<UniqueFd> dup() const { return dup_of(fd_); }

private:
    int fd_ = -1;
};

}  // namespace dmabridge
