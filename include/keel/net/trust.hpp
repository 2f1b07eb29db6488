// SPDX-License-Identifier: MIT
// Which proxies to believe: keel::net::cidr_list (ranges and the names loopback,
// linklocal, uniquelocal) and keel::net::trust_policy, the equivalent of Express's
// `trust proxy` setting as the npm package proxy-addr defines it: trust nothing,
// everything, the nearest N hops, a list of ranges, or a predicate over
// (address, hop index). Bad configuration throws std::invalid_argument naming the entry.
#pragma once

#include <keel/detail/validate.hpp>
#include <keel/net/cidr.hpp>
#include <keel/net/detail/chars.hpp>
#include <keel/net/ip_address.hpp>
#include <keel/version.hpp>

#include <cstddef>
#include <functional>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

KEEL_BEGIN_NAMESPACE
namespace net {

/// Holds a list of address ranges, built once from configuration text.
///
/// Each entry is a range cidr::parse() accepts, or one of the names proxy-addr
/// predefines: `loopback` (127.0.0.1/8, ::1/128), `linklocal` (169.254.0.0/16, fe80::/10)
/// and `uniquelocal` (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, fc00::/7). As in
/// proxy-addr, a prefix length of 0 is rejected (trusting every address must be said
/// with trust_policy::all()). Unlike proxy-addr, which trims nothing, keel trims spaces
/// and tabs around every entry, and it rejects an IPv4-mapped address with a prefix below
/// 96 ("::ffff:10.0.0.0/8", which proxy-addr reads as ::/8). contains() is safe to
/// call from many threads at once; construction allocates, contains() never does.
///
/// ```cpp
/// keel::net::cidr_list proxies{"loopback", "10.0.0.0/8", "2001:db8::/32"};
/// ```
class cidr_list {
public:
    /// Constructs an empty list, which contains no address.
    cidr_list() = default;

    /// Parses every entry; throws std::invalid_argument naming the first bad one.
    cidr_list(std::initializer_list<std::string_view> entries) {
        add_all(std::span<std::string_view const>{entries.begin(), entries.size()});
    }

    /// Parses every entry; throws std::invalid_argument naming the first bad one.
    explicit cidr_list(std::span<std::string_view const> entries) { add_all(entries); }

    /// Parses every entry; throws std::invalid_argument naming the first bad one.
    explicit cidr_list(std::span<std::string const> entries) {
        for (auto const& e : entries) {
            add(e);
        }
    }

    /// Parses a comma-separated list, as Express's `trust proxy` string form
    /// ("loopback, 10.0.0.0/8"); throws std::invalid_argument naming a bad entry.
    static cidr_list parse(std::string_view comma_separated) {
        cidr_list list;
        while (true) {
            auto const comma = comma_separated.find(',');
            list.add(comma_separated.substr(0, comma));
            if (comma == std::string_view::npos) {
                break;
            }
            comma_separated.remove_prefix(comma + 1);
        }
        return list;
    }

    /// Returns true if some range in the list contains `address` (see cidr::contains).
    bool contains(ip_address const& address) const noexcept {
        ip_address const candidate = address.unmap();
        for (auto const& range : m_ranges) {
            if (range.contains_unmapped(candidate)) {
                return true;
            }
        }
        return false;
    }

    /// Returns the ranges, named ranges expanded, in the order given.
    std::span<cidr const> ranges() const noexcept { return m_ranges; }
    /// Returns true if the list holds no range.
    bool empty() const noexcept { return m_ranges.empty(); }

private:
    void add_all(std::span<std::string_view const> entries) {
        for (auto e : entries) {
            add(e);
        }
    }

    void add(std::string_view entry) {
        entry = detail::trim_ows(entry);
        auto const fail = [&entry](std::string_view why) {
            keel::detail::invalid_configuration(
                "keel::net::cidr_list",
                "invalid entry " + keel::detail::describe_value(entry) + ": " + std::string(why));
        };
        auto const named = [&](std::initializer_list<std::string_view> ranges) {
            for (auto r : ranges) {
                m_ranges.push_back(*cidr::parse(r));
            }
        };
        if (entry == "loopback") {
            named({"127.0.0.1/8", "::1/128"});
        } else if (entry == "linklocal") {
            named({"169.254.0.0/16", "fe80::/10"});
        } else if (entry == "uniquelocal") {
            named({"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"});
        } else if (auto const range = cidr::parse(entry)) {
            if (range->prefix_length() == 0) {
                fail("the prefix length must be at least 1 (use trust_policy::all() to trust "
                     "every address)");
            }
            m_ranges.push_back(*range);
        } else if (auto const address = ip_address::parse(entry.substr(0, entry.rfind('/')));
                   address && address->is_v4_mapped()) {
            // Only a prefix can be wrong here: a bare mapped address is a valid range.
            fail("an IPv4-mapped address takes a prefix length from 96 to 128 (write an IPv4 "
                 "range as IPv4, e.g. 10.0.0.0/8, and an IPv6 range in hex, e.g. ::/8)");
        } else {
            fail("expected an IP address, address/prefix, IPv4 address/netmask, or one of "
                 "loopback, linklocal, uniquelocal");
        }
    }

    std::vector<cidr> m_ranges;
};

/// Decides whether a hop is a proxy to believe, as Express's `trust proxy` setting.
///
/// A hop is identified by its address and its index: the socket peer is hop 0, the
/// nearest X-Forwarded-For entry (the last) hop 1, and so on outwards. The kinds:
/// - none(): trusts no hop; the client is the socket peer (Express's default, `false`).
/// - all(): trusts every hop; the client is the farthest address (Express's `true`).
/// - hops(n): trusts hops 0 to n-1 (Express's number: `i < n`); hops(0) trusts none.
/// - ranges(list): trusts addresses inside the list (Express's string or array).
/// - predicate(f): trusts what f(address, hop) says (Express's function). f must be
///   thread-safe and should not throw; an exception from it counts as "not trusted".
///
/// trusts() is noexcept and, except for a predicate, never allocates. Thread-safety: const
/// member functions are safe to call concurrently.
class trust_policy {
public:
    /// The signature of a user predicate: (address, hop index) -> trusted.
    using predicate_type = std::function<bool(ip_address const&, std::size_t)>;

    /// Names the kind of policy.
    enum class kind_type : std::uint8_t { none, all, hops, ranges, predicate };

    /// Constructs trust_policy::none().
    trust_policy() = default;

    /// Returns a policy that trusts no hop.
    static trust_policy none() { return {}; }
    /// Returns a policy that trusts every hop.
    static trust_policy all() { return trust_policy{kind_type::all}; }
    /// Returns a policy that trusts the nearest `count` hops (the socket peer is the first).
    static trust_policy hops(std::size_t count) {
        trust_policy p{kind_type::hops};
        p.m_hops = count;
        return p;
    }
    /// Returns a policy that trusts addresses in `list`.
    static trust_policy ranges(cidr_list list) {
        trust_policy p{kind_type::ranges};
        p.m_ranges = std::move(list);
        return p;
    }
    /// Returns a policy that trusts addresses in the ranges or names given; throws
    /// std::invalid_argument naming a bad entry.
    static trust_policy ranges(std::initializer_list<std::string_view> entries) {
        return ranges(cidr_list{entries});
    }
    /// Returns a policy that asks `f`; throws std::invalid_argument if `f` is empty.
    static trust_policy predicate(predicate_type f) {
        if (!f) {
            keel::detail::invalid_configuration("keel::net::trust_policy",
                                                "predicate must not be empty");
        }
        trust_policy p{kind_type::predicate};
        p.m_predicate = std::move(f);
        return p;
    }

    /// Returns the kind of policy.
    kind_type kind() const noexcept { return m_kind; }

    /// Returns true if the hop with this address and index is a trusted proxy.
    bool trusts(ip_address const& address, std::size_t hop) const noexcept {
        switch (m_kind) {
        case kind_type::none: return false;
        case kind_type::all: return true;
        case kind_type::hops: return hop < m_hops;
        case kind_type::ranges: return m_ranges.contains(address);
        case kind_type::predicate: try { return m_predicate(address, hop);
            } catch (...) {
                return false;
            }
        }
        return false;
    }

private:
    explicit trust_policy(kind_type kind) noexcept : m_kind(kind) {}

    kind_type m_kind = kind_type::none;
    std::size_t m_hops = 0;
    cidr_list m_ranges;
    predicate_type m_predicate;
};

} // namespace net
KEEL_END_NAMESPACE
