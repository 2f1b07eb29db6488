// SPDX-License-Identifier: MIT
#include <keel/core/random.hpp>
#include <keel/limiter/fixed_window.hpp>
#include <keel/limiter/gcra.hpp>
#include <keel/limiter/keyed.hpp>
#include <keel/limiter/sliding_counter.hpp>
#include <keel/limiter/token_bucket.hpp>
#include <keel/testing/manual_clock.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using keel::manual_clock;

TEST_CASE("keyed rejects bad options naming the field", "[keyed]") {
    manual_clock clock;
    using table = keel::keyed<keel::fixed_window<manual_clock>, std::uint64_t>;
    CHECK_THROWS_WITH(table({.limit = 1}, {.shards = 3}, clock),
                      "keel::keyed: shards must be a power of two in [1, 4096], got 3");
    CHECK_THROWS_AS(table({.limit = 1}, {.max_keys = 0}, clock), std::invalid_argument);
    CHECK_THROWS_AS(table({.limit = 0}, {}, clock), std::invalid_argument);
}

TEST_CASE("keyed keeps an independent limiter per key", "[keyed]") {
    manual_clock clock;
    keel::keyed<keel::fixed_window<manual_clock>, std::string> t{
        {.limit = 2, .window = 1s}, {}, clock};
    CHECK(t.try_acquire("alice").remaining == 1);
    CHECK(t.try_acquire("alice").remaining == 0);
    auto r = t.try_acquire("alice");
    CHECK_FALSE(r.allowed);
    CHECK(r.retry_after == 1s);
    CHECK(t.try_acquire("bob").allowed);
    CHECK(t.size() == 2);
    clock.advance(1s);
    CHECK(t.try_acquire("alice").allowed);
}

TEST_CASE("keyed shows its per-key configuration through a const table", "[keyed]") {
    manual_clock clock;
    keel::keyed<keel::fixed_window<manual_clock>, std::uint64_t> const t{
        {.limit = 7, .window = 3s}, {}, clock};
    CHECK(t.overflow_limiter().limit() == 7);
    CHECK(t.overflow_limiter().window() == 3s);
}

TEST_CASE("keyed stores nothing for peeks and unsatisfiable requests", "[keyed]") {
    manual_clock clock;
    keel::keyed<keel::gcra<manual_clock>, std::uint64_t> t{{.rate = 5, .burst = 5}, {}, clock};
    CHECK(t.try_acquire(1, 0).allowed);
    CHECK(t.try_acquire(2, 6).unsatisfiable);
    CHECK(t.size() == 0);
    CHECK(t.memory_bytes() < 64 * 1024);
}

TEST_CASE("keyed under a flood of new keys stays within max_keys and never resets a limited key",
          "[keyed]") {
    manual_clock clock;
    keel::keyed<keel::sliding_counter<manual_clock>, std::uint64_t> t{
        {.limit = 3, .window = 1s}, {.max_keys = 64, .shards = 4}, clock};
    // The abuser exhausts its quota.
    CHECK(t.try_acquire(7, 3).allowed);
    CHECK_FALSE(t.try_acquire(7).allowed);
    // A flood of 100,000 distinct keys within the same second.
    int overflow_admitted = 0;
    for (std::uint64_t k = 1000; k < 101'000; ++k) {
        if (t.try_acquire(k)) {
            ++overflow_admitted;
        }
        REQUIRE(t.size() <= t.max_keys());
    }
    CHECK(t.max_keys() == 64);
    // 63 keys got a slot each; the rest shared one overflow quota of 3.
    CHECK(t.size() == 64);
    CHECK(overflow_admitted == 63 + 3);
    // The abuser is still limited: nothing evicted it.
    CHECK_FALSE(t.try_acquire(7).allowed);
    // Its state slides out over the next window and then it is at rest.
    clock.advance(2s);
    CHECK(t.try_acquire(7).allowed);
}

TEST_CASE("keyed evicts keys at rest to make room, keeping the others", "[keyed]") {
    manual_clock clock;
    keel::keyed<keel::fixed_window<manual_clock>, std::uint64_t> t{
        {.limit = 1, .window = 1s}, {.max_keys = 8, .shards = 1}, clock};
    for (std::uint64_t k = 0; k < 8; ++k) {
        REQUIRE(t.try_acquire(k).allowed);
    }
    clock.advance(1s);               // every key is at rest: its window is over
    CHECK(t.try_acquire(0).allowed); // key 0 is busy again
    for (std::uint64_t k = 100; k < 107; ++k) {
        CHECK(t.try_acquire(k).allowed); // room from the keys at rest
    }
    CHECK(t.size() == 8);
    CHECK_FALSE(t.try_acquire(0).allowed); // key 0 kept its state
    CHECK(t.sweep(clock.now()) == 0);
    clock.advance(1s);
    CHECK(t.sweep(clock.now()) == 8);
    CHECK(t.size() == 0);
}

TEST_CASE("keyed with overflow reject refuses new keys until a key comes to rest", "[keyed]") {
    manual_clock clock;
    keel::keyed<keel::token_bucket<manual_clock>, std::uint64_t> t{
        {.rate = 1, .period = 1s, .burst = 2},
        {.max_keys = 2, .shards = 1, .overflow = keel::keyed_overflow::reject},
        clock};
    CHECK(t.try_acquire(1).allowed); // full at 1 s from now
    clock.advance(200ms);
    CHECK(t.try_acquire(2, 2).allowed); // full at 2 s from now
    auto r = t.try_acquire(3);
    CHECK_FALSE(r.allowed);
    CHECK_FALSE(r.unsatisfiable);
    CHECK(r.retry_after == 800ms); // key 1's bucket is full again then
    clock.advance(800ms);
    CHECK(t.try_acquire(3).allowed);
    CHECK_FALSE(t.try_acquire(2).allowed); // key 2 still has its drained bucket
}

TEST_CASE("keyed abusers never exceed burst + rate x t while keys churn", "[keyed]") {
    manual_clock clock;
    keel::keyed<keel::gcra<manual_clock>, std::uint64_t> t{
        {.rate = 10, .period = 1s, .burst = 5}, {.max_keys = 128, .shards = 8}, clock};
    keel::xoshiro256ss rng{99};
    std::vector<int> abuser_admitted(4, 0);
    for (int ms = 0; ms < 10'000; ++ms) {
        for (std::uint64_t a = 0; a < 4; ++a) {
            abuser_admitted[a] += t.try_acquire(a) ? 1 : 0;
        }
        for (int i = 0; i < 20; ++i) {
            (void)t.try_acquire(1'000 + rng() % 1'000'000);
        }
        REQUIRE(t.size() <= t.max_keys());
        clock.advance(1ms);
    }
    for (int admitted : abuser_admitted) {
        CHECK(admitted <= 5 + 100);
        CHECK(admitted >= 100);
    }
}

TEST_CASE("keyed admits no more than each key's limit across threads", "[keyed][concurrency]") {
    manual_clock clock;
    keel::keyed<keel::fixed_window<manual_clock>, std::uint64_t> t{
        {.limit = 100, .window = 1h}, {.max_keys = 16384, .shards = 16}, clock};
    std::atomic<int> admitted{0};
    std::vector<std::thread> threads;
    for (int th = 0; th < 4; ++th) {
        threads.emplace_back([&, th] {
            for (int i = 0; i < 5000; ++i) {
                // 8 shared keys, and a stream of keys of this thread.
                auto const key = i % 2 == 0 ? static_cast<std::uint64_t>((i / 2) % 8)
                                            : static_cast<std::uint64_t>(1'000 + th * 10'000 + i);
                if (t.try_acquire(key)) {
                    admitted.fetch_add(1, std::memory_order_relaxed);
                }
            }
        });
    }
    for (auto& th : threads) {
        th.join();
    }
    // 8 shared keys x 100, plus every odd-i key of every thread (fresh keys, one request each).
    CHECK(admitted.load() == 8 * 100 + 4 * 2500);
    CHECK(t.size() == 8 + 4 * 2500);
}

TEST_CASE("keyed never mistakes a stored state for an empty slot", "[keyed]") {
    manual_clock clock; // time 0: a drained bucket's empty_at is exactly 0
    keel::keyed<keel::token_bucket<manual_clock>, std::uint64_t> t{
        {.rate = 1, .period = 1s, .burst = 3}, {.max_keys = 16, .shards = 1}, clock};
    CHECK(t.try_acquire(5, 3).allowed);
    CHECK(t.size() == 1);
    auto const r = t.try_acquire(5);
    CHECK_FALSE(r.allowed);
    CHECK(r.retry_after == 1s);
    keel::keyed<keel::fixed_window<manual_clock>, std::uint64_t> f{
        {.limit = 1, .window = 1s}, {.max_keys = 16, .shards = 1}, clock};
    CHECK(f.try_acquire(0).allowed); // key 0, window 0, count 1
    CHECK_FALSE(f.try_acquire(0).allowed);
}
