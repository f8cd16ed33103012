// SPDX-License-Identifier: MIT
#include "png.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <memory>

namespace sample {
namespace {

// CRC-32 (ISO 3309, polynomial 0xedb88320), as PNG chunks carry it.
std::uint32_t crc32(std::string_view bytes, std::uint32_t crc = 0) {
    static const auto table = [] {
        std::array<std::uint32_t, 256> t{};
        for (std::uint32_t n = 0; n < 256; ++n) {
            std::uint32_t c = n;
            for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
            t[n] = c;
        }
        return t;
    }();
    crc = ~crc;
    for (char ch : bytes) crc = table[(crc ^ static_cast<std::uint8_t>(ch)) & 0xff] ^ (crc >> 8);
    return ~crc;
}

void put_be32(std::string& out, std::uint32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>((v >> shift) & 0xff));
}

void put_chunk(std::string& out, const char type[5], const std::string& data) {
    put_be32(out, static_cast<std::uint32_t>(data.size()));
    std::string body(type, 4);
    body += data;
    out += body;
    put_be32(out, crc32(body));
}

}  // namespace

std::string encode_png(std::uint32_t width, std::uint32_t height, std::span<const std::uint8_t> rgba) {
    std::string ihdr;
    put_be32(ihdr, width);
    put_be32(ihdr, height);
    ihdr += std::string("\x08\x06\x00\x00\x00", 5);  // 8 bits, RGBA, deflate, no filter, no interlace

    // The raw scanlines: filter type 0 (none) before each row.
    std::string raw;
    const std::size_t row_bytes = std::size_t{width} * 4;
    raw.reserve((row_bytes + 1) * height);
    for (std::uint32_t y = 0; y < height; ++y) {
        raw.push_back('\0');
        raw.append(reinterpret_cast<const char*>(rgba.data()) + y * row_bytes, row_bytes);
    }

    // zlib stream of stored blocks (at most 65535 bytes each), then the Adler-32 of the data.
    std::string z("\x78\x01", 2);
    std::size_t pos = 0;
    do {
        const std::size_t n = std::min<std::size_t>(65535, raw.size() - pos);
        const bool last = pos + n == raw.size();
        z.push_back(last ? '\x01' : '\x00');
        z.push_back(static_cast<char>(n & 0xff));
        z.push_back(static_cast<char>(n >> 8));
        z.push_back(static_cast<char>(~n & 0xff));
        z.push_back(static_cast<char>((~n >> 8) & 0xff));
        z.append(raw, pos, n);
        pos += n;
    } while (pos < raw.size());
    std::uint32_t a = 1, b = 0;
    for (char ch : raw) {
        a = (a + static_cast<std::uint8_t>(ch)) % 65521;
        b = (b + a) % 65521;
    }
    put_be32(z, (b << 16) | a);

    std::string png("\x89PNG\r\n\x1a\n", 8);
    put_chunk(png, "IHDR", ihdr);
    put_chunk(png, "IDAT", z);
    put_chunk(png, "IEND", {});
    return png;
}

dmabridge::Status write_png(const std::string& path, std::uint32_t width, std::uint32_t height,
                            std::span<const std::uint8_t> rgba) {
    if (width == 0 || height == 0 || rgba.size() != std::size_t{width} * height * 4)
        return dmabridge::Error::library(dmabridge::Errc::invalid_argument,
                                         "write_png " + path + ": " + std::to_string(rgba.size()) + " bytes for " +
                                             std::to_string(width) + "x" + std::to_string(height) + " RGBA");
    const std::string png = encode_png(width, height, rgba);
    const std::unique_ptr<FILE, int (*)(FILE*)> file(std::fopen(path.c_str(), "wbe"), &std::fclose);
    if (!file) return dmabridge::Error::from_errno(errno, "open " + path);
    if (std::fwrite(png.data(), 1, png.size(), file.get()) != png.size() || std::fflush(file.get()) != 0)
        return dmabridge::Error::from_errno(errno, "write " + path);
    return {};
}

}  // namespace sample
