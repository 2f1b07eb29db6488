// SPDX-License-Identifier: MIT
#include <keel/limiter/limiter.hpp>

#include <keel/core/random.hpp>
#include <keel/limiter/fixed_window.hpp>
#include <keel/limiter/gcra.hpp>
#include <keel/limiter/headers.hpp>
#include <keel/limiter/keyed.hpp>
#include <keel/limiter/sliding_counter.hpp>
#include <keel/limiter/sliding_log.hpp>
#include <keel/limiter/token_bucket.hpp>
#include <keel/testing/manual_clock.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <limits>
#include <map>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using keel::manual_clock;

namespace {

using tp = manual_clock::time_point;

// Options for `limit` permits per `window`: a window limiter's limit, or a bucket
// of `limit` refilled at limit per window.
template <class L>
typename L::options quota(std::int64_t limit, std::chrono::nanoseconds window) {
    typename L::options o{};
    if constexpr (requires { o.limit; }) {
        o.limit = limit;
        o.window = window;
    } else {
        o.rate = limit;
        o.period = window;
        o.burst = limit;
    }
    return o;
}

template <class L>
std::int64_t quota_of(L const& l) {
    if constexpr (requires { l.limit(); }) {
        return l.limit();
    } else {
        return l.burst();
    }
}

// A user's own one-word limiter: at most `total` permits, ever. It meets
// keel::word_limiter, so keel::keyed can hold one per key.
class lifetime_quota {
public:
    using clock_type = manual_clock;
    using time_point = manual_clock::time_point;
    struct options {
        std::int64_t total = 0;
    };
    static constexpr std::uint64_t fresh_state = 0;

    explicit lifetime_quota(options const& o, manual_clock clock = manual_clock{})
        : m_total(o.total), m_clock(clock) {}

    keel::decision try_acquire(std::int64_t permits = 1) {
        return try_acquire(permits, m_clock.now());
    }
    keel::decision try_acquire(std::int64_t permits, time_point now) {
        return keel::detail::acquire_word(*this, m_state, permits, keel::detail::to_ns(now));
    }
    keel::limiter_step step(std::uint64_t word, std::int64_t permits, std::int64_t) const noexcept {
        if (permits > m_total) {
            return {keel::detail::unsatisfiable(step(word, 0, 0).result)};
        }
        auto const used = static_cast<std::int64_t>(word);
        keel::decision d;
        d.limit = m_total;
        if (used + permits > m_total) {
            d.remaining = m_total - used;
            return {d};
        }
        d.allowed = true;
        d.remaining = m_total - used - permits;
        if (permits == 0) {
            return {d};
        }
        return {d, static_cast<std::uint64_t>(used + permits), true};
    }
    manual_clock const& clock() const noexcept { return m_clock; }
    std::int64_t rest_after(std::uint64_t word, std::int64_t) const noexcept {
        return word == fresh_state ? 0 : std::numeric_limits<std::int64_t>::max();
    }

private:
    std::atomic<std::uint64_t> m_state{fresh_state};
    std::int64_t m_total;
    manual_clock m_clock;
};

// Decides from one word but has no clock() to read the time from: not a word_limiter.
class no_clock : public lifetime_quota {
public:
    using lifetime_quota::lifetime_quota;
    void clock() const = delete;
};

struct not_a_limiter { // no try_acquire(permits, now)
    using clock_type = manual_clock;
    using time_point = manual_clock::time_point;
    keel::decision try_acquire(std::int64_t = 1);
};

} // namespace

static_assert(keel::rate_limiter<keel::fixed_window>);
static_assert(keel::rate_limiter<keel::sliding_log>);
static_assert(keel::rate_limiter<keel::basic_sliding_counter<keel::coarse_clock>>);
static_assert(keel::rate_limiter<keel::basic_token_bucket<manual_clock>>);
static_assert(keel::rate_limiter<keel::gcra>);
static_assert(keel::word_limiter<keel::fixed_window>);
static_assert(keel::word_limiter<keel::sliding_counter>);
static_assert(keel::word_limiter<keel::token_bucket>);
static_assert(keel::word_limiter<keel::gcra>);
static_assert(!keel::word_limiter<keel::sliding_log>); // a ring, not one word
static_assert(keel::word_limiter<lifetime_quota>);
static_assert(!keel::rate_limiter<not_a_limiter>);
static_assert(keel::rate_limiter<no_clock> && !keel::word_limiter<no_clock>);

TEST_CASE("a user's word_limiter decides through acquire_word and works in keel::keyed",
          "[limiter]") {
    manual_clock clock;
    lifetime_quota q{{.total = 3}, clock};
    CHECK(q.try_acquire(2).remaining == 1);
    CHECK(q.try_acquire(0).allowed); // a peek
    CHECK_FALSE(q.try_acquire(2).allowed);
    CHECK(q.try_acquire().allowed);
    CHECK(q.try_acquire(4).unsatisfiable);

    keel::keyed<lifetime_quota, int> per_user{{.total = 2}, {}, clock};
    CHECK(per_user.try_acquire(1).allowed);
    CHECK(per_user.try_acquire(1).allowed);
    CHECK_FALSE(per_user.try_acquire(1).allowed);
    CHECK(per_user.try_acquire(2, 2).allowed); // another key, its own quota
    CHECK(per_user.size() == 2);
}

TEST_CASE("acquire_word never grants more than the word allows across threads",
          "[limiter][concurrency]") {
    lifetime_quota q{{.total = 10'000}, manual_clock{}};
    std::atomic<std::int64_t> granted{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&] {
            for (int i = 0; i < 5'000; ++i) {
                if (q.try_acquire().allowed) {
                    granted.fetch_add(1, std::memory_order_relaxed);
                }
            }
        });
    }
    for (auto& t : threads) {
        t.join();
    }
    CHECK(granted.load() == 10'000);
}

#define KEEL_ALL_LIMITERS                                                                          \
    keel::basic_fixed_window<manual_clock>, keel::basic_sliding_counter<manual_clock>,             \
        keel::basic_sliding_log<manual_clock>, keel::basic_token_bucket<manual_clock>,             \
        keel::basic_gcra<manual_clock>
#define KEEL_WORD_LIMITERS                                                                         \
    keel::basic_fixed_window<manual_clock>, keel::basic_sliding_counter<manual_clock>,             \
        keel::basic_token_bucket<manual_clock>, keel::basic_gcra<manual_clock>

TEMPLATE_TEST_CASE("every limiter decides a stale now against its state, never a second quota",
                   "[limiter]", KEEL_ALL_LIMITERS) {
    manual_clock clock;
    TestType l{quota<TestType>(10, 1s), clock};
    int admitted = 0;
    for (int i = 0; i < 10; ++i) {
        admitted += l.try_acquire(1, tp{5s}).allowed ? 1 : 0;
    }
    // Two windows behind the state: a thread that read the clock long before its CAS.
    auto const stale = l.try_acquire(1, tp{3s});
    CHECK_FALSE(stale.allowed);
    CHECK(stale.retry_after > 0ns);
    for (int i = 0; i < 10; ++i) {
        admitted += l.try_acquire(1, tp{5s}).allowed ? 1 : 0;
    }
    CHECK(admitted == 10);
    CHECK(l.try_acquire(0, tp{5s}).remaining == 0);
}

TEMPLATE_TEST_CASE("rest_after at a stale now counts from the state's time, so a sweep keeps "
                   "the key",
                   "[limiter]", KEEL_WORD_LIMITERS) {
    manual_clock clock;
    TestType l{quota<TestType>(10, 1s), clock};
    auto const s = l.step(TestType::fresh_state, 10, 5'000'000'000);
    REQUIRE(s.write);
    CHECK(l.rest_after(s.next, 3'000'000'000) >= l.rest_after(s.next, 5'000'000'000));
    CHECK(l.rest_after(s.next, 5'000'000'000) > 0);

    keel::keyed<TestType, int> per_key{
        quota<TestType>(10, 1s), {.max_keys = 8, .shards = 1}, clock};
    CHECK(per_key.try_acquire(1, 10, tp{5s}).allowed);
    CHECK(per_key.sweep(tp{3s}) == 0); // a sweep at a stale time
    CHECK_FALSE(per_key.try_acquire(1, 1, tp{5s}).allowed);
    // A request for another key at a stale time must not sweep key 1 out either.
    for (int k = 2; k < 12; ++k) {
        (void)per_key.try_acquire(k, 1, tp{3s});
    }
    CHECK_FALSE(per_key.try_acquire(1, 1, tp{5s}).allowed);
}

TEMPLATE_TEST_CASE("an unsatisfiable request reports the state as a peek does", "[limiter]",
                   KEEL_ALL_LIMITERS) {
    manual_clock clock;
    TestType l{quota<TestType>(5, 5s), clock};
    clock.advance(1h + 300ms);
    REQUIRE(l.try_acquire(2).allowed);
    auto const peek = l.try_acquire(0);
    for (std::int64_t const permits : {std::int64_t{6}, std::int64_t{-1}}) {
        auto const u = l.try_acquire(permits);
        CHECK(u.unsatisfiable);
        CHECK_FALSE(u.allowed);
        CHECK(u.retry_after == 0ns);
        CHECK(u.limit == 5);
        CHECK(u.remaining == peek.remaining);
        CHECK(u.reset == peek.reset);
    }
    CHECK(peek.remaining == 3);
    CHECK(peek.reset > 0ns);
}

TEST_CASE("gcra: an unsatisfiable request's RateLimit value is the state's", "[limiter]") {
    manual_clock clock;
    keel::basic_gcra<manual_clock> l{{.rate = 1, .period = 1s, .burst = 5}, clock};
    REQUIRE(l.try_acquire(2).allowed);
    auto const u = l.try_acquire(6);
    CHECK(u.unsatisfiable);
    CHECK(u.remaining == 3);
    CHECK(u.reset == 2s);
    CHECK(keel::ratelimit_value("default", u) == "\"default\";r=3;t=2");
}

TEMPLATE_TEST_CASE("reset is exact: the quota is whole then, or with nothing left a permit frees, "
                   "a refusal's reset is its retry_after",
                   "[limiter]", KEEL_ALL_LIMITERS) {
    manual_clock clock;
    TestType l{quota<TestType>(7, 100ms), clock};
    keel::xoshiro256ss rng{17};
    for (int i = 0; i < 3000; ++i) {
        auto const n = static_cast<std::int64_t>(rng() % 4); // 0 peeks
        auto const d = l.try_acquire(n);
        auto const now = clock.now();
        REQUIRE(d.reset >= 0ns);
        if (!d.allowed && d.remaining == 0) {
            REQUIRE(d.reset == d.retry_after);
        }
        if (!d.allowed) {
            REQUIRE(d.reset >= d.retry_after);
        }
        // Peeks at later times: nothing changes in between.
        if (d.remaining == 0 && d.allowed) {
            REQUIRE(d.reset > 0ns);
            REQUIRE(l.try_acquire(0, now + d.reset - 1ns).remaining == 0);
            REQUIRE(l.try_acquire(0, now + d.reset).remaining >= 1);
        } else if (d.remaining > 0 && d.reset > 0ns) {
            REQUIRE(l.try_acquire(0, now + d.reset - 1ns).remaining < quota_of(l));
            REQUIRE(l.try_acquire(0, now + d.reset).remaining == quota_of(l));
        } else if (d.remaining > 0) {
            REQUIRE(d.remaining == quota_of(l) - (d.allowed ? n : 0));
        }
        clock.advance(std::chrono::nanoseconds{static_cast<std::int64_t>(rng() % 30'000'000)});
    }
}

TEST_CASE("RateLimit t agrees with Retry-After on a refusal", "[limiter]") {
    manual_clock clock;
    SECTION("token bucket 1/s, burst 20") {
        keel::basic_token_bucket<manual_clock> l{{.rate = 1, .period = 1s, .burst = 20}, clock};
        REQUIRE(l.try_acquire(20).allowed);
        auto const d = l.try_acquire();
        REQUIRE_FALSE(d.allowed);
        CHECK(keel::retry_after_value(d) == "1");
        CHECK(keel::ratelimit_value("default", d) == "\"default\";r=0;t=1");
    }
    SECTION("sliding counter 10 per 60 s") {
        keel::basic_sliding_counter<manual_clock> l{{.limit = 10, .window = 60s}, clock};
        clock.advance(57s);
        REQUIRE(l.try_acquire(10).allowed);
        auto const d = l.try_acquire();
        REQUIRE_FALSE(d.allowed);
        CHECK(keel::retry_after_value(d) == "9");
        CHECK(keel::ratelimit_value("default", d) == "\"default\";r=0;t=9"); // was t=63
    }
}

TEMPLATE_TEST_CASE("token_bucket and gcra at the clock's end admit the burst, not every request",
                   "[limiter]", keel::basic_token_bucket<manual_clock>,
                   keel::basic_gcra<manual_clock>) {
    manual_clock clock;
    TestType l{{.rate = 1, .period = 1s, .burst = 1}, clock};
    auto const max = std::numeric_limits<std::int64_t>::max();
    for (std::chrono::nanoseconds const before_end : {500ms, 1ms, 0ms}) {
        CAPTURE(before_end.count());
        auto const now = tp{std::chrono::nanoseconds{max} - before_end};
        int admitted = 0;
        for (int i = 0; i < 100; ++i) {
            admitted += l.try_acquire(1, now).allowed ? 1 : 0;
        }
        CHECK(admitted <= 1);
        auto const r = l.try_acquire(1, now);
        CHECK(r.retry_after >= 0ns);
        CHECK(r.reset >= 0ns);
    }
}

TEST_CASE("windows and periods beyond 2^61 ns are rejected naming the field", "[limiter]") {
    manual_clock clock;
    auto const too_long = std::chrono::nanoseconds{(std::int64_t{1} << 61) + 1};
    auto const forever = std::chrono::nanoseconds::max();
    for (auto const w : {too_long, forever}) {
        CHECK_THROWS_WITH(
            (keel::basic_fixed_window<manual_clock>{{.limit = 1, .window = w}, clock}),
            Catch::Contains("fixed_window: window must be in [1, 2^61] ns"));
        CHECK_THROWS_WITH(
            (keel::basic_sliding_counter<manual_clock>{{.limit = 1, .window = w}, clock}),
            Catch::Contains("sliding_counter: window must be in [1, 2^61] ns"));
        CHECK_THROWS_WITH((keel::basic_sliding_log<manual_clock>{{.limit = 1, .window = w}, clock}),
                          Catch::Contains("sliding_log: window must be in [1, 2^61] ns"));
        CHECK_THROWS_WITH((keel::basic_gcra<manual_clock>{{.rate = 1, .period = w}, clock}),
                          Catch::Contains("gcra: period must be in [1, 2^61] ns"));
    }
    // Period max at rate 2 once overflowed while rounding and blamed the burst.
    CHECK_THROWS_WITH(
        (keel::basic_token_bucket<manual_clock>{{.rate = 2, .period = forever}, clock}),
        "keel::token_bucket: period must be in [1, 2^61] ns (about 73 years), got forever");
    // The longest period with the default burst is accepted.
    auto const longest = std::chrono::nanoseconds{std::int64_t{1} << 61};
    CHECK_NOTHROW(keel::basic_token_bucket<manual_clock>{{.rate = 3, .period = longest}, clock});
}

TEMPLATE_TEST_CASE("at the longest window rest_after stays positive and exact, even at the "
                   "clock's end",
                   "[limiter]", keel::basic_fixed_window<manual_clock>,
                   keel::basic_sliding_counter<manual_clock>) {
    manual_clock clock;
    auto const w = std::int64_t{1} << 61;
    TestType l{{.limit = 3, .window = std::chrono::nanoseconds{w}}, clock};
    auto const max = std::numeric_limits<std::int64_t>::max();
    for (auto const now : {std::int64_t{5}, max - 1, max}) {
        CAPTURE(now);
        auto const s = l.step(TestType::fresh_state, 1, now);
        REQUIRE(s.write);
        auto const e = now % w;
        auto const expected =
            std::is_same_v<TestType, keel::basic_fixed_window<manual_clock>> ? w - e : 2 * w - e;
        CHECK(l.rest_after(s.next, now) == expected);
        CHECK(s.result.reset.count() == expected);
        CHECK(l.rest_after(s.next, now - w) > expected); // a stale now: further from rest
    }
    // keel::keyed sweeps and grows through rest_after: with the longest window it finishes.
    keel::keyed<TestType, int> per_key{
        {.limit = 3, .window = std::chrono::nanoseconds{w}}, {.max_keys = 64, .shards = 1}, clock};
    for (int k = 0; k < 200; ++k) {
        (void)per_key.try_acquire(k, 1, tp{std::chrono::nanoseconds{max - 1}});
    }
    CHECK(per_key.size() == 64);
}

namespace {

// Runs 8 threads on one limiter with a 1 ms window on steady_clock and counts,
// per aligned window, the admissions that certainly counted against it: those
// whose clock reads before and after the call fall in one window (the state can
// hold no later window then). No window may hold more than the limit.
template <class L>
std::int64_t worst_window(std::int64_t limit) {
    L l{{.limit = limit, .window = 1ms}};
    auto const deadline = keel::steady_clock::now() + 200ms;
    std::vector<std::map<std::int64_t, std::int64_t>> per_thread(8);
    std::vector<std::thread> threads;
    for (auto& counts : per_thread) {
        threads.emplace_back([&l, &counts, deadline] {
            for (std::uint64_t i = 0;; ++i) {
                auto const now = keel::steady_clock::now();
                if (now > deadline) {
                    return;
                }
                if (i % 4 == 0) {
                    std::this_thread::yield(); // widen the gap between clock read and CAS
                }
                auto const d = l.try_acquire(1, now);
                auto const after = keel::steady_clock::now();
                auto const window = keel::detail::to_ns(now) / 1'000'000;
                if (d.allowed && keel::detail::to_ns(after) / 1'000'000 == window) {
                    ++counts[window];
                }
            }
        });
    }
    for (auto& t : threads) {
        t.join();
    }
    std::map<std::int64_t, std::int64_t> total;
    for (auto const& counts : per_thread) {
        for (auto const& [window, n] : counts) {
            total[window] += n;
        }
    }
    std::int64_t worst = 0;
    for (auto const& [window, n] : total) {
        worst = n > worst ? n : worst;
    }
    return worst;
}

} // namespace

TEMPLATE_TEST_CASE("no 1 ms window admits more than the limit with 8 threads on steady_clock",
                   "[limiter][concurrency]", keel::fixed_window, keel::sliding_counter,
                   keel::sliding_log) {
    auto const worst = worst_window<TestType>(4);
    CHECK(worst <= 4);
    CHECK(worst >= 1);
}

TEMPLATE_TEST_CASE("next_word writes exactly what step writes, stale nows included", "[limiter]",
                   KEEL_WORD_LIMITERS) {
    manual_clock clock;
    TestType l{quota<TestType>(9, 50ms), clock};
    keel::xoshiro256ss rng{23};
    auto word = TestType::fresh_state;
    std::int64_t now = 1'000'000'000;
    for (int i = 0; i < 20'000; ++i) {
        // Mostly forward, now and then a stale time up to three windows back.
        auto const t = rng() % 8 == 0 ? now - static_cast<std::int64_t>(rng() % 150'000'000)
                                      : (now += static_cast<std::int64_t>(rng() % 10'000'000));
        auto const permits = static_cast<std::int64_t>(rng() % 12) - 1; // -1 .. 10
        auto const s = l.step(word, permits, t);
        REQUIRE(l.next_word(word, permits, t) == (s.write ? s.next : TestType::fresh_state));
        if (s.write) {
            REQUIRE(s.next != TestType::fresh_state);
            word = s.next;
        }
    }
}

TEMPLATE_TEST_CASE("every limiter counts its decisions: allowed, refused and unsatisfiable, "
                   "peeks not",
                   "[limiter]", KEEL_ALL_LIMITERS) {
    manual_clock clock;
    TestType l{quota<TestType>(3, 1s), clock};
    if constexpr (requires { l.count_decisions(); }) {
        // A lock-free limiter counts only once asked to: before, nothing.
        (void)l.try_acquire(1, tp{0s});
        CHECK(l.decisions().allowed == 0);
        l.count_decisions();
    }
    // Ten windows later: a fresh quota of 3.
    for (int i = 0; i < 5; ++i) {
        (void)l.try_acquire(1, tp{10s});
    }
    (void)l.try_acquire(4, tp{10s});  // more than the limit: unsatisfiable
    (void)l.try_acquire(-1, tp{10s}); // negative: unsatisfiable
    (void)l.try_acquire(0, tp{10s});  // a peek: not counted
    (void)l.try_acquire();            // the clock's own now (0 s) is stale: refused
    keel::decision_counts const c = l.decisions();
    CHECK(c.allowed == 3);
    CHECK(c.refused == 3);
    CHECK(c.unsatisfiable == 2);
}

TEMPLATE_TEST_CASE("every limiter's decision counts lose nothing across threads",
                   "[limiter][concurrency]", KEEL_ALL_LIMITERS) {
    manual_clock clock;
    TestType l{quota<TestType>(1000, 1s), clock};
    if constexpr (requires { l.count_decisions(); }) {
        l.count_decisions();
    }
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&] {
            for (int i = 0; i < 500; ++i) {
                (void)l.try_acquire(1, tp{1s});
            }
        });
    }
    for (auto& t : threads) {
        t.join();
    }
    keel::decision_counts const c = l.decisions();
    CHECK(c.allowed == 1000);
    CHECK(c.refused == 1000);
    CHECK(c.unsatisfiable == 0);
}
