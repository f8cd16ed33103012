// SPDX-License-Identifier: MIT
#pragma once
/// @file result.hpp
/// Errors and results. dmabridge throws no exceptions across its API: every operation that can
/// fail returns a Result<T> (a value or an Error) or a Status (Result<void>).
/// An Error carries where its code comes from (errno, VkResult or dmabridge itself), the code,
/// and a message with the operation, the object and the numbers involved, for example
/// "import plane 1: offset 4096 + stride 2560 x 240 rows = 618496 > dma-buf size 614400".

#include <cassert>
#include <cstdint>
#include <string>
#include <utility>
#include <variant>

namespace dmabridge {

/// Where an Error's code comes from.
enum class ErrorDomain : std::uint8_t {
    system,   ///< code is an errno value from a system call
    vulkan,   ///< code is a VkResult
    library,  ///< code is an Errc value
    egl,      ///< code is an EGL error (eglGetError(), e.g. EGL_BAD_MATCH 0x3009)
    gl,       ///< code is a GL error (glGetError(), e.g. GL_INVALID_OPERATION 0x0502)
};

/// dmabridge's own error codes (ErrorDomain::library).
enum class Errc : int {
    invalid_argument = 1,  ///< a parameter or description is malformed or out of bounds
    not_a_dmabuf,          ///< an fd that was expected to be a dma-buf is something else
    not_a_sync_file,       ///< an fd that was expected to be a sync_file is something else
    unsupported,           ///< the kernel, driver or device cannot do what was asked
    unknown_format,        ///< a DRM fourcc dmabridge has no layout description for
    not_found,             ///< a device, heap or entry does not exist
    limit_exceeded,        ///< a size is above a limit the kernel or driver enforces
    /// The object called, or one passed in (a DmaBuf, SyncFile, a plane's dma-buf), is empty:
    /// it was moved from, released, or default-constructed. Every public type answers this
    /// condition with this one code, at once, without blocking.
    empty_object,
};

/// An error: its domain, its code and a message with context. Copyable and cheap to move.
class Error {
public:
    /// An error of `domain` with `code` (errno, VkResult, Errc, EGL or GL code) and `message`.
    Error(ErrorDomain domain, int code, std::string message)
        : domain_(domain), code_(code), message_(std::move(message)) {}

    /// An error from errno (ErrorDomain::system); the message gets ": <strerror>" appended.
    static Error from_errno(int err, std::string context);
    /// A library error (ErrorDomain::library).
    static Error library(Errc code, std::string message) {
        return Error(ErrorDomain::library, static_cast<int>(code), std::move(message));
    }

    /// Where code() comes from.
    ErrorDomain domain() const noexcept { return domain_; }
    /// The raw code, to be read according to domain() (an errno value, a VkResult, an Errc...).
    int code() const noexcept { return code_; }
    /// What failed, on which object, with the numbers involved.
    const std::string& message() const noexcept { return message_; }

    /// True when this is a system error with errno `err`.
    bool is_errno(int err) const noexcept { return domain_ == ErrorDomain::system && code_ == err; }
    /// True when this is a library error with code `c`.
    bool is(Errc c) const noexcept {
        return domain_ == ErrorDomain::library && code_ == static_cast<int>(c);
    }

    /// Returns a copy whose message is "<context>: <message>"; domain and code are kept.
    Error with_context(const std::string& context) const {
        return Error(domain_, code_, context + ": " + message_);
    }

private:
    ErrorDomain domain_;
    int code_;
    std::string message_;
};

namespace detail {
/// Reading the side of a Result that is not there: prints what was read and, for an error, its
/// message to stderr, then std::abort(). Never throws.
[[noreturn]] void bad_result_access(const char* side, const Error* error) noexcept;
}  // namespace detail

/// A value of type T or an Error. Test with `if (r)`, read with `*r`, `r->`, `r.value()` or
/// `r.error()`. Reading the side that is not there is a programming error that ends the process
/// (std::abort() after printing the error's message to stderr), in every build type: a Result
/// never throws, not even std::bad_variant_access.
template <typename T>
class [[nodiscard]] Result {
public:
    /// A success holding `value` (implicit, so that `return value;` works).
    Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}
    /// A failure holding `error` (implicit, so that `return error;` works).
    Result(Error error) : v_(std::in_place_index<1>, std::move(error)) {}

    /// True when the Result holds a value.
    bool ok() const noexcept { return v_.index() == 0; }
    /// Same as ok().
    explicit operator bool() const noexcept { return ok(); }

    /// The value. Reading it from a Result that holds an error prints that error to stderr and
    /// calls std::abort(); test ok() first. `*r` and `r->` are the same access.
    T& value() & { check_value(); return std::get<0>(v_); }
    const T& value() const& { check_value(); return std::get<0>(v_); }
    T&& value() && { check_value(); return std::get<0>(std::move(v_)); }
    T& operator*() & { return value(); }
    const T& operator*() const& { return value(); }
    T&& operator*() && { return std::move(*this).value(); }
    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }

    /// The error. Reading it from a Result that holds a value calls std::abort().
    const Error& error() const {
        if (ok()) detail::bad_result_access("error() of a Result that holds a value", nullptr);
        return std::get<1>(v_);
    }

private:
    // After this check std::get cannot throw: the index is the one asked for.
    void check_value() const noexcept {
        if (!ok()) detail::bad_result_access("the value of a Result that holds an error", std::get_if<1>(&v_));
    }
    std::variant<T, Error> v_;
};

/// Success or an Error.
template <>
class [[nodiscard]] Result<void> {
public:
    /// Success.
    Result() = default;
    /// A failure holding `error` (implicit, so that `return error;` works).
    Result(Error error) : error_(std::move(error)), failed_(true) {}

    /// True on success.
    bool ok() const noexcept { return !failed_; }
    /// Same as ok().
    explicit operator bool() const noexcept { return ok(); }
    /// The error. Reading it from a Status that succeeded calls std::abort().
    const Error& error() const {
        if (!failed_) detail::bad_result_access("error() of a Status that succeeded", nullptr);
        return error_;
    }

private:
    Error error_{ErrorDomain::library, 0, {}};
    bool failed_ = false;
};

/// The result of an operation that returns nothing but can fail.
using Status = Result<void>;


}  // namespace dmabridge
