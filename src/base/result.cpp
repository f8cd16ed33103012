// SPDX-License-Identifier: MIT
#include <dmabridge/base/result.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace dmabridge {

Error Error::from_errno(int err, std::string context) {
    context += ": ";
    context += std::strerror(err);
    return Error(ErrorDomain::system, err, std::move(context));
}

namespace detail {

void bad_result_access(const char* side, const Error* error) noexcept {
    // A programming error: the caller read a side it did not test for. Say what was read (and
    // which error was ignored, which is usually the real bug) before ending the process.
    if (error)
        std::fprintf(stderr, "dmabridge: read %s: %s\n", side, error->message().c_str());
    else
        std::fprintf(stderr, "dmabridge: read %s\n", side);
    std::abort();
}

}  // namespace detail
}  // namespace dmabridge
