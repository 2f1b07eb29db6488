// SPDX-License-Identifier: MIT
// The byte-level work behind keel::net::ip_address and keel::net::cidr: strict IPv4 and
// RFC 4291 IPv6 text to bytes, bytes to canonical text, and prefix comparison.
// Internal: not part of keel's API.
#pragma once

#include <keel/net/detail/chars.hpp>
#include <keel/version.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

KEEL_BEGIN_NAMESPACE
namespace net::detail {

// Strict dotted quad: four decimal octets 0-255, no leading zeros (they would be octal
// to inet_aton), nothing else.
constexpr bool parse_v4(std::string_view s, std::uint8_t* out) noexcept {
    if (s.size() < 7 || s.size() > 15) {
        return false;
    }
    std::size_t i = 0;
    for (int part = 0; part < 4; ++part) {
        if (part != 0) {
            if (i >= s.size() || s[i] != '.') {
                return false;
            }
            ++i;
        }
        std::size_t const start = i;
        unsigned value = 0;
        while (i < s.size() && i - start < 3 && is_digit(s[i])) {
            value = value * 10 + static_cast<unsigned>(s[i] - '0');
            ++i;
        }
        std::size_t const length = i - start;
        if (length == 0 || value > 255 || (length > 1 && s[start] == '0')) {
            return false;
        }
        out[part] = static_cast<std::uint8_t>(value);
    }
    return i == s.size();
}

// RFC 4291 section 2.2 text forms: eight groups of 1-4 hex digits, at most one "::"
// standing for one or more zero groups, optionally ending in a dotted quad. No zone id.
constexpr bool parse_v6(std::string_view s, std::uint8_t* out) noexcept {
    if (s.size() < 2 || s.size() > 45) {
        return false;
    }
    std::uint16_t groups[8] = {};
    int count = 0;
    int gap = -1;
    std::size_t i = 0;
    std::size_t const n = s.size();
    if (s[0] == ':') {
        if (s[1] != ':') {
            return false;
        }
        gap = 0;
        i = 2;
    }
    while (i < n) {
        if (count == 8) {
            return false;
        }
        std::size_t const start = i;
        unsigned value = 0;
        while (i < n && i - start < 4 && hex_value(s[i]) >= 0) {
            value = value * 16 + static_cast<unsigned>(hex_value(s[i]));
            ++i;
        }
        if (i < n && s[i] == '.') {
            std::uint8_t quad[4] = {};
            if (count > 6 || !parse_v4(s.substr(start), quad)) {
                return false;
            }
            groups[count++] = static_cast<std::uint16_t>(quad[0] << 8 | quad[1]);
            groups[count++] = static_cast<std::uint16_t>(quad[2] << 8 | quad[3]);
            i = n;
            break;
        }
        if (i == start) {
            return false;
        }
        groups[count++] = static_cast<std::uint16_t>(value);
        if (i == n) {
            break;
        }
        if (s[i] != ':') {
            return false;
        }
        ++i;
        if (i < n && s[i] == ':') {
            if (gap >= 0) {
                return false;
            }
            gap = count;
            ++i;
        } else if (i == n) {
            return false;
        }
    }
    if (gap < 0 ? count != 8 : count > 7) {
        return false;
    }
    // The groups after the gap move to the end. A fixed trip count: a loop copying a
    // variable number of groups compiles to a memmove, which costs more than the parse.
    int const head = gap < 0 ? 8 : gap;
    int const tail_start = gap < 0 ? 8 : 8 - (count - gap);
    for (int g = 0; g < 8; ++g) {
        std::uint16_t group = 0;
        if (g < head) {
            group = groups[g];
        } else if (g >= tail_start) {
            group = groups[g - (8 - count)];
        }
        out[2 * g] = static_cast<std::uint8_t>(group >> 8);
        out[2 * g + 1] = static_cast<std::uint8_t>(group & 0xff);
    }
    return true;
}

inline char* write_decimal(char* out, unsigned value) noexcept {
    if (value >= 100) {
        *out++ = static_cast<char>('0' + value / 100);
    }
    if (value >= 10) {
        *out++ = static_cast<char>('0' + value / 10 % 10);
    }
    *out++ = static_cast<char>('0' + value % 10);
    return out;
}

inline char* write_quad(char* out, std::uint8_t const* bytes) noexcept {
    for (int i = 0; i < 4; ++i) {
        if (i != 0) {
            *out++ = '.';
        }
        out = write_decimal(out, bytes[i]);
    }
    return out;
}

// Returns the first four bytes as one big-endian word (an IPv4 address or netmask).
constexpr std::uint32_t load_v4(std::span<std::uint8_t const> x) noexcept {
    return std::uint32_t{x[0]} << 24 | std::uint32_t{x[1]} << 16 | std::uint32_t{x[2]} << 8 |
           std::uint32_t{x[3]};
}

// Returns true if the first `prefix` bits of `a` and `b` (the same size) are equal.
constexpr bool prefix_equal(std::span<std::uint8_t const> a, std::span<std::uint8_t const> b,
                            unsigned prefix) noexcept {
    if (a.size() == 4) { // IPv4: one 32-bit comparison
        std::uint32_t const mask = prefix == 0 ? 0 : ~std::uint32_t{0} << (32 - prefix);
        return ((load_v4(a) ^ load_v4(b)) & mask) == 0;
    }
    unsigned i = 0;
    for (; i + 8 <= prefix; i += 8) {
        if (a[i / 8] != b[i / 8]) {
            return false;
        }
    }
    if (i < prefix) {
        auto const mask = static_cast<std::uint8_t>(0xff << (8 - (prefix - i)));
        return (a[i / 8] & mask) == (b[i / 8] & mask);
    }
    return true;
}
} // namespace net::detail
KEEL_END_NAMESPACE
