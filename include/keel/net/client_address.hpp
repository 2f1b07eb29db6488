// SPDX-License-Identifier: MIT
// The real client address behind proxies: keel::net::client_resolver walks from the
// socket peer outwards through X-Forwarded-For or RFC 7239 Forwarded and returns the
// first address its trust_policy does not trust, with the chain of hops it walked; behind
// Cloudflare it then takes CF-Connecting-IP from the Cloudflare hop. Pass every line of
// a header, as a span: a header sent twice is two lines, and the nearest hops are in the
// last one. Headers are attacker-controlled: parsing never throws, never allocates,
// bounds its work, and on malformed input falls back to the nearest trusted hop.
#pragma once

#include <keel/detail/validate.hpp>
#include <keel/net/cidr.hpp>
#include <keel/net/detail/forwarded.hpp>
#include <keel/net/detail/list_reader.hpp>
#include <keel/net/ip_address.hpp>
#include <keel/net/trust.hpp>
#include <keel/version.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

KEEL_BEGIN_NAMESPACE
namespace net {

/// Holds up to `capacity` (16) addresses inline, nearest hop first; never allocates.
/// Element 0 is the socket peer. Thread-safety: a value type.
class address_chain {
public:
    /// Bounds how many hops a chain holds (the socket peer and 15 forwarded hops).
    static constexpr std::size_t capacity = 16;

    /// Constructs an empty chain.
    constexpr address_chain() noexcept {}

    /// Appends `address`; returns false (and changes nothing) when the chain is full.
    constexpr bool push_back(ip_address const& address) noexcept {
        if (m_size == capacity) {
            return false;
        }
        std::construct_at(&m_storage.items[m_size++], address);
        return true;
    }

    /// Returns the number of hops held.
    constexpr std::size_t size() const noexcept { return m_size; }
    /// Returns true if no hop is held.
    constexpr bool empty() const noexcept { return m_size == 0; }
    /// Returns hop `i`; precondition: i < size().
    constexpr ip_address const& operator[](std::size_t i) const noexcept {
        return m_storage.items[i];
    }
    /// Returns the first hop (the socket peer); precondition: !empty().
    constexpr ip_address const& front() const noexcept { return m_storage.items[0]; }
    /// Returns the last hop walked (the client); precondition: !empty().
    constexpr ip_address const& back() const noexcept { return m_storage.items[m_size - 1]; }
    /// Returns an iterator to the first hop.
    constexpr ip_address const* begin() const noexcept { return m_storage.items; }
    /// Returns an iterator past the last hop.
    constexpr ip_address const* end() const noexcept { return m_storage.items + m_size; }
    /// Returns the hops as a span.
    constexpr std::span<ip_address const> hops() const noexcept { return {begin(), end()}; }

private:
    // Left uninitialised: a resolver fills only the hops it walks (ip_address is trivially
    // copyable, so copying a chain copies the bytes).
    union storage {
        constexpr storage() noexcept {}
        ip_address items[capacity];
    };
    storage m_storage;
    std::uint8_t m_size = 0;
};
static_assert(std::is_trivially_copyable_v<ip_address>);

/// Says why the walk from the socket peer outwards stopped, and so what `address` is.
enum class stop_reason : std::uint8_t {
    /// The hop was not trusted: `address` is that hop, the client (the normal case).
    untrusted,
    /// Every hop was trusted and the header ended: `address` is the farthest hop, as in
    /// proxy-addr (with no header at all, the socket peer).
    end_of_chain,
    /// The next entry was not an IP address (or the header was malformed there):
    /// `address` is the nearest trusted hop before it.
    invalid_entry,
    /// Forwarded only: the next node was "unknown", or its element had no for=:
    /// `address` is the nearest trusted hop before it.
    unknown_node,
    /// Forwarded only: the next node was an obfuscated identifier such as "_hidden":
    /// `address` is the nearest trusted hop before it.
    obfuscated_node,
    /// max_hops or max_header_bytes was reached while every hop so far was trusted:
    /// `address` is the farthest hop kept.
    truncated,
};

/// Returns the name of a stop_reason, e.g. "untrusted".
constexpr std::string_view to_string(stop_reason r) noexcept {
    switch (r) {
    case stop_reason::untrusted: return "untrusted";
    case stop_reason::end_of_chain: return "end_of_chain";
    case stop_reason::invalid_entry: return "invalid_entry";
    case stop_reason::unknown_node: return "unknown_node";
    case stop_reason::obfuscated_node: return "obfuscated_node";
    case stop_reason::truncated: return "truncated";
    }
    return "unknown";
}

/// Holds the result of a walk: the client address, the hops walked and why it stopped.
/// Invariant: chain.front() is the socket peer and chain.back() == address.
struct client_address {
    ip_address address{};                           ///< The client, as the walk decided.
    address_chain chain{};                          ///< Hops walked, socket peer first.
    stop_reason reason = stop_reason::end_of_chain; ///< Why the walk stopped.
};

/// Configures a client_resolver; validated once, at construction.
struct client_resolver_options {
    /// Which hops are proxies to believe. Default: none (Express's default `trust proxy`
    /// false): the client is always the socket peer and headers are ignored.
    trust_policy trust{};
    /// Ranges of the Cloudflare edge whose CF-Connecting-IP header is believed (copy them
    /// from https://www.cloudflare.com/ips/) when the walk through `trust` ends at one of
    /// them. Default: empty, so the header is never believed. Used only by
    /// from_cf_connecting_ip().
    cidr_list cloudflare{};
    /// Bytes of X-Forwarded-For / Forwarded read, counted from the end (the nearest hop)
    /// across all lines. Default 8192, nginx's default large_client_header_buffers size.
    /// Range [1, 1048576] (1 MiB). An entry that crosses the limit is dropped whole, never cut in
    /// the middle, and the walk stops there with stop_reason::truncated.
    std::size_t max_header_bytes = 8192;
    /// Forwarded hops walked beyond the socket peer. Default and maximum 15 (so the chain,
    /// peer included, fits address_chain::capacity); range [1, 15]. Real chains rarely
    /// have more than 3 proxies.
    std::size_t max_hops = address_chain::capacity - 1;
};

/// Finds the real client address of a request from its socket peer and its forwarding
/// headers, trusting only the proxies its trust_policy names (Express's `trust proxy`).
///
/// The walk follows proxy-addr: the socket peer is hop 0; while the current hop is
/// trusted, the next address outwards (X-Forwarded-For read right to left, Forwarded
/// elements last to first) becomes the current hop; the first untrusted hop is the
/// client. If every hop is trusted, the farthest one is the client. Where keel differs
/// (documented in docs/net.md): an entry that is not an IP address ends the walk at the
/// nearest trusted hop instead of being returned (proxy-addr returns the raw string, or
/// with `trust proxy` true walks past it), so the result is always an address and never
/// text an attacker chose; Forwarded's unknown and obfuscated nodes end the walk the same
/// way. A header longer than max_header_bytes or with more than max_hops entries keeps its
/// nearest entries, because only those were written by proxies being trusted.
///
/// Every from_* function is noexcept, never allocates, and reads each byte of the header
/// at most a few times. A header sent more than once must be passed whole, as a span of
/// its lines in the order received: the hops a trusted proxy appended are at the end of
/// the last line, so a resolver given only the first line (what an HTTP library's
/// get_header_value returns) reads what the client wrote. For X-Forwarded-For the lines
/// mean the same as their comma-joined text; for Forwarded, a quoted string never runs on
/// into the next line (see from_forwarded). Thread-safety: const member functions may run
/// concurrently (a user predicate must then be thread-safe too).
///
/// ```cpp
/// keel::net::client_resolver resolver{{.trust = keel::net::trust_policy::ranges({"loopback"})}};
/// auto c = resolver.from_x_forwarded_for(*keel::net::ip_address::parse("127.0.0.1"),
///                                        "203.0.113.7, 127.0.0.2");
/// assert(c.address.to_string() == "203.0.113.7");
/// ```
class client_resolver {
public:
    /// Validates `options`; throws std::invalid_argument naming a field outside its range.
    explicit client_resolver(client_resolver_options options = {}) : m_options(std::move(options)) {
        constexpr std::string_view component = "keel::net::client_resolver";
        if (m_options.max_header_bytes < 1 || m_options.max_header_bytes > (std::size_t{1} << 20)) {
            keel::detail::invalid_option(component, "max_header_bytes", "in [1, 1048576] (1 MiB)",
                                         m_options.max_header_bytes);
        }
        if (m_options.max_hops < 1 || m_options.max_hops > address_chain::capacity - 1) {
            keel::detail::invalid_option(component, "max_hops", "in [1, 15]", m_options.max_hops);
        }
    }

    /// Returns the options in use.
    client_resolver_options const& options() const noexcept { return m_options; }

    /// Returns the client behind `peer` according to an X-Forwarded-For header value.
    /// Entries are split on ',', trimmed of spaces and tabs; empty entries are skipped; an
    /// entry must be a bare IP address (a port or brackets make it invalid, as in
    /// proxy-addr).
    client_address from_x_forwarded_for(ip_address const& peer,
                                        std::string_view header) const noexcept {
        return from_x_forwarded_for(peer, std::span<std::string_view const>{&header, 1});
    }

    /// Returns the client behind `peer` according to every X-Forwarded-For line of the
    /// request, in the order received (equivalent to the lines joined with ","). This is
    /// the form to call: a proxy appends to the last line.
    client_address from_x_forwarded_for(ip_address const& peer,
                                        std::span<std::string_view const> lines) const noexcept {
        detail::reverse_list_reader reader{lines, m_options.max_header_bytes, false};
        return walk(peer, [&reader]() noexcept {
            std::string_view item;
            auto const kind = reader.next(item);
            if (kind != detail::node_kind::address) {
                return detail::node{kind, {}};
            }
            auto const address = ip_address::parse(item);
            return address ? detail::node{detail::node_kind::address, *address}
                           : detail::node{detail::node_kind::invalid, {}};
        });
    }

    /// Returns the client behind `peer` according to an RFC 7239 Forwarded header value.
    /// Each element's for= node is one hop; by=, proto=, host= and extensions are checked
    /// for syntax and otherwise ignored. An element that breaks the grammar, repeats for=,
    /// or has a for= value over 64 characters counts as an invalid entry; an element
    /// without for= counts as an unknown node.
    client_address from_forwarded(ip_address const& peer, std::string_view header) const noexcept {
        return from_forwarded(peer, std::span<std::string_view const>{&header, 1});
    }

    /// Returns the client behind `peer` according to every Forwarded line of the request,
    /// in the order received. Each line is read on its own: a quoted string ends with its
    /// line, so an unterminated quote the client sends cannot swallow an element a proxy
    /// wrote on a line of its own (joining the lines with "," first would let it).
    client_address from_forwarded(ip_address const& peer,
                                  std::span<std::string_view const> lines) const noexcept {
        // A header within the byte budget is read front to back in one pass; one with an
        // element that breaks the grammar, or over the budget, from the end (see
        // forward_forwarded_reader). Both give the same nodes where both apply (fuzzed).
        enum class mode : std::uint8_t { unread, forward, reverse };
        mode m = mode::unread;
        detail::forward_forwarded_reader forward;
        detail::reverse_list_reader reverse{lines, m_options.max_header_bytes, true};
        return walk(peer, [&]() noexcept {
            if (m == mode::unread) { // only once the peer is trusted
                std::size_t total = 0;
                for (auto const line : lines) {
                    total += line.size();
                }
                m = total <= m_options.max_header_bytes && forward.read(lines) ? mode::forward
                                                                               : mode::reverse;
            }
            if (m == mode::forward) {
                return forward.next();
            }
            std::string_view item;
            auto const kind = reverse.next(item);
            if (kind != detail::node_kind::address) {
                return detail::node{kind, {}};
            }
            return detail::parse_forwarded_element(item);
        });
    }

    /// Returns the client behind `peer` according to a CF-Connecting-IP value and the
    /// X-Forwarded-For lines beside it. The walk through `trust` runs first, as in
    /// from_x_forwarded_for(); if it ends at a hop inside the `cloudflare` ranges (with
    /// stop_reason untrusted or end_of_chain: the hop that connected to the last trusted
    /// proxy, or the peer itself when no proxy is trusted), the value is that hop's client
    /// and is appended to the chain. Otherwise the walk's result is returned unchanged, so
    /// a client that reaches a trusted balancer without Cloudflare cannot choose its
    /// address. At the Cloudflare hop: an empty value (or no line) gives that hop with
    /// end_of_chain; more than one non-empty line or a value that is not exactly one IP
    /// address (spaces and tabs trimmed) gives that hop with invalid_entry; a chain that
    /// is already full gives that hop with truncated.
    client_address
    from_cf_connecting_ip(ip_address const& peer, std::span<std::string_view const> value_lines,
                          std::span<std::string_view const> x_forwarded_for_lines) const noexcept {
        client_address r = from_x_forwarded_for(peer, x_forwarded_for_lines);
        if ((r.reason != stop_reason::untrusted && r.reason != stop_reason::end_of_chain) ||
            !m_options.cloudflare.contains(r.address)) {
            return r;
        }
        std::string_view value;
        std::size_t non_empty = 0;
        for (auto line : value_lines) {
            line = detail::trim_ows(line);
            if (!line.empty()) {
                value = line;
                ++non_empty;
            }
        }
        if (non_empty == 0) {
            r.reason = stop_reason::end_of_chain;
            return r;
        }
        auto const address = non_empty == 1 ? ip_address::parse(value) : std::nullopt;
        if (!address) {
            r.reason = stop_reason::invalid_entry;
            return r;
        }
        if (!r.chain.push_back(*address)) {
            r.reason = stop_reason::truncated;
            return r;
        }
        r.address = *address;
        r.reason = stop_reason::untrusted;
        return r;
    }

    /// Returns from_cf_connecting_ip() for one CF-Connecting-IP value and every
    /// X-Forwarded-For line.
    client_address
    from_cf_connecting_ip(ip_address const& peer, std::string_view value,
                          std::span<std::string_view const> x_forwarded_for_lines) const noexcept {
        return from_cf_connecting_ip(peer, std::span<std::string_view const>{&value, 1},
                                     x_forwarded_for_lines);
    }

    /// Returns from_cf_connecting_ip() for one CF-Connecting-IP value and one
    /// X-Forwarded-For line.
    client_address from_cf_connecting_ip(ip_address const& peer, std::string_view value,
                                         std::string_view x_forwarded_for) const noexcept {
        return from_cf_connecting_ip(peer, std::span<std::string_view const>{&value, 1},
                                     std::span<std::string_view const>{&x_forwarded_for, 1});
    }

    /// Returns from_cf_connecting_ip() with no X-Forwarded-For: the walk ends at `peer`,
    /// so the value is believed exactly when `peer` is inside `cloudflare` (Cloudflare
    /// connects directly). Behind a balancer of your own, pass its X-Forwarded-For too.
    client_address from_cf_connecting_ip(ip_address const& peer,
                                         std::string_view value) const noexcept {
        return from_cf_connecting_ip(peer, std::span<std::string_view const>{&value, 1},
                                     std::span<std::string_view const>{});
    }

    /// As above, for a CF-Connecting-IP header that may have been sent more than once.
    client_address from_cf_connecting_ip(ip_address const& peer,
                                         std::span<std::string_view const> lines) const noexcept {
        return from_cf_connecting_ip(peer, lines, std::span<std::string_view const>{});
    }

private:
    template <class NextNode>
    client_address walk(ip_address const& peer, NextNode next) const noexcept {
        client_address r;
        r.address = peer;
        r.chain.push_back(peer);
        for (std::size_t hop = 0;; ++hop) {
            if (!m_options.trust.trusts(r.address, hop)) {
                r.reason = stop_reason::untrusted;
                return r;
            }
            detail::node const n = next();
            switch (n.kind) {
            case detail::node_kind::end: r.reason = stop_reason::end_of_chain; return r;
            case detail::node_kind::cut: r.reason = stop_reason::truncated; return r;
            case detail::node_kind::invalid: r.reason = stop_reason::invalid_entry; return r;
            case detail::node_kind::unknown: r.reason = stop_reason::unknown_node; return r;
            case detail::node_kind::obfuscated: r.reason = stop_reason::obfuscated_node; return r;
            case detail::node_kind::address: break;
            }
            if (hop == m_options.max_hops) {
                r.reason = stop_reason::truncated;
                return r;
            }
            r.address = n.address;
            r.chain.push_back(n.address);
        }
    }

    client_resolver_options m_options;
};

} // namespace net
KEEL_END_NAMESPACE
