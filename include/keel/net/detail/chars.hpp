// SPDX-License-Identifier: MIT
// The character classes and small text helpers every keel::net parser shares: one
// 256-entry table (hex digits and the RFC 9110 classes tchar, qdtext and quoted-pair
// octets), and the trimming and comparisons written once for addresses, header lists and
// trust-list entries. Internal: not part of keel's API.
#pragma once

#include <keel/version.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

KEEL_BEGIN_NAMESPACE
namespace net::detail {

constexpr bool is_digit(char c) noexcept {
    return c >= '0' && c <= '9';
}

constexpr bool is_alpha(char c) noexcept {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

// RFC 9110 OWS: optional whitespace is spaces and horizontal tabs, nothing else.
constexpr bool is_ows(char c) noexcept {
    return c == ' ' || c == '\t';
}

// The classes of every byte, one table lookup each: the low four bits hold a hex digit's
// value, the others say whether it is a hex digit and which RFC 9110 classes it is in.
enum char_class : std::uint8_t {
    hex_bits = 0x0f,
    hex = 0x10,
    tchar = 0x20,
    qdtext = 0x40,
    quotable = 0x80
};

constexpr std::array<std::uint8_t, 256> make_char_classes() noexcept {
    std::array<std::uint8_t, 256> t{};
    for (unsigned c = 0; c < 256; ++c) {
        bool const digit = c >= '0' && c <= '9';
        bool const alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        bool const tchar_punct = std::string_view{"!#$%&'*+-.^_`|~"}.find(static_cast<char>(c)) !=
                                 std::string_view::npos;
        std::uint8_t v = 0;
        if (digit) {
            v |= static_cast<std::uint8_t>(hex | (c - '0'));
        } else if ((c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')) {
            v |= static_cast<std::uint8_t>(hex | ((c | 0x20u) - 'a' + 10));
        }
        if (digit || alpha || tchar_punct) {
            v |= tchar;
        }
        // qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text
        if (c == '\t' || c == ' ' || c == 0x21 || (c >= 0x23 && c <= 0x5b) ||
            (c >= 0x5d && c <= 0x7e) || c >= 0x80) {
            v |= qdtext;
        }
        // quoted-pair = "\\" ( HTAB / SP / VCHAR / obs-text )
        if (c == '\t' || c == ' ' || (c >= 0x21 && c <= 0x7e) || c >= 0x80) {
            v |= quotable;
        }
        t[c] = v;
    }
    return t;
}

inline constexpr std::array<std::uint8_t, 256> char_classes = make_char_classes();

// Returns the value of a hex digit, or -1.
constexpr int hex_value(char c) noexcept {
    unsigned const v = char_classes[static_cast<unsigned char>(c)];
    return (v & hex) != 0 ? static_cast<int>(v & hex_bits) : -1;
}
static_assert(hex_value('0') == 0 && hex_value('9') == 9 && hex_value('a') == 10 &&
              hex_value('F') == 15 && hex_value('g') == -1 && hex_value('@') == -1 &&
              hex_value('`') == -1 && hex_value('\x80') == -1);

constexpr bool is_tchar(char c) noexcept {
    return (char_classes[static_cast<unsigned char>(c)] & tchar) != 0;
}
constexpr bool is_qdtext(char c) noexcept {
    return (char_classes[static_cast<unsigned char>(c)] & qdtext) != 0;
}
constexpr bool is_quotable(char c) noexcept {
    return (char_classes[static_cast<unsigned char>(c)] & quotable) != 0;
}

// Removes spaces and tabs (OWS) from both ends.
constexpr std::string_view trim_ows(std::string_view s) noexcept {
    while (!s.empty() && is_ows(s.front())) {
        s.remove_prefix(1);
    }
    while (!s.empty() && is_ows(s.back())) {
        s.remove_suffix(1);
    }
    return s;
}

// Compares `a` case-insensitively (ASCII) with `lower`, which is already lower case.
constexpr bool iequals(std::string_view a, std::string_view lower) noexcept {
    if (a.size() != lower.size()) {
        return false;
    }
    for (std::size_t i = 0; i < a.size(); ++i) {
        char c = a[i];
        if (c >= 'A' && c <= 'Z') {
            c = static_cast<char>(c - 'A' + 'a');
        }
        if (c != lower[i]) {
            return false;
        }
    }
    return true;
}

// Returns the index of the first `c` in `s`, or s.size(). A loop, not memchr: the values
// searched here are at most 64 bytes, where a library call costs more than the search.
constexpr std::size_t find_byte(std::string_view s, char c) noexcept {
    std::size_t i = 0;
    while (i < s.size() && s[i] != c) {
        ++i;
    }
    return i;
}

} // namespace net::detail
KEEL_END_NAMESPACE
