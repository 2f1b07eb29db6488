// SPDX-License-Identifier: MIT
#include <keel/limiter/fixed_window.hpp>
#include <keel/testing/manual_clock.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using limiter = keel::basic_fixed_window<keel::manual_clock>;

TEST_CASE("fixed_window rejects bad options naming the field", "[fixed_window]") {
    keel::manual_clock clock;
    CHECK_THROWS_WITH(limiter({.limit = 0}, clock),
                      "keel::fixed_window: limit must be in [1, 2^32 - 1], got 0");
    CHECK_THROWS_AS(limiter({.limit = 1, .window = 0s}, clock), std::invalid_argument);
    CHECK_THROWS_AS(limiter({.limit = std::int64_t{1} << 32}, clock), std::invalid_argument);
}

TEST_CASE("fixed_window admits limit per aligned window, then resets at the boundary",
          "[fixed_window]") {
    keel::manual_clock clock;
    limiter l{{.limit = 3, .window = 1s}, clock};
    clock.advance(200ms);
    auto a = l.try_acquire();
    CHECK(a.allowed);
    CHECK(a.limit == 3);
    CHECK(a.remaining == 2);
    CHECK(a.reset == 800ms);
    CHECK(l.try_acquire().remaining == 1);
    CHECK(l.try_acquire().remaining == 0);
    auto r = l.try_acquire();
    CHECK_FALSE(r.allowed);
    CHECK_FALSE(r.unsatisfiable);
    CHECK(r.retry_after == 800ms);
    CHECK(r.remaining == 0);
    clock.advance(799ms);
    CHECK_FALSE(l.try_acquire());
    clock.advance(1ms);
    auto n = l.try_acquire();
    CHECK(n.allowed);
    CHECK(n.remaining == 2);
    CHECK(n.reset == 1s);
}

TEST_CASE("fixed_window weighs permits and reports unsatisfiable requests", "[fixed_window]") {
    keel::manual_clock clock;
    limiter l{{.limit = 10, .window = 1s}, clock};
    CHECK(l.try_acquire(7).remaining == 3);
    auto r = l.try_acquire(4);
    CHECK_FALSE(r.allowed);
    CHECK(r.retry_after == 1s);
    CHECK(l.try_acquire(3).allowed);
    auto u = l.try_acquire(11);
    CHECK_FALSE(u.allowed);
    CHECK(u.unsatisfiable);
    CHECK(u.retry_after == 0ns);
    CHECK(l.try_acquire(-1).unsatisfiable);
    auto peek = l.try_acquire(0);
    CHECK(peek.allowed);
    CHECK(peek.remaining == 0);
}

TEST_CASE("fixed_window lets 2 x limit through within a span straddling a boundary",
          "[fixed_window]") {
    keel::manual_clock clock;
    limiter l{{.limit = 5, .window = 1s}, clock};
    clock.advance(999ms);
    int admitted = 0;
    for (int i = 0; i < 10; ++i) {
        admitted += l.try_acquire() ? 1 : 0;
    }
    clock.advance(2ms); // 1.001 s: the next window
    for (int i = 0; i < 10; ++i) {
        admitted += l.try_acquire() ? 1 : 0;
    }
    CHECK(admitted == 10); // 2 x limit within 2 ms
}

TEST_CASE("fixed_window counts a request from the previous window against the current one",
          "[fixed_window]") {
    keel::manual_clock clock;
    limiter l{{.limit = 2, .window = 1s}, clock};
    using tp = keel::manual_clock::time_point;
    CHECK(l.try_acquire(2, tp{1500ms}).allowed);
    // A racing reader whose now is still in the window before: no reset.
    auto late = l.try_acquire(1, tp{900ms});
    CHECK_FALSE(late.allowed);
    CHECK(late.retry_after == 1s);
    CHECK(l.try_acquire(1, tp{2s}).allowed);
}

TEST_CASE("fixed_window rest_after says when the state equals a fresh one", "[fixed_window]") {
    keel::manual_clock clock;
    limiter l{{.limit = 2, .window = 1s}, clock};
    CHECK(l.rest_after(limiter::fresh_state, 5'000'000'000) == 0);
    auto const s = l.step(limiter::fresh_state, 1, 1'200'000'000);
    REQUIRE(s.write);
    CHECK(l.rest_after(s.next, 1'200'000'000) == 800'000'000);
    CHECK(l.rest_after(s.next, 2'000'000'000) == 0);
}

TEST_CASE("fixed_window never admits more than limit per window across threads",
          "[fixed_window][concurrency]") {
    keel::manual_clock clock;
    limiter l{{.limit = 1000, .window = 1s}, clock};
    std::atomic<int> admitted{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&] {
            for (int i = 0; i < 2000; ++i) {
                if (l.try_acquire()) {
                    admitted.fetch_add(1, std::memory_order_relaxed);
                }
            }
        });
    }
    for (auto& t : threads) {
        t.join();
    }
    CHECK(admitted.load() == 1000);
}
