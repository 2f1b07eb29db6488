// SPDX-License-Identifier: MIT
#include <keel/redis/sliding_counter.hpp>

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
static_assert(keel::rate_limiter<keel::redis::sliding_counter>);
static_assert(keel::rate_limiter<keel::redis::basic_sliding_counter<keel::manual_clock>>);

namespace {
// Reads Redis' clock in microseconds.
std::int64_t redis_now_us(keel::redis::pool& redis) {
    auto lease = redis.acquire();
    auto r = lease->command({"TIME"});
    std::int64_t const s = std::stoll(std::string{r->element(0)->str});
    std::int64_t const us = std::stoll(std::string{r->element(1)->str});
    return s * 1'000'000 + us;
}
} // namespace

TEST_CASE("redis::sliding_counter: a fresh key admits exactly limit", "[redis][sliding_counter]") {
    keel::redis::pool redis{keel_test::shared_pool()};
    keel::redis::sliding_counter limiter{
        redis, {.name = keel_test::unique_name("sc-seq"), .limit = 3, .window = 1h}};
    for (std::int64_t expected_remaining : {2, 1, 0}) {
        keel::decision const d = limiter.try_acquire();
        CHECK(d.allowed);
        CHECK(d.source == decision_source::remote);
        CHECK(d.remaining == expected_remaining);
    }
    keel::decision const refused = limiter.try_acquire();
    CHECK_FALSE(refused.allowed);
    CHECK(refused.retry_after > 0ns);
    CHECK(limiter.try_acquire(4).unsatisfiable);
}

TEST_CASE("redis::sliding_counter: the previous window counts by its remaining overlap",
          "[redis][sliding_counter]") {
    keel::redis::pool redis{keel_test::shared_pool()};
    std::string const name = keel_test::unique_name("sc-prev");
    constexpr std::int64_t window_us = 3'600'000'000; // 1 h
    keel::redis::sliding_counter limiter{redis, {.name = name, .limit = 100, .window = 1h}};
    // Pretend the previous window saw 60 requests.
    std::int64_t const now = redis_now_us(redis);
    std::int64_t const index = now / window_us;
    std::int64_t const left = (index + 1) * window_us - now;
    {
        auto lease = redis.acquire();
        // The state is "<window index>:<current>:<previous>".
        REQUIRE(lease->command(
            {"SET", limiter.redis_key(), std::to_string(index - 1) + ":60:0", "PX", "60000"}));
    }
    // Room: 100 - 60 x left / window, rounded down; a few ms of drift changes it by < 1.
    double const weighted = 60.0 * static_cast<double>(left) / window_us;
    auto const expected_room = static_cast<std::int64_t>(100.0 - weighted);
    int admitted = 0;
    while (limiter.try_acquire().allowed && admitted <= 100) {
        ++admitted;
    }
    CHECK(admitted >= expected_room);
    CHECK(admitted <= expected_room + 1);
    keel::decision const refused = limiter.try_acquire();
    CHECK_FALSE(refused.allowed);
    // One permit returns when the previous window's weight has dropped by one request.
    CHECK(refused.retry_after > 0ns);
    CHECK(refused.retry_after <= 60s + 1ms);
}

TEST_CASE("redis::sliding_counter: skewed local clocks share one count",
          "[redis][sliding_counter]") {
    keel::redis::pool redis{keel_test::shared_pool()};
    std::string const name = keel_test::unique_name("sc-skew");
    keel::manual_clock behind{};
    keel::manual_clock ahead{keel::manual_clock::time_point{500h}};
    keel::redis::basic_sliding_counter<keel::manual_clock> a{
        redis, {.name = name, .limit = 2, .window = 1h}, behind};
    keel::redis::basic_sliding_counter<keel::manual_clock> b{
        redis, {.name = name, .limit = 2, .window = 1h}, ahead};
    CHECK(a.try_acquire().allowed);
    CHECK(b.try_acquire().allowed);
    CHECK_FALSE(a.try_acquire().allowed);
    CHECK_FALSE(b.try_acquire().allowed);
}

TEST_CASE("redis::sliding_counter: 4 processes sharing one limit admit exactly the limit",
          "[redis][sliding_counter][concurrency]") {
    std::string const name = keel_test::unique_name("sc-procs");
    auto const reports = keel_test::run_clients(4, keel_test::shared_redis_port(),
                                                "sliding_counter " + name + " 200 3600000 100");
    REQUIRE(reports.size() == 4);
    long total = 0;
    for (auto const& r : reports) {
        REQUIRE(r.admitted >= 0);
        CHECK(r.fallback == 0);
        total += r.admitted;
    }
    CHECK(total == 200);
}

TEST_CASE("redis::sliding_counter: options out of range are rejected", "[redis][sliding_counter]") {
    keel::redis::pool redis{keel_test::shared_pool()};
    CHECK_THROWS_WITH(keel::redis::sliding_counter(redis, {.name = "x", .limit = 0}),
                      "keel::redis::sliding_counter: limit must be in [1, 2^31), got 0");
}
