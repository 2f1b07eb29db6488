// SPDX-License-Identifier: MIT
#include <keel/net/ip_address.hpp>

#include <catch2/catch.hpp>

#include <string_view>
#include <unordered_set>

using keel::net::ip_address;

namespace {
ip_address ip(std::string_view text) {
    auto const a = ip_address::parse(text);
    REQUIRE(a);
    return *a;
}
} // namespace

TEST_CASE("ip_address::parse accepts strict dotted quads", "[net][ip_address]") {
    struct row {
        std::string_view text;
        std::string_view canonical; // empty: rejected
    };
    auto const table = {
        row{"0.0.0.0", "0.0.0.0"},
        row{"1.2.3.4", "1.2.3.4"},
        row{"255.255.255.255", "255.255.255.255"},
        row{"192.0.2.10", "192.0.2.10"},
        row{"256.0.0.1", ""},
        row{"1.2.3", ""},
        row{"1.2.3.4.5", ""},
        row{"010.0.0.1", ""},  // leading zero: octal to inet_aton, rejected as by inet_pton
        row{"10.1", ""},       // inet_aton shorthand
        row{"167772161", ""},  // inet_aton 32-bit number
        row{"0x0a.0.0.1", ""}, // hex octet
        row{"1.2.3.4 ", ""},
        row{" 1.2.3.4", ""},
        row{"1..2.3", ""},
        row{"1.2.3.", ""},
        row{".1.2.3", ""},
        row{"1.2.3.4:80", ""},
        row{"1.2.3.-4", ""},
        row{"1.2.3.1000", ""},
        row{"", ""},
    };
    for (auto const& r : table) {
        CAPTURE(r.text);
        auto const a = ip_address::parse(r.text);
        if (r.canonical.empty()) {
            CHECK_FALSE(a);
        } else {
            REQUIRE(a);
            CHECK(a->is_v4());
            CHECK(a->to_string() == r.canonical);
        }
    }
}

TEST_CASE("ip_address writes IPv6 in RFC 5952 canonical text", "[net][ip_address]") {
    struct row {
        std::string_view text;
        std::string_view canonical; // empty: rejected
    };
    auto const table = {
        // RFC 5952 section 4 examples
        row{"2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"},
        row{"2001:0db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"},
        row{"2001:db8::1:0:0:1", "2001:db8::1:0:0:1"},
        row{"2001:db8::0:1:0:0:1", "2001:db8::1:0:0:1"},
        row{"2001:0db8::1:0:0:1", "2001:db8::1:0:0:1"},
        row{"2001:db8:0:0:1::1", "2001:db8::1:0:0:1"},
        row{"2001:DB8:0:0:1::1", "2001:db8::1:0:0:1"},
        row{"2001:db8:aaaa:bbbb:cccc:dddd:eeee:0001", "2001:db8:aaaa:bbbb:cccc:dddd:eeee:1"},
        row{"2001:db8::1", "2001:db8::1"},                   // 4.2.1: shorten as much as possible
        row{"2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"}, // 4.2.2: one zero group stays
        row{"2001:0:0:1:0:0:0:1", "2001:0:0:1::1"},          // 4.2.3: longest run
        row{"2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"},    // 4.2.3: first of equal runs
        row{"2001:DB8::ABCD", "2001:db8::abcd"},             // 4.3: lower case
        row{"::ffff:192.0.2.1", "::ffff:192.0.2.1"},         // 5: mapped keeps a dotted quad
        row{"0:0:0:0:0:FFFF:C000:0201", "::ffff:192.0.2.1"},
        row{"::", "::"},
        row{"::1", "::1"},
        row{"1::", "1::"},
        row{"0:0:0:0:0:0:0:1", "::1"},
        row{"1:0:0:0:0:0:0:0", "1::"},
        row{"::1:2:3:4:5:6:7", "0:1:2:3:4:5:6:7"},
        row{"1:2:3:4:5:6:7::", "1:2:3:4:5:6:7:0"},
        row{"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"},
        row{"::1.2.3.4", "::102:304"}, // IPv4-compatible (deprecated): written in hex
        row{"64:ff9b::192.0.2.33", "64:ff9b::c000:221"},
        row{"fe80::1%eth0", ""}, // zone ids are rejected
        row{"fe80::1%1", ""},
        row{"[::1]", ""},
        row{":::", ""},
        row{"1:::2", ""},
        row{"1::2::3", ""},
        row{":1::", ""},
        row{"1:", ""},
        row{"1:2:3:4:5:6:7:8:9", ""},
        row{"1:2:3:4:5:6:7::8", ""}, // "::" must stand for at least one group
        row{"1::2:3:4:5:6:7:8", ""},
        row{"12345::", ""},
        row{"g::", ""},
        row{"::1.2.3", ""},
        row{"::1.2.3.4:5", ""},
        row{"1:2:3:4:5:6:7:1.2.3.4", ""},
        row{"::ffff:01.2.3.4", ""},
    };
    for (auto const& r : table) {
        CAPTURE(r.text);
        auto const a = ip_address::parse(r.text);
        if (r.canonical.empty()) {
            CHECK_FALSE(a);
        } else {
            REQUIRE(a);
            CHECK(a->is_v6());
            CHECK(a->to_string() == r.canonical);
            CHECK(ip_address::parse(a->to_string()) == a);
        }
    }
}

TEST_CASE("ip_address recognises IPv4-mapped IPv6 and compares it by its IPv4 form",
          "[net][ip_address]") {
    auto const mapped = ip("::ffff:10.1.2.3");
    auto const plain = ip("10.1.2.3");
    CHECK(mapped.is_v4_mapped());
    CHECK_FALSE(plain.is_v4_mapped());
    CHECK_FALSE(ip("::10.1.2.3").is_v4_mapped());
    CHECK(mapped != plain); // exact equality keeps families apart
    CHECK(mapped.unmap() == plain);
    CHECK(plain.unmap() == plain);
    CHECK(plain.to_v6() == mapped);
    CHECK(mapped.to_v6() == mapped);
    CHECK(ip("::ffff:a01:203") == mapped);
}

TEST_CASE("ip_address orders IPv4 before IPv6 and hashes by value", "[net][ip_address]") {
    CHECK(ip("255.255.255.255") < ip("::"));
    CHECK(ip("1.2.3.4") < ip("1.2.3.5"));
    CHECK(ip("2001:db8::1") < ip("2001:db8::2"));
    CHECK(ip_address{} == ip("0.0.0.0"));
    CHECK(ip_address::v4(192, 0, 2, 1) == ip("192.0.2.1"));
    CHECK(ip("2001:db8::1").bytes().size() == 16);
    CHECK(ip("1.2.3.4").bytes().size() == 4);
    CHECK(ip("1.2.3.4").bytes()[3] == 4);
    std::unordered_set<ip_address> set{ip("1.2.3.4"), ip("::ffff:1.2.3.4"), ip("1.2.3.4")};
    CHECK(set.size() == 2);
}

TEST_CASE("ip_address::parse is usable in constant expressions", "[net][ip_address]") {
    static_assert(ip_address::parse("127.0.0.1").has_value());
    static_assert(!ip_address::parse("127.0.0.256").has_value());
    static_assert(ip_address::parse("::ffff:127.0.0.1")->unmap() == ip_address::v4(127, 0, 0, 1));
    SUCCEED();
}
