// SPDX-License-Identifier: MIT
#include <keel/core/random.hpp>
#include <keel/limiter/fixed_window.hpp>
#include <keel/limiter/sliding_log.hpp>
#include <keel/testing/manual_clock.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <stdexcept>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using limiter = keel::basic_sliding_log<keel::manual_clock>;

TEST_CASE("sliding_log rejects bad options naming the field", "[sliding_log]") {
    keel::manual_clock clock;
    CHECK_THROWS_WITH(limiter({.limit = -1}, clock),
                      "keel::sliding_log: limit must be in [1, 16777216], got -1");
    CHECK_THROWS_AS(limiter({.limit = 1, .window = 0ns}, clock), std::invalid_argument);
}

TEST_CASE("sliding_log admits limit per sliding window, exactly", "[sliding_log]") {
    keel::manual_clock clock;
    limiter l{{.limit = 3, .window = 1s}, clock};
    CHECK(l.try_acquire().remaining == 2); // t = 0
    clock.advance(300ms);
    CHECK(l.try_acquire().remaining == 1); // t = 0.3
    clock.advance(300ms);
    auto third = l.try_acquire(); // t = 0.6
    CHECK(third.remaining == 0);
    CHECK(third.reset == 400ms); // nothing left: when the t = 0 admission frees a permit
    auto r = l.try_acquire();
    CHECK_FALSE(r.allowed);
    CHECK(r.retry_after == 400ms); // the t = 0 admission leaves at t = 1
    clock.advance(399ms);
    CHECK_FALSE(l.try_acquire().allowed);
    clock.advance(1ms);
    CHECK(l.try_acquire().allowed); // t = 1.0
    auto r2 = l.try_acquire(2);
    CHECK_FALSE(r2.allowed);
    CHECK(r2.retry_after == 600ms); // needs t = 0.3 and 0.6 gone
    CHECK(l.try_acquire(4).unsatisfiable);
    clock.advance(1h);
    CHECK(l.try_acquire(0).remaining == 3);
}

TEST_CASE("sliding_log never admits more than limit around a boundary, unlike fixed_window",
          "[sliding_log]") {
    keel::manual_clock clock;
    limiter log{{.limit = 5, .window = 1s}, clock};
    keel::basic_fixed_window<keel::manual_clock> fixed{{.limit = 5, .window = 1s}, clock};
    clock.advance(999ms);
    int by_log = 0;
    int by_fixed = 0;
    for (int step = 0; step < 2; ++step) {
        for (int i = 0; i < 10; ++i) {
            by_log += log.try_acquire() ? 1 : 0;
            by_fixed += fixed.try_acquire() ? 1 : 0;
        }
        clock.advance(2ms);
    }
    CHECK(by_fixed == 10);
    CHECK(by_log == 5);
}

TEST_CASE("sliding_log holds at most limit in every window on random traffic", "[sliding_log]") {
    keel::manual_clock clock;
    std::int64_t const L = 20;
    std::int64_t const W = 50'000'000;
    limiter l{{.limit = L, .window = std::chrono::nanoseconds{W}}, clock};
    keel::xoshiro256ss rng{5};
    std::deque<std::int64_t> times;
    std::int64_t worst = 0;
    for (int i = 0; i < 50'000; ++i) {
        auto const n = static_cast<std::int64_t>(1 + rng() % 4);
        auto const d = l.try_acquire(n);
        auto const t = clock.now().time_since_epoch().count();
        if (d.allowed) {
            for (std::int64_t k = 0; k < n; ++k) {
                times.push_back(t);
            }
        }
        while (!times.empty() && times.front() <= t - W) {
            times.pop_front();
        }
        worst = std::max<std::int64_t>(worst, static_cast<std::int64_t>(times.size()));
        REQUIRE(d.remaining == L - static_cast<std::int64_t>(times.size()));
        clock.advance(std::chrono::nanoseconds{static_cast<std::int64_t>(rng() % 5'000'000)});
    }
    CHECK(worst == L);
}

TEST_CASE("sliding_log treats a now earlier than its newest admission as that time",
          "[sliding_log]") {
    keel::manual_clock clock;
    limiter l{{.limit = 1, .window = 1s}, clock};
    using tp = keel::manual_clock::time_point;
    CHECK(l.try_acquire(1, tp{5s}).allowed);
    auto r = l.try_acquire(1, tp{4s});
    CHECK_FALSE(r.allowed);
    CHECK(r.retry_after == 1s);
}

TEST_CASE("sliding_log never admits more than limit across threads", "[sliding_log][concurrency]") {
    keel::manual_clock clock;
    limiter l{{.limit = 700, .window = 1s}, clock};
    std::atomic<int> admitted{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&] {
            for (int i = 0; i < 1000; ++i) {
                if (l.try_acquire()) {
                    admitted.fetch_add(1, std::memory_order_relaxed);
                }
            }
        });
    }
    for (auto& t : threads) {
        t.join();
    }
    CHECK(admitted.load() == 700);
}
