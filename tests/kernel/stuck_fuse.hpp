// SPDX-License-Identifier: MIT
#pragma once
// A FUSE file system whose daemon stops answering, for tests of fds a hostile peer sends: asking
// such a file's file system (fstat, fstatfs, an ioctl, the flush of its close) waits for the
// daemon, which never has to answer. Header-only: used by the kernel and the Wayland tests.
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <linux/fuse.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

namespace dmabridge::test {

using namespace std::chrono_literals;

// True while some fd of this process points to a path containing `part`.
inline bool fd_on(const std::string& part) {
    for (int fd = 0; fd < 1024; ++fd) {
        char link[256];
        const auto n = ::readlink(("/proc/self/fd/" + std::to_string(fd)).c_str(), link, sizeof link);
        if (n > 0 && std::string(link, static_cast<std::size_t>(n)).find(part) != std::string::npos) return true;
    }
    return false;
}

// A FUSE file system served by this process straight over /dev/fuse (no libfuse): one file,
// "file", that it serves until stop_answering(); from then on it reads every request and answers
// none, as a hostile peer's daemon would. Needs root and a kernel with FUSE (6.12 and 7.x in the
// VM; bullseye's 5.10 has it as a module the VM does not load): `skip` says why not otherwise.
class StuckFuse {
public:
    /// Mounts in a new directory under `base` (which must exist).
    explicit StuckFuse(const std::string& base = "/tmp") {
        // The node appears a moment after boot on some kernels (devtmpfs).
        for (int i = 0; i < 20 && dev_ < 0; ++i) {
            dev_ = ::open("/dev/fuse", O_RDWR | O_CLOEXEC);
            if (dev_ < 0 && errno != ENOENT) break;
            if (dev_ < 0) std::this_thread::sleep_for(100ms);
        }
        if (dev_ < 0) {
            skip = std::string("no /dev/fuse: ") + std::strerror(errno);
            return;
        }
        std::string pattern = base + "/dmabridge-fuse-XXXXXX";
        char* dir = pattern.data();
        if (!::mkdtemp(dir)) {
            skip = std::string("mkdtemp: ") + std::strerror(errno);
            return;
        }
        dir_ = dir;
        const std::string options = "fd=" + std::to_string(dev_) + ",rootmode=40000,user_id=0,group_id=0";
        if (::mount("dmabridge-test", dir_.c_str(), "fuse", MS_NOSUID | MS_NODEV, options.c_str()) != 0) {
            skip = std::string("mount fuse: ") + std::strerror(errno);
            return;
        }
        mounted_ = true;
        // /dev/fuse is readable only once mounted; the kernel's INIT is queued by then.
        server_ = std::thread([this] { serve(); });
    }
    ~StuckFuse() {
        abort();
        if (server_.joinable()) server_.join();
        if (dev_ >= 0) ::close(dev_);
        if (!dir_.empty()) ::rmdir(dir_.c_str());
    }
    StuckFuse(const StuckFuse&) = delete;
    StuckFuse& operator=(const StuckFuse&) = delete;

    std::string file() const { return dir_ + "/file"; }
    /// Aborts the connection: every request still waiting for the daemon fails with ENOTCONN,
    /// the server's read with ENODEV (MNT_FORCE: fuse_umount_begin). Idempotent.
    void abort() {
        if (!mounted_) return;
        mounted_ = false;
        ::umount2(dir_.c_str(), MNT_FORCE);
        ::umount2(dir_.c_str(), MNT_DETACH);
    }
    void stop_answering() { answering_ = false; }

    std::string skip;

private:
    static void fill_attr(fuse_attr& a, std::uint64_t node) {
        a.ino = node;
        a.mode = node == FUSE_ROOT_ID ? (S_IFDIR | 0755) : (S_IFREG | 0644);
        a.nlink = node == FUSE_ROOT_ID ? 2 : 1;
        a.size = node == FUSE_ROOT_ID ? 0 : 4096;
        a.blksize = 4096;
    }
    void reply(std::uint64_t unique, int error, const void* payload = nullptr, std::size_t size = 0) {
        fuse_out_header h{};
        h.len = static_cast<std::uint32_t>(sizeof h + size);
        h.error = -error;
        h.unique = unique;
        iovec v[2] = {{&h, sizeof h}, {const_cast<void*>(payload), size}};
        (void)!::writev(dev_, v, size ? 2 : 1);
    }
    void serve() {
        std::vector<char> buffer(FUSE_MIN_READ_BUFFER + 65536);
        for (;;) {
            const ssize_t n = ::read(dev_, buffer.data(), buffer.size());
            if (n < 0) {
                if (errno == EINTR || errno == ENOENT) continue;
                return;  // ENODEV: the connection was aborted or unmounted
            }
            if (static_cast<std::size_t>(n) < sizeof(fuse_in_header)) continue;
            const auto* in = reinterpret_cast<const fuse_in_header*>(buffer.data());
            const char* arg = buffer.data() + sizeof *in;
            if (!answering_) continue;  // the hostile daemon: the request waits forever
            switch (in->opcode) {
            case FUSE_INIT: {
                const auto* init = reinterpret_cast<const fuse_init_in*>(arg);
                fuse_init_out out{};
                out.major = FUSE_KERNEL_VERSION;
                out.minor = std::min<std::uint32_t>(init->minor, FUSE_KERNEL_MINOR_VERSION);
                out.max_readahead = init->max_readahead;
                out.max_background = 16;
                out.congestion_threshold = 12;
                out.max_write = 4096;
                out.time_gran = 1;
                reply(in->unique, 0, &out, sizeof out);
                break;
            }
            case FUSE_LOOKUP: {
                if (in->nodeid != FUSE_ROOT_ID || std::strcmp(arg, "file") != 0) {
                    reply(in->unique, ENOENT);
                    break;
                }
                fuse_entry_out out{};
                out.nodeid = 2;
                out.generation = 1;
                out.entry_valid = 60;
                out.attr_valid = 0;  // every stat asks the daemon again
                fill_attr(out.attr, 2);
                reply(in->unique, 0, &out, sizeof out);
                break;
            }
            case FUSE_GETATTR: {
                fuse_attr_out out{};
                fill_attr(out.attr, in->nodeid);
                reply(in->unique, 0, &out, sizeof out);
                break;
            }
            case FUSE_OPEN: {
                fuse_open_out out{};
                out.fh = 1;
                reply(in->unique, 0, &out, sizeof out);
                break;
            }
            case FUSE_FLUSH:
            case FUSE_RELEASE:
                reply(in->unique, 0);
                break;
            case FUSE_FORGET:
            case FUSE_BATCH_FORGET:
                break;  // no answer expected
            default:
                reply(in->unique, ENOSYS);
            }
        }
    }

    int dev_ = -1;
    std::string dir_;
    bool mounted_ = false;
    std::atomic<bool> answering_{true};
    std::thread server_;
};

// Runs `work` on a thread. A call still stuck in the FUSE file system when this is destroyed is
// released by aborting the connection first, so that the join (and the test) ends.
struct Bounded {
    StuckFuse& fuse;
    std::atomic<bool> done{false};
    std::thread thread;
    Bounded(StuckFuse& f, std::function<void()> work) : fuse(f), thread([this, w = std::move(work)] { w(); done = true; }) {}
    bool finished_within(std::chrono::milliseconds limit) {
        const auto end = std::chrono::steady_clock::now() + limit;
        while (!done && std::chrono::steady_clock::now() < end) std::this_thread::sleep_for(10ms);
        return done;
    }
    ~Bounded() {
        if (!done) fuse.abort();
        thread.join();
    }
};

}  // namespace dmabridge::test
