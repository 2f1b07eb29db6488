// SPDX-License-Identifier: MIT
#include <keel/redis/gcra.hpp>

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
static_assert(keel::rate_limiter<keel::redis::gcra>);
static_assert(keel::rate_limiter<keel::redis::basic_gcra<keel::manual_clock>>);

TEST_CASE("redis::gcra: admits the burst at once, then one permit per emission interval",
          "[redis][gcra]") {
    keel::redis::pool redis{keel_test::shared_pool()};
    // 1 permit per 10 minutes, burst 3: the test runs far inside one interval.
    keel::redis::gcra limiter{
        redis, {.name = keel_test::unique_name("gcra-seq"), .rate = 6, .period = 1h, .burst = 3}};
    for (std::int64_t expected_remaining : {2, 1, 0}) {
        keel::decision const d = limiter.try_acquire();
        CHECK(d.allowed);
        CHECK(d.source == decision_source::remote);
        CHECK(d.limit == 3);
        CHECK(d.remaining == expected_remaining);
        CHECK(d.retry_after == 0ns);
    }
    keel::decision const refused = limiter.try_acquire();
    CHECK_FALSE(refused.allowed);
    CHECK(refused.remaining == 0);
    // The next permit returns one emission interval (10 min) after the first.
    CHECK(refused.retry_after > 9min);
    CHECK(refused.retry_after <= 10min);
    CHECK(refused.reset > 29min);
    CHECK(refused.reset <= 30min);
}

TEST_CASE("redis::gcra: weighted requests and the unsatisfiable case", "[redis][gcra]") {
    keel::redis::pool redis{keel_test::shared_pool()};
    keel::redis::gcra limiter{
        redis, {.name = keel_test::unique_name("gcra-weight"), .rate = 4, .period = 1h}};
    CHECK(limiter.try_acquire(3).remaining == 1);
    keel::decision const refused = limiter.try_acquire(2);
    CHECK_FALSE(refused.allowed);
    CHECK(refused.remaining == 1);
    CHECK(refused.retry_after > 14min);
    CHECK(refused.retry_after <= 15min);
    CHECK(limiter.try_acquire(1).remaining == 0);
    keel::decision const never = limiter.try_acquire(5);
    CHECK(never.unsatisfiable);
    CHECK_FALSE(never.allowed);
}

TEST_CASE("redis::gcra: the state key expires when the bucket would be full again",
          "[redis][gcra]") {
    keel::redis::pool redis{keel_test::shared_pool()};
    keel::redis::gcra limiter{
        redis, {.name = keel_test::unique_name("gcra-ttl"), .rate = 10, .period = 1s}};
    REQUIRE(limiter.try_acquire(2).allowed);
    auto lease = redis.acquire();
    REQUIRE(lease);
    auto ttl = lease->command({"PTTL", limiter.redis_key()});
    REQUIRE(ttl.has_value());
    CHECK(ttl->integer() > 100);
    CHECK(ttl->integer() <= 200);
}

TEST_CASE("redis::gcra: skewed local clocks share one bucket", "[redis][gcra]") {
    keel::redis::pool redis{keel_test::shared_pool()};
    std::string const name = keel_test::unique_name("gcra-skew");
    keel::manual_clock behind{};
    keel::manual_clock ahead{keel::manual_clock::time_point{1000h}};
    keel::redis::basic_gcra<keel::manual_clock> a{
        redis, {.name = name, .rate = 2, .period = 1h}, behind};
    keel::redis::basic_gcra<keel::manual_clock> b{
        redis, {.name = name, .rate = 2, .period = 1h}, ahead};
    CHECK(a.try_acquire().allowed);
    CHECK(b.try_acquire().allowed);
    CHECK_FALSE(a.try_acquire().allowed);
    CHECK_FALSE(b.try_acquire().allowed);
}

TEST_CASE("redis::gcra: 4 processes sharing one bucket admit exactly the burst",
          "[redis][gcra][concurrency]") {
    std::string const name = keel_test::unique_name("gcra-procs");
    auto const reports = keel_test::run_clients(4, keel_test::shared_redis_port(),
                                                "gcra " + name + " 250 3600000 120");
    REQUIRE(reports.size() == 4);
    long total = 0;
    for (auto const& r : reports) {
        REQUIRE(r.admitted >= 0);
        CHECK(r.fallback == 0);
        total += r.admitted;
    }
    // 250 per hour, burst 250: within the test's fraction of a second the rate adds nothing.
    CHECK(total == 250);
}

TEST_CASE("redis::gcra: 4 threads on one limiter admit exactly the burst",
          "[redis][gcra][concurrency]") {
    keel::redis::pool redis{keel_test::shared_pool(4)};
    keel::redis::gcra limiter{
        redis, {.name = keel_test::unique_name("gcra-threads"), .rate = 100, .period = 1h}};
    std::atomic<long> admitted{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&] {
            for (int i = 0; i < 40; ++i) {
                admitted.fetch_add(limiter.try_acquire().allowed ? 1 : 0);
            }
        });
    }
    for (auto& t : threads) {
        t.join();
    }
    CHECK(admitted.load() == 100);
}

TEST_CASE("redis::gcra: options out of range are rejected", "[redis][gcra]") {
    keel::redis::pool redis{keel_test::shared_pool()};
    CHECK_THROWS_WITH(keel::redis::gcra(redis, {.name = "x", .rate = 0}),
                      "keel::redis::gcra: rate must be in [1, 2^31), got 0");
    CHECK_THROWS_WITH(keel::redis::gcra(redis, {.name = "x", .rate = 1, .burst = -1}),
                      "keel::redis::gcra: burst must be in [0, 2^31), got -1");
    CHECK(keel::redis::gcra(redis, {.name = "x", .rate = 7}).options().burst == 7);
    CHECK(keel::redis::gcra::interval_us({.rate = 3, .period = 1s}) == 333334);
}
