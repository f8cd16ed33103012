// SPDX-License-Identifier: MIT
// linux-dmabuf v4 feedback as a compositor sends it, well-formed and hostile: the format table
// (an fd and a size) and tranches of 16-bit indices into it.
#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include <dmabridge/base/unique_fd.hpp>
#include <dmabridge/format/fourcc.hpp>

#include "wayland/format_table.hpp"

using namespace dmabridge;
using namespace dmabridge::wayland::detail;

namespace {

std::vector<std::byte> table_bytes(const std::vector<FormatTableEntry>& rows) {
    std::vector<std::byte> bytes(rows.size() * format_table_row_bytes);
    for (std::size_t i = 0; i < rows.size(); ++i) {
        std::memcpy(&bytes[i * 16], &rows[i].fourcc, 4);
        std::memcpy(&bytes[i * 16 + 8], &rows[i].modifier, 8);
    }
    return bytes;
}

std::vector<std::byte> indices(std::initializer_list<std::uint16_t> list) {
    std::vector<std::byte> out(list.size() * 2);
    std::size_t i = 0;
    for (auto v : list) std::memcpy(&out[2 * i++], &v, 2);
    return out;
}

UniqueFd memfd_with(const std::vector<std::byte>& bytes) {
    UniqueFd fd(::memfd_create("format-table", MFD_CLOEXEC));
    REQUIRE(fd.valid());
    REQUIRE(::write(fd.get(), bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()));
    return fd;
}

const std::vector<FormatTableEntry> rows = {
    {fourcc::XRGB8888, modifier::linear},
    {fourcc::ARGB8888, modifier::linear},
    {fourcc::XRGB8888, 0x0100000000000001ull},
};

}  // namespace

TEST_CASE("a compositor's format table and tranche indices become its format set") {
    const auto bytes = table_bytes(rows);
    auto table = parse_format_table(bytes);
    REQUIRE(table);
    REQUIRE(table->size() == 3);
    CHECK(table->at(2).fourcc == fourcc::XRGB8888);
    CHECK(table->at(2).modifier == 0x0100000000000001ull);
    FormatSet set;
    REQUIRE(add_tranche_formats(*table, indices({2, 0}), set));
    CHECK(set.contains(fourcc::XRGB8888, modifier::linear));
    CHECK(set.contains(fourcc::XRGB8888, 0x0100000000000001ull));
    CHECK_FALSE(set.contains(fourcc::ARGB8888, modifier::linear));

    auto fd = memfd_with(bytes);
    auto mapped = read_format_table(fd.get(), bytes.size());
    REQUIRE(mapped);
    CHECK(mapped->size() == 3);
}

TEST_CASE("hostile format tables are refused with their numbers") {
    auto bytes = table_bytes(rows);
    CHECK(parse_format_table({}).error().is(Errc::invalid_argument));
    auto odd = parse_format_table(std::span(bytes).first(40));
    REQUIRE_FALSE(odd);
    CHECK(odd.error().message().find("40") != std::string::npos);
    std::vector<std::byte> huge((max_format_table_rows + 1) * format_table_row_bytes);
    CHECK(parse_format_table(huge).error().is(Errc::limit_exceeded));

    // A size past the file's end would fault on access: refused before mapping.
    auto fd = memfd_with(bytes);
    auto past_end = read_format_table(fd.get(), bytes.size() + 16);
    REQUIRE_FALSE(past_end);
    CHECK(past_end.error().message().find("64") != std::string::npos);
    CHECK(read_format_table(fd.get(), 0).error().is(Errc::invalid_argument));
    CHECK_FALSE(read_format_table(-1, 16));
    // Not a regular file: a pipe could block the client's read forever.
    int pipe_fds[2];
    REQUIRE(::pipe2(pipe_fds, O_CLOEXEC) == 0);
    UniqueFd pipe_read(pipe_fds[0]), pipe_write(pipe_fds[1]);
    auto from_pipe = read_format_table(pipe_read.get(), 16);
    REQUIRE_FALSE(from_pipe);
    CHECK(from_pipe.error().is(Errc::invalid_argument));
    CHECK(from_pipe.error().message().find("not a regular file") != std::string::npos);
    // A file of a file system (it could be a FUSE mount the compositor serves): refused by its
    // /proc link, before fstat or a read could wait for that file system.
    char path[] = "/tmp/dmabridge-table-XXXXXX";
    UniqueFd file(::mkstemp(path));
    REQUIRE(file.get() >= 0);
    ::unlink(path);
    REQUIRE(::pwrite(file.get(), bytes.data(), bytes.size(), 0) == static_cast<ssize_t>(bytes.size()));
    auto from_file = read_format_table(file.get(), bytes.size());
    REQUIRE_FALSE(from_file);
    CHECK(from_file.error().message().find("not a memfd or a /dev/shm file") != std::string::npos);
    UniqueFd big(::memfd_create("big-table", MFD_CLOEXEC));
    REQUIRE(::ftruncate(big.get(), (max_format_table_rows + 1) * 16) == 0);
    CHECK(read_format_table(big.get(), (max_format_table_rows + 1) * 16).error().is(Errc::limit_exceeded));
}

TEST_CASE("hostile tranche indices are refused and add nothing") {
    auto table = parse_format_table(table_bytes(rows));
    REQUIRE(table);
    FormatSet set;
    auto past = add_tranche_formats(*table, indices({0, 3}), set);
    REQUIRE_FALSE(past);
    CHECK(past.error().message().find("index 3") != std::string::npos);
    CHECK(set.empty());  // the valid index before the bad one was not added either
    auto odd = indices({1});
    odd.push_back(std::byte{0});
    CHECK(add_tranche_formats(*table, odd, set).error().is(Errc::invalid_argument));
    CHECK(set.empty());
    CHECK(add_tranche_formats({}, indices({0}), set).error().is(Errc::invalid_argument));  // no table sent
    CHECK(add_tranche_formats(*table, {}, set));  // an empty tranche is allowed
}

TEST_CASE("a format table the compositor shrinks while it is read fails cleanly, never with SIGBUS") {
    // The table fd is the compositor's file: it can truncate it at any time, also between the
    // client's size check and its read. A mapping read past the new end raises SIGBUS and kills
    // the client; read_format_table must only ever see a short table (or the whole one).
    const auto bytes = table_bytes(rows);
    auto fd = memfd_with(bytes);
    std::atomic<bool> stop{false};
    std::thread shrinker([&] {
        while (!stop) {
            (void)!::ftruncate(fd.get(), 0);
            (void)!::pwrite(fd.get(), bytes.data(), bytes.size(), 0);
        }
    });
    std::size_t whole = 0, short_tables = 0, wrong = 0;
    std::string first_wrong;
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(500);
    while (std::chrono::steady_clock::now() < until || whole == 0 || short_tables == 0) {
        auto table = read_format_table(fd.get(), bytes.size());
        // A read during the rewrite can see zeros where rows were still being written: whatever
        // it read, a table has the announced number of rows, and a refusal names the sizes.
        if (table && table->size() == rows.size()) {
            ++whole;
        } else if (!table && table.error().is(Errc::invalid_argument) &&
                   table.error().message().find("announced size 48 but the file has") != std::string::npos) {
            ++short_tables;
        } else if (wrong++ == 0) {
            first_wrong = table ? std::to_string(table->size()) + " rows" : table.error().message();
        }
        if (std::chrono::steady_clock::now() > until + std::chrono::seconds(10)) break;
    }
    stop = true;
    shrinker.join();
    INFO(whole << " whole tables, " << short_tables << " short ones");
    CHECK(whole > 0);
    CHECK(short_tables > 0);
    CHECK_MESSAGE(wrong == 0, first_wrong);
}
