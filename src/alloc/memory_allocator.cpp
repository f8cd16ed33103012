// SPDX-License-Identifier: MIT
#include "alloc/memory_allocator.hpp"

#include <algorithm>
#include <cstdint>

#include <string>

#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "base/checked_math.hpp"
#include "base/sys.hpp"

namespace dmabridge {
namespace detail {

std::string describe_request(const ImageRequest& request) {
    return "allocate " + std::to_string(request.width) + "x" + std::to_string(request.height) + " " +
           fourcc_to_string(request.fourcc);
}

Result<BufferPlan> plan_buffer(const std::string& backend, std::uint64_t size, std::string_view name) {
    BufferPlan plan;
    plan.what = backend + ": allocate " + std::to_string(size) + " bytes";
    if (size == 0) return Error::library(Errc::invalid_argument, plan.what + ": the size is zero");
    auto rounded = align_up(size, static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE)));
    if (!rounded || *rounded > static_cast<std::uint64_t>(INT64_MAX))
        return Error::library(Errc::invalid_argument, plan.what + ": the size overflows");
    if (auto ok = check_dmabuf_name(name, plan.what + ": name"); !ok) return ok.error();
    plan.size = *rounded;
    plan.name = name.empty() ? std::string(default_buffer_name) : std::string(name);
    return plan;
}

Status check_image_request(const ImageRequest& request, const std::string& backend) {
    const std::string what = backend + ": " + describe_request(request);
    if (request.width == 0 || request.height == 0)
        return Error::library(Errc::invalid_argument, what + ": the extent is empty");
    if (!find_format(request.fourcc)) return Error::library(Errc::unknown_format, what + ": unknown DRM fourcc");
    if (auto ok = check_dmabuf_name(request.name, what + ": name"); !ok) return ok;
    return {};
}

namespace {

std::uint64_t meminfo_bytes(const std::string& text, const char* key) {
    auto value = find_key(text, key);
    if (!value) return 0;
    std::uint64_t kib = 0;
    for (char c : *value) {
        if (c < '0' || c > '9') break;
        kib = kib * 10 + static_cast<std::uint64_t>(c - '0');
        if (kib > (UINT64_MAX >> 11)) return 0;
    }
    return kib << 10;
}

std::string mib(std::uint64_t bytes) { return std::to_string(bytes >> 20) + " MiB"; }

}  // namespace

MemoryInfo memory_info() {
    MemoryInfo info;
    if (auto text = read_text_file("/proc/meminfo")) {
        info.total = meminfo_bytes(*text, "MemTotal:");
        info.available = meminfo_bytes(*text, "MemAvailable:");
    }
    struct sysinfo si {};
    if ((info.total == 0 || info.available == 0) && ::sysinfo(&si) == 0) {
        const std::uint64_t unit = si.mem_unit ? si.mem_unit : 1;
        if (info.total == 0) info.total = static_cast<std::uint64_t>(si.totalram) * unit;
        if (info.available == 0)
            info.available = (static_cast<std::uint64_t>(si.freeram) + static_cast<std::uint64_t>(si.bufferram)) * unit;
    }
    return info;
}

Status check_fits_memory(const std::string& what, std::uint64_t bytes, Commit commit) {
    const MemoryInfo mem = memory_info();
    if (mem.total != 0 && bytes > mem.total)
        return Error::library(Errc::limit_exceeded, what + ": " + std::to_string(bytes) + " bytes (" + mib(bytes) +
                                                        ") is more than the machine's physical memory (MemTotal " +
                                                        mib(mem.total) + ")");
    if (commit == Commit::now && mem.available != 0 && bytes > mem.available)
        return Error::library(Errc::limit_exceeded, what + ": " + std::to_string(bytes) + " bytes (" + mib(bytes) +
                                                        ") is more than the memory available (MemAvailable " +
                                                        mib(mem.available) + "); the kernel would call the OOM "
                                                        "killer rather than fail");
    return {};
}

void name_buffer(const DmaBuf& buffer, const std::string& name, const std::string& what) {
    if (auto named = buffer.set_name(name); !named)
        log_message(LogLevel::warning,
                    what + ": the buffer is allocated but stays unnamed: " + named.error().message());
}

Status check_device_node(int fd, const std::string& path, const std::string& devname_prefix,
                         const std::string& wanted, const std::string& what) {
    struct stat st {};
    if (::fstat(fd, &st) != 0) return last_error(what + ": fstat " + path);
    const auto refuse = [&](const std::string& is) {
        return Error::library(Errc::invalid_argument, what + ": " + path + " is " + is + ", not " + wanted);
    };
    if (S_ISREG(st.st_mode)) return refuse("a regular file");
    if (S_ISDIR(st.st_mode)) return refuse("a directory");
    if (!S_ISCHR(st.st_mode)) return refuse("not a character device");
    const std::string number = std::to_string(major(st.st_rdev)) + ":" + std::to_string(minor(st.st_rdev));
    auto uevent = read_text_file("/sys/dev/char/" + number + "/uevent");
    if (!uevent) {
        log_message(LogLevel::debug, what + ": cannot identify " + path + " (" + uevent.error().message() +
                                         "); trusting that it is " + wanted);
        return {};
    }
    const std::string devname = find_key(*uevent, "DEVNAME=").value_or("");
    if (devname.compare(0, devname_prefix.size(), devname_prefix) != 0)
        return refuse("the character device " + number + " (\"" + (devname.empty() ? "unnamed" : devname) + "\")");
    return {};
}

}  // namespace detail

Result<BufferDesc> MemoryAllocator::allocate(const ImageRequest& request) {
    const std::string what = backend_name() + ": " + detail::describe_request(request);
    if (auto ok = detail::check_image_request(request, backend_name()); !ok) return ok.error();
    const auto& mods = request.modifiers;
    if (!mods.empty() && std::find(mods.begin(), mods.end(), modifier::linear) == mods.end())
        return Error::library(Errc::unsupported, what + ": only LINEAR can be allocated here, and the request's " +
                                                     std::to_string(mods.size()) + " modifiers do not include it");
    auto layout = linear_layout(request.fourcc, request.width, request.height, layout_);
    if (!layout) return layout.error().with_context(backend_name());
    auto buffer = allocate_bytes(layout->size, request.name);
    if (!buffer) return buffer.error().with_context(detail::describe_request(request));

    BufferDesc desc;
    desc.width = request.width;
    desc.height = request.height;
    desc.fourcc = request.fourcc;
    desc.modifier = modifier::linear;
    for (std::uint32_t p = 0; p < layout->plane_count; ++p) {
        // Every plane holds its own reference; the last one takes the original.
        auto ref = p + 1 == layout->plane_count ? Result<DmaBuf>(std::move(*buffer)) : buffer->dup();
        if (!ref) return ref.error().with_context(what + ": plane " + std::to_string(p));
        desc.planes.push_back({std::move(*ref), layout->offsets[p], layout->strides[p]});
    }
    if (auto ok = desc.validate(); !ok) return ok.error().with_context(backend_name());
    return desc;
}

}  // namespace dmabridge
