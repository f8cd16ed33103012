// SPDX-License-Identifier: MIT
#include "wayland/format_table.hpp"

#include <cerrno>
#include <cstring>
#include <string>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/sys.hpp"

namespace dmabridge::wayland::detail {

Result<std::vector<FormatTableEntry>> parse_format_table(std::span<const std::byte> bytes) {
    if (bytes.empty() || bytes.size() % format_table_row_bytes != 0)
        return Error::library(Errc::invalid_argument,
                              "linux-dmabuf format table: size " + std::to_string(bytes.size()) +
                                  " is not a positive multiple of " + std::to_string(format_table_row_bytes));
    const std::size_t rows = bytes.size() / format_table_row_bytes;
    if (rows > max_format_table_rows)
        return Error::library(Errc::limit_exceeded, "linux-dmabuf format table: " + std::to_string(rows) +
                                                        " rows > " + std::to_string(max_format_table_rows) +
                                                        " (tranche indices are 16-bit)");
    std::vector<FormatTableEntry> table(rows);
    for (std::size_t i = 0; i < rows; ++i) {
        const std::byte* row = bytes.data() + i * format_table_row_bytes;
        std::memcpy(&table[i].fourcc, row, sizeof(std::uint32_t));
        std::memcpy(&table[i].modifier, row + 8, sizeof(std::uint64_t));
    }
    return table;
}

Result<std::vector<FormatTableEntry>> read_format_table(int fd, std::uint64_t size) {
    constexpr std::uint64_t max_bytes = max_format_table_rows * format_table_row_bytes;
    if (size == 0)
        return Error::library(Errc::invalid_argument, "linux-dmabuf format table: announced size 0");
    // The announced size bounds the buffer before anything is read: a compositor announcing
    // 4 GiB gets no 4 GiB allocation.
    if (size > max_bytes)
        return Error::library(Errc::limit_exceeded, "linux-dmabuf format table: size " + std::to_string(size) +
                                                        " > " + std::to_string(max_bytes));
    // Only a memfd (weston, mutter, KWin) or a POSIX shared-memory file (wlroots: /dev/shm),
    // told from the fd's /proc link before anything asks the file: a pipe or socket has no
    // offsets and its read could block on the compositor, and a file of another file system (a
    // FUSE mount the compositor serves) could make even fstat wait for a daemon that never answers.
    auto link = dmabridge::detail::fd_link(fd, "linux-dmabuf format table");
    if (!link) return link.error();
    const bool memfd = link->rfind("/memfd:", 0) == 0;
    const bool shm = link->rfind("/dev/shm/", 0) == 0;
    if (!memfd && !shm)
        return Error::library(Errc::invalid_argument,
                              "linux-dmabuf format table: the fd is " + *link +
                                  (link->front() == '/' ? ", not a memfd or a /dev/shm file (dmabridge does not ask "
                                                          "another file system for a peer)"
                                                        : ", not a regular file"));
    // The link is only a name: a compositor may mount a FUSE file system under /dev/shm (in its
    // own namespace, or on a directory it owns there). F_GET_SEALS answers only for shmem files
    // (memfd, tmpfs, hugetlbfs) and never asks the file system: the proof that reading is safe.
    if (::fcntl(fd, F_GET_SEALS) < 0)
        return Error::library(Errc::invalid_argument,
                              "linux-dmabuf format table: the fd (" + *link +
                                  ") is not a shared-memory file (F_GET_SEALS refused it)");
    struct stat st{};
    if (::fstat(fd, &st) != 0) return dmabridge::detail::last_error("linux-dmabuf format table: fstat");
    if (!S_ISREG(st.st_mode))
        return Error::library(Errc::invalid_argument,
                              "linux-dmabuf format table: the fd is not a regular file (mode " +
                                  dmabridge::detail::hex(st.st_mode & S_IFMT) + ")");
    // Read, not mapped: the file is the compositor's and it can shrink it at any moment (the
    // protocol asks for no seal). A mapping read past the new end raises SIGBUS and kills the
    // client; pread sees a short file and the table is refused.
    std::vector<std::byte> bytes(size);
    std::size_t got = 0;
    while (got < size) {
        const ssize_t n = ::pread(fd, bytes.data() + got, size - got, static_cast<off_t>(got));
        if (n < 0) {
            if (errno == EINTR) continue;
            return dmabridge::detail::last_error("linux-dmabuf format table: read " + std::to_string(size) +
                                                 " bytes at " + std::to_string(got));
        }
        if (n == 0)
            return Error::library(Errc::invalid_argument, "linux-dmabuf format table: announced size " +
                                                              std::to_string(size) + " but the file has " +
                                                              std::to_string(got) + " bytes");
        got += static_cast<std::size_t>(n);
    }
    return parse_format_table(bytes);
}

Status add_tranche_formats(const std::vector<FormatTableEntry>& table, std::span<const std::byte> indices,
                           FormatSet& out) {
    if (indices.size() % sizeof(std::uint16_t) != 0)
        return Error::library(Errc::invalid_argument, "linux-dmabuf tranche_formats: " +
                                                          std::to_string(indices.size()) +
                                                          " bytes is not a whole number of 16-bit indices");
    const std::size_t count = indices.size() / sizeof(std::uint16_t);
    for (std::size_t i = 0; i < count; ++i) {
        std::uint16_t index = 0;
        std::memcpy(&index, indices.data() + i * sizeof index, sizeof index);
        if (index >= table.size())
            return Error::library(Errc::invalid_argument, "linux-dmabuf tranche_formats: index " +
                                                              std::to_string(index) + " (entry " + std::to_string(i) +
                                                              ") is past the format table's " +
                                                              std::to_string(table.size()) + " rows");
    }
    for (std::size_t i = 0; i < count; ++i) {
        std::uint16_t index = 0;
        std::memcpy(&index, indices.data() + i * sizeof index, sizeof index);
        out.add(table[index].fourcc, table[index].modifier);
    }
    return {};
}

}  // namespace dmabridge::wayland::detail
