// SPDX-License-Identifier: MIT
#include "syscall_tap.hpp"

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <thread>

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace dmabridge::test {
namespace {

// Every syscall of the filtered thread goes to the listener; a foreign architecture is killed.
int install_filter() {
    sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
    };
    sock_fprog prog{static_cast<unsigned short>(sizeof code / sizeof code[0]), code};
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return -1;
    return static_cast<int>(::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog));
}

}  // namespace

bool SyscallTap::run(const std::function<void(SyscallTap&)>& fn, Decide decide) {
    std::atomic<int> listener{-1};  // set by the filtered thread with a plain store: no syscall
    std::atomic<int> install_errno{0};
    std::thread filtered([&] {
        main_thread_.store(static_cast<int>(::syscall(SYS_gettid)), std::memory_order_release);
        const int fd = install_filter();
        if (fd < 0) {
            install_errno.store(errno ? errno : EINVAL);
            return;
        }
        listener.store(fd, std::memory_order_release);
        fn(*this);
    });
    // Wait for the listener (or the failure) without anything the filtered thread must answer.
    while (listener.load(std::memory_order_acquire) < 0 && install_errno.load() == 0) std::this_thread::yield();
    if (install_errno.load() != 0) {
        filtered.join();
        error_ = std::string("seccomp user notification: ") + std::strerror(install_errno.load());
        return false;
    }
    const int fd = listener.load();
    seccomp_notif req{};
    seccomp_notif_resp resp{};
    for (;;) {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, -1) < 0) {
            if (errno == EINTR) continue;
            break;
        }
        if (p.revents & POLLIN) {
            std::memset(&req, 0, sizeof req);
            if (::ioctl(fd, SECCOMP_IOCTL_NOTIF_RECV, &req) != 0) {
                if (errno == EINTR || errno == ENOENT) continue;
                break;
            }
            const std::uint64_t index = count_.load(std::memory_order_relaxed);
            Call call{req.data.nr, {}, index};
            for (int a = 0; a < 6; ++a) call.args[a] = req.data.args[a];
            const int fail_with = decide ? decide(call) : 0;
            calls_.push_back(req.data.nr);
            callers_.push_back(static_cast<int>(req.pid));
            count_.store(index + 1, std::memory_order_release);
            std::memset(&resp, 0, sizeof resp);
            resp.id = req.id;
            if (fail_with > 0) {
                resp.error = -fail_with;
            } else {
                resp.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
            }
            // ENOENT: the caller was interrupted meanwhile (a signal); it will call again.
            (void)::ioctl(fd, SECCOMP_IOCTL_NOTIF_SEND, &resp);
        } else if (p.revents & (POLLHUP | POLLERR)) {
            break;  // every filtered thread has exited
        }
    }
    filtered.join();
    ::close(fd);
    return true;
}

std::string syscall_name(long nr) {
    switch (nr) {
        case SYS_ioctl: return "ioctl";
        case SYS_poll: return "poll";
        case SYS_ppoll: return "ppoll";
        case SYS_read: return "read";
        case SYS_write: return "write";
        case SYS_openat: return "openat";
        case SYS_close: return "close";
        case SYS_fstat: return "fstat";
        case SYS_newfstatat: return "newfstatat";
        case SYS_fstatfs: return "fstatfs";
        case SYS_lseek: return "lseek";
        case SYS_fcntl: return "fcntl";
        case SYS_mmap: return "mmap";
        case SYS_munmap: return "munmap";
        case SYS_futex: return "futex";
        case SYS_dup: return "dup";
        case SYS_epoll_wait: return "epoll_wait";
        case SYS_epoll_ctl: return "epoll_ctl";
        case SYS_memfd_create: return "memfd_create";
        case SYS_clock_gettime: return "clock_gettime";
        case SYS_sendmsg: return "sendmsg";
        case SYS_recvmsg: return "recvmsg";
        case SYS_sched_yield: return "sched_yield";
        case SYS_madvise: return "madvise";
        default: return "syscall " + std::to_string(nr);
    }
}

}  // namespace dmabridge::test
