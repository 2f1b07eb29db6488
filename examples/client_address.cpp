// SPDX-License-Identifier: MIT
// Finding the real client behind a load balancer: trust only our own proxies, read
// X-Forwarded-For (every line of it), Forwarded or CF-Connecting-IP, and see what a forged
// header can (not) do.
#include <keel/fmt.hpp>
#include <keel/net/client_address.hpp>

#include <fmt/format.h>

#include <string_view>
#include <vector>

int main() {
    namespace net = keel::net;

    // Our load balancers are in 10.0.0.0/8; a sidecar talks to us over loopback.
    net::client_resolver const resolver{{
        .trust = net::trust_policy::ranges({"loopback", "10.0.0.0/8"}),
        .cloudflare = {"173.245.48.0/20", "2400:cb00::/32"},
    }};
    auto const balancer = *net::ip_address::parse("10.0.0.7");

    auto const show = [](std::string_view what, net::client_address const& c) {
        fmt::print("{:<48} -> {} ({}, {} hops:", what, c.address, c.reason, c.chain.size());
        for (auto const& hop : c.chain) {
            fmt::print(" {}", hop);
        }
        fmt::print(")\n");
    };

    // A client at 203.0.113.9 went through one balancer.
    show("XFF: 203.0.113.9", resolver.from_x_forwarded_for(balancer, "203.0.113.9"));
    // The client forged an X-Forwarded-For: the balancer appended what it saw.
    show("XFF: 1.1.1.1, 10.9.9.9, 203.0.113.9",
         resolver.from_x_forwarded_for(balancer, "1.1.1.1, 10.9.9.9, 203.0.113.9"));
    // The header arrived on two lines.
    std::vector<std::string_view> const lines{"198.51.100.4", "10.1.1.1"};
    show("XFF lines: 198.51.100.4 | 10.1.1.1", resolver.from_x_forwarded_for(balancer, lines));
    // RFC 7239 Forwarded with an IPv6 client.
    show("Forwarded: for=\"[2001:db8:cafe::17]:4711\"",
         resolver.from_forwarded(balancer, R"(for="[2001:db8:cafe::17]:4711";proto=https)"));
    // A proxy that hides the client: keel stops at the proxy and says why.
    show("Forwarded: for=_hidden, for=10.2.2.2",
         resolver.from_forwarded(balancer, "for=_hidden, for=10.2.2.2"));
    // Garbage never becomes the client.
    show("XFF: <script>", resolver.from_x_forwarded_for(balancer, "<script>"));
    // A direct connection cannot claim anything.
    show("XFF from 198.51.100.1: 10.0.0.1",
         resolver.from_x_forwarded_for(*net::ip_address::parse("198.51.100.1"), "10.0.0.1"));
    // Cloudflare's header counts only from Cloudflare's ranges: here Cloudflare connects
    // to our balancer, which appends the edge's address to X-Forwarded-For.
    show("CF-Connecting-IP via 173.245.48.1 and 10.0.0.7",
         resolver.from_cf_connecting_ip(balancer, "192.0.2.55", "192.0.2.55, 173.245.48.1"));
    // A client that reaches the balancer without Cloudflare cannot choose its address.
    show("CF-Connecting-IP from 198.51.100.3 via 10.0.0.7",
         resolver.from_cf_connecting_ip(balancer, "1.1.1.1", "198.51.100.3"));
    return 0;
}
