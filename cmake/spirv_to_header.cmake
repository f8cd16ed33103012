# SPDX-License-Identifier: MIT
# Turns a SPIR-V binary into a C++ header that defines it as an array of 32-bit words, so a
# program carries its shaders inside itself and needs no shader files at run time.
#
#   cmake -DSPIRV=in.spv -DHEADER=out.hpp -DSYMBOL=name -P spirv_to_header.cmake
#
# The header defines `inline constexpr std::uint32_t dmabridge::shaders::SYMBOL[]`: inline, so
# several translation units may include it and the program still holds one copy.

foreach(var SPIRV HEADER SYMBOL)
    if(NOT DEFINED ${var})
        message(FATAL_ERROR "spirv_to_header: -D${var}=... is required")
    endif()
endforeach()

file(READ "${SPIRV}" hex HEX)
string(LENGTH "${hex}" hex_digits)
math(EXPR remainder "${hex_digits} % 8")
if(hex_digits EQUAL 0 OR NOT remainder EQUAL 0)
    math(EXPR bytes "${hex_digits} / 2")
    message(FATAL_ERROR "spirv_to_header: ${SPIRV} has ${bytes} bytes, not a whole number of 32-bit words")
endif()

# SPIR-V words are stored little-endian (glslc writes the host's order, and the magic number
# below proves it): bytes b0 b1 b2 b3 are the word 0xb3b2b1b0.
string(REGEX REPLACE "(..)(..)(..)(..)" "0x\\4\\3\\2\\1u," words "${hex}")
string(SUBSTRING "${words}" 0 11 magic)
if(NOT magic STREQUAL "0x07230203u")
    message(FATAL_ERROR "spirv_to_header: ${SPIRV} does not start with the SPIR-V magic number (found ${magic})")
endif()

# Eight words a line keeps the header readable. (CMake's regular expressions have no {8}.)
string(REPEAT "0x[0-9a-f]+u," 8 eight_words)
string(REGEX REPLACE "(${eight_words})" "\\1\n    " words "${words}")
string(REGEX REPLACE ",([^,]*)$" "\\1" words "${words}")
string(REPLACE "," ", " words "${words}")
string(REPLACE " \n" "\n" words "${words}")
string(STRIP "${words}" words)

get_filename_component(source_name "${SPIRV}" NAME)
file(WRITE "${HEADER}.tmp"
"// Generated from ${source_name} by cmake/spirv_to_header.cmake. Do not edit.
#pragma once

#include <cstdint>

namespace dmabridge::shaders {

inline constexpr std::uint32_t ${SYMBOL}[] = {
    ${words}
};

}  // namespace dmabridge::shaders
")
# Only touch the header when its content changed, so an unchanged shader rebuilds nothing.
file(COPY_FILE "${HEADER}.tmp" "${HEADER}" ONLY_IF_DIFFERENT)
file(REMOVE "${HEADER}.tmp")
