// SPDX-License-Identifier: MIT
#include <keel/core/random.hpp>
#include <keel/limiter/sliding_counter.hpp>
#include <keel/testing/manual_clock.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <stdexcept>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using limiter = keel::basic_sliding_counter<keel::manual_clock>;

namespace {

// Records admission times and checks the documented bound at each: the count in
// (t - W, t] is at most L * (1 + f), f the fraction of the aligned window at t.
struct bound_checker {
    std::int64_t limit;
    std::int64_t window;
    std::deque<std::int64_t> times;
    std::int64_t worst = 0; // the largest count seen in any window
    bool within_bound = true;

    void admitted(std::int64_t t, std::int64_t n) {
        for (std::int64_t i = 0; i < n; ++i) {
            times.push_back(t);
        }
        while (!times.empty() && times.front() <= t - window) {
            times.pop_front();
        }
        auto const count = static_cast<std::int64_t>(times.size());
        worst = std::max(worst, count);
        auto const e = t % window;
        if (count * window > limit * window + limit * e) {
            within_bound = false;
        }
    }
};

} // namespace

TEST_CASE("sliding_counter rejects bad options naming the field", "[sliding_counter]") {
    keel::manual_clock clock;
    CHECK_THROWS_WITH(limiter({.limit = 1 << 22}, clock),
                      "keel::sliding_counter: limit must be in [1, 4194303], got 4194304");
    CHECK_THROWS_AS(limiter({.limit = 5, .window = -1ms}, clock), std::invalid_argument);
}

TEST_CASE("sliding_counter weighs the previous window by its remaining overlap",
          "[sliding_counter]") {
    keel::manual_clock clock;
    limiter l{{.limit = 10, .window = 1s}, clock};
    CHECK(l.try_acquire(10).allowed);
    CHECK_FALSE(l.try_acquire().allowed);
    clock.advance(1s + 250ms); // prev = 10 weighs 7.5: room for 2
    auto a = l.try_acquire(2);
    CHECK(a.allowed);
    CHECK(a.remaining == 0);
    auto r = l.try_acquire();
    CHECK_FALSE(r.allowed);
    // 10 * (W - e) + 3 W <= 10 W  <=>  e >= 0.3 W: 50 ms from now.
    CHECK(r.retry_after == 50ms);
    clock.advance(49ms);
    CHECK_FALSE(l.try_acquire().allowed);
    clock.advance(1ms);
    CHECK(l.try_acquire().allowed);
    CHECK(l.try_acquire(11).unsatisfiable);
}

TEST_CASE("sliding_counter retry_after is exact across the window boundary", "[sliding_counter]") {
    keel::manual_clock clock;
    limiter l{{.limit = 4, .window = 1s}, clock};
    clock.advance(900ms);
    CHECK(l.try_acquire(4).allowed);
    // At 0.9 s the wait runs into the next window: prev' = 4, need 4 (W - e) + 3 W <= 4 W,
    // e >= 0.75 W: 0.1 s + 0.75 s.
    auto r = l.try_acquire(3);
    CHECK(r.retry_after == 850ms);
    clock.advance(849ms);
    CHECK_FALSE(l.try_acquire(3).allowed);
    clock.advance(1ms);
    CHECK(l.try_acquire(3).allowed);
}

TEST_CASE("sliding_counter retry_after is never early on random traffic", "[sliding_counter]") {
    keel::manual_clock clock;
    limiter l{{.limit = 7, .window = 100ms}, clock};
    keel::xoshiro256ss rng{3};
    for (int i = 0; i < 5000; ++i) {
        auto const n = static_cast<std::int64_t>(1 + rng() % 3);
        auto d = l.try_acquire(n);
        if (!d.allowed) {
            REQUIRE(d.retry_after > 0ns);
            clock.advance(d.retry_after - 1ns);
            REQUIRE_FALSE(l.try_acquire(n).allowed);
            clock.advance(1ns);
            REQUIRE(l.try_acquire(n).allowed);
        }
        clock.advance(std::chrono::nanoseconds{static_cast<std::int64_t>(rng() % 40'000'000)});
    }
}

TEST_CASE("sliding_counter stays within L (1 + f) on adversarial traffic, and reaches it",
          "[sliding_counter]") {
    keel::manual_clock clock;
    std::int64_t const L = 100;
    std::int64_t const W = 1'000'000'000;
    limiter l{{.limit = L, .window = std::chrono::nanoseconds{W}}, clock};
    bound_checker check{L, W, {}};
    // The previous window's permits packed at its very end, then every ms as many
    // as the estimate allows.
    clock.advance(999ms);
    for (int i = 0; i < 200; ++i) {
        if (l.try_acquire()) {
            check.admitted(clock.now().time_since_epoch().count(), 1);
        }
    }
    for (int ms = 0; ms < 1000; ++ms) {
        clock.advance(1ms);
        while (l.try_acquire()) {
            check.admitted(clock.now().time_since_epoch().count(), 1);
        }
    }
    CHECK(check.within_bound);
    // At 1.999 s the window (0.999, 1.999] holds the 100 old ones plus ~99.9 new.
    CHECK(check.worst >= 195);
    CHECK(check.worst <= 2 * L);
}

TEST_CASE("sliding_counter is within 2 % of the limit on uniform traffic", "[sliding_counter]") {
    keel::manual_clock clock;
    std::int64_t const L = 100;
    std::int64_t const W = 1'000'000'000;
    limiter l{{.limit = L, .window = std::chrono::nanoseconds{W}}, clock};
    bound_checker check{L, W, {}};
    // Offered load 3 x the limit, evenly spaced, for 20 windows.
    for (int i = 0; i < 20 * 300; ++i) {
        if (l.try_acquire()) {
            check.admitted(clock.now().time_since_epoch().count(), 1);
        }
        clock.advance(std::chrono::nanoseconds{W / 300});
    }
    CHECK(check.within_bound);
    CHECK(check.worst <= L + L / 50);
    CHECK(check.worst >= L);
}

TEST_CASE("sliding_counter stays within its bound on random bursts", "[sliding_counter]") {
    keel::manual_clock clock;
    std::int64_t const L = 50;
    std::int64_t const W = 10'000'000;
    limiter l{{.limit = L, .window = std::chrono::nanoseconds{W}}, clock};
    bound_checker check{L, W, {}};
    keel::xoshiro256ss rng{11};
    for (int i = 0; i < 100'000; ++i) {
        auto const n = static_cast<std::int64_t>(1 + rng() % 5);
        if (l.try_acquire(n)) {
            check.admitted(clock.now().time_since_epoch().count(), n);
        }
        if (rng() % 4 == 0) {
            clock.advance(std::chrono::nanoseconds{static_cast<std::int64_t>(rng() % 3'000'000)});
        }
    }
    CHECK(check.within_bound);
}

TEST_CASE("sliding_counter rest_after covers both windows", "[sliding_counter]") {
    keel::manual_clock clock;
    limiter l{{.limit = 3, .window = 1s}, clock};
    CHECK(l.rest_after(limiter::fresh_state, 123) == 0);
    auto const s = l.step(limiter::fresh_state, 1, 1'400'000'000);
    REQUIRE(s.write);
    CHECK(l.rest_after(s.next, 1'400'000'000) == 1'600'000'000);
    CHECK(l.rest_after(s.next, 2'500'000'000) == 500'000'000);
    CHECK(l.rest_after(s.next, 3'000'000'000) == 0);
}

TEST_CASE("sliding_counter never exceeds the limit in one window across threads",
          "[sliding_counter][concurrency]") {
    keel::manual_clock clock;
    limiter l{{.limit = 3000, .window = 1s}, clock};
    std::atomic<int> admitted{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&] {
            for (int i = 0; i < 2000; ++i) {
                if (l.try_acquire(2)) {
                    admitted.fetch_add(2, std::memory_order_relaxed);
                }
            }
        });
    }
    for (auto& t : threads) {
        t.join();
    }
    CHECK(admitted.load() == 3000);
}

TEST_CASE("sliding_counter decides and counts as the formula says, for short and long windows",
          "[sliding_counter]") {
    // A reference written from the definition with 128-bit integers: the aligned
    // windows' counts, then prev * (W - e) / W + curr + n <= L, and remaining =
    // floor((L W - prev (W - e) - curr W) / W) (less n when admitted). The largest
    // limit with windows over about 36 min takes the limiter's 128-bit path; the other
    // configurations its 64-bit path. 4000 steps of at most 3 windows stay far inside
    // the clock's range for every window here (a day: 10^18 ns at most).
    __extension__ typedef __int128 i128;
    struct config {
        std::int64_t limit;
        std::chrono::nanoseconds window;
    };
    for (config const c : {config{7, 100ms}, config{1000, 1s}, config{4'194'303, 1h},
                           config{3, std::chrono::hours{24}}, config{4'194'303, 35min}}) {
        CAPTURE(c.limit, c.window.count());
        keel::manual_clock clock;
        limiter l{{.limit = c.limit, .window = c.window}, clock};
        std::int64_t const w = c.window.count();
        std::int64_t index = 0;
        std::int64_t prev = 0;
        std::int64_t curr = 0;
        keel::xoshiro256ss rng{static_cast<std::uint64_t>(c.limit)};
        for (int i = 0; i < 4000; ++i) {
            // Steps of up to 40 % of a window, and now and then a jump of several.
            auto const step =
                rng() % 16 == 0
                    ? static_cast<std::int64_t>(rng() % 4) * w
                    : static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(w / 100 * 40));
            clock.advance(std::chrono::nanoseconds{step});
            std::int64_t const now = clock.now().time_since_epoch().count();
            std::int64_t const i_now = now / w;
            if (i_now != index) {
                prev = i_now == index + 1 ? curr : 0;
                curr = 0;
                index = i_now;
            }
            std::int64_t const e = now - i_now * w;
            // Permits up to a third of the limit, so both outcomes occur often.
            auto const n =
                static_cast<std::int64_t>(
                    rng() % static_cast<std::uint64_t>(std::max<std::int64_t>(1, c.limit / 3))) +
                1;
            i128 const used = static_cast<i128>(prev) * (w - e) + static_cast<i128>(curr) * w;
            i128 const budget = static_cast<i128>(c.limit) * w;
            bool const admit = used + static_cast<i128>(n) * w <= budget;
            auto const left = static_cast<std::int64_t>(
                budget > used ? (budget - used) / w : 0); // floor: both are non-negative
            auto const d = l.try_acquire(n);
            REQUIRE(d.allowed == admit);
            REQUIRE(d.remaining == (admit ? left - n : left));
            if (admit) {
                curr += n;
            }
        }
    }
}

TEST_CASE("sliding_counter admits at exact equality on both arithmetic paths",
          "[sliding_counter]") {
    // A full previous window weighs exactly L / 2 halfway through the next one, so
    // L / 2 more fit exactly and one more does not; 2 h with a large limit needs
    // 128-bit products, 1 s does not.
    for (auto const& [limit, window] :
         {std::pair{std::int64_t{1000}, std::chrono::nanoseconds{1s}},
          std::pair{std::int64_t{4'194'302}, std::chrono::nanoseconds{2h}}}) {
        CAPTURE(limit);
        keel::manual_clock clock;
        limiter l{{.limit = limit, .window = window}, clock};
        REQUIRE(l.try_acquire(limit).allowed);
        clock.advance(window + window / 2);
        auto const half = l.try_acquire(limit / 2);
        CHECK(half.allowed);
        CHECK(half.remaining == 0);
        auto const more = l.try_acquire(1);
        CHECK_FALSE(more.allowed);
        CHECK(more.remaining == 0);
    }
}
