// SPDX-License-Identifier: MIT
#include <keel/redis/script.hpp>

#include "redis_server.hpp"

#include <catch2/catch.hpp>

TEST_CASE("redis::script: its SHA-1 is the one Redis computes", "[redis]") {
    keel::redis::script const s{"return 42"};
    CHECK(keel::redis::detail::sha1_hex("") == "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    CHECK(keel::redis::detail::sha1_hex("abc") == "a9993e364706816aba3e25717850c26c9cd0d89d");
    keel::redis::connection c{keel_test::shared_connection()};
    auto r = c.command({"SCRIPT", "LOAD", s.source()});
    REQUIRE(r.has_value());
    CHECK(r->text() == s.sha());
}

TEST_CASE("redis::script: run loads the script on NOSCRIPT, also after SCRIPT FLUSH", "[redis]") {
    keel::redis::script const s{"return redis.call('INCRBY', KEYS[1], ARGV[1]) -- keel flush test"};
    keel::redis::connection c{keel_test::shared_connection()};
    REQUIRE(c.command({"DEL", "keel:test:{flush}"}));
    REQUIRE(c.command({"SCRIPT", "FLUSH"}));
    auto first = s.run(c, {"keel:test:{flush}"}, {"2"});
    REQUIRE(first.has_value());
    CHECK(first->integer() == 2);
    CHECK(s.loads() == 1);
    auto second = s.run(c, {"keel:test:{flush}"}, {"3"});
    REQUIRE(second.has_value());
    CHECK(second->integer() == 5);
    CHECK(s.loads() == 1);
    REQUIRE(c.command({"SCRIPT", "FLUSH"}));
    auto third = s.run(c, {"keel:test:{flush}"}, {"4"});
    REQUIRE(third.has_value());
    CHECK(third->integer() == 9);
    CHECK(s.loads() == 2);
}

TEST_CASE("redis::script: an error raised by the script is returned as an error reply", "[redis]") {
    keel::redis::script const s{"return redis.error_reply('keel boom')"};
    keel::redis::connection c{keel_test::shared_connection()};
    auto r = s.run(c, {"keel:test:{err}"}, {});
    REQUIRE(r.has_value());
    CHECK(r->is_error());
    CHECK(r->text() == "keel boom");
}
