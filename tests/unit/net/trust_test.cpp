// SPDX-License-Identifier: MIT
#include <keel/net/trust.hpp>

#include <catch2/catch.hpp>

#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

using keel::net::cidr_list;
using keel::net::ip_address;
using keel::net::trust_policy;

namespace {
ip_address ip(std::string_view text) {
    auto const a = ip_address::parse(text);
    REQUIRE(a);
    return *a;
}
} // namespace

TEST_CASE("cidr_list expands proxy-addr's named ranges", "[net][trust]") {
    cidr_list const loopback{"loopback"};
    CHECK(loopback.ranges().size() == 2);
    CHECK(loopback.contains(ip("127.8.9.10")));
    CHECK(loopback.contains(ip("::1")));
    CHECK(loopback.contains(ip("::ffff:127.0.0.1")));
    CHECK_FALSE(loopback.contains(ip("::2")));
    cidr_list const linklocal{"linklocal"};
    CHECK(linklocal.contains(ip("169.254.3.4")));
    CHECK(linklocal.contains(ip("febf::1")));
    CHECK_FALSE(linklocal.contains(ip("fec0::1")));
    cidr_list const uniquelocal{"uniquelocal"};
    CHECK(uniquelocal.ranges().size() == 4);
    for (auto a :
         {"10.0.0.1", "172.16.0.1", "172.31.255.255", "192.168.0.1", "fc00::1", "fdff::1"}) {
        CAPTURE(a);
        CHECK(uniquelocal.contains(ip(a)));
    }
    for (auto a : {"11.0.0.1", "172.32.0.1", "192.169.0.1", "fe00::1", "8.8.8.8"}) {
        CAPTURE(a);
        CHECK_FALSE(uniquelocal.contains(ip(a)));
    }
}

TEST_CASE("cidr_list::parse reads Express's comma-separated string", "[net][trust]") {
    auto const list = cidr_list::parse("loopback, 10.0.0.0/8 ,2001:db8::/32");
    CHECK(list.ranges().size() == 4);
    CHECK(list.contains(ip("10.3.3.3")));
    CHECK(list.contains(ip("2001:db8::9")));
    CHECK_FALSE(list.contains(ip("192.168.0.1")));
    std::vector<std::string> const strings{"192.168.0.0/16"};
    CHECK(cidr_list{std::span<std::string const>{strings}}.contains(ip("192.168.1.1")));
    CHECK(cidr_list{}.empty());
}

TEST_CASE("cidr_list rejects bad entries naming them, as proxy-addr does", "[net][trust]") {
    auto const rejects = [](std::string_view entry, std::string_view fragment) {
        CAPTURE(entry);
        try {
            cidr_list{entry};
            FAIL("accepted");
        } catch (std::invalid_argument const& e) {
            std::string const what = e.what();
            CHECK(what.find("keel::net::cidr_list") != std::string::npos);
            CHECK(what.find(fragment) != std::string::npos);
        }
    };
    rejects("10.0.0.0/33", "\"10.0.0.0/33\"");
    rejects("10.0.0.0/0", "prefix length must be at least 1");
    rejects("::/0", "prefix length must be at least 1");
    rejects("10.0.0.0/255.0.255.0", "\"10.0.0.0/255.0.255.0\"");
    rejects("foo", "\"foo\"");
    rejects("10.0.0.0/", "\"10.0.0.0/\"");
    rejects("::1/255.0.0.0", "\"::1/255.0.0.0\"");
    rejects("Loopback", "\"Loopback\""); // names are case-sensitive, as in proxy-addr
    rejects("", "\"\"");
    // An IPv4-mapped address with a prefix below 96 would be the IPv6 range ::/8 and trust ::1.
    rejects("::ffff:10.0.0.0/8", "\"::ffff:10.0.0.0/8\"");
    rejects("::ffff:10.0.0.0/8", "an IPv4-mapped address takes a prefix length from 96 to 128");
    rejects(" ::ffff:0:0/95\t", "\"::ffff:0:0/95\"");
    CHECK_THROWS_AS(cidr_list::parse("loopback, ::ffff:10.0.0.0/8"), std::invalid_argument);
    CHECK_THROWS_AS(trust_policy::ranges({"::ffff:10.0.0.0/8"}), std::invalid_argument);
    CHECK(cidr_list{"::ffff:10.0.0.0/104"}.contains(ip("10.1.2.3")));
    CHECK_THROWS_AS(cidr_list::parse("loopback,,10.0.0.0/8"), std::invalid_argument);
    CHECK_THROWS_AS(trust_policy::ranges({"loopback", "bogus"}), std::invalid_argument);
    CHECK_THROWS_AS(trust_policy::predicate(nullptr), std::invalid_argument);
}

TEST_CASE("trust_policy kinds follow Express's trust proxy setting", "[net][trust]") {
    auto const a = ip("203.0.113.1");
    CHECK_FALSE(trust_policy{}.trusts(a, 0));
    CHECK_FALSE(trust_policy::none().trusts(a, 0));
    CHECK(trust_policy::all().trusts(a, 0));
    CHECK(trust_policy::all().trusts(a, 1000));
    CHECK_FALSE(trust_policy::hops(0).trusts(a, 0));
    CHECK(trust_policy::hops(2).trusts(a, 0));
    CHECK(trust_policy::hops(2).trusts(a, 1));
    CHECK_FALSE(trust_policy::hops(2).trusts(a, 2));
    auto const ranges = trust_policy::ranges({"203.0.113.0/24"});
    CHECK(ranges.kind() == trust_policy::kind_type::ranges);
    CHECK(ranges.trusts(a, 7));
    CHECK_FALSE(ranges.trusts(ip("198.51.100.1"), 0));
    auto const odd_hops = trust_policy::predicate(
        [](ip_address const& address, std::size_t hop) { return hop % 2 == 1 || address.is_v6(); });
    CHECK_FALSE(odd_hops.trusts(a, 0));
    CHECK(odd_hops.trusts(a, 1));
    CHECK(odd_hops.trusts(ip("::1"), 0));
    auto const throwing = trust_policy::predicate(
        [](ip_address const&, std::size_t) -> bool { throw std::runtime_error("boom"); });
    CHECK_FALSE(throwing.trusts(a, 0)); // an exception counts as "not trusted"
}
