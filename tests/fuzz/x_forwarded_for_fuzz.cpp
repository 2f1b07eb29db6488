// SPDX-License-Identifier: MIT
// Fuzzes keel::net::client_resolver::from_x_forwarded_for. Input: byte 0 picks the trust
// policy, byte 1 the socket peer, byte 2 max_hops; the rest is the header, one line per
// '\n'. Checks: never crashes; the chain starts at the peer and ends at the result; every
// address returned is the peer or an entry of the header; the lines give the same result
// as their comma-joined form; and an attacker's header forwarded by one trusted proxy
// cannot change the client that proxy saw, through X-Forwarded-For or CF-Connecting-IP.
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
    switch (b % 5) {
    case 0: return trust_policy::none();
    case 1: return trust_policy::all();
    case 2: return trust_policy::hops(b / 5 % 5);
    case 3: return trust_policy::ranges({"loopback", "10.0.0.0/8", "2001:db8::/32"});
    default: return trust_policy::ranges({"uniquelocal", "::ffff:192.0.2.0/120"});
    }
}

ip_address pick_peer(std::uint8_t b) {
    constexpr std::string_view peers[] = {"127.0.0.1",       "10.0.0.1",    "::1",
                                          "::ffff:10.0.0.1", "2001:db8::1", "203.0.113.9",
                                          "192.168.1.1"};
    return *ip_address::parse(peers[b % 7]);
}

bool in_header(ip_address const& a, std::string_view text) {
    std::size_t start = 0;
    while (start <= text.size()) {
        std::size_t end = text.find_first_of(",\n", start);
        if (end == std::string_view::npos) {
            end = text.size();
        }
        auto item = text.substr(start, end - start);
        while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) {
            item.remove_prefix(1);
        }
        while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) {
            item.remove_suffix(1);
        }
        if (ip_address::parse(item) == a) {
            return true;
        }
        start = end + 1;
    }
    return false;
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
    std::string joined;
    for (std::size_t start = 0;;) {
        auto const end = text.find('\n', start);
        lines.push_back(text.substr(start, end == std::string_view::npos ? end : end - start));
        if (end == std::string_view::npos) {
            break;
        }
        start = end + 1;
    }
    for (std::size_t i = 0; i < lines.size(); ++i) {
        joined += i == 0 ? "" : ",";
        joined += lines[i];
    }

    auto const r = resolver.from_x_forwarded_for(peer, lines);
    if (r.chain.empty() || r.chain.front() != peer || r.chain.back() != r.address ||
        r.chain.size() > resolver.options().max_hops + 1) {
        std::abort();
    }
    for (std::size_t i = 1; i < r.chain.size(); ++i) {
        if (!in_header(r.chain[i], text)) {
            std::abort();
        }
    }
    auto const j = resolver.from_x_forwarded_for(peer, joined);
    if (joined.size() <= resolver.options().max_header_bytes &&
        (j.address != r.address || j.reason != r.reason || j.chain.size() != r.chain.size())) {
        std::abort();
    }

    // Spoofing: proxy 10.0.0.1 forwards for 203.0.113.5 whatever the client sent.
    static client_resolver const one_proxy{{.trust = trust_policy::ranges({"10.0.0.1"})}};
    auto const client = *ip_address::parse("203.0.113.5");
    std::vector<std::string_view> forwarded = lines;
    forwarded.push_back("203.0.113.5");
    auto const s = one_proxy.from_x_forwarded_for(*ip_address::parse("10.0.0.1"), forwarded);
    if (s.address != client) {
        std::abort();
    }
    // The same behind the proxy for CF-Connecting-IP: a client that is not a Cloudflare
    // address cannot choose its address by sending the header (its first line as value).
    static client_resolver const behind_proxy{
        {.trust = trust_policy::ranges({"10.0.0.1"}), .cloudflare = {"173.245.48.0/20"}}};
    auto const cf = behind_proxy.from_cf_connecting_ip(*ip_address::parse("10.0.0.1"),
                                                       lines.front(), forwarded);
    if (cf.address != client || cf.chain.back() != cf.address) {
        std::abort();
    }
    return 0;
}
