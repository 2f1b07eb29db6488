// SPDX-License-Identifier: MIT
#include <keel/redis/failure_policy.hpp>
#include <keel/redis/fixed_window.hpp>
#include <keel/redis/gcra.hpp>

#include <keel/testing/manual_clock.hpp>

#include "redis_server.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using keel::decision_source;

namespace {
template <class F>
std::chrono::nanoseconds timed(F&& f) {
    auto const start = std::chrono::steady_clock::now();
    f();
    return std::chrono::steady_clock::now() - start;
}
} // namespace

TEST_CASE("redis failure policy: Redis killed mid-run fails open, opens the breaker, and "
          "decisions return to Redis after it restarts",
          "[redis][failure_policy]") {
    keel_test::redis_server server;
    REQUIRE(server.running());
    keel::redis::pool redis{keel_test::private_pool(server.port())};
    keel::manual_clock clock;
    keel::redis::basic_fixed_window<keel::manual_clock> limiter{
        redis,
        {.name = "killed",
         .limit = 5,
         .window = 1h,
         .on_failure = {.breaker_failures = 3, .breaker_open_for = 2s}},
        clock};
    REQUIRE(limiter.try_acquire().source == decision_source::remote);
    REQUIRE(limiter.try_acquire().source == decision_source::remote);

    server.kill();
    for (int i = 0; i < 3; ++i) {
        keel::decision d;
        auto const took = timed([&] { d = limiter.try_acquire(); });
        CHECK(d.allowed);
        CHECK(d.source == decision_source::fallback_open);
        CHECK(took < 100ms + 50ms);
    }
    CHECK(limiter.breaker_open());
    CHECK(limiter.breaker_trips() == 1);
    // Open: no network at all.
    for (int i = 0; i < 10; ++i) {
        keel::decision d;
        auto const took = timed([&] { d = limiter.try_acquire(); });
        CHECK(d.source == decision_source::fallback_open);
        CHECK(took < 5ms);
    }

    REQUIRE(server.start()); // same port, empty (no persistence)
    CHECK(limiter.try_acquire().source == decision_source::fallback_open); // still open
    clock.advance(2s);
    keel::decision const probe = limiter.try_acquire();
    CHECK(probe.source == decision_source::remote);
    CHECK(probe.allowed);
    CHECK(probe.remaining == 4); // the restarted server starts from zero
    CHECK_FALSE(limiter.breaker_open());
    CHECK(limiter.try_acquire().source == decision_source::remote);
}

TEST_CASE("redis failure policy: a failed probe opens the breaker again",
          "[redis][failure_policy]") {
    keel_test::redis_server server;
    REQUIRE(server.running());
    keel::redis::pool redis{keel_test::private_pool(server.port())};
    keel::manual_clock clock;
    keel::redis::basic_gcra<keel::manual_clock> limiter{
        redis,
        {.name = "probe",
         .rate = 5,
         .period = 1h,
         .on_failure = {.breaker_failures = 1, .breaker_open_for = 1s}},
        clock};
    server.kill();
    CHECK(limiter.try_acquire().source == decision_source::fallback_open);
    CHECK(limiter.breaker_open());
    clock.advance(1s);
    CHECK(limiter.try_acquire().source == decision_source::fallback_open); // the probe fails
    CHECK(limiter.breaker_trips() == 2);
    clock.advance(999ms);
    CHECK(limiter.try_acquire().source == decision_source::fallback_open);
    REQUIRE(server.start());
    clock.advance(1ms);
    CHECK(limiter.try_acquire().source == decision_source::remote);
}

TEST_CASE("redis failure policy: fail closed refuses until Redis is probed again",
          "[redis][failure_policy]") {
    keel_test::redis_server server;
    REQUIRE(server.running());
    keel::redis::pool redis{keel_test::private_pool(server.port())};
    keel::manual_clock clock;
    keel::redis::basic_fixed_window<keel::manual_clock> limiter{
        redis,
        {.name = "closed",
         .limit = 5,
         .window = 1h,
         .on_failure = {.mode = keel::redis::failure_mode::fail_closed,
                        .breaker_failures = 2,
                        .breaker_open_for = 3s}},
        clock};
    server.kill();
    keel::decision const first = limiter.try_acquire();
    CHECK_FALSE(first.allowed);
    CHECK(first.source == decision_source::fallback_closed);
    CHECK(first.retry_after == 3s); // not open yet: the open time
    limiter.try_acquire();
    REQUIRE(limiter.breaker_open());
    clock.advance(1s);
    keel::decision const open = limiter.try_acquire();
    CHECK_FALSE(open.allowed);
    CHECK(open.source == decision_source::fallback_closed);
    CHECK(open.retry_after == 2s);
}

TEST_CASE("redis failure policy: a hung Redis costs at most the command timeout",
          "[redis][failure_policy]") {
    keel_test::redis_server server;
    REQUIRE(server.running());
    keel::redis::pool redis{keel_test::private_pool(server.port())};
    keel::manual_clock clock;
    keel::redis::basic_fixed_window<keel::manual_clock> limiter{
        redis,
        {.name = "hung", .limit = 5, .window = 1h, .on_failure = {.breaker_failures = 2}},
        clock};
    REQUIRE(limiter.try_acquire().source == decision_source::remote);
    server.freeze();
    keel::decision d;
    auto const took = timed([&] { d = limiter.try_acquire(); });
    CHECK(d.allowed);
    CHECK(d.source == decision_source::fallback_open);
    CHECK(took >= 90ms);
    CHECK(took < 100ms + 150ms);
    limiter.try_acquire();
    CHECK(limiter.breaker_open());
    auto const open_took = timed([&] { d = limiter.try_acquire(); });
    CHECK(open_took < 5ms);
    server.thaw();
    clock.advance(1s);
    d = limiter.try_acquire();
    CHECK(d.source == decision_source::remote);
    // The count survived (Redis was only slow). The two timed-out scripts may
    // still have run once the server woke up: a timeout means "unknown", so they
    // can only make Redis count more, never less.
    CHECK(d.remaining >= 1);
    CHECK(d.remaining <= 3);
}

TEST_CASE("redis failure policy: NOSCRIPT after SCRIPT FLUSH is recovered without a fallback",
          "[redis][failure_policy]") {
    keel::redis::pool redis{keel_test::shared_pool(1)};
    keel::redis::fixed_window limiter{
        redis, {.name = keel_test::unique_name("flush"), .limit = 10, .window = 1h}};
    CHECK(limiter.try_acquire().source == decision_source::remote);
    {
        auto lease = redis.acquire();
        REQUIRE(lease->command({"SCRIPT", "FLUSH"}));
    }
    keel::decision const d = limiter.try_acquire();
    CHECK(d.source == decision_source::remote);
    CHECK(d.remaining == 8);
    CHECK_FALSE(limiter.breaker_open());
}

TEST_CASE("redis failure policy: options out of range are rejected", "[redis][failure_policy]") {
    CHECK_THROWS_WITH(
        keel::redis::detail::validate(keel::redis::failure_policy{.breaker_failures = 0}, "c"),
        "c: on_failure.breaker_failures must be in [1, 32768], got 0");
    CHECK_THROWS_WITH(
        keel::redis::detail::validate(keel::redis::failure_policy{.breaker_open_for = 0ms}, "c"),
        "c: on_failure.breaker_open_for must be positive, got 0s");
}

TEST_CASE("redis failure policy: local mode asks the local fallback, per key",
          "[redis][failure_policy]") {
    keel_test::redis_server server;
    REQUIRE(server.running());
    keel::redis::pool redis{keel_test::private_pool(server.port())};
    keel::manual_clock clock;
    keel::redis::basic_fixed_window<keel::manual_clock> limiter{
        redis,
        {.name = "local",
         .limit = 8,
         .window = 1h,
         .on_failure = {.mode = keel::redis::failure_mode::local, .expected_instances = 4}},
        clock};
    std::vector<std::string> asked;
    limiter.set_local_fallback(
        [&](std::optional<std::string_view> key, std::int64_t permits, auto) {
            asked.push_back(std::string{key.value_or("<all>")} + "/" + std::to_string(permits));
            keel::decision d;
            d.allowed = permits == 1;
            d.limit = 2;
            return d;
        });
    server.kill();
    keel::decision const wide = limiter.try_acquire();
    CHECK(wide.allowed);
    CHECK(wide.source == decision_source::fallback_local);
    CHECK(wide.limit == 2);
    keel::decision const keyed = limiter.try_acquire("alice", 2);
    CHECK_FALSE(keyed.allowed);
    CHECK(keyed.source == decision_source::fallback_local);
    CHECK(asked == std::vector<std::string>{"<all>/1", "alice/2"});
}

TEST_CASE("redis failure policy: a quick Redis restart costs no fallback decision",
          "[redis][failure_policy]") {
    keel_test::redis_server server;
    REQUIRE(server.running());
    keel::redis::pool redis{keel_test::private_pool(server.port())};
    keel::redis::fixed_window limiter{redis, {.name = "restart", .limit = 5, .window = 1h}};
    {
        // Open both pooled connections.
        auto a = redis.acquire();
        auto b = redis.acquire();
        REQUIRE(a->command({"PING"}));
        REQUIRE(b->command({"PING"}));
    }
    REQUIRE(server.start());
    for (int i = 0; i < 4; ++i) {
        CHECK(limiter.try_acquire().source == decision_source::remote);
    }
    CHECK(limiter.breaker_trips() == 0);
}

TEST_CASE("redis failure policy: 4 threads keep deciding while Redis dies and comes back",
          "[redis][failure_policy][concurrency]") {
    keel_test::redis_server server;
    REQUIRE(server.running());
    keel::redis::pool redis{keel_test::private_pool(server.port())};
    keel::manual_clock clock;
    keel::redis::basic_gcra<keel::manual_clock> limiter{
        redis,
        {.name = "threads",
         .rate = 1'000'000,
         .period = 1s,
         .on_failure = {.breaker_failures = 3, .breaker_open_for = 1s}},
        clock};
    std::atomic<bool> stop{false};
    std::atomic<long> remote{0};
    std::atomic<long> fallback{0};
    std::atomic<long> other{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&] {
            while (!stop.load()) {
                keel::decision const d = limiter.try_acquire();
                if (d.source == decision_source::remote && d.allowed) {
                    remote.fetch_add(1);
                } else if (d.source == decision_source::fallback_open && d.allowed) {
                    fallback.fetch_add(1);
                } else {
                    other.fetch_add(1);
                }
            }
        });
    }
    auto wait_for = [](std::atomic<long> const& counter, long at_least) {
        for (int i = 0; i < 2000 && counter.load() < at_least; ++i) {
            std::this_thread::sleep_for(1ms);
        }
        return counter.load() >= at_least;
    };
    bool const served = wait_for(remote, 20);
    server.kill();
    bool const fell_back = wait_for(fallback, 20);
    bool const opened = limiter.breaker_open();
    REQUIRE(server.start());
    clock.advance(1s);
    long const remote_before = remote.load();
    bool const recovered = wait_for(remote, remote_before + 20);
    stop = true;
    for (auto& t : threads) {
        t.join();
    }
    CHECK(served);
    CHECK(fell_back);
    CHECK(opened);
    CHECK(recovered);
    CHECK(other.load() == 0);
    CHECK(limiter.breaker_trips() >= 1);
}

TEST_CASE("redis failure policy: local mode falls back to the local limiter's share of the limit",
          "[redis][failure_policy]") {
    keel_test::redis_server server;
    REQUIRE(server.running());
    keel::redis::pool redis{keel_test::private_pool(server.port())};
    keel::manual_clock clock;
    keel::redis::basic_fixed_window<keel::manual_clock> limiter{
        redis,
        {.name = "share",
         .limit = 8,
         .window = 1h,
         .on_failure = {.mode = keel::redis::failure_mode::local, .expected_instances = 4}},
        clock};
    CHECK(limiter.try_acquire().source == decision_source::remote);
    server.kill();
    // 8 / 4 instances = 2 per window for this instance, and 2 for each key.
    for (bool expected : {true, true, false}) {
        keel::decision const d = limiter.try_acquire();
        CHECK(d.allowed == expected);
        CHECK(d.source == decision_source::fallback_local);
        CHECK(d.limit == 2);
    }
    CHECK(limiter.try_acquire("alice").allowed);
    CHECK(limiter.try_acquire("alice").allowed);
    CHECK_FALSE(limiter.try_acquire("alice").allowed);
    CHECK(limiter.try_acquire("bob").allowed);

    keel::redis::basic_gcra<keel::manual_clock> bucket{
        redis,
        {.name = "share-gcra",
         .rate = 40,
         .period = 1s,
         .burst = 40,
         .on_failure = {.mode = keel::redis::failure_mode::local, .expected_instances = 4}},
        clock};
    int admitted = 0;
    for (int i = 0; i < 20; ++i) {
        keel::decision const d = bucket.try_acquire();
        CHECK(d.source == decision_source::fallback_local);
        admitted += d.allowed ? 1 : 0;
    }
    CHECK(admitted == 10); // burst 40 / 4
    clock.advance(100ms);  // 10 per second locally: one more permit
    CHECK(bucket.try_acquire().allowed);
    CHECK_FALSE(bucket.try_acquire().allowed);
}
