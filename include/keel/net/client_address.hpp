// SPDX-License-Identifier: MIT
// The real client address behind proxies: keel::net::client_resolver walks from the
// socket peer outwards through X-Forwarded-For, RFC 7239 Forwarded or CF-Connecting-IP
// and returns the first address its trust_policy does not trust, with the chain of hops
// it walked. Headers are attacker-controlled: parsing never throws, never allocates,
// bounds its work, and on malformed input falls back to the nearest trusted hop.
#pragma once

#include <keel/net/cidr.hpp>
#include <keel/net/ip_address.hpp>
#include <keel/net/trust.hpp>
#include <keel/version.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
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

    /// Appends `address`; returns false (and changes nothing) when the chain is full.
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
    /// from https://www.cloudflare.com/ips/). Default: empty, so the header is never
    /// believed. Used only by from_cf_connecting_ip().
    cidr_list cloudflare{};
    /// Bytes of X-Forwarded-For / Forwarded read, counted from the end (the nearest hop)
    /// across all lines. Default 8192, nginx's default large_client_header_buffers size.
    /// Range [1, 1 MiB]. An entry that crosses the limit is dropped whole, never cut in
    /// the middle, and the walk stops there with stop_reason::truncated.
    std::size_t max_header_bytes = 8192;
    /// Forwarded hops walked beyond the socket peer. Default and maximum 15 (so the chain,
    /// peer included, fits address_chain::capacity); range [1, 15]. Real chains rarely
    /// have more than 3 proxies.
    std::size_t max_hops = address_chain::capacity - 1;
};

namespace detail {

enum class node_kind : std::uint8_t { address, invalid, unknown, obfuscated, end, cut };

struct node {
    node_kind kind = node_kind::end;
    ip_address address{};
};

constexpr bool is_ows(char c) noexcept {
    return c == ' ' || c == '\t';
}

constexpr std::string_view trim_ows(std::string_view s) noexcept {
    while (!s.empty() && is_ows(s.front())) {
        s.remove_prefix(1);
    }
    while (!s.empty() && is_ows(s.back())) {
        s.remove_suffix(1);
    }
    return s;
}

constexpr bool is_alpha(char c) noexcept {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

// Character classes of RFC 9110, as one table lookup each.
enum char_class : std::uint8_t { tchar = 1, qdtext = 2, quotable = 4 };

constexpr std::array<std::uint8_t, 256> make_char_classes() noexcept {
    std::array<std::uint8_t, 256> t{};
    for (unsigned c = 0; c < 256; ++c) {
        bool const alnum =
            (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        bool const tchar_punct = std::string_view{"!#$%&'*+-.^_`|~"}.find(static_cast<char>(c)) !=
                                 std::string_view::npos;
        std::uint8_t v = 0;
        if (alnum || tchar_punct) {
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

constexpr bool is_tchar(char c) noexcept {
    return (char_classes[static_cast<unsigned char>(c)] & tchar) != 0;
}
constexpr bool is_qdtext(char c) noexcept {
    return (char_classes[static_cast<unsigned char>(c)] & qdtext) != 0;
}
constexpr bool is_quotable(char c) noexcept {
    return (char_classes[static_cast<unsigned char>(c)] & quotable) != 0;
}

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

// Returns the index of the first `c` in `s`, or s.size(). A loop, not memchr: the values
// searched here are at most 64 bytes, where a library call costs more than the search.
constexpr std::size_t find_byte(std::string_view s, char c) noexcept {
    std::size_t i = 0;
    while (i < s.size() && s[i] != c) {
        ++i;
    }
    return i;
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

// Splits comma-separated header lines into items, last line's last item first, reading
// at most `budget` bytes from the end. With `quotes`, commas inside quoted strings do not
// split (a '"' preceded by an odd run of backslashes is escaped). Empty items are skipped.
class reverse_list_reader {
public:
    constexpr reverse_list_reader(std::span<std::string_view const> lines, std::size_t budget,
                                  bool quotes) noexcept
        : m_lines(lines), m_line(lines.size()), m_pos(lines.empty() ? 0 : lines.back().size()),
          m_budget(budget), m_quotes(quotes) {}

    // Returns end, cut (the next item crosses the byte budget) or address with `item` set.
    constexpr node_kind next(std::string_view& item) noexcept {
        // Locals, not members, in the loops: the header's chars may alias *this.
        bool const quotes = m_quotes;
        while (m_line > 0) {
            std::string_view const s = m_lines[m_line - 1];
            std::size_t const pos = m_pos;
            std::size_t const lowest = pos > m_budget ? pos - m_budget : 0;
            std::size_t j = pos;
            if (!quotes) {
                while (j > lowest && s[j - 1] != ',') {
                    --j;
                }
            } else {
                bool in_quote = false;
                while (j > lowest) {
                    char const c = s[j - 1];
                    if (c == ',' && !in_quote) {
                        break;
                    }
                    if (c == '"') {
                        std::size_t k = j - 1;
                        while (k > lowest && s[k - 1] == '\\') {
                            --k;
                        }
                        if ((j - 1 - k) % 2 == 0) {
                            in_quote = !in_quote;
                        }
                    }
                    --j;
                }
            }
            if (j > lowest) {
                --j; // the comma
                item = s.substr(j + 1, pos - j - 1);
                m_budget -= pos - j;
                m_pos = j;
            } else if (lowest == 0) {
                item = s.substr(0, pos);
                m_budget -= pos;
                --m_line;
                m_pos = m_line > 0 ? m_lines[m_line - 1].size() : 0;
            } else {
                return node_kind::cut;
            }
            item = trim_ows(item);
            if (!item.empty()) {
                return node_kind::address;
            }
        }
        return node_kind::end;
    }

private:
    std::span<std::string_view const> m_lines;
    std::size_t m_line;
    std::size_t m_pos;
    std::size_t m_budget;
    bool m_quotes;
};

} // namespace detail

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
/// at most a few times. Repeated header lines are passed as a span, in the order received;
/// this is the same as joining them with commas. Thread-safety: const member functions may
/// run concurrently (a user predicate must then be thread-safe too).
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
        if (m_options.max_header_bytes < 1 || m_options.max_header_bytes > (std::size_t{1} << 20)) {
            throw std::invalid_argument(
                "keel::net::client_resolver: max_header_bytes must be in [1, 1048576], got " +
                std::to_string(m_options.max_header_bytes));
        }
        if (m_options.max_hops < 1 || m_options.max_hops > address_chain::capacity - 1) {
            throw std::invalid_argument(
                "keel::net::client_resolver: max_hops must be in [1, 15], got " +
                std::to_string(m_options.max_hops));
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

    /// Returns the client behind `peer` according to repeated X-Forwarded-For lines, in
    /// the order received (equivalent to the lines joined with ",").
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

    /// Returns the client behind `peer` according to repeated Forwarded lines, in the
    /// order received.
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

    /// Returns the address in a CF-Connecting-IP header value if `peer` is inside the
    /// `cloudflare` ranges, else `peer` (stop_reason::untrusted). The trust policy is not
    /// consulted. A missing (empty) value gives the peer with end_of_chain; a value that is
    /// not exactly one IP address (spaces and tabs trimmed) gives the peer with
    /// invalid_entry.
    client_address from_cf_connecting_ip(ip_address const& peer,
                                         std::string_view value) const noexcept {
        return from_cf_connecting_ip(peer, std::span<std::string_view const>{&value, 1});
    }

    /// As above, for a header that may have been sent more than once: more than one
    /// non-empty line counts as invalid.
    client_address from_cf_connecting_ip(ip_address const& peer,
                                         std::span<std::string_view const> lines) const noexcept {
        client_address r;
        r.address = peer;
        r.chain.push_back(peer);
        if (!m_options.cloudflare.contains(peer)) {
            r.reason = stop_reason::untrusted;
            return r;
        }
        std::string_view value;
        std::size_t non_empty = 0;
        for (auto line : lines) {
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
        r.address = *address;
        r.chain.push_back(*address);
        r.reason = stop_reason::untrusted;
        return r;
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
