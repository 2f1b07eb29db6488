// SPDX-License-Identifier: MIT
// The character classes and small text helpers every keel::net parser shares: one
// 256-entry table (hex digit value and the RFC 9110 classes tchar, qdtext and quoted-pair
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

// What one byte is, as one lookup: its hex digit value (-1 if none) and its classes.
struct char_info {
    std::int8_t hex = -1;
    std::uint8_t classes = 0;
};

enum char_class : std::uint8_t { tchar = 1, qdtext = 2, quotable = 4 };

constexpr std::array<char_info, 256> make_char_table() noexcept {
    std::array<char_info, 256> t{};
    for (unsigned c = 0; c < 256; ++c) {
        char_info& info = t[c];
        int const v = static_cast<int>(c);
        info.hex = static_cast<std::int8_t>(v >= '0' && v <= '9'   ? v - '0'
                                            : v >= 'a' && v <= 'f' ? v - 'a' + 10
                                            : v >= 'A' && v <= 'F' ? v - 'A' + 10
                                                                   : -1);
        bool const alnum =
            (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        bool const tchar_punct = std::string_view{"!#$%&'*+-.^_`|~"}.find(static_cast<char>(c)) !=
                                 std::string_view::npos;
        if (alnum || tchar_punct) {
            info.classes |= tchar;
        }
        // qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text
        if (c == '\t' || c == ' ' || c == 0x21 || (c >= 0x23 && c <= 0x5b) ||
            (c >= 0x5d && c <= 0x7e) || c >= 0x80) {
            info.classes |= qdtext;
        }
        // quoted-pair = "\\" ( HTAB / SP / VCHAR / obs-text )
        if (c == '\t' || c == ' ' || (c >= 0x21 && c <= 0x7e) || c >= 0x80) {
            info.classes |= quotable;
        }
    }
    return t;
}

inline constexpr std::array<char_info, 256> char_table = make_char_table();

// Returns the value of a hex digit, or -1.
constexpr int hex_value(char c) noexcept {
    return char_table[static_cast<unsigned char>(c)].hex;
}
constexpr bool is_tchar(char c) noexcept {
    return (char_table[static_cast<unsigned char>(c)].classes & tchar) != 0;
}
constexpr bool is_qdtext(char c) noexcept {
    return (char_table[static_cast<unsigned char>(c)].classes & qdtext) != 0;
}
constexpr bool is_quotable(char c) noexcept {
    return (char_table[static_cast<unsigned char>(c)].classes & quotable) != 0;
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
