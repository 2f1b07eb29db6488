// SPDX-License-Identifier: MIT
// Fuzzes keel::net::client_resolver::from_forwarded (RFC 7239). Input: byte 0 picks the
// trust policy, byte 1 the socket peer, byte 2 max_hops; the rest is the header, one line
// per '\n'. Checks: never crashes; the chain starts at the peer and ends at the result;
// every address returned is the peer or written in the header; an attacker's header
// forwarded by one trusted proxy cannot change the client that proxy saw; and the
// one-pass reader used for well-formed headers gives the same nodes as reading the
// header from the end.
#include <keel/net/client_address.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace {
using keel::net::client_resolver;
using keel::net::ip_address;
using keel::net::trust_policy;

trust_policy pick_trust(std::uint8_t b) {
    switch (b % 4) {
    case 0: return trust_policy::none();
    case 1: return trust_policy::all();
    case 2: return trust_policy::hops(b / 4 % 5);
    default: return trust_policy::ranges({"loopback", "10.0.0.0/8", "2001:db8::/32"});
    }
}

ip_address pick_peer(std::uint8_t b) {
    constexpr std::string_view peers[] = {"127.0.0.1",       "10.0.0.1",    "::1",
                                          "::ffff:10.0.0.1", "2001:db8::1", "203.0.113.9"};
    return *ip_address::parse(peers[b % 6]);
}

// True if `a` is spelled somewhere in `text` once quoted-pair backslashes are removed:
// IPv4 between delimiters that include ':', IPv6 between delimiters that do not.
bool in_header(ip_address const& a, std::string_view text) {
    std::string plain;
    for (char c : text) {
        if (c != '\\') {
            plain += c;
        }
    }
    for (std::string_view delimiters :
         {std::string_view{",;=\"[] \t\n:"}, std::string_view{",;=\"[] \t\n"}}) {
        std::size_t start = 0;
        while (start <= plain.size()) {
            std::size_t end = plain.find_first_of(delimiters, start);
            if (end == std::string::npos) {
                end = plain.size();
            }
            if (ip_address::parse(std::string_view{plain}.substr(start, end - start)) == a) {
                return true;
            }
            start = end + 1;
        }
    }
    return false;
}
// The one-pass reader, where it accepts the lines, must give the nodes the reader from
// the end gives, nearest first, as far as a walk can go (16 nodes).
void check_readers_agree(std::vector<std::string_view> const& lines) {
    namespace detail = keel::net::detail;
    detail::forward_forwarded_reader forward;
    if (!forward.read(lines)) {
        return;
    }
    detail::reverse_list_reader reverse{lines, std::size_t{1} << 20, true};
    for (std::size_t i = 0; i < detail::forward_forwarded_reader::capacity; ++i) {
        detail::node const a = forward.next();
        std::string_view item;
        detail::node b{reverse.next(item), {}};
        if (b.kind == detail::node_kind::address) {
            b = detail::parse_forwarded_element(item);
        }
        if (a.kind != b.kind || (a.kind == detail::node_kind::address && a.address != b.address)) {
            std::abort();
        }
        if (a.kind == detail::node_kind::end) {
            return;
        }
    }
}
} // namespace

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size) {
    if (size < 3) {
        return 0;
    }
    client_resolver const resolver{
        {.trust = pick_trust(data[0]), .max_hops = std::size_t{1} + data[2] % 15u}};
    ip_address const peer = pick_peer(data[1]);
    std::string_view const text{reinterpret_cast<char const*>(data + 3), size - 3};
    std::vector<std::string_view> lines;
    for (std::size_t start = 0;;) {
        auto const end = text.find('\n', start);
        lines.push_back(text.substr(start, end == std::string_view::npos ? end : end - start));
        if (end == std::string_view::npos) {
            break;
        }
        start = end + 1;
    }

    check_readers_agree(lines);

    auto const r = resolver.from_forwarded(peer, lines);
    if (r.chain.empty() || r.chain.front() != peer || r.chain.back() != r.address ||
        r.chain.size() > resolver.options().max_hops + 1) {
        std::abort();
    }
    for (std::size_t i = 1; i < r.chain.size(); ++i) {
        if (!in_header(r.chain[i], text)) {
            std::abort();
        }
    }

    // Spoofing: proxy 10.0.0.1 appends its element to whatever the client sent, on the
    // same line (after ", ") or on a line of its own.
    static client_resolver const one_proxy{{.trust = trust_policy::ranges({"10.0.0.1"})}};
    auto const proxy = *ip_address::parse("10.0.0.1");
    std::string same_line{lines.back()};
    same_line += ", for=\"[2001:db8::5]:443\";proto=https";
    std::vector<std::string_view> appended = lines;
    appended.back() = same_line;
    if (one_proxy.from_forwarded(proxy, appended).address != *ip_address::parse("2001:db8::5")) {
        std::abort();
    }
    std::vector<std::string_view> own_line = lines;
    own_line.push_back("for=203.0.113.5");
    if (one_proxy.from_forwarded(proxy, own_line).address != *ip_address::parse("203.0.113.5")) {
        std::abort();
    }
    return 0;
}
