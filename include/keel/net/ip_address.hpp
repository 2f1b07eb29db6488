// SPDX-License-Identifier: MIT
// keel::net::ip_address: an IPv4 or IPv6 address as a small value type, parsed from
// untrusted text without throwing or allocating, and written in canonical text
// (dotted decimal for IPv4, RFC 5952 for IPv6). IPv4-mapped IPv6 addresses
// (::ffff:a.b.c.d) are recognised: unmap() gives the IPv4 address they carry.
#pragma once

#include <keel/net/detail/address.hpp>
#include <keel/version.hpp>

#include <array>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>

KEEL_BEGIN_NAMESPACE
namespace net {

/// Holds an IPv4 or an IPv6 address (no zone id) as a trivially copyable 17-byte value.
///
/// parse() accepts exactly the forms inet_pton(3) accepts: a strict dotted quad for IPv4
/// (four decimal octets, no leading zeros, no inet_aton shorthand like "10.1" or
/// "0x0a.0.0.1"), and RFC 4291 text for IPv6 (hex groups, one "::", an optional trailing
/// dotted quad). Zone ids ("fe80::1%eth0") are rejected: a zone is only meaningful on
/// the host that wrote it, never in a forwarded header, and keeping it out lets the
/// type stay a fixed-size value with exact equality. Pass a peer's scope separately if
/// you need it.
///
/// Equality and ordering are exact: IPv4 1.2.3.4 and IPv6 ::ffff:1.2.3.4 are different
/// values (as in Go's netip and Python's ipaddress); compare `a.unmap() == b.unmap()` to
/// treat them as the same host. All IPv4 addresses order before all IPv6 ones.
/// Thread-safety: a value type; concurrent reads are safe.
///
/// ```cpp
/// auto a = keel::net::ip_address::parse("2001:DB8:0:0:0:0:0:1");
/// assert(a && a->to_string() == "2001:db8::1");
/// ```
class ip_address {
public:
    /// Names the two address families.
    enum class family : std::uint8_t { v4 = 4, v6 = 6 };

    /// Bounds the length of to_string() and the buffer write() needs: 39 characters,
    /// the longest RFC 5952 text ("ffff:...:ffff").
    static constexpr std::size_t max_string_length = 39;

    /// Constructs the IPv4 unspecified address 0.0.0.0.
    constexpr ip_address() noexcept = default;

    /// Returns the IPv4 address a.b.c.d.
    static constexpr ip_address v4(std::uint8_t a, std::uint8_t b, std::uint8_t c,
                                   std::uint8_t d) noexcept {
        ip_address r;
        r.m_bytes = {a, b, c, d};
        return r;
    }

    /// Returns the IPv6 address with these 16 bytes in network order.
    static constexpr ip_address v6(std::array<std::uint8_t, 16> const& bytes) noexcept {
        ip_address r;
        r.m_family = family::v6;
        r.m_bytes = bytes;
        return r;
    }

    /// Parses an IPv4 or IPv6 address; returns nullopt for anything else (never throws,
    /// never allocates). Surrounding whitespace, brackets, ports and zone ids are errors.
    static constexpr std::optional<ip_address> parse(std::string_view text) noexcept {
        ip_address r;
        if (detail::parse_v4(text, r.m_bytes.data())) {
            return r;
        }
        if (text.find(':') == std::string_view::npos) {
            return std::nullopt;
        }
        r.m_family = family::v6;
        if (!detail::parse_v6(text, r.m_bytes.data())) {
            return std::nullopt;
        }
        return r;
    }

    /// Returns the address family.
    constexpr family kind() const noexcept { return m_family; }
    /// Returns true for an IPv4 address.
    constexpr bool is_v4() const noexcept { return m_family == family::v4; }
    /// Returns true for an IPv6 address (including IPv4-mapped ones).
    constexpr bool is_v6() const noexcept { return m_family == family::v6; }

    /// Returns true for an IPv6 address in ::ffff:0:0/96, which carries an IPv4 address.
    constexpr bool is_v4_mapped() const noexcept {
        if (m_family != family::v6) {
            return false;
        }
        for (std::size_t i = 0; i < 10; ++i) {
            if (m_bytes[i] != 0) {
                return false;
            }
        }
        return m_bytes[10] == 0xff && m_bytes[11] == 0xff;
    }

    /// Returns the IPv4 address an IPv4-mapped address carries, or *this unchanged.
    constexpr ip_address unmap() const noexcept {
        if (!is_v4_mapped()) {
            return *this;
        }
        return v4(m_bytes[12], m_bytes[13], m_bytes[14], m_bytes[15]);
    }

    /// Returns the IPv4-mapped IPv6 form (::ffff:a.b.c.d) of an IPv4 address, or *this.
    constexpr ip_address to_v6() const noexcept {
        if (is_v6()) {
            return *this;
        }
        return v6({0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, m_bytes[0], m_bytes[1], m_bytes[2],
                   m_bytes[3]});
    }

    /// Returns the address bytes in network order: 4 for IPv4, 16 for IPv6.
    constexpr std::span<std::uint8_t const> bytes() const noexcept {
        return {m_bytes.data(), is_v4() ? std::size_t{4} : std::size_t{16}};
    }

    /// Writes the canonical text to `out`, which must have room for max_string_length
    /// characters, and returns the end (no terminating NUL). IPv6 follows RFC 5952:
    /// lower case, no leading zeros, the longest run of two or more zero groups (the first
    /// on a tie) becomes "::", and IPv4-mapped addresses end in a dotted quad.
    char* write(char* out) const noexcept {
        if (is_v4()) {
            return detail::write_quad(out, m_bytes.data());
        }
        if (is_v4_mapped()) {
            for (char c : std::string_view{"::ffff:"}) {
                *out++ = c;
            }
            return detail::write_quad(out, m_bytes.data() + 12);
        }
        unsigned groups[8] = {};
        for (std::size_t g = 0; g < 8; ++g) {
            groups[g] = static_cast<unsigned>(m_bytes[2 * g] << 8 | m_bytes[2 * g + 1]);
        }
        int best_start = -1;
        int best_length = 1; // RFC 5952 4.2.2: a single zero group is not shortened
        for (int g = 0; g < 8;) {
            if (groups[g] != 0) {
                ++g;
                continue;
            }
            int end = g;
            while (end < 8 && groups[end] == 0) {
                ++end;
            }
            if (end - g > best_length) {
                best_start = g;
                best_length = end - g;
            }
            g = end;
        }
        constexpr char digits[] = "0123456789abcdef";
        for (int g = 0; g < 8;) {
            if (g == best_start) {
                *out++ = ':';
                *out++ = ':';
                g += best_length;
                continue;
            }
            if (g != 0 && g != best_start + best_length) {
                *out++ = ':';
            }
            unsigned const v = groups[g];
            bool started = false;
            for (int shift = 12; shift >= 0; shift -= 4) {
                unsigned const d = (v >> shift) & 0xf;
                if (d != 0 || started || shift == 0) {
                    *out++ = digits[d];
                    started = true;
                }
            }
            ++g;
        }
        return out;
    }

    /// Returns the canonical text (see write()); allocates the string.
    std::string to_string() const {
        char buffer[max_string_length];
        return std::string(buffer, write(buffer));
    }

    /// Compares family and bytes exactly.
    friend constexpr bool operator==(ip_address const&, ip_address const&) noexcept = default;
    /// Orders IPv4 before IPv6, then by bytes in network order.
    friend constexpr std::strong_ordering operator<=>(ip_address const&,
                                                      ip_address const&) noexcept = default;

private:
    family m_family = family::v4;
    std::array<std::uint8_t, 16> m_bytes{}; // IPv4 uses the first 4, the rest stay zero
};

} // namespace net
KEEL_END_NAMESPACE

/// Hashes an ip_address by family and bytes (FNV-1a), for unordered containers.
template <>
struct std::hash<keel::net::ip_address> {
    std::size_t operator()(keel::net::ip_address const& a) const noexcept {
        std::uint64_t h = 14695981039346656037ull ^ static_cast<std::uint64_t>(a.kind());
        h *= 1099511628211ull;
        for (std::uint8_t b : a.bytes()) {
            h = (h ^ b) * 1099511628211ull;
        }
        return static_cast<std::size_t>(h);
    }
};
