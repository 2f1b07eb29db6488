// SPDX-License-Identifier: MIT
#include <keel/redis/fixed_window.hpp>

#include <keel/limiter/limiter.hpp>
#include <keel/testing/manual_clock.hpp>

#include "redis_server.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using keel::decision_source;

// Same interface as the local limiters: code written against keel::rate_limiter switches by type.
static_assert(keel::rate_limiter<keel::redis::fixed_window>);
static_assert(keel::rate_limiter<keel::redis::basic_fixed_window<keel::manual_clock>>);

TEST_CASE("redis::fixed_window: admits exactly limit per window, then refuses until the window "
          "ends",
          "[redis][fixed_window]") {
    keel::redis::pool redis{keel_test::shared_pool()};
    keel::redis::fixed_window limiter{
        redis, {.name = keel_test::unique_name("fw-seq"), .limit = 3, .window = 1h}};
    for (std::int64_t expected_remaining : {2, 1, 0}) {
        keel::decision const d = limiter.try_acquire();
        CHECK(d.allowed);
        CHECK(d.source == decision_source::remote);
        CHECK(d.limit == 3);
        CHECK(d.remaining == expected_remaining);
        CHECK(d.retry_after == 0ns);
        CHECK(d.reset > 0ns);
        CHECK(d.reset <= 1h);
    }
    keel::decision const refused = limiter.try_acquire();
    CHECK_FALSE(refused.allowed);
    CHECK_FALSE(refused.unsatisfiable);
    CHECK(refused.source == decision_source::remote);
    CHECK(refused.remaining == 0);
    CHECK(refused.retry_after > 0ns);
    CHECK(refused.retry_after <= 1h);
    CHECK(refused.retry_after == refused.reset);
}

TEST_CASE("redis::fixed_window: weighted requests take several permits and too many is "
          "unsatisfiable",
          "[redis][fixed_window]") {
    keel::redis::pool redis{keel_test::shared_pool()};
    keel::redis::fixed_window limiter{
        redis, {.name = keel_test::unique_name("fw-weight"), .limit = 5, .window = 1h}};
    CHECK(limiter.try_acquire(3).remaining == 2);
    keel::decision const too_many = limiter.try_acquire(3);
    CHECK_FALSE(too_many.allowed);
    CHECK(too_many.remaining == 2);
    CHECK(limiter.try_acquire(2).remaining == 0);
    keel::decision const never = limiter.try_acquire(6);
    CHECK_FALSE(never.allowed);
    CHECK(never.unsatisfiable);
    CHECK(never.retry_after == 0ns);
    CHECK(limiter.try_acquire(0).unsatisfiable);
}

TEST_CASE("redis::fixed_window: keys are hash-tagged and expire at the window's end",
          "[redis][fixed_window]") {
    keel::redis::pool redis{keel_test::shared_pool()};
    std::string const name = keel_test::unique_name("fw-ttl");
    keel::redis::fixed_window limiter{redis, {.name = name, .limit = 10, .window = 2s}};
    CHECK(limiter.redis_key() == "keel:{" + name + "}");
    CHECK(limiter.redis_key("client-7") == "keel:{" + name + ":client-7}");
    REQUIRE(limiter.try_acquire().allowed);
    REQUIRE(limiter.try_acquire("client-7").allowed);
    auto lease = redis.acquire();
    REQUIRE(lease);
    for (std::string const& key : {limiter.redis_key(), limiter.redis_key("client-7")}) {
        auto ttl = lease->command({"PTTL", key});
        REQUIRE(ttl.has_value());
        CHECK(ttl->integer() > 0);
        CHECK(ttl->integer() <= 2000);
    }
}

TEST_CASE("redis::fixed_window: each key has its own count", "[redis][fixed_window]") {
    keel::redis::pool redis{keel_test::shared_pool()};
    keel::redis::fixed_window limiter{
        redis, {.name = keel_test::unique_name("fw-keys"), .limit = 2, .window = 1h}};
    CHECK(limiter.try_acquire("alice").allowed);
    CHECK(limiter.try_acquire("alice").allowed);
    CHECK_FALSE(limiter.try_acquire("alice").allowed);
    CHECK(limiter.try_acquire("bob").allowed);
    CHECK(limiter.try_acquire().allowed);
    CHECK(limiter.try_acquire().allowed);
    CHECK_FALSE(limiter.try_acquire().allowed);
}

TEST_CASE("redis::fixed_window: instances with skewed local clocks share one count",
          "[redis][fixed_window]") {
    keel::redis::pool redis{keel_test::shared_pool()};
    std::string const name = keel_test::unique_name("fw-skew");
    keel::manual_clock behind{};
    keel::manual_clock ahead{keel::manual_clock::time_point{240h}};
    keel::redis::basic_fixed_window<keel::manual_clock> a{
        redis, {.name = name, .limit = 4, .window = 1h}, behind};
    keel::redis::basic_fixed_window<keel::manual_clock> b{
        redis, {.name = name, .limit = 4, .window = 1h}, ahead};
    CHECK(a.try_acquire().remaining == 3);
    CHECK(b.try_acquire().remaining == 2);
    ahead.advance(72h);
    CHECK(a.try_acquire().remaining == 1);
    CHECK(b.try_acquire().remaining == 0);
    CHECK_FALSE(a.try_acquire().allowed);
    CHECK_FALSE(b.try_acquire().allowed);
}

TEST_CASE("redis::fixed_window: 4 threads on one limiter admit exactly the limit",
          "[redis][fixed_window][concurrency]") {
    keel::redis::pool redis{keel_test::shared_pool(4)};
    keel::redis::fixed_window limiter{
        redis, {.name = keel_test::unique_name("fw-threads"), .limit = 150, .window = 1h}};
    std::atomic<long> admitted{0};
    std::atomic<long> not_remote{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&] {
            for (int i = 0; i < 60; ++i) {
                keel::decision const d = limiter.try_acquire();
                admitted.fetch_add(d.allowed ? 1 : 0);
                not_remote.fetch_add(d.source == decision_source::remote ? 0 : 1);
            }
        });
    }
    for (auto& t : threads) {
        t.join();
    }
    CHECK(admitted.load() == 150);
    CHECK(not_remote.load() == 0);
}

TEST_CASE("redis::fixed_window: 4 processes sharing one limit admit exactly the limit",
          "[redis][fixed_window][concurrency]") {
    std::string const name = keel_test::unique_name("fw-procs");
    auto const reports = keel_test::run_clients(4, keel_test::shared_redis_port(),
                                                "fixed_window " + name + " 300 3600000 150");
    REQUIRE(reports.size() == 4);
    long total = 0;
    for (auto const& r : reports) {
        REQUIRE(r.admitted >= 0);
        CHECK(r.remote == 150);
        CHECK(r.fallback == 0);
        total += r.admitted;
    }
    CHECK(total == 300);
}

TEST_CASE("redis::fixed_window: leasing never exceeds the limit and loses at most "
          "(lease - 1) x instances",
          "[redis][fixed_window][concurrency]") {
    std::string const name = keel_test::unique_name("fw-lease");
    auto const reports = keel_test::run_clients(4, keel_test::shared_redis_port(),
                                                "fixed_window " + name + " 300 3600000 150 8");
    REQUIRE(reports.size() == 4);
    long total = 0;
    for (auto const& r : reports) {
        REQUIRE(r.admitted >= 0);
        CHECK(r.fallback == 0);
        total += r.admitted;
    }
    CHECK(total <= 300);
    CHECK(total >= 300 - 7 * 4);
}

TEST_CASE("redis::fixed_window: a lease serves several permits per round trip",
          "[redis][fixed_window]") {
    keel::redis::pool redis{keel_test::shared_pool()};
    keel::redis::fixed_window limiter{
        redis,
        {.name = keel_test::unique_name("fw-lease1"), .limit = 20, .window = 1h, .lease = 5}};
    int admitted = 0;
    for (int i = 0; i < 25; ++i) {
        admitted += limiter.try_acquire().allowed ? 1 : 0;
    }
    CHECK(admitted == 20);
    CHECK(limiter.leases_taken() == 4);
}

TEST_CASE("redis::fixed_window: options out of range are rejected", "[redis][fixed_window]") {
    keel::redis::pool redis{keel_test::shared_pool()};
    CHECK_THROWS_WITH(keel::redis::fixed_window(redis, {.name = "x", .limit = 0}),
                      "keel::redis::fixed_window: limit must be in [1, 2^31), got 0");
    CHECK_THROWS_WITH(keel::redis::fixed_window(redis, {.limit = 1}),
                      "keel::redis::fixed_window: name must not be empty");
    CHECK_THROWS_WITH(keel::redis::fixed_window(redis, {.name = "x", .limit = 5, .lease = 6}),
                      "keel::redis::fixed_window: lease must be in [1, limit], got 6");
    CHECK_THROWS_AS(keel::redis::fixed_window(redis, {.name = "x", .limit = 1, .window = 0ms}),
                    std::invalid_argument);
    CHECK_THROWS_AS(keel::redis::fixed_window(
                        redis, {.name = "x", .limit = 1, .on_failure = {.expected_instances = 0}}),
                    std::invalid_argument);
}

TEST_CASE("redis::fixed_window: the state is one string, a key of another type (an older "
          "keel's hash) is left to the failure policy",
          "[redis][fixed_window]") {
    keel::redis::pool redis{keel_test::shared_pool()};
    std::string const name = keel_test::unique_name("fw-type");
    keel::redis::fixed_window limiter{redis, {.name = name, .limit = 10, .window = 1h}};
    REQUIRE(limiter.try_acquire("a", 3).source == keel::decision_source::remote);
    auto lease = redis.acquire();
    REQUIRE(lease);
    auto value = lease->command({"GET", limiter.redis_key("a")});
    REQUIRE(value);
    std::string_view const text = value->text();
    CHECK(text.substr(text.find(':')) == ":3");
    REQUIRE(lease->command({"HSET", limiter.redis_key("b"), "w", "1", "n", "1"}));
    lease = {};
    keel::decision const d = limiter.try_acquire("b");
    CHECK(d.source == keel::decision_source::fallback_open);
}
