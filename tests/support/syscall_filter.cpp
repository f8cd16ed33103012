// SPDX-License-Identifier: MIT
#include "syscall_filter.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include <dirent.h>
#include <dlfcn.h>
#include <unwind.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include <doctest/doctest.h>

namespace dmabridge::test {
namespace {

constexpr std::uint32_t nr_offset = offsetof(seccomp_data, nr);
constexpr std::uint32_t arg_offset(unsigned i) {
    // The low 32 bits of a 64-bit argument (little-endian).
    return static_cast<std::uint32_t>(offsetof(seccomp_data, args) + 8 * i);
}

sock_filter stmt(std::uint16_t code, std::uint32_t k) { return BPF_STMT(code, k); }
sock_filter jump(std::uint16_t code, std::uint32_t k, std::uint8_t jt, std::uint8_t jf) {
    return BPF_JUMP(code, k, jt, jf);
}

bool install(std::vector<sock_filter>& program) {
    sock_fprog prog{static_cast<unsigned short>(program.size()), program.data()};
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return false;
    // Without SECCOMP_FILTER_FLAG_TSYNC the filter binds this thread only.
    return ::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) == 0;
}

struct Rule {
    long nr;
    const char* name;
    enum Kind { always, flag_missing, arg_equals } kind;
    unsigned arg = 0;
    std::uint32_t value = 0;
};

const std::vector<Rule>& fd_rules() {
    static const std::vector<Rule> rules = {
#ifdef SYS_open
        {SYS_open, "open", Rule::flag_missing, 1, O_CLOEXEC},
#endif
        {SYS_openat, "openat", Rule::flag_missing, 2, O_CLOEXEC},
#ifdef SYS_creat
        {SYS_creat, "creat", Rule::always},
#endif
        {SYS_dup, "dup", Rule::always},
#ifdef SYS_dup2
        {SYS_dup2, "dup2", Rule::always},
#endif
        {SYS_dup3, "dup3", Rule::flag_missing, 2, O_CLOEXEC},
        {SYS_fcntl, "fcntl(F_DUPFD)", Rule::arg_equals, 1, F_DUPFD},
#ifdef SYS_pipe
        {SYS_pipe, "pipe", Rule::always},
#endif
        {SYS_pipe2, "pipe2", Rule::flag_missing, 1, O_CLOEXEC},
        {SYS_memfd_create, "memfd_create", Rule::flag_missing, 1, MFD_CLOEXEC},
#ifdef SYS_eventfd
        {SYS_eventfd, "eventfd", Rule::always},
#endif
        {SYS_eventfd2, "eventfd2", Rule::flag_missing, 1, EFD_CLOEXEC},
#ifdef SYS_epoll_create
        {SYS_epoll_create, "epoll_create", Rule::always},
#endif
        {SYS_epoll_create1, "epoll_create1", Rule::flag_missing, 0, EPOLL_CLOEXEC},
        {SYS_socket, "socket", Rule::flag_missing, 1, SOCK_CLOEXEC},
        {SYS_socketpair, "socketpair", Rule::flag_missing, 1, SOCK_CLOEXEC},
#ifdef SYS_accept
        {SYS_accept, "accept", Rule::always},
#endif
        {SYS_accept4, "accept4", Rule::flag_missing, 3, SOCK_CLOEXEC},
        {SYS_recvmsg, "recvmsg", Rule::flag_missing, 2, MSG_CMSG_CLOEXEC},
    };
    return rules;
}

// What the SIGSYS handler records: async-signal-safe, fixed storage.
struct Trapped {
    long nr;
    char path[160];
    void* frames[24];
    int depth;
};
constexpr int max_trapped = 32;
Trapped trapped[max_trapped];
std::atomic<int> trapped_count{0};

struct UnwindState {
    void** frames;
    int depth, max;
};

_Unwind_Reason_Code unwind_step(_Unwind_Context* context, void* arg) {
    auto* state = static_cast<UnwindState*>(arg);
    if (state->depth >= state->max) return _URC_END_OF_STACK;
    state->frames[state->depth++] = reinterpret_cast<void*>(_Unwind_GetIP(context));
    return _URC_NO_REASON;
}

int unwind(void** frames, int max) {
    UnwindState state{frames, 0, max};
    _Unwind_Backtrace(unwind_step, &state);
    return state.depth;
}

void on_sigsys(int, siginfo_t* info, void* context) {
    auto* uc = static_cast<ucontext_t*>(context);
    const int slot = trapped_count.fetch_add(1);
    if (slot < max_trapped) {
        Trapped& t = trapped[slot];
        t.nr = info->si_syscall;
        t.path[0] = '\0';
#if defined(__x86_64__)
        const char* path = nullptr;
        if (info->si_syscall == SYS_openat) path = reinterpret_cast<const char*>(uc->uc_mcontext.gregs[REG_RSI]);
#ifdef SYS_open
        if (info->si_syscall == SYS_open) path = reinterpret_cast<const char*>(uc->uc_mcontext.gregs[REG_RDI]);
#endif
        if (path) {
            std::size_t i = 0;
            for (; i + 1 < sizeof t.path && path[i]; ++i) t.path[i] = path[i];
            t.path[i] = '\0';
        }
#endif
        // Who made the call (resolved after the thread ends), by the unwinder itself: it
        // follows the signal frame by its CFI (sanitizers replace backtrace() with a
        // frame-pointer walk that cannot), and it was warmed up before the filter went in.
        t.depth = unwind(t.frames, 24);
    }
#if defined(__x86_64__)
    // The call is redone with its close-on-exec flag (that passes the filter), so that the code
    // under test goes on as it would: the check only observes.
    auto& r = uc->uc_mcontext.gregs;
    const long a[6] = {r[REG_RDI], r[REG_RSI], r[REG_RDX], r[REG_R10], r[REG_R8], r[REG_R9]};
    long result = -ENOSYS;
    const long nr = info->si_syscall;
    bool redone = false;
    for (const Rule& rule : fd_rules()) {
        if (rule.nr != nr || rule.kind != Rule::flag_missing) continue;
        long b[6] = {a[0], a[1], a[2], a[3], a[4], a[5]};
        b[rule.arg] |= static_cast<long>(rule.value);
        result = ::syscall(nr, b[0], b[1], b[2], b[3], b[4], b[5]);
        redone = true;
    }
    if (!redone) {
        if (nr == SYS_fcntl || nr == SYS_dup) result = ::syscall(SYS_fcntl, a[0], F_DUPFD_CLOEXEC, nr == SYS_dup ? 0 : a[2]);
#ifdef SYS_dup2
        else if (nr == SYS_dup2) result = a[0] == a[1] ? a[1] : ::syscall(SYS_dup3, a[0], a[1], O_CLOEXEC);
#endif
#ifdef SYS_pipe
        else if (nr == SYS_pipe) result = ::syscall(SYS_pipe2, a[0], O_CLOEXEC);
#endif
#ifdef SYS_creat
        else if (nr == SYS_creat) result = ::syscall(SYS_openat, AT_FDCWD, a[0], O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, a[1]);
#endif
#ifdef SYS_eventfd
        else if (nr == SYS_eventfd) result = ::syscall(SYS_eventfd2, a[0], EFD_CLOEXEC);
#endif
#ifdef SYS_epoll_create
        else if (nr == SYS_epoll_create) result = ::syscall(SYS_epoll_create1, EPOLL_CLOEXEC);
#endif
#ifdef SYS_accept
        else if (nr == SYS_accept) result = ::syscall(SYS_accept4, a[0], a[1], a[2], SOCK_CLOEXEC);
#endif
    }
    if (result == -1) result = -errno;
    r[REG_RAX] = result;
#endif
}

// The shared object (or executable) of the first frame of a trapped call that is neither the
// handler nor the C/C++ runtime: the code that asked for the fd.
std::string object_of(void* address) {
    Dl_info dl{};
    if (!::dladdr(address, &dl) || !dl.dli_fname) return "?";
    const std::string file = dl.dli_fname;
    return file.substr(file.rfind('/') + 1);
}

bool is_runtime(const std::string& object) {
    for (const char* name : {"libc.so", "libstdc++.so", "libgcc_s.so", "libasan.so", "libubsan.so", "libtsan.so"})
        if (object.rfind(name, 0) == 0) return true;
    return false;
}

std::string owner_of(const Trapped& t) {
    // The first frames are this file's (the unwinder's caller, the handler), then the signal
    // trampoline (libc), then the code that made the call.
    const std::string self = object_of(reinterpret_cast<void*>(&on_sigsys));
    int i = 0;
    while (i < t.depth && object_of(t.frames[i]) == self) ++i;
    ++i;  // the trampoline
    if (i < t.depth) {
        // A sanitizer's own system call (not an interceptor passing one on) is the runtime's.
        const std::string site = object_of(t.frames[i]);
        if (is_runtime(site) && site.rfind("libc.so", 0) != 0) return site + " (sanitizer runtime)";
    }
    // The code that called into the runtimes owns the call, unless what it called was a
    // sanitizer's instrumentation hook (__ubsan_handle_*, __asan_*, ...) rather than an
    // interceptor of a libc function: then the sanitizer made the call for itself.
    std::string hook;
    for (; i < t.depth; ++i) {
        const std::string object = object_of(t.frames[i]);
        if (object == "?") continue;
        if (!is_runtime(object)) return hook.empty() ? object : hook;
        Dl_info dl{};
        if (object.rfind("libc.so", 0) != 0 && ::dladdr(t.frames[i], &dl) && dl.dli_sname) {
            const std::string symbol = dl.dli_sname;
            for (const char* prefix : {"__ubsan", "__asan", "__tsan", "__lsan", "__sanitizer"})
                if (symbol.rfind(prefix, 0) == 0) hook = object + " (sanitizer runtime, " + symbol + ")";
        }
    }
    return hook.empty() ? "?" : hook;
}

const char* rule_name(long nr) {
    for (const Rule& r : fd_rules())
        if (r.nr == nr) return r.name;
    return "?";
}

void run_on_thread(std::vector<sock_filter> program, const std::function<void()>& body) {
    bool installed = false;
    std::thread t([&] {
        installed = install(program);
        if (installed) body();
    });
    t.join();
    REQUIRE_MESSAGE(installed, "cannot install a seccomp filter: " << std::strerror(errno));
}

}  // namespace

void run_with_failing_syscall(long syscall_nr, unsigned arg_index, std::uint32_t value, int err,
                              const std::function<void()>& body) {
    std::vector<sock_filter> p = {
        stmt(BPF_LD | BPF_W | BPF_ABS, nr_offset),
        jump(BPF_JMP | BPF_JEQ | BPF_K, static_cast<std::uint32_t>(syscall_nr), 0, 3),
        stmt(BPF_LD | BPF_W | BPF_ABS, arg_offset(arg_index)),
        jump(BPF_JMP | BPF_JEQ | BPF_K, value, 0, 1),
        stmt(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (static_cast<std::uint32_t>(err) & SECCOMP_RET_DATA)),
        stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    run_on_thread(std::move(p), body);
}

std::vector<FdCall> calls_creating_fds_without_cloexec(const std::function<void()>& body) {
    std::vector<sock_filter> p;
    for (const Rule& r : fd_rules()) {
        p.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, nr_offset));
        switch (r.kind) {
        case Rule::always:
            p.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, static_cast<std::uint32_t>(r.nr), 0, 1));
            p.push_back(stmt(BPF_RET | BPF_K, SECCOMP_RET_TRAP));
            break;
        case Rule::flag_missing:
            p.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, static_cast<std::uint32_t>(r.nr), 0, 4));
            p.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, arg_offset(r.arg)));
            p.push_back(jump(BPF_JMP | BPF_JSET | BPF_K, r.value, 1, 0));
            p.push_back(stmt(BPF_RET | BPF_K, SECCOMP_RET_TRAP));
            p.push_back(stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
            break;
        case Rule::arg_equals:
            p.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, static_cast<std::uint32_t>(r.nr), 0, 4));
            p.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, arg_offset(r.arg)));
            p.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, r.value, 0, 1));
            p.push_back(stmt(BPF_RET | BPF_K, SECCOMP_RET_TRAP));
            p.push_back(stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
            break;
        }
    }
    p.push_back(stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));

    void* warm[4];
    (void)unwind(warm, 4);
    struct sigaction action {}, previous{};
    action.sa_sigaction = on_sigsys;
    action.sa_flags = SA_SIGINFO;
    sigemptyset(&action.sa_mask);
    REQUIRE(::sigaction(SIGSYS, &action, &previous) == 0);
    trapped_count = 0;
    run_on_thread(std::move(p), body);
    ::sigaction(SIGSYS, &previous, nullptr);

    std::vector<FdCall> out;
    const int n = std::min(trapped_count.load(), max_trapped);
    for (int i = 0; i < n; ++i) {
        std::string line = rule_name(trapped[i].nr);
        if (trapped[i].path[0]) line += std::string(" ") + trapped[i].path;
        if (std::getenv("DMABRIDGE_TEST_FRAMES"))
            for (int f = 0; f < trapped[i].depth; ++f) line += " <" + object_of(trapped[i].frames[f]) + ">";
        out.push_back({line + " without close-on-exec", owner_of(trapped[i])});
    }
    if (trapped_count > max_trapped)
        out.push_back({"... and " + std::to_string(trapped_count - max_trapped) + " more calls", "?"});
    return out;
}

std::vector<int> fds_without_cloexec() {
    std::vector<int> out;
    DIR* dir = ::opendir("/proc/self/fd");
    REQUIRE(dir != nullptr);
    const int own = ::dirfd(dir);
    while (dirent* e = ::readdir(dir)) {
        if (e->d_name[0] == '.') continue;
        const int fd = std::atoi(e->d_name);
        if (fd == own) continue;
        const int flags = ::fcntl(fd, F_GETFD);
        if (flags >= 0 && !(flags & FD_CLOEXEC)) out.push_back(fd);
    }
    ::closedir(dir);
    return out;
}

}  // namespace dmabridge::test
