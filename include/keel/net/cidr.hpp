// SPDX-License-Identifier: MIT
// keel::net::cidr: an address range written "10.0.0.0/8", "2001:db8::/32", a bare
// address (a single host) or an IPv4 netmask ("10.0.0.0/255.0.0.0"), with contains().
// IPv4-mapped IPv6 addresses are matched as the IPv4 address they carry, as the npm
// package proxy-addr (Express's `trust proxy`) matches them.
#pragma once

#include <keel/net/detail/address.hpp>
#include <keel/net/ip_address.hpp>
#include <keel/version.hpp>

#include <array>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

KEEL_BEGIN_NAMESPACE
namespace net {

/// Holds an address range: a network address (host bits cleared) and a prefix length.
///
/// parse() accepts "address/prefix" (prefix in decimal, at most 3 digits, 0 to 32 or 128),
/// a bare address (prefix 32 or 128) and, for IPv4 only, "address/netmask" with a
/// contiguous netmask ("10.0.0.0/255.0.0.0"; "255.0.255.0" is rejected). Host bits in the
/// address are cleared, as proxy-addr ignores them ("127.0.0.1/8" is 127.0.0.0/8). An
/// IPv4-mapped address takes a prefix of 96 to 128 ("::ffff:10.0.0.0/104" is the mapped
/// form of 10.0.0.0/8); "::ffff:10.0.0.0/8" is rejected, where proxy-addr reads it as ::/8.
/// Equality compares network and prefix. Thread-safety: a value type.
///
/// ```cpp
/// auto net = keel::net::cidr::parse("10.0.0.0/8");
/// assert(net->contains(*keel::net::ip_address::parse("10.1.2.3")));
/// ```
class cidr {
public:
    /// Bounds the length of to_string(): an address and "/128".
    static constexpr std::size_t max_string_length = ip_address::max_string_length + 4;

    /// Gives the shortest prefix a range written with an IPv4-mapped address may have: 96,
    /// the length of ::ffff:0:0/96, so that the range stays inside the mapped block.
    static constexpr unsigned min_mapped_prefix = 96;

    /// Constructs 0.0.0.0/32, the range holding only 0.0.0.0.
    constexpr cidr() noexcept = default;

    /// Returns the range of `prefix` leading bits of `address` (host bits cleared), or
    /// nullopt if `prefix` exceeds 32 (IPv4) or 128 (IPv6), or if `address` is IPv4-mapped
    /// and `prefix` is below 96. Such a range is not an IPv4 range: "::ffff:10.0.0.0/8",
    /// a plausible slip for 10.0.0.0/8, would be the native IPv6 range ::/8 (which holds
    /// ::1), so it is refused rather than guessed (min_mapped_prefix).
    static constexpr std::optional<cidr> make(ip_address const& address, unsigned prefix) noexcept {
        unsigned const bits = address.is_v4() ? 32 : 128;
        if (prefix > bits || (prefix < min_mapped_prefix && address.is_v4_mapped())) {
            return std::nullopt;
        }
        std::array<std::uint8_t, 16> bytes{};
        auto const in = address.bytes();
        for (unsigned i = 0; i < in.size(); ++i) {
            unsigned const bit = i * 8;
            if (bit + 8 <= prefix) {
                bytes[i] = in[i];
            } else if (bit < prefix) {
                bytes[i] = static_cast<std::uint8_t>(in[i] & (0xff << (8 - (prefix - bit))));
            }
        }
        cidr r;
        r.m_network = address.is_v4() ? ip_address::v4(bytes[0], bytes[1], bytes[2], bytes[3])
                                      : ip_address::v6(bytes);
        r.m_prefix = static_cast<std::uint8_t>(prefix);
        return r;
    }

    /// Parses a range (see the class comment); returns nullopt for anything else, never
    /// throws or allocates.
    static constexpr std::optional<cidr> parse(std::string_view text) noexcept {
        auto const slash = text.rfind('/');
        auto const address = ip_address::parse(text.substr(0, slash));
        if (!address) {
            return std::nullopt;
        }
        unsigned const bits = address->is_v4() ? 32 : 128;
        if (slash == std::string_view::npos) {
            return make(*address, bits);
        }
        auto const suffix = text.substr(slash + 1);
        if (suffix.empty()) {
            return std::nullopt;
        }
        if (suffix.size() <= 3 && detail::is_digit(suffix[0]) &&
            (suffix.size() < 2 || detail::is_digit(suffix[1])) &&
            (suffix.size() < 3 || detail::is_digit(suffix[2]))) {
            unsigned prefix = 0;
            for (char c : suffix) {
                prefix = prefix * 10 + static_cast<unsigned>(c - '0');
            }
            return make(*address, prefix);
        }
        if (!address->is_v4()) {
            return std::nullopt;
        }
        auto const mask = ip_address::parse(suffix);
        if (!mask || !mask->is_v4()) {
            return std::nullopt;
        }
        std::uint32_t const value = detail::load_v4(mask->bytes());
        std::uint32_t const inverted = ~value;
        if ((inverted & (inverted + 1)) != 0) { // the zero bits must be one trailing run
            return std::nullopt;
        }
        unsigned prefix = 0;
        for (std::uint32_t v = value; v & 0x80000000u; v <<= 1) {
            ++prefix;
        }
        return make(*address, prefix);
    }

    /// Returns the network address (host bits cleared).
    constexpr ip_address const& network() const noexcept { return m_network; }
    /// Returns the prefix length: 0 to 32 for IPv4, 0 to 128 for IPv6.
    constexpr unsigned prefix_length() const noexcept { return m_prefix; }

    /// Returns true if `address` is inside the range. An IPv4-mapped candidate is matched
    /// as its IPv4 address; an IPv4 range matches only IPv4 (and mapped) candidates; an
    /// IPv6 range inside ::ffff:0:0/96 matches IPv4 candidates by their mapped form and no
    /// native IPv6 address; any other IPv6 range matches only native IPv6 candidates.
    /// These are proxy-addr 2.0's rules except for the last: proxy-addr compares an IPv4
    /// candidate in its mapped form, and a mapped one as it stands, with every IPv6 range,
    /// so a range such as ::/8 that covers ::ffff:0:0/96 also matches every IPv4 address
    /// there. keel keeps the families apart: an IPv4 client is matched only by a rule
    /// written for IPv4 (or its mapped form).
    constexpr bool contains(ip_address const& address) const noexcept {
        return contains_unmapped(address.unmap());
    }

    /// Returns contains(candidate) for a candidate already unmapped (candidate.unmap() ==
    /// candidate); lets a list unmap once for all its ranges.
    constexpr bool contains_unmapped(ip_address const& candidate) const noexcept {
        if (m_network.is_v4()) {
            return candidate.is_v4() &&
                   detail::prefix_equal(candidate.bytes(), m_network.bytes(), m_prefix);
        }
        if (m_prefix >= 96 && m_network.is_v4_mapped()) {
            return candidate.is_v4() &&
                   detail::prefix_equal(candidate.to_v6().bytes(), m_network.bytes(), m_prefix);
        }
        return candidate.is_v6() &&
               detail::prefix_equal(candidate.bytes(), m_network.bytes(), m_prefix);
    }

    /// Writes "network/prefix" to `out` (room for max_string_length characters) and returns
    /// the end.
    char* write(char* out) const noexcept {
        out = m_network.write(out);
        *out++ = '/';
        return detail::write_decimal(out, m_prefix);
    }

    /// Returns "network/prefix", e.g. "10.0.0.0/8"; allocates the string.
    std::string to_string() const {
        char buffer[max_string_length];
        return std::string(buffer, write(buffer));
    }

    /// Compares network and prefix exactly.
    friend constexpr bool operator==(cidr const&, cidr const&) noexcept = default;
    /// Orders by network, then prefix length.
    friend constexpr std::strong_ordering operator<=>(cidr const&, cidr const&) noexcept = default;

private:
    ip_address m_network{};
    std::uint8_t m_prefix = 32;
};

} // namespace net
KEEL_END_NAMESPACE
