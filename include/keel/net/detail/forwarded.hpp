// SPDX-License-Identifier: MIT
// RFC 7239 Forwarded for keel::net::client_resolver: the grammar of one element, the for=
// node it names, and the one-pass reader used for well-formed headers within the byte
// budget. Internal: not part of keel's API.
#pragma once

#include <keel/net/detail/chars.hpp>
#include <keel/net/detail/list_reader.hpp>
#include <keel/net/ip_address.hpp>
#include <keel/version.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

KEEL_BEGIN_NAMESPACE
namespace net::detail {

// RFC 7239 obfnode / obfport tail: "_" 1*( ALPHA / DIGIT / "." / "_" / "-" ).
constexpr bool is_obfuscated(std::string_view s) noexcept {
    if (s.size() < 2 || s[0] != '_') {
        return false;
    }
    for (char c : s.substr(1)) {
        if (!is_alpha(c) && !is_digit(c) && c != '.' && c != '_' && c != '-') {
            return false;
        }
    }
    return true;
}

// RFC 7239 node-port = port (1*5DIGIT) / obfport.
constexpr bool is_node_port(std::string_view s) noexcept {
    if (is_obfuscated(s)) {
        return true;
    }
    if (s.empty() || s.size() > 5) {
        return false;
    }
    for (char c : s) {
        if (!is_digit(c)) {
            return false;
        }
    }
    return true;
}

// RFC 7239 section 6: node = nodename [ ":" node-port ]; nodename = IPv4address /
// "[" IPv6address "]" / "unknown" / obfnode. `value` is already unquoted.
constexpr node parse_forwarded_node(std::string_view value) noexcept {
    node const invalid{node_kind::invalid, {}};
    if (value.empty()) {
        return invalid;
    }
    if (value[0] == '[') {
        auto const close = find_byte(value, ']');
        if (close == value.size()) {
            return invalid;
        }
        auto const rest = value.substr(close + 1);
        if (!rest.empty() && (rest[0] != ':' || !is_node_port(rest.substr(1)))) {
            return invalid;
        }
        auto const address = ip_address::parse(value.substr(1, close - 1));
        if (!address || !address->is_v6()) {
            return invalid;
        }
        return {node_kind::address, *address};
    }
    auto const colon = find_byte(value, ':');
    auto const name = value.substr(0, colon);
    if (name.empty() || (colon != value.size() && !is_node_port(value.substr(colon + 1)))) {
        return invalid;
    }
    // The three nodename forms start differently: a digit, '_' or 'u'/'U'.
    if (is_digit(name[0])) {
        auto const address = ip_address::parse(name);
        if (!address || !address->is_v4()) {
            return invalid;
        }
        return {node_kind::address, *address};
    }
    if (is_obfuscated(name)) {
        return {node_kind::obfuscated, {}};
    }
    if (iequals(name, "unknown")) {
        return {node_kind::unknown, {}};
    }
    return invalid;
}

// The for= parameter of one forwarded-element, as it stands in the header (between its
// quotes, still escaped), parsed only if the walk reaches the element. 16 bytes, so
// keeping one costs two register stores.
struct forwarded_for {
    enum class kind_type : std::uint8_t { none, plain, escaped, repeated };
    char const* data;
    std::uint32_t size; // at most 2^32 - 1: longer values are invalid anyway
    kind_type kind;
};

enum class scan_status : std::uint8_t { empty, element, malformed };

// What a scan of one forwarded-element found.
struct forwarded_scan {
    std::size_t end = 0;                     // the ',' that ends the element, or the text's size
    scan_status status = scan_status::empty; // empty: only spaces and tabs (skipped)
    forwarded_for value{};
};

// Scans one forwarded-element of `s` from `i` with the full RFC 7239 grammar: pairs
// separated by ';', token names compared case-insensitively, values as token or
// quoted-string with quoted-pairs. It ends at the first ',' outside a quoted string (a
// list comma) or at the end of `s`; after a malformed element, where it ends is unknown.
constexpr forwarded_scan scan_forwarded_element(std::string_view s, std::size_t i) noexcept {
    forwarded_scan r;
    std::size_t const n = s.size();
    while (true) {
        while (i < n && is_ows(s[i])) {
            ++i;
        }
        if (i == n || s[i] == ',') {
            r.end = i;
            return r;
        }
        r.status = scan_status::element;
        if (s[i] == ';') {
            ++i;
            continue;
        }
        std::size_t const name_start = i;
        while (i < n && is_tchar(s[i])) {
            ++i;
        }
        if (i == name_start || i == n || s[i] != '=') {
            r.status = scan_status::malformed;
            return r;
        }
        std::string_view const name = s.substr(name_start, i - name_start);
        ++i;
        std::size_t value_start = i;
        std::size_t value_end = i;
        bool escaped = false;
        if (i < n && s[i] == '"') {
            value_start = ++i;
            while (true) {
                // qdtext excludes '"' and '\\', so plain runs need one lookup per byte.
                while (i < n && is_qdtext(s[i])) {
                    ++i;
                }
                if (i == n) {
                    r.status = scan_status::malformed; // unterminated
                    return r;
                }
                if (s[i] == '"') {
                    break;
                }
                if (s[i] != '\\' || ++i == n || !is_quotable(s[i])) {
                    r.status = scan_status::malformed;
                    return r;
                }
                escaped = true;
                ++i;
            }
            value_end = i++;
        } else {
            while (i < n && is_tchar(s[i])) {
                ++i;
            }
            if (i == value_start) {
                r.status = scan_status::malformed;
                return r;
            }
            value_end = i;
        }
        while (i < n && is_ows(s[i])) {
            ++i;
        }
        if (i < n && s[i] != ';' && s[i] != ',') {
            r.status = scan_status::malformed;
            return r;
        }
        if (iequals(name, "for")) {
            using kind_type = forwarded_for::kind_type;
            std::size_t const size = value_end - value_start;
            r.value.data = s.data() + value_start;
            r.value.size = size > UINT32_MAX ? UINT32_MAX : static_cast<std::uint32_t>(size);
            r.value.kind = r.value.kind != kind_type::none ? kind_type::repeated
                           : escaped                       ? kind_type::escaped
                                                           : kind_type::plain;
        }
    }
}

// Returns the node an element's for= parameter names: unknown when there is none,
// invalid when for= is repeated or its value (unescaped) is over 64 characters.
constexpr node forwarded_node(forwarded_for const& f) noexcept {
    using kind_type = forwarded_for::kind_type;
    node const invalid{node_kind::invalid, {}};
    switch (f.kind) {
    case kind_type::none: return {node_kind::unknown, {}};
    case kind_type::repeated: return invalid;
    case kind_type::plain: return f.size > 64 ? invalid : parse_forwarded_node({f.data, f.size});
    case kind_type::escaped: break;
    }
    char buffer[64]; // only the `length` bytes written are read
    std::size_t length = 0;
    for (std::size_t k = 0; k < f.size; ++k) { // remove the quoted-pair backslashes
        k += f.data[k] == '\\' ? 1 : 0;
        if (length == sizeof buffer) {
            return invalid;
        }
        buffer[length++] = f.data[k];
    }
    return parse_forwarded_node({buffer, length});
}

// Parses one forwarded-element given alone (as the reverse reader cuts them): its node,
// or invalid when it breaks the grammar or holds a list comma.
constexpr node parse_forwarded_element(std::string_view e) noexcept {
    forwarded_scan const scan = scan_forwarded_element(e, 0);
    if (scan.status == scan_status::malformed || scan.end != e.size()) {
        return {node_kind::invalid, {}};
    }
    return forwarded_node(scan.value);
}

// Reads Forwarded lines front to back in one pass, keeping the for= values of the last
// `capacity` non-empty elements, which is all a walk of at most 15 hops can reach. Used
// when the header is within the byte budget; if any element breaks the grammar, its end
// (and so where the next element starts) is unknown, and the caller reads the header
// from the end instead, which keeps a broken element from hiding the ones after it.
class forward_forwarded_reader {
public:
    static constexpr std::size_t capacity = 16;

    // Returns false if an element breaks the grammar.
    constexpr bool read(std::span<std::string_view const> lines) noexcept {
        for (std::string_view const line : lines) {
            std::size_t i = 0;
            while (true) {
                forwarded_scan const scan = scan_forwarded_element(line, i);
                if (scan.status == scan_status::malformed) {
                    return false;
                }
                if (scan.status == scan_status::element) {
                    m_values[m_count++ % capacity] = scan.value;
                }
                if (scan.end == line.size()) {
                    break;
                }
                i = scan.end + 1;
            }
        }
        m_next = m_count;
        return true;
    }

    // Returns the nodes nearest first, then end.
    constexpr node next() noexcept {
        if (m_next == 0) {
            return {node_kind::end, {}};
        }
        if (m_count - m_next == capacity) { // unreachable with max_hops <= 15
            return {node_kind::cut, {}};
        }
        return forwarded_node(m_values[--m_next % capacity]);
    }

private:
    std::array<forwarded_for, capacity> m_values; // only the slots written are read
    std::size_t m_count = 0;
    std::size_t m_next = 0;
};

} // namespace net::detail
KEEL_END_NAMESPACE
