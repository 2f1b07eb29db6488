// SPDX-License-Identifier: MIT
#include <keel/core/random.hpp>
#include <keel/limiter/gcra.hpp>
#include <keel/limiter/token_bucket.hpp>
#include <keel/testing/manual_clock.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using limiter = keel::basic_gcra<keel::manual_clock>;

TEST_CASE("gcra rejects bad options naming the field", "[gcra]") {
    keel::manual_clock clock;
    CHECK_THROWS_WITH(limiter({.rate = 0}, clock),
                      "keel::gcra: rate must be in [1, period in ns], got 0");
    // 2 per ns would truncate the emission interval to 0.
    CHECK_THROWS_AS(limiter({.rate = 2, .period = 1ns}, clock), std::invalid_argument);
    CHECK_THROWS_AS(limiter({.rate = 1, .period = -1s}, clock), std::invalid_argument);
    CHECK_THROWS_AS(limiter({.rate = 1, .burst = -2}, clock), std::invalid_argument);
}

TEST_CASE("gcra admits the burst at once, then one per emission interval", "[gcra]") {
    keel::manual_clock clock;
    limiter l{{.rate = 10, .period = 1s, .burst = 3}, clock}; // T = 100 ms
    CHECK(l.interval() == 100ms);
    auto first = l.try_acquire();
    CHECK(first.allowed); // the very first cell conforms (no "first cell is free" glitch)
    CHECK(first.remaining == 2);
    CHECK(first.reset == 100ms);
    CHECK(l.try_acquire().remaining == 1);
    CHECK(l.try_acquire().remaining == 0);
    auto r = l.try_acquire();
    CHECK_FALSE(r.allowed);
    CHECK(r.retry_after == 100ms);
    CHECK(r.reset == 100ms); // nothing left: when the next permit conforms
    clock.advance(99ms);
    CHECK(l.try_acquire().retry_after == 1ms);
    clock.advance(1ms);
    CHECK(l.try_acquire().allowed);
    CHECK_FALSE(l.try_acquire().allowed);
    clock.advance(10s);
    CHECK(l.try_acquire(3).allowed);
    auto u = l.try_acquire(4);
    CHECK(u.unsatisfiable);
    CHECK(u.limit == 3);
}

TEST_CASE("gcra decides exactly as token_bucket with the same parameters", "[gcra]") {
    keel::manual_clock clock;
    keel::basic_gcra<keel::manual_clock> g{{.rate = 7, .period = 1s, .burst = 5}, clock};
    keel::basic_token_bucket<keel::manual_clock> b{{.rate = 7, .period = 1s, .burst = 5}, clock};
    keel::xoshiro256ss rng{42};
    int admitted = 0;
    for (int i = 0; i < 20000; ++i) {
        clock.advance(std::chrono::nanoseconds{static_cast<std::int64_t>(rng() % 200'000'000)});
        auto const n = static_cast<std::int64_t>(rng() % 7); // 0..6, 6 is unsatisfiable
        auto const dg = g.try_acquire(n);
        auto const db = b.try_acquire(n);
        REQUIRE(dg.allowed == db.allowed);
        REQUIRE(dg.unsatisfiable == db.unsatisfiable);
        REQUIRE(dg.remaining == db.remaining);
        REQUIRE(dg.retry_after == db.retry_after);
        REQUIRE(dg.reset == db.reset);
        admitted += dg.allowed && n > 0 ? 1 : 0;
    }
    CHECK(admitted > 1000);
}

TEST_CASE("gcra retry_after is exact: never early, and waiting it succeeds", "[gcra]") {
    keel::manual_clock clock;
    limiter l{{.rate = 3, .period = 1s, .burst = 2}, clock}; // T = 333'333'334 ns
    keel::xoshiro256ss rng{7};
    for (int i = 0; i < 2000; ++i) {
        auto const n = static_cast<std::int64_t>(1 + rng() % 2);
        auto d = l.try_acquire(n);
        if (!d.allowed) {
            clock.advance(d.retry_after - 1ns);
            REQUIRE_FALSE(l.try_acquire(n).allowed);
            clock.advance(1ns);
            REQUIRE(l.try_acquire(n).allowed);
        }
        clock.advance(std::chrono::nanoseconds{static_cast<std::int64_t>(rng() % 300'000'000)});
    }
}

TEST_CASE("gcra never admits more than burst + rate x t across threads", "[gcra][concurrency]") {
    keel::manual_clock clock;
    limiter l{{.rate = 1000, .period = 1s, .burst = 50}, clock};
    std::atomic<int> admitted{0};
    std::atomic<bool> stop{false};
    std::vector<std::thread> threads;
    for (int t = 0; t < 3; ++t) {
        threads.emplace_back([&] {
            while (!stop.load(std::memory_order_relaxed)) {
                if (l.try_acquire()) {
                    admitted.fetch_add(1, std::memory_order_relaxed);
                }
            }
        });
    }
    // The burst is there from t = 0: let the threads take it before time moves, so
    // the lower bound does not depend on when the scheduler first runs them (on a
    // loaded machine all 200 steps could pass before any thread started).
    auto const give_up = std::chrono::steady_clock::now() + 10s;
    while (admitted.load() < 50 && std::chrono::steady_clock::now() < give_up) {
        std::this_thread::yield();
    }
    for (int i = 0; i < 200; ++i) {
        clock.advance(1ms);
        std::this_thread::yield();
    }
    stop = true;
    for (auto& t : threads) {
        t.join();
    }
    CHECK(admitted.load() <= 50 + 200);
    CHECK(admitted.load() >= 50);
}
