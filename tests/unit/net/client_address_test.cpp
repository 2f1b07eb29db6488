// SPDX-License-Identifier: MIT
#include <keel/net/client_address.hpp>

#include <catch2/catch.hpp>

#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

using keel::net::client_address;
using keel::net::client_resolver;
using keel::net::ip_address;
using keel::net::stop_reason;
using keel::net::trust_policy;

namespace {
ip_address ip(std::string_view text) {
    auto const a = ip_address::parse(text);
    REQUIRE(a);
    return *a;
}

trust_policy named_trust(std::string_view name) {
    if (name == "none") {
        return trust_policy::none();
    }
    if (name == "all") {
        return trust_policy::all();
    }
    if (name.starts_with("hops")) {
        return trust_policy::hops(static_cast<std::size_t>(name.back() - '0'));
    }
    if (name == "list3") {
        return trust_policy::ranges({"10.0.0.0/8", "192.168.0.0/16", "2001:db8::/32"});
    }
    if (name == "netmask") {
        return trust_policy::ranges({"10.0.0.0/255.0.0.0"});
    }
    if (name == "single") {
        return trust_policy::ranges({"10.0.0.1"});
    }
    if (name == "mapped_single") {
        return trust_policy::ranges({"::ffff:10.0.0.1"});
    }
    if (name == "mapped_range") {
        return trust_policy::ranges({"::ffff:10.0.0.0/104"});
    }
    if (name == "v6_all") {
        return trust_policy::ranges({"::/1", "8000::/1"});
    }
    if (name == "express_string") {
        return trust_policy::ranges(keel::net::cidr_list::parse("loopback, 10.0.0.0/8"));
    }
    return trust_policy::ranges({name}); // loopback, linklocal, uniquelocal
}

std::vector<std::string> texts(client_address const& c) {
    std::vector<std::string> out;
    for (auto const& a : c.chain) {
        out.push_back(a.to_string());
    }
    return out;
}
} // namespace

TEST_CASE("client_resolver::from_x_forwarded_for matches proxy-addr for every trust kind",
          "[net][client_address]") {
    struct row {
        std::string_view trust;
        std::string_view peer;
        std::string_view header;
        std::string_view expected;
        std::size_t chain_size;
    };
    // Expected values produced by proxy-addr 2.0.8 with Express's compileTrust. Where keel
    // differs on purpose, the rows are in the tests below, with proxy-addr's values.
    auto const table = {
        row{"none", "10.0.0.1", "1.1.1.1, 2.2.2.2", "10.0.0.1", 1},
        row{"all", "10.0.0.1", "1.1.1.1, 2.2.2.2", "1.1.1.1", 3},
        row{"all", "10.0.0.1", "", "10.0.0.1", 1},
        row{"hops0", "10.0.0.1", "1.1.1.1, 2.2.2.2", "10.0.0.1", 1},
        row{"hops1", "10.0.0.1", "1.1.1.1, 2.2.2.2", "2.2.2.2", 2},
        row{"hops2", "10.0.0.1", "1.1.1.1, 2.2.2.2", "1.1.1.1", 3},
        row{"hops3", "10.0.0.1", "1.1.1.1, 2.2.2.2", "1.1.1.1", 3},
        row{"hops5", "10.0.0.1", "1.1.1.1, 2.2.2.2", "1.1.1.1", 3},
        row{"loopback", "127.0.0.1", "1.1.1.1, 127.0.0.5", "1.1.1.1", 3},
        row{"loopback", "127.0.0.1", "127.0.0.3, 127.0.0.5", "127.0.0.3", 3},
        row{"loopback", "10.0.0.1", "1.1.1.1", "10.0.0.1", 1},
        row{"loopback", "::1", "2001:db8::7, ::1", "2001:db8::7", 3},
        row{"loopback", "::ffff:127.0.0.1", "198.51.100.1", "198.51.100.1", 2},
        row{"linklocal", "169.254.1.1", "1.1.1.1, fe80::2", "1.1.1.1", 3},
        row{"linklocal", "fe80::1", "1.1.1.1, fe80::2", "1.1.1.1", 3},
        row{"uniquelocal", "10.1.2.3", "8.8.8.8, 192.168.1.1, 172.16.5.4, fd00::1", "8.8.8.8", 5},
        row{"uniquelocal", "10.1.2.3", "8.8.8.8, 172.32.0.1, 10.0.0.9", "172.32.0.1", 3},
        row{"list3", "10.0.0.1", "203.0.113.9, 2001:db8::5, 192.168.3.3", "203.0.113.9", 4},
        row{"list3", "10.0.0.1", "203.0.113.9, 2001:db9::5, 192.168.3.3", "2001:db9::5", 3},
        row{"list3", "203.0.113.1", "1.1.1.1", "203.0.113.1", 1},
        row{"list3", "::ffff:10.0.0.1", "::ffff:192.168.1.1, 1.2.3.4", "1.2.3.4", 2},
        row{"list3", "10.0.0.1", "1.2.3.4, ::ffff:192.168.1.1", "1.2.3.4", 3},
        row{"netmask", "10.9.9.9", "1.2.3.4, 10.3.3.3", "1.2.3.4", 3},
        row{"single", "10.0.0.1", "1.2.3.4, 10.0.0.2", "10.0.0.2", 2},
        row{"mapped_single", "10.0.0.1", "1.2.3.4", "1.2.3.4", 2},
        row{"mapped_range", "10.0.0.7", "1.2.3.4", "1.2.3.4", 2},
        row{"mapped_range", "::ffff:10.0.0.7", "1.2.3.4", "1.2.3.4", 2},
        row{"loopback", "127.0.0.1", "1.1.1.1,,  , 127.0.0.2", "1.1.1.1", 3},
        row{"loopback", "127.0.0.1", "1.1.1.1 ,127.0.0.2 ", "1.1.1.1", 3},
        row{"express_string", "10.0.0.1", "3.3.3.3, 127.0.0.1", "3.3.3.3", 3},
    };
    for (auto const& r : table) {
        CAPTURE(r.trust, r.peer, r.header);
        client_resolver const resolver{{.trust = named_trust(r.trust)}};
        auto const c = resolver.from_x_forwarded_for(ip(r.peer), r.header);
        CHECK(c.address.to_string() == r.expected);
        CHECK(c.chain.size() == r.chain_size);
        CHECK(c.chain.front() == ip(r.peer));
        CHECK(c.chain.back() == c.address);
    }
}

TEST_CASE("client_resolver matches IPv4 clients only with IPv4 ranges, stricter than proxy-addr",
          "[net][client_address]") {
    // proxy-addr 2.0.8 compares an IPv4 candidate in its mapped form, and a mapped one as it
    // stands, with every IPv6 range; ::/1 holds ::ffff:0:0/96, so proxy-addr trusts every
    // IPv4 address here. keel matches IPv4 and mapped candidates only with IPv4 ranges and
    // IPv6 ranges inside ::ffff:0:0/96.
    client_resolver const resolver{{.trust = named_trust("v6_all")}};
    auto const mapped = resolver.from_x_forwarded_for(ip("::ffff:10.0.0.7"), "1.2.3.4");
    CHECK(mapped.address == ip("::ffff:10.0.0.7")); // proxy-addr: "1.2.3.4"
    CHECK(mapped.chain.size() == 1);                // proxy-addr: 2 addresses
    CHECK(mapped.reason == stop_reason::untrusted);
    auto const native = resolver.from_x_forwarded_for(ip("2001:db8::1"), "1.2.3.4");
    CHECK(native.address == ip("1.2.3.4")); // proxy-addr: the same (it never asks about the last)
    CHECK(native.chain.size() == 2);
    CHECK(native.reason == stop_reason::untrusted);
    auto const two = resolver.from_x_forwarded_for(ip("2001:db8::1"), "5.6.7.8, 1.2.3.4");
    CHECK(two.address == ip("1.2.3.4")); // proxy-addr: "5.6.7.8", trusting 1.2.3.4 by ::/1
    CHECK(two.chain.size() == 2);        // proxy-addr: 3 addresses
}

TEST_CASE("client_resolver reports the chain walked and why it stopped", "[net][client_address]") {
    client_resolver const resolver{{.trust = trust_policy::ranges({"loopback", "10.0.0.0/8"})}};
    auto const c = resolver.from_x_forwarded_for(ip("127.0.0.1"), "9.9.9.9, 203.0.113.4, 10.1.1.1");
    CHECK(c.address == ip("203.0.113.4"));
    CHECK(c.reason == stop_reason::untrusted);
    CHECK(texts(c) == std::vector<std::string>{"127.0.0.1", "10.1.1.1", "203.0.113.4"});
    auto const trusted = resolver.from_x_forwarded_for(ip("127.0.0.1"), "10.0.0.2, 10.0.0.3");
    CHECK(trusted.address == ip("10.0.0.2"));
    CHECK(trusted.reason == stop_reason::end_of_chain);
    auto const direct = resolver.from_x_forwarded_for(ip("198.51.100.1"), "10.0.0.2");
    CHECK(direct.address == ip("198.51.100.1"));
    CHECK(direct.reason == stop_reason::untrusted);
    CHECK(direct.chain.size() == 1);
    auto const none = resolver.from_x_forwarded_for(ip("127.0.0.1"), "");
    CHECK(none.address == ip("127.0.0.1"));
    CHECK(none.reason == stop_reason::end_of_chain);
    CHECK(keel::net::to_string(stop_reason::obfuscated_node) == "obfuscated_node");
}

TEST_CASE("client_resolver passes the hop index to a predicate", "[net][client_address]") {
    std::vector<std::size_t> seen;
    client_resolver const resolver{
        {.trust = trust_policy::predicate([&seen](ip_address const& a, std::size_t hop) {
             seen.push_back(hop);
             return a != ip_address::v4(2, 2, 2, 2);
         })}};
    auto const c = resolver.from_x_forwarded_for(ip("10.0.0.1"), "1.1.1.1, 2.2.2.2, 3.3.3.3");
    CHECK(c.address == ip("2.2.2.2"));
    CHECK(seen == std::vector<std::size_t>{0, 1, 2});
}

TEST_CASE("client_resolver stops at an invalid X-Forwarded-For entry, at the nearest trusted hop",
          "[net][client_address]") {
    struct row {
        std::string_view trust;
        std::string_view header;
        std::string_view expected;
        stop_reason reason;
    };
    // proxy-addr returns "garbage", "010.0.0.1", ... as the address, or with trust-all walks
    // past it; keel never returns text that is not an address.
    auto const table = {
        row{"loopback", "1.1.1.1, garbage, 127.0.0.2", "127.0.0.2", stop_reason::invalid_entry},
        row{"all", "1.1.1.1, garbage, 127.0.0.2", "127.0.0.2", stop_reason::invalid_entry},
        row{"loopback", "010.0.0.1", "127.0.0.1", stop_reason::invalid_entry},
        row{"loopback", "10.1", "127.0.0.1", stop_reason::invalid_entry},
        row{"loopback", "1.2.3.4:80", "127.0.0.1", stop_reason::invalid_entry},
        row{"loopback", "[::1]", "127.0.0.1", stop_reason::invalid_entry},
        row{"loopback", "fe80::1%eth0", "127.0.0.1", stop_reason::invalid_entry},
        row{"loopback", "1.1.1.1, 2.2.2.2 3.3.3.3", "127.0.0.1", stop_reason::invalid_entry},
        row{"loopback", "1.1.1.1\r\n, 127.0.0.9", "127.0.0.9", stop_reason::invalid_entry},
        row{"loopback", std::string_view{"1.1.1.1\0", 8}, "127.0.0.1", stop_reason::invalid_entry},
        row{"loopback", "garbage, 1.1.1.1", "1.1.1.1", stop_reason::untrusted},
        row{"loopback", "1.1.1.1\t,\t127.0.0.9\t", "1.1.1.1", stop_reason::untrusted},
        row{"hops1", "garbage", "127.0.0.1", stop_reason::invalid_entry},
    };
    for (auto const& r : table) {
        CAPTURE(r.trust, r.header);
        client_resolver const resolver{{.trust = named_trust(r.trust)}};
        auto const c = resolver.from_x_forwarded_for(ip("127.0.0.1"), r.header);
        CHECK(c.address.to_string() == r.expected);
        CHECK(c.reason == r.reason);
    }
}

TEST_CASE("client_resolver reads repeated header lines as one comma-joined list",
          "[net][client_address]") {
    client_resolver const resolver{{.trust = trust_policy::all()}};
    std::vector<std::string_view> const lines{"1.1.1.1, 2.2.2.2", "", "3.3.3.3"};
    auto const split = resolver.from_x_forwarded_for(ip("10.0.0.1"), lines);
    auto const joined = resolver.from_x_forwarded_for(ip("10.0.0.1"), "1.1.1.1, 2.2.2.2,,3.3.3.3");
    CHECK(texts(split) == texts(joined));
    CHECK(texts(split) == std::vector<std::string>{"10.0.0.1", "3.3.3.3", "2.2.2.2", "1.1.1.1"});
    std::vector<std::string_view> const forwarded{"for=1.1.1.1", "for=2.2.2.2;proto=https"};
    auto const f = resolver.from_forwarded(ip("10.0.0.1"), forwarded);
    CHECK(texts(f) == std::vector<std::string>{"10.0.0.1", "2.2.2.2", "1.1.1.1"});
    CHECK(resolver.from_x_forwarded_for(ip("10.0.0.1"), std::span<std::string_view const>{})
              .address == ip("10.0.0.1"));

    // The proxy's entries are in the last line: given only the first line (what an HTTP
    // library's get_header_value returns), the resolver reads what the client wrote.
    client_resolver const one_proxy{{.trust = trust_policy::ranges({"10.0.0.1"})}};
    std::vector<std::string_view> const sent{"6.6.6.6", "203.0.113.5"};
    CHECK(one_proxy.from_x_forwarded_for(ip("10.0.0.1"), sent).address == ip("203.0.113.5"));
    CHECK(one_proxy.from_x_forwarded_for(ip("10.0.0.1"), sent.front()).address == ip("6.6.6.6"));
}

TEST_CASE("client_resolver::from_forwarded reads each line on its own: quotes end with the line",
          "[net][client_address]") {
    // Joined with ",", these two lines are two well-formed elements, the first holding the
    // quoted string "\",\"" across the join; read line by line, the first line's quote is
    // unterminated and the second line's lone quote starts a malformed element.
    client_resolver const resolver{{.trust = trust_policy::all()}};
    std::vector<std::string_view> const lines{"for=7.7.7.7;x=\"", "\", for=203.0.113.5"};
    auto const split = resolver.from_forwarded(ip("10.0.0.1"), lines);
    CHECK(texts(split) == std::vector<std::string>{"10.0.0.1", "203.0.113.5"});
    CHECK(split.reason == stop_reason::invalid_entry);
    auto const joined =
        resolver.from_forwarded(ip("10.0.0.1"), "for=7.7.7.7;x=\",\", for=203.0.113.5");
    CHECK(texts(joined) == std::vector<std::string>{"10.0.0.1", "203.0.113.5", "7.7.7.7"});
    CHECK(joined.reason == stop_reason::end_of_chain);
}

TEST_CASE("a client cannot spoof its address through one trusted proxy", "[net][client_address]") {
    // The proxy at 10.0.0.1 appends the address it saw (203.0.113.5) to whatever the client
    // sent. Whatever the client sent, the result must be 203.0.113.5.
    auto const forged = {
        "",
        "1.2.3.4",
        "10.0.0.1",
        "127.0.0.1, 10.0.0.2",
        "8.8.8.8,",
        ",,,,",
        "garbage",
        "\"",
        "\\",
        "for=\"",
        "for=\"1.2.3.4\\",
        "for=\"[::1]\", for=\"",
        "1.2.3.4\"",
        "for=_hidden",
        "for=unknown",
        "for=1.2.3.4;for=5.6.7.8",
        "\"\\\"\\\\\"",
        "::ffff:10.0.0.1",
    };
    auto const ranges = trust_policy::ranges({"10.0.0.1"});
    for (auto const& trust : {ranges, trust_policy::hops(1)}) {
        client_resolver const resolver{{.trust = trust}};
        for (std::string_view const f : forged) {
            CAPTURE(f);
            std::string xff{f};
            xff += xff.empty() ? "203.0.113.5" : ", 203.0.113.5";
            auto const x = resolver.from_x_forwarded_for(ip("10.0.0.1"), xff);
            CHECK(x.address == ip("203.0.113.5"));
            CHECK(x.reason == stop_reason::untrusted);

            std::string fwd{f};
            fwd += fwd.empty() ? "for=203.0.113.5" : ", for=203.0.113.5";
            auto const y = resolver.from_forwarded(ip("10.0.0.1"), fwd);
            CHECK(y.address == ip("203.0.113.5"));

            std::string fwd6{f};
            fwd6 += fwd6.empty() ? "for=\"[2001:db8::5]:4711\"" : ", for=\"[2001:db8::5]:4711\"";
            CHECK(resolver.from_forwarded(ip("10.0.0.1"), fwd6).address == ip("2001:db8::5"));

            // The same with the forged header on its own line.
            std::vector<std::string_view> const lines{f, "for=203.0.113.5"};
            CHECK(resolver.from_forwarded(ip("10.0.0.1"), lines).address == ip("203.0.113.5"));
        }
        if (trust.kind() != trust_policy::kind_type::ranges) {
            continue; // hops(1) trusts any peer: it assumes the proxy is always there
        }
        // Connecting directly, the client gets nothing from its headers.
        CHECK(resolver.from_x_forwarded_for(ip("203.0.113.5"), "10.0.0.1, 1.2.3.4").address ==
              ip("203.0.113.5"));
        CHECK(resolver.from_forwarded(ip("203.0.113.5"), "for=1.2.3.4").address ==
              ip("203.0.113.5"));
    }
}

TEST_CASE("client_resolver::from_forwarded follows the RFC 7239 examples",
          "[net][client_address]") {
    struct row {
        std::string_view header;
        std::string_view expected;
        stop_reason reason;
        std::size_t chain_size;
    };
    // Every hop trusted, so the walk shows how far each header can be followed.
    auto const table = {
        row{"for=\"_gazonk\"", "10.0.0.1", stop_reason::obfuscated_node, 1},
        row{"For=\"[2001:db8:cafe::17]:4711\"", "2001:db8:cafe::17", stop_reason::end_of_chain, 2},
        row{"for=192.0.2.60;proto=http;by=203.0.113.43", "192.0.2.60", stop_reason::end_of_chain,
            2},
        row{"for=192.0.2.43, for=198.51.100.17", "192.0.2.43", stop_reason::end_of_chain, 3},
        row{"for=192.0.2.43,for=\"[2001:db8:cafe::17]\",for=unknown", "10.0.0.1",
            stop_reason::unknown_node, 1},
        row{"for=unknown, for=\"[2001:db8:cafe::17]\"", "2001:db8:cafe::17",
            stop_reason::unknown_node, 2},
        row{"for=192.0.2.43, for=\"[2001:db8:cafe::17]\"", "192.0.2.43", stop_reason::end_of_chain,
            3},
        row{"for=\"192.0.2.43:47011\"", "192.0.2.43", stop_reason::end_of_chain, 2},
        row{"for=\"[2001:db8:cafe::17]:47011\"", "2001:db8:cafe::17", stop_reason::end_of_chain, 2},
        row{"for=_hidden, for=_SEVKISEK", "10.0.0.1", stop_reason::obfuscated_node, 1},
        row{"for=192.0.2.43,for=198.51.100.17;by=203.0.113.60;proto=http;host=example.com",
            "192.0.2.43", stop_reason::end_of_chain, 3},
        row{"for=\"192.0.2.43:_port\"", "192.0.2.43", stop_reason::end_of_chain, 2},
        row{"for=\"unknown:80\"", "10.0.0.1", stop_reason::unknown_node, 1},
        row{"FOR=UNKNOWN", "10.0.0.1", stop_reason::unknown_node, 1},
        row{"by=203.0.113.60;proto=http", "10.0.0.1", stop_reason::unknown_node, 1},
        row{"for=\"1.2.3.\\4\"", "1.2.3.4", stop_reason::end_of_chain, 2}, // quoted-pair
        row{" ; for=1.2.3.4 ;; proto=https ; ", "1.2.3.4", stop_reason::end_of_chain, 2},
        row{"for=1.2.3.4;ext=\"a,b;c=\\\"d\\\"\"", "1.2.3.4", stop_reason::end_of_chain, 2},
        row{"for=5.5.5.5, , for=1.2.3.4", "5.5.5.5", stop_reason::end_of_chain, 3},
    };
    client_resolver const resolver{{.trust = trust_policy::all()}};
    for (auto const& r : table) {
        CAPTURE(r.header);
        auto const c = resolver.from_forwarded(ip("10.0.0.1"), r.header);
        CHECK(c.address.to_string() == r.expected);
        CHECK(c.reason == r.reason);
        CHECK(c.chain.size() == r.chain_size);
    }
}

TEST_CASE("client_resolver::from_forwarded treats malformed elements as invalid entries",
          "[net][client_address]") {
    auto const malformed = {
        "for=[2001:db8::1]",       // brackets must be quoted
        "for=1.2.3.4:80",          // ':' must be quoted
        "for=\"[1.2.3.4]\"",       // IPv4 in brackets
        "for=\"2001:db8::1\"",     // IPv6 without brackets
        "for=\"[2001:db8::1\"",    // unclosed bracket
        "for=\"[2001:db8::1]x\"",  // junk after bracket
        "for=\"1.2.3.4:123456\"",  // port too long
        "for=\"1.2.3.4:\"",        // empty port
        "for=\"_\"",               // empty obfuscated name
        "for=\"_a b\"",            // bad obfuscated name
        "for=1.2.3.4;for=5.6.7.8", // repeated parameter
        "for=1.2.3.4;FOR=5.6.7.8",
        "for",
        "for=",
        "=1.2.3.4",
        "for =1.2.3.4",
        "for= 1.2.3.4",
        "for=\"1.2.3.4",
        "for=\"1.2.3.4\"x",
        "for=1.2.3.4 proto=http",
        "for=\"\\\"1.2.3.4\"",
        "for=\"1.2.3.4\x01\"",
        "for=1.2.3.4;by",
        "for=\"1.2.3.4\";proto=\"unterminated",
        "for=\"_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"",
    };
    client_resolver const resolver{{.trust = trust_policy::all()}};
    for (std::string_view const m : malformed) {
        CAPTURE(m);
        auto const c = resolver.from_forwarded(ip("10.0.0.1"), m);
        CHECK(c.address == ip("10.0.0.1"));
        CHECK(c.reason == stop_reason::invalid_entry);
        // A malformed far element does not hide the valid near ones.
        std::string const header = std::string{m} + ", for=192.0.2.1";
        auto const d = resolver.from_forwarded(ip("10.0.0.1"), header);
        CHECK(d.chain.size() >= 2);
        CHECK(d.chain[1] == ip("192.0.2.1"));
    }
}

TEST_CASE("client_resolver cuts long headers keeping the nearest hops", "[net][client_address]") {
    SECTION("max_hops") {
        client_resolver const resolver{{.trust = trust_policy::all(), .max_hops = 2}};
        auto const c = resolver.from_x_forwarded_for(ip("10.0.0.1"), "1.1.1.1, 2.2.2.2, 3.3.3.3");
        CHECK(c.address == ip("2.2.2.2"));
        CHECK(c.reason == stop_reason::truncated);
        CHECK(c.chain.size() == 3);
        auto const fits = resolver.from_x_forwarded_for(ip("10.0.0.1"), "2.2.2.2, 3.3.3.3");
        CHECK(fits.address == ip("2.2.2.2"));
        CHECK(fits.reason == stop_reason::end_of_chain);
    }
    SECTION("max_header_bytes drops an entry that crosses the limit, never cuts it") {
        client_resolver const nine{{.trust = trust_policy::all(), .max_header_bytes = 9}};
        auto const c = nine.from_x_forwarded_for(ip("10.0.0.1"), "11.1.1.1, 2.2.2.2");
        CHECK(c.address == ip("2.2.2.2"));
        CHECK(c.reason == stop_reason::truncated);
        client_resolver const eight{{.trust = trust_policy::all(), .max_header_bytes = 8}};
        auto const d = eight.from_x_forwarded_for(ip("10.0.0.1"), "11.1.1.1, 2.2.2.2");
        CHECK(d.address == ip("10.0.0.1"));
        CHECK(d.reason == stop_reason::truncated);
        // Counted across lines, from the last one.
        std::vector<std::string_view> const lines{"11.1.1.1", "2.2.2.2"};
        CHECK(eight.from_x_forwarded_for(ip("10.0.0.1"), lines).address == ip("2.2.2.2"));
        auto const f = nine.from_forwarded(ip("10.0.0.1"), "for=1.1.1.1, for=2.2.2.2");
        CHECK(f.address == ip("10.0.0.1"));
        CHECK(f.reason == stop_reason::truncated);
    }
    SECTION("a huge attacker prefix costs nothing and changes nothing") {
        std::string header;
        for (int i = 0; i < 100000; ++i) {
            header += "6.6.6.6, ";
        }
        header += "203.0.113.5, 10.0.0.2";
        client_resolver const resolver{{.trust = trust_policy::ranges({"10.0.0.0/8"})}};
        auto const c = resolver.from_x_forwarded_for(ip("10.0.0.1"), header);
        CHECK(c.address == ip("203.0.113.5"));
        CHECK(c.reason == stop_reason::untrusted);
        std::string fwd(200000, '"');
        fwd += ", for=203.0.113.5";
        CHECK(resolver.from_forwarded(ip("10.0.0.1"), fwd).address == ip("203.0.113.5"));
    }
}

TEST_CASE("client_resolver::from_cf_connecting_ip believes only the Cloudflare ranges",
          "[net][client_address]") {
    client_resolver const resolver{{.cloudflare = {"173.245.48.0/20", "2400:cb00::/32"}}};
    auto const edge = ip("173.245.48.9");
    auto const c = resolver.from_cf_connecting_ip(edge, " 198.51.100.7 ");
    CHECK(c.address == ip("198.51.100.7"));
    CHECK(c.reason == stop_reason::untrusted);
    CHECK(c.chain.size() == 2);
    CHECK(resolver.from_cf_connecting_ip(ip("2400:cb00::1"), "2001:db8::9").address ==
          ip("2001:db8::9"));
    auto const direct = resolver.from_cf_connecting_ip(ip("198.51.100.1"), "1.2.3.4");
    CHECK(direct.address == ip("198.51.100.1"));
    CHECK(direct.reason == stop_reason::untrusted);
    auto const missing = resolver.from_cf_connecting_ip(edge, "");
    CHECK(missing.address == edge);
    CHECK(missing.reason == stop_reason::end_of_chain);
    for (std::string_view bad : {"1.2.3.4, 5.6.7.8", "garbage", "1.2.3.4:80", "[::1]"}) {
        CAPTURE(bad);
        auto const b = resolver.from_cf_connecting_ip(edge, bad);
        CHECK(b.address == edge);
        CHECK(b.reason == stop_reason::invalid_entry);
    }
    std::vector<std::string_view> const twice{"1.2.3.4", "5.6.7.8"};
    CHECK(resolver.from_cf_connecting_ip(edge, twice).reason == stop_reason::invalid_entry);
    std::vector<std::string_view> const once{"", "1.2.3.4"};
    CHECK(resolver.from_cf_connecting_ip(edge, once).address == ip("1.2.3.4"));
    client_resolver const no_ranges{};
    CHECK(no_ranges.from_cf_connecting_ip(edge, "1.2.3.4").address == edge);
}

TEST_CASE("client_resolver::from_cf_connecting_ip behind a trusted balancer believes only a "
          "Cloudflare hop",
          "[net][client_address]") {
    client_resolver const resolver{{.trust = trust_policy::ranges({"10.0.0.0/8"}),
                                    .cloudflare = {"173.245.48.0/20", "2400:cb00::/32"}}};
    auto const balancer = ip("10.0.0.1");
    // A client that reaches the balancer without Cloudflare sends CF-Connecting-IP itself;
    // the balancer appends the address it saw to X-Forwarded-For.
    auto const spoofed = resolver.from_cf_connecting_ip(balancer, "1.2.3.4", "198.51.100.9");
    CHECK(spoofed.address == ip("198.51.100.9"));
    CHECK(spoofed.reason == stop_reason::untrusted);
    CHECK(texts(spoofed) == std::vector<std::string>{"10.0.0.1", "198.51.100.9"});
    // A Cloudflare address forged further out does not help: the balancer's entry is nearer.
    CHECK(
        resolver.from_cf_connecting_ip(balancer, "1.2.3.4", "173.245.48.9, 198.51.100.9").address ==
        ip("198.51.100.9"));
    // Through Cloudflare: the edge connected to the balancer, and its header is believed.
    auto const real =
        resolver.from_cf_connecting_ip(balancer, "203.0.113.7", "203.0.113.7, 173.245.48.9");
    CHECK(real.address == ip("203.0.113.7"));
    CHECK(real.reason == stop_reason::untrusted);
    CHECK(texts(real) == std::vector<std::string>{"10.0.0.1", "173.245.48.9", "203.0.113.7"});
    // Two balancers, and the header and X-Forwarded-For as lines.
    std::vector<std::string_view> const cf{"", " 2001:db8::7 "};
    std::vector<std::string_view> const xff{"6.6.6.6", "2400:cb00::1, 10.0.0.2"};
    CHECK(texts(resolver.from_cf_connecting_ip(balancer, cf, xff)) ==
          std::vector<std::string>{"10.0.0.1", "10.0.0.2", "2400:cb00::1", "2001:db8::7"});
    CHECK(resolver.from_cf_connecting_ip(balancer, "2001:db8::8", xff).address ==
          ip("2001:db8::8"));
    // Without X-Forwarded-For the hop before the balancer is unknown: the header is ignored.
    auto const bare = resolver.from_cf_connecting_ip(balancer, "1.2.3.4");
    CHECK(bare.address == balancer);
    CHECK(bare.reason == stop_reason::end_of_chain);
    // At the Cloudflare hop, a missing or bad value gives that hop.
    auto const empty = resolver.from_cf_connecting_ip(balancer, "", "173.245.48.9");
    CHECK(empty.address == ip("173.245.48.9"));
    CHECK(empty.reason == stop_reason::end_of_chain);
    auto const bad = resolver.from_cf_connecting_ip(balancer, "1.2.3.4:80", "173.245.48.9");
    CHECK(bad.address == ip("173.245.48.9"));
    CHECK(bad.reason == stop_reason::invalid_entry);
    // A walk stopped by an invalid entry never reaches a Cloudflare hop.
    auto const broken = resolver.from_cf_connecting_ip(balancer, "1.2.3.4", "173.245.48.9, x");
    CHECK(broken.address == balancer);
    CHECK(broken.reason == stop_reason::invalid_entry);
    // A chain already full has no room for the header's address.
    client_resolver const all{{.trust = trust_policy::all(), .cloudflare = {"173.245.48.0/20"}}};
    std::string long_xff = "173.245.48.9";
    for (int i = 0; i < 14; ++i) {
        long_xff += ", 10.0.0.2";
    }
    auto const full = all.from_cf_connecting_ip(balancer, "1.2.3.4", long_xff);
    CHECK(full.chain.size() == keel::net::address_chain::capacity);
    CHECK(full.address == ip("173.245.48.9"));
    CHECK(full.reason == stop_reason::truncated);
}

TEST_CASE("client_resolver rejects options outside their ranges", "[net][client_address]") {
    auto const message = [](keel::net::client_resolver_options o) -> std::string {
        try {
            client_resolver const r{std::move(o)};
        } catch (std::invalid_argument const& e) {
            return e.what();
        }
        return "";
    };
    CHECK(message({.max_header_bytes = 0}) ==
          "keel::net::client_resolver: max_header_bytes must be in [1, 1048576] (1 MiB), got 0");
    CHECK(message({.max_hops = 0}) ==
          "keel::net::client_resolver: max_hops must be in [1, 15], got 0");
    CHECK(message({.max_hops = 16}) ==
          "keel::net::client_resolver: max_hops must be in [1, 15], got 16");
    CHECK(message({.max_hops = 15}).empty());
    CHECK(client_resolver{}.options().max_header_bytes == 8192);
}

TEST_CASE("client_resolver is safe to share between threads",
          "[net][client_address][concurrency]") {
    client_resolver const resolver{{.trust = trust_policy::ranges({"10.0.0.0/8"})}};
    std::vector<int> wrong(2, 0);
    std::vector<std::thread> threads;
    for (int t = 0; t < 2; ++t) {
        threads.emplace_back([&resolver, &wrong, t] {
            auto const peer = *ip_address::parse("10.0.0.1");
            auto const expected = *ip_address::parse("203.0.113.5");
            for (int i = 0; i < 2000; ++i) {
                auto const x =
                    resolver.from_x_forwarded_for(peer, "1.1.1.1, 203.0.113.5, 10.2.3.4");
                auto const f = resolver.from_forwarded(peer, "for=1.1.1.1, for=203.0.113.5");
                wrong[static_cast<std::size_t>(t)] +=
                    (x.address != expected) + (f.address != expected);
            }
        });
    }
    for (auto& th : threads) {
        th.join();
    }
    CHECK(wrong == std::vector<int>{0, 0});
}

TEST_CASE("client_resolver::from_forwarded splits at a comma or quote wherever it stands",
          "[net][client_address]") {
    // Well-formed headers within the byte budget are read front to back in one pass; the
    // others from the end. Move the comma, the quotes and the budget across each path.
    client_resolver const resolver{{.trust = trust_policy::ranges({"10.0.0.0/8"})}};
    for (std::size_t pad = 0; pad < 24; ++pad) {
        CAPTURE(pad);
        std::string const filler(pad, 'x');
        // A quoted comma inside the nearest element does not split it.
        std::string const quoted = "for=203.0.113.7, for=10.0.0.2;ext=\"" + filler + ",\"";
        auto const q = resolver.from_forwarded(ip("10.0.0.1"), quoted);
        CHECK(q.address == ip("203.0.113.7"));
        CHECK(q.reason == stop_reason::untrusted);
        CHECK(q.chain.size() == 3);
        // An unbalanced quote further out cannot hide the element after it.
        std::string const unbalanced = "for=\"" + filler + ", for=203.0.113.8";
        CHECK(resolver.from_forwarded(ip("10.0.0.1"), unbalanced).address == ip("203.0.113.8"));
        // An escaped quote (odd backslash run) inside a quoted value.
        std::string const escaped = "for=10.0.0.3;ext=\"" + filler + "\\\",\", for=203.0.113.9";
        auto const e = resolver.from_forwarded(ip("10.0.0.1"), escaped);
        CHECK(e.address == ip("203.0.113.9"));
        // The byte budget ends at every offset: an element is kept only with its comma
        // and space inside the budget, and dropped whole otherwise.
        std::string const element = "for=10.0.0.4;ext=" + filler + "y";
        std::string const header = "for=1.2.3.4, " + element;
        for (std::size_t budget = 1; budget <= header.size() + 1; ++budget) {
            CAPTURE(budget);
            client_resolver const cut{
                {.trust = trust_policy::ranges({"10.0.0.0/8"}), .max_header_bytes = budget}};
            auto const c = cut.from_forwarded(ip("10.0.0.1"), header);
            if (budget < element.size() + 2) {
                CHECK(c.address == ip("10.0.0.1"));
                CHECK(c.reason == stop_reason::truncated);
            } else if (budget < header.size()) {
                CHECK(c.address == ip("10.0.0.4"));
                CHECK(c.reason == stop_reason::truncated);
            } else {
                CHECK(c.address == ip("1.2.3.4"));
                CHECK(c.reason == stop_reason::untrusted);
            }
        }
    }
}

TEST_CASE("the one-pass Forwarded reader gives the nodes the reader from the end gives",
          "[net][client_address]") {
    namespace detail = keel::net::detail;
    using lines_t = std::vector<std::string_view>;
    // Each case is well formed (the one-pass reader accepts it); the fuzzer checks the same
    // on arbitrary input.
    std::string const long_value = "for=\"" + std::string(70, 'a') + "\", for=1.1.1.1";
    std::vector<lines_t> const cases = {
        {"for=192.0.2.60;proto=http;by=203.0.113.43"},
        {"for=192.0.2.43, for=198.51.100.17"},
        {"for=\"[2001:db8:cafe::17]:4711\", for=unknown, for=_hidden"},
        {"for=1.2.3.4;ext=\"a,b;c\", FOR=\"5.6.7.8\""},
        {"for=\"1.2.3.\\4\";x=\"\\\"\", ;;, , for=10.0.0.1"},
        {"proto=https, for=1.2.3.4;for=5.6.7.8"},
        {"for=1.2.3.4", "", "  ", "for=5.6.7.8, ;", "for=9.9.9.9"},
        {long_value},
    };
    for (std::size_t c = 0; c < cases.size(); ++c) {
        CAPTURE(c);
        lines_t const& lines = cases[c];
        detail::forward_forwarded_reader forward;
        REQUIRE(forward.read(lines));
        detail::reverse_list_reader reverse{lines, 8192, true};
        std::size_t nodes = 0;
        while (true) {
            detail::node const a = forward.next();
            std::string_view item;
            detail::node b{reverse.next(item), {}};
            if (b.kind == detail::node_kind::address) {
                b = detail::parse_forwarded_element(item);
            }
            CHECK(a.kind == b.kind);
            CHECK(a.address == b.address);
            if (a.kind == detail::node_kind::end || a.kind != b.kind) {
                break;
            }
            ++nodes;
        }
        CHECK(nodes > 0);
    }
    // The one-pass reader refuses a malformed element: where it ends is not known.
    for (std::string_view bad : {"for=\"1.2.3.4, for=10.0.0.2", "for=1.2.3.4 x", "=x, for=1.1.1.1",
                                 "for=\"a\\\"", "for=1.2.3.4;;x"}) {
        CAPTURE(bad);
        detail::forward_forwarded_reader forward;
        CHECK_FALSE(forward.read(lines_t{bad}));
    }
}
