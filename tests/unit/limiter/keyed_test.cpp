// SPDX-License-Identifier: MIT
#include <keel/core/random.hpp>
#include <keel/limiter/fixed_window.hpp>
#include <keel/limiter/gcra.hpp>
#include <keel/limiter/keyed.hpp>
#include <keel/limiter/sliding_counter.hpp>
#include <keel/limiter/token_bucket.hpp>
#include <keel/testing/manual_clock.hpp>

#include <catch2/catch.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

using namespace std::chrono_literals;
using keel::manual_clock;

TEST_CASE("keyed rejects bad options naming the field", "[keyed]") {
    manual_clock clock;
    using table = keel::keyed<keel::basic_fixed_window<manual_clock>, std::uint64_t>;
    CHECK_THROWS_WITH(table({.limit = 1}, {.shards = 3}, clock),
                      "keel::keyed: shards must be a power of two in [1, 4096], got 3");
    CHECK_THROWS_AS(table({.limit = 1}, {.max_keys = 0}, clock), std::invalid_argument);
    CHECK_THROWS_AS(table({.limit = 0}, {}, clock), std::invalid_argument);
}

TEST_CASE("keyed keeps an independent limiter per key", "[keyed]") {
    manual_clock clock;
    keel::keyed<keel::basic_fixed_window<manual_clock>, std::string> t{
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
    keel::keyed<keel::basic_fixed_window<manual_clock>, std::uint64_t> const t{
        {.limit = 7, .window = 3s}, {}, clock};
    CHECK(t.overflow_limiter().limit() == 7);
    CHECK(t.overflow_limiter().window() == 3s);
}

TEST_CASE("keyed stores nothing for peeks and unsatisfiable requests", "[keyed]") {
    manual_clock clock;
    keel::keyed<keel::basic_gcra<manual_clock>, std::uint64_t> t{
        {.rate = 5, .burst = 5}, {}, clock};
    CHECK(t.try_acquire(1, 0).allowed);
    CHECK(t.try_acquire(2, 6).unsatisfiable);
    CHECK(t.size() == 0);
    CHECK(t.memory_bytes() < 64 * 1024);
}

TEST_CASE("keyed under a flood of new keys stays within max_keys and never resets a limited key",
          "[keyed]") {
    manual_clock clock;
    keel::keyed<keel::basic_sliding_counter<manual_clock>, std::uint64_t> t{
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
    keel::keyed<keel::basic_fixed_window<manual_clock>, std::uint64_t> t{
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
    keel::keyed<keel::basic_token_bucket<manual_clock>, std::uint64_t> t{
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
    keel::keyed<keel::basic_gcra<manual_clock>, std::uint64_t> t{
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
    keel::keyed<keel::basic_fixed_window<manual_clock>, std::uint64_t> t{
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
    keel::keyed<keel::basic_token_bucket<manual_clock>, std::uint64_t> t{
        {.rate = 1, .period = 1s, .burst = 3}, {.max_keys = 16, .shards = 1}, clock};
    CHECK(t.try_acquire(5, 3).allowed);
    CHECK(t.size() == 1);
    auto const r = t.try_acquire(5);
    CHECK_FALSE(r.allowed);
    CHECK(r.retry_after == 1s);
    keel::keyed<keel::basic_fixed_window<manual_clock>, std::uint64_t> f{
        {.limit = 1, .window = 1s}, {.max_keys = 16, .shards = 1}, clock};
    CHECK(f.try_acquire(0).allowed); // key 0, window 0, count 1
    CHECK_FALSE(f.try_acquire(0).allowed);
}

TEST_CASE("keyed sweeps judge rest at the shard's time: a stale now never evicts a limited key",
          "[keyed]") {
    manual_clock clock;
    keel::keyed<keel::basic_fixed_window<manual_clock>, std::uint64_t> t{
        {.limit = 1, .window = 1s}, {.max_keys = 3, .shards = 1}, clock};
    CHECK(t.try_acquire(9, 1, manual_clock::time_point{1s}).allowed); // a key written at 1 s
    clock.set(manual_clock::time_point{5s});
    CHECK(t.try_acquire(1).allowed); // key 1 is limited until 6 s
    CHECK_FALSE(t.try_acquire(1).allowed);
    CHECK(t.try_acquire(2).allowed);
    REQUIRE(t.size() == 3);
    // A request for a new key with a time read long before (3 s) finds the shard full;
    // key 9 is at rest, keys 1 and 2 are not: only key 9 may make room.
    CHECK(t.try_acquire(3, 1, manual_clock::time_point{3s}).allowed);
    CHECK_FALSE(t.try_acquire(1).allowed);
    // An explicit sweep with a stale time keeps them too.
    CHECK(t.sweep(manual_clock::time_point{3s}) <= 1);
    CHECK_FALSE(t.try_acquire(1).allowed);
    CHECK(t.size() >= 2);
}

namespace {
// Counts the hash calls a table makes: every rehash while growing or sweeping is one.
struct counting_hash {
    std::shared_ptr<std::int64_t> calls = std::make_shared<std::int64_t>(0);
    std::size_t operator()(std::uint64_t k) const noexcept {
        ++*calls;
        return static_cast<std::size_t>(k);
    }
};
} // namespace

TEST_CASE("keyed makes room for new keys in O(1) amortized as old keys come to rest one by one",
          "[keyed]") {
    // Each key takes one permit from a bucket refilling in 1 s, so it comes to rest
    // 1 s after its request; a new key arrives every 1 s / 4096, as an old one
    // comes to rest. Every insert finds its shard full with one key at rest.
    manual_clock clock;
    counting_hash hash;
    keel::keyed<keel::basic_token_bucket<manual_clock>, std::uint64_t, counting_hash> t{
        {.rate = 1, .period = 1s, .burst = 1}, {.max_keys = 4096, .shards = 1}, clock, hash};
    constexpr std::int64_t keys = 4096;
    auto const step = std::chrono::nanoseconds{1s} / keys;
    for (std::uint64_t k = 0; k < 2 * keys; ++k) { // fill, then one full turnover
        (void)t.try_acquire(k);
        clock.advance(step);
    }
    auto const before = *hash.calls;
    std::int64_t admitted = 0;
    for (std::uint64_t k = 2 * keys; k < 6 * keys; ++k) {
        admitted += t.try_acquire(k).allowed ? 1 : 0;
        clock.advance(step);
    }
    auto const per_request = static_cast<double>(*hash.calls - before) / (4.0 * keys);
    CHECK(per_request < 8.0);    // one per request to find the shard, a few to move keys
    CHECK(admitted == 4 * keys); // every new key got a slot: the oldest arrival was at rest
    CHECK(t.size() <= t.max_keys());
}

TEST_CASE("keyed reads the clock after taking the shard lock: no window admits more than its limit",
          "[keyed][concurrency]") {
    // 8 threads on 4 keys of one shard. Each thread reads the clock around every
    // request; an admission whose two readings fall in one window is counted in
    // it. Were the table's own reading taken before waiting for the lock, a thread
    // held up for two windows would count its request against a window long gone
    // and reset the key's count in the current one.
    constexpr std::int64_t limit = 5;
    constexpr std::int64_t window_ns = 10'000;
    constexpr std::size_t keys = 4;
    keel::keyed<keel::fixed_window, std::uint64_t> t{
        {.limit = limit, .window = std::chrono::nanoseconds{window_ns}}, {.shards = 1}};
    auto const ns = [] {
        return std::chrono::duration_cast<std::chrono::nanoseconds>(
                   keel::steady_clock::now().time_since_epoch())
            .count();
    };
    auto const start = ns() / window_ns;
    constexpr std::int64_t windows = 300'000'000 / window_ns; // 300 ms
    using counts = std::vector<std::array<std::int64_t, keys>>;
    std::vector<counts> per_thread(8, counts(windows + 1));
    std::vector<std::thread> threads;
    for (std::size_t th = 0; th < per_thread.size(); ++th) {
        threads.emplace_back([&, th] {
            auto& mine = per_thread[th];
            for (std::uint64_t i = th;; ++i) {
                auto const key = i % keys;
                auto const before = ns() / window_ns - start;
                bool const admitted = t.try_acquire(key).allowed;
                auto const after = ns() / window_ns - start;
                if (after >= windows) {
                    return;
                }
                if (admitted && before == after) {
                    ++mine[static_cast<std::size_t>(after)][key];
                }
            }
        });
    }
    for (auto& th : threads) {
        th.join();
    }
    std::int64_t over = 0;
    std::int64_t worst = 0;
    for (std::size_t w = 0; w <= static_cast<std::size_t>(windows); ++w) {
        for (std::size_t k = 0; k < keys; ++k) {
            std::int64_t n = 0;
            for (auto const& c : per_thread) {
                n += c[w][k];
            }
            over += n > limit ? 1 : 0;
            worst = n > worst ? n : worst;
        }
    }
    INFO("windows over the limit: " << over << ", most admitted in one window: " << worst);
    CHECK(over == 0);
}

namespace {
// Few distinct hashes: long probe runs, so evictions shift many keys.
struct colliding_hash {
    std::size_t operator()(std::uint64_t k) const noexcept {
        return static_cast<std::size_t>(k % 24);
    }
};
} // namespace

TEST_CASE("keyed decides as a table that never evicts, while keys churn through a full table",
          "[keyed]") {
    // Eviction removes only keys at rest, so every decision equals that of a table
    // keeping every key for ever, except a new key refused by the overflow policy.
    manual_clock clock;
    keel::keyed<keel::basic_token_bucket<manual_clock>, std::uint64_t, colliding_hash> t{
        {.rate = 1000, .period = 1s, .burst = 3},
        {.max_keys = 96, .shards = 2, .overflow = keel::keyed_overflow::reject},
        clock};
    keel::basic_token_bucket<manual_clock> const model{{.rate = 1000, .period = 1s, .burst = 3},
                                                       clock};
    std::unordered_map<std::uint64_t, std::uint64_t> words;
    keel::xoshiro256ss rng{7};
    std::int64_t overflowed = 0;
    for (int i = 0; i < 200'000; ++i) {
        auto const key = rng() % 1000;
        auto const permits = static_cast<std::int64_t>(rng() % 3);
        auto const now_ns = keel::detail::to_ns(clock.now());
        auto const it = words.find(key);
        auto const word = it == words.end() ? model.fresh_state : it->second;
        auto const expected = model.step(word, permits, now_ns);
        auto const d = t.try_acquire(key, permits);
        if (!d.allowed && expected.result.allowed && model.rest_after(word, now_ns) == 0) {
            ++overflowed; // a new key refused: the shard was full of keys not at rest
            continue;
        }
        REQUIRE(d.allowed == expected.result.allowed);
        REQUIRE(d.remaining == expected.result.remaining);
        REQUIRE(d.retry_after == expected.result.retry_after);
        REQUIRE(d.reset == expected.result.reset);
        if (expected.write) {
            words[key] = expected.next;
        }
        REQUIRE(t.size() <= t.max_keys());
        clock.advance(std::chrono::microseconds{static_cast<std::int64_t>(rng() % 200)});
    }
    CHECK(overflowed < 200'000 / 100);
}

TEST_CASE("keyed counts its decisions over all keys, overflow included", "[keyed]") {
    keel::manual_clock clock;
    keel::keyed<keel::basic_fixed_window<keel::manual_clock>, std::uint64_t> table{
        {.limit = 2, .window = 1s}, {.max_keys = 1, .shards = 1}, clock};
    for (int i = 0; i < 3; ++i) {
        (void)table.try_acquire(1); // allowed, allowed, refused
    }
    (void)table.try_acquire(2, 5); // unsatisfiable: inserts nothing
    (void)table.try_acquire(2, 0); // a peek: not counted
    (void)table.try_acquire(2);    // table full, key 1 not at rest: the shared overflow limiter
    keel::decision_counts const c = table.decisions();
    CHECK(c.allowed == 3);
    CHECK(c.refused == 1);
    CHECK(c.unsatisfiable == 1);
    // The overflow limiter counts the decision it made on its own.
    CHECK(table.overflow_limiter().decisions().allowed == 1);
}
