// SPDX-License-Identifier: MIT
#pragma once
// A real weston for the Wayland tests: headless, GL renderer, kiosk shell, started once per test
// binary and killed at exit.
//
// In the VM, Mesa's EGL picks kms_swrast on vgem's DRM node and weston then crashes on the first
// client dma-buf; weston is therefore started in a private mount namespace with an empty tmpfs
// over /dev/dri, so that Mesa falls back to llvmpipe (which imports dma-bufs by mapping them).
// The equivalent command line:
//   unshare -m --propagation private sh -c 'mount -t tmpfs none /dev/dri &&
//     exec weston --backend=headless --renderer=gl --shell=kiosk --width=64 --height=64
//                 --idle-time=0 --debug --socket=NAME'

#include <cstdint>
#include <string>
#include <vector>

#include <sys/types.h>

#include <dmabridge/base/result.hpp>

namespace dmabridge::test {

/// A picture the compositor showed: 8-bit RGBA rows, top to bottom.
struct Screenshot {
    std::uint32_t width = 0;
    std::uint32_t height = 0;
    std::vector<std::uint8_t> rgba;
};

class Weston {
public:
    /// Forks and execs weston (output `width` x `height`) in a private runtime directory; does
    /// not wait for it. Fails when fork fails or the runtime directory cannot be made.
    /// `shader_cache_dir`, when not empty, is weston's MESA_SHADER_CACHE_DIR (unless the
    /// environment sets one): llvmpipe's compiled shaders survive to the next run.
    /// `hide_dri` false leaves /dev/dri visible: weston then renders with kms_swrast on vgem and
    /// offers linux-dmabuf v4+ feedback naming vgem, but crashes on a client's dma-buf.
    static Result<Weston> launch(std::uint32_t width, std::uint32_t height, const std::string& shader_cache_dir = {},
                                 bool hide_dri = true);

    Weston(Weston&&) noexcept;
    Weston& operator=(Weston&&) noexcept;
    Weston(const Weston&) = delete;
    Weston& operator=(const Weston&) = delete;
    /// stop().
    ~Weston();

    /// Waits (up to `seconds`) until weston's socket exists; fails with weston's log when it
    /// exits first or the time passes. Returns the seconds since launch().
    Result<double> wait_ready(int seconds);

    /// The display name to connect to (a full path, so WAYLAND_DISPLAY need not be set).
    const std::string& socket_path() const { return socket_path_; }

    /// Runs weston-screenshooter against it and reads the PNG it writes.
    Result<Screenshot> screenshot();

    /// The last lines of weston's log, for failure messages.
    std::string log_tail(std::size_t lines = 30) const;

    /// SIGTERM, then SIGKILL after 5 s; reaps it and removes the runtime directory.
    void stop();

    /// True while weston has not exited.
    bool running();

private:
    Weston() = default;
    pid_t pid_ = -1;
    std::string runtime_dir_;
    std::string socket_path_;
    std::string log_path_;
    double started_ = 0;
};

}  // namespace dmabridge::test
