// SPDX-License-Identifier: MIT
#include "png.hpp"

#include <png.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>

namespace support {
namespace {

using dmabridge::Errc;
using dmabridge::Error;

// Sizes as png_image and the span must agree on them; the row stride is width * 4.
dmabridge::Status check_size(const char* operation, std::uint32_t width, std::uint32_t height, std::size_t bytes) {
    if (width == 0 || height == 0 || width > std::numeric_limits<std::int32_t>::max() / 4 ||
        bytes != std::size_t{width} * height * 4)
        return Error::library(Errc::invalid_argument, std::string(operation) + ": " + std::to_string(bytes) +
                                                          " bytes for " + std::to_string(width) + "x" +
                                                          std::to_string(height) + " RGBA (expected width * height * 4)");
    return {};
}

png_image rgba_image(std::uint32_t width, std::uint32_t height) {
    png_image image;
    std::memset(&image, 0, sizeof image);
    image.version = PNG_IMAGE_VERSION;
    image.width = width;
    image.height = height;
    image.format = PNG_FORMAT_RGBA;
    return image;
}

}  // namespace

dmabridge::Result<std::string> encode_png(std::uint32_t width, std::uint32_t height,
                                          std::span<const std::uint8_t> rgba) {
    if (auto ok = check_size("encode_png", width, height, rgba.size()); !ok) return ok.error();
    png_image image = rgba_image(width, height);
    // First ask for the size, then write into a buffer of that size.
    png_alloc_size_t size = 0;
    if (!png_image_write_to_memory(&image, nullptr, &size, 0, rgba.data(), 0, nullptr))
        return Error::library(Errc::invalid_argument, std::string("encode_png: ") + image.message);
    std::string png(size, '\0');
    if (!png_image_write_to_memory(&image, png.data(), &size, 0, rgba.data(), 0, nullptr))
        return Error::library(Errc::invalid_argument, std::string("encode_png: ") + image.message);
    png.resize(size);
    return png;
}

dmabridge::Status write_png(const std::string& path, std::uint32_t width, std::uint32_t height,
                            std::span<const std::uint8_t> rgba) {
    if (auto ok = check_size(("write_png " + path).c_str(), width, height, rgba.size()); !ok) return ok;
    png_image image = rgba_image(width, height);
    errno = 0;
    if (!png_image_write_to_file(&image, path.c_str(), 0, rgba.data(), 0, nullptr)) {
        const int err = errno;
        std::string message = "write_png " + path + ": " + image.message;
        png_image_free(&image);
        return err != 0 ? Error::from_errno(err, message) : Error::library(Errc::invalid_argument, message);
    }
    return {};
}

dmabridge::Result<Picture> decode_png(std::span<const std::uint8_t> png) {
    png_image image;
    std::memset(&image, 0, sizeof image);
    image.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&image, png.data(), png.size()))
        return Error::library(Errc::invalid_argument, std::string("decode_png: ") + image.message);
    if (image.width == 0 || image.height == 0 || image.width > 16384 || image.height > 16384) {
        const std::string size = std::to_string(image.width) + "x" + std::to_string(image.height);
        png_image_free(&image);
        return Error::library(Errc::invalid_argument, "decode_png: picture of " + size + " (limit 16384x16384)");
    }
    image.format = PNG_FORMAT_RGBA;
    Picture picture{image.width, image.height, std::vector<std::uint8_t>(PNG_IMAGE_SIZE(image))};
    if (!png_image_finish_read(&image, nullptr, picture.rgba.data(), 0, nullptr))
        return Error::library(Errc::invalid_argument, std::string("decode_png: ") + image.message);
    return picture;
}

dmabridge::Result<Picture> read_png(const std::string& path) {
    std::ifstream file(path, std::ios::binary);
    if (!file) return Error::from_errno(errno != 0 ? errno : ENOENT, "read_png: open " + path);
    const std::vector<std::uint8_t> bytes{std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>()};
    if (file.bad()) return Error::from_errno(errno != 0 ? errno : EIO, "read_png: read " + path);
    auto picture = decode_png(bytes);
    if (!picture) return Error::library(Errc::invalid_argument, path + ": " + picture.error().message());
    return picture;
}

}  // namespace support
