// SPDX-License-Identifier: MIT
#include <keel/net/cidr.hpp>

#include <catch2/catch.hpp>

#include <string_view>

using keel::net::cidr;
using keel::net::ip_address;

namespace {
ip_address ip(std::string_view text) {
    auto const a = ip_address::parse(text);
    REQUIRE(a);
    return *a;
}
} // namespace

TEST_CASE("cidr::parse accepts prefixes, bare addresses and contiguous netmasks", "[net][cidr]") {
    struct row {
        std::string_view text;
        std::string_view canonical; // empty: rejected
    };
    auto const table = {
        row{"10.0.0.0/8", "10.0.0.0/8"},
        row{"127.0.0.1/8", "127.0.0.0/8"}, // host bits cleared, as proxy-addr ignores them
        row{"2001:db8::/32", "2001:db8::/32"},
        row{"2001:db8::1/32", "2001:db8::/32"},
        row{"fe80::/10", "fe80::/10"},
        row{"10.0.0.1", "10.0.0.1/32"},
        row{"::1", "::1/128"},
        row{"0.0.0.0/0", "0.0.0.0/0"},
        row{"::/0", "::/0"},
        row{"10.0.0.0/08", "10.0.0.0/8"},
        row{"10.0.0.0/255.0.0.0", "10.0.0.0/8"},
        row{"172.16.0.0/255.240.0.0", "172.16.0.0/12"},
        row{"10.0.0.0/255.255.255.255", "10.0.0.0/32"},
        row{"10.0.0.0/0.0.0.0", "0.0.0.0/0"},
        row{"::ffff:10.0.0.0/104", "::ffff:10.0.0.0/104"},
        row{"10.0.0.0/255.0.255.0", ""}, // non-contiguous
        row{"10.0.0.0/0.255.255.255", ""},
        row{"10.0.0.0/33", ""},
        row{"::/129", ""},
        row{"::1/255.0.0.0", ""}, // netmask only for IPv4
        row{"10.0.0.0/", ""},
        row{"10.0.0.0/abc", ""},
        row{"10.0.0.0/-1", ""},
        row{"10.0.0.0/1000", ""},
        row{"10.0.0.0/8/8", ""},
        row{"/8", ""},
        row{"10.0.0.0 /8", ""},
        row{"", ""},
    };
    for (auto const& r : table) {
        CAPTURE(r.text);
        auto const c = cidr::parse(r.text);
        if (r.canonical.empty()) {
            CHECK_FALSE(c);
        } else {
            REQUIRE(c);
            CHECK(c->to_string() == r.canonical);
            CHECK(cidr::parse(c->to_string()) == c);
        }
    }
}

TEST_CASE("cidr::contains matches by prefix within a family", "[net][cidr]") {
    auto const ten = *cidr::parse("10.0.0.0/8");
    CHECK(ten.contains(ip("10.0.0.0")));
    CHECK(ten.contains(ip("10.255.255.255")));
    CHECK_FALSE(ten.contains(ip("11.0.0.0")));
    CHECK_FALSE(ten.contains(ip("9.255.255.255")));
    auto const twelve = *cidr::parse("172.16.0.0/12");
    CHECK(twelve.contains(ip("172.31.255.255")));
    CHECK_FALSE(twelve.contains(ip("172.32.0.0")));
    auto const doc = *cidr::parse("2001:db8::/32");
    CHECK(doc.contains(ip("2001:db8:ffff::1")));
    CHECK_FALSE(doc.contains(ip("2001:db9::1")));
    CHECK_FALSE(doc.contains(ip("10.0.0.1")));
    auto const all4 = *cidr::parse("0.0.0.0/0");
    CHECK(all4.contains(ip("1.2.3.4")));
    CHECK_FALSE(all4.contains(ip("::1")));
    auto const host = *cidr::parse("192.0.2.1");
    CHECK(host.contains(ip("192.0.2.1")));
    CHECK_FALSE(host.contains(ip("192.0.2.2")));
}

TEST_CASE("cidr::contains treats IPv4-mapped addresses as IPv4, as proxy-addr 2.0", "[net][cidr]") {
    auto const ten = *cidr::parse("10.0.0.0/8");
    CHECK(ten.contains(ip("::ffff:10.1.2.3")));
    CHECK_FALSE(ten.contains(ip("::ffff:11.1.2.3")));
    auto const mapped = *cidr::parse("::ffff:10.0.0.0/104");
    CHECK(mapped.contains(ip("10.9.9.9")));
    CHECK(mapped.contains(ip("::ffff:10.9.9.9")));
    CHECK_FALSE(mapped.contains(ip("11.9.9.9")));
    auto const mapped_host = *cidr::parse("::ffff:10.0.0.1");
    CHECK(mapped_host.contains(ip("10.0.0.1")));
    // A native IPv6 range never matches an IPv4 or mapped candidate: no cross-family bypass.
    auto const all6 = *cidr::parse("::/0");
    CHECK(all6.contains(ip("2001:db8::1")));
    CHECK_FALSE(all6.contains(ip("10.0.0.1")));
    CHECK_FALSE(all6.contains(ip("::ffff:10.0.0.1")));
}

TEST_CASE("cidr::make clears host bits and rejects long prefixes", "[net][cidr]") {
    CHECK(cidr::make(ip("192.168.77.9"), 20)->to_string() == "192.168.64.0/20");
    CHECK(cidr::make(ip("2001:db8:abcd::1"), 36)->to_string() == "2001:db8:a000::/36");
    CHECK_FALSE(cidr::make(ip("1.2.3.4"), 33));
    CHECK_FALSE(cidr::make(ip("::"), 129));
    CHECK(cidr{}.to_string() == "0.0.0.0/32");
    CHECK(cidr::make(ip("10.0.0.0"), 8)->network() == ip("10.0.0.0"));
    CHECK(cidr::make(ip("10.0.0.0"), 8)->prefix_length() == 8);
}

TEST_CASE("cidr::parse and cidr::make reject an IPv4-mapped address with a prefix below 96",
          "[net][cidr]") {
    // "::ffff:10.0.0.0/8" reads like 10.0.0.0/8 but, host bits cleared, is the native IPv6
    // range ::/8, which holds ::1 (proxy-addr reads it so).
    for (std::string_view text :
         {"::ffff:10.0.0.0/8", "::ffff:10.0.0.0/95", "::ffff:0:0/80", "::ffff:0.0.0.0/1"}) {
        CAPTURE(text);
        CHECK_FALSE(cidr::parse(text));
    }
    CHECK_FALSE(cidr::make(ip("::ffff:10.0.0.0"), 8));
    CHECK_FALSE(cidr::make(ip("::ffff:10.0.0.0"), 95));
    CHECK(cidr::parse("::ffff:10.0.0.0/96")->to_string() == "::ffff:0.0.0.0/96");
    CHECK(cidr::make(ip("::ffff:10.0.0.0"), 104)->to_string() == "::ffff:10.0.0.0/104");
    // Written as IPv6, the IPv6 range stays available.
    CHECK(cidr::parse("::/8")->to_string() == "::/8");
    CHECK(cidr::make(ip("::"), 80)->to_string() == "::/80");
}
