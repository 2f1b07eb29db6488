// SPDX-License-Identifier: MIT
#include <keel/limiter/token_bucket.hpp>
#include <keel/testing/manual_clock.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using limiter = keel::basic_token_bucket<keel::manual_clock>;

TEST_CASE("token_bucket rejects bad options naming the field", "[token_bucket]") {
    keel::manual_clock clock;
    CHECK_THROWS_WITH(
        limiter({.rate = 5, .period = 0s}, clock),
        "keel::token_bucket: period must be in [1, 2^61] ns (about 73 years), got 0s");
    CHECK_THROWS_AS(limiter({.rate = 1'000'000'001, .period = 1s}, clock), std::invalid_argument);
    CHECK_THROWS_AS(limiter({.rate = 1, .period = 1s, .burst = std::int64_t{1} << 40}, clock),
                    std::invalid_argument);
}

TEST_CASE("token_bucket starts full, bursts, then refills at the rate", "[token_bucket]") {
    keel::manual_clock clock;
    limiter l{{.rate = 4, .period = 1s, .burst = 8}, clock}; // 250 ms per token
    for (int i = 7; i >= 0; --i) {
        auto d = l.try_acquire();
        REQUIRE(d.allowed);
        CHECK(d.remaining == i);
    }
    auto r = l.try_acquire();
    CHECK_FALSE(r.allowed);
    CHECK(r.retry_after == 250ms);
    CHECK(r.reset == 250ms); // no token left: the next one's time, as Retry-After says
    clock.advance(600ms);    // 2.4 tokens
    CHECK(l.try_acquire(2).allowed);
    auto r3 = l.try_acquire(1);
    CHECK_FALSE(r3.allowed);
    CHECK(r3.retry_after == 150ms);
    clock.advance(1h); // refills to burst, never beyond
    CHECK(l.try_acquire(0).remaining == 8);
    CHECK(l.try_acquire(8).allowed);
    CHECK_FALSE(l.try_acquire(1).allowed);
    CHECK(l.try_acquire(9).unsatisfiable);
}

TEST_CASE("token_bucket defaults burst to rate", "[token_bucket]") {
    keel::manual_clock clock;
    limiter l{{.rate = 3}, clock};
    CHECK(l.burst() == 3);
    CHECK(l.interval() == 333'333'334ns); // rounded up: never faster than configured
    CHECK(l.try_acquire(3).allowed);
    CHECK_FALSE(l.try_acquire().allowed);
}

TEST_CASE("token_bucket admits at most burst + rate x t in any span", "[token_bucket]") {
    keel::manual_clock clock;
    limiter l{{.rate = 10, .period = 1s, .burst = 5}, clock};
    int admitted = 0;
    for (int i = 0; i < 10'000; ++i) { // 10 s, a try every ms
        admitted += l.try_acquire() ? 1 : 0;
        clock.advance(1ms);
    }
    CHECK(admitted == 5 + 100 - 1); // the last refill lands exactly at 10 s
}

TEST_CASE("token_bucket rest_after is the time to a full bucket", "[token_bucket]") {
    keel::manual_clock clock;
    limiter l{{.rate = 1, .period = 1s, .burst = 2}, clock};
    CHECK(l.rest_after(limiter::fresh_state, 0) == 0);
    auto const s = l.step(limiter::fresh_state, 2, 10'000'000'000);
    REQUIRE(s.write);
    CHECK(l.rest_after(s.next, 10'000'000'000) == 2'000'000'000);
    CHECK(l.rest_after(s.next, 12'000'000'000) == 0);
}

TEST_CASE("token_bucket never admits more than burst without refill across threads",
          "[token_bucket][concurrency]") {
    keel::manual_clock clock;
    limiter l{{.rate = 1, .period = 1h, .burst = 500}, clock};
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
    CHECK(admitted.load() == 500);
}
