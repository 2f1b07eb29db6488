// SPDX-License-Identifier: MIT
// Cases named after a GradientControllerTest port Envoy's
// test/extensions/filters/http/adaptive_concurrency/controller/gradient_controller_test.cc with
// its configurations and expectations. Envoy samples a latency without the clock moving
// (recordLatencySample(now - latency)); here a call holds its permit while the manual clock
// advances by the latency, and "advance 101ms, run the dispatcher" becomes advancing the rest
// of the 101 ms and poll(), since keel evaluates the controller lazily instead of on timers.
#include <keel/policy/adaptive/gradient_controller.hpp>

#include <keel/policy/adaptive_limit.hpp>
#include <keel/testing/manual_clock.hpp>
#include <keel/testing/virtual_sleeper.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <vector>

using namespace std::chrono_literals;

namespace {
using limit_type =
    keel::basic_adaptive_limit<keel::manual_clock, keel::virtual_sleeper, keel::xoshiro256ss>;

struct fixture {
    keel::manual_clock clock;
    limit_type limit;

    explicit fixture(keel::gradient_controller_options o)
        : limit{{.algorithm = o}, clock, keel::virtual_sleeper{clock}, keel::xoshiro256ss{7}} {}

    // tryForward + sampleLatency: one call of `latency`, alone in flight.
    void sample(std::chrono::nanoseconds latency) {
        auto p = limit.try_acquire();
        REQUIRE(p);
        clock.advance(latency);
        p.success();
    }
    // advancePastMinRTTStage: request_count + 1 calls.
    void past_min_rtt(int request_count, std::chrono::nanoseconds latency = 5ms) {
        for (int i = 0; i <= request_count; ++i) {
            sample(latency);
        }
    }
    // Five calls of `latency`, then the rest of 101 ms and a poll: one recalculation.
    void recalc(std::chrono::nanoseconds latency) {
        for (int i = 0; i < 5; ++i) {
            sample(latency);
        }
        clock.advance(101ms - 5 * latency);
        limit.poll();
    }
    std::chrono::milliseconds min_rtt() {
        return limit.inspect([](auto const& c) {
            if constexpr (requires { c.min_rtt(); }) {
                return std::chrono::duration_cast<std::chrono::milliseconds>(c.min_rtt());
            } else {
                return 0ms;
            }
        });
    }
    bool measuring() {
        return limit.inspect([](auto const& c) {
            if constexpr (requires { c.measuring_min_rtt(); }) {
                return c.measuring_min_rtt();
            } else {
                return false;
            }
        });
    }
};

keel::gradient_controller_options basic(int request_count) {
    return {.sample_percentile = 0.5,
            .update_interval = 100ms,
            .min_rtt_interval = 30s,
            .request_count = request_count,
            .jitter = 0.0};
}
} // namespace

TEST_CASE("gradient_controller: defaults follow GradientControllerConfigTest.DefaultValuesTest",
          "[gradient_controller]") {
    keel::gradient_controller_options const o;
    CHECK(o.max_limit == 1000);
    CHECK(o.request_count == 50);
    CHECK(o.sample_percentile == 0.5);
    CHECK(o.jitter == 0.15);
    CHECK(o.min_concurrency == 3);
    CHECK(o.buffer == 0.25);
}

TEST_CASE("gradient_controller: GradientControllerTest.MinRTTLogicTest", "[gradient_controller]") {
    auto o = basic(50);
    o.min_concurrency = 7;
    fixture f{o};
    CHECK(f.measuring());
    CHECK(f.limit.limit() == 7);
    std::vector<limit_type::permit> held;
    for (int i = 0; i < 7; ++i) {
        held.push_back(f.limit.try_acquire());
        CHECK(held.back());
    }
    CHECK_FALSE(f.limit.try_acquire());
    CHECK_FALSE(f.limit.try_acquire());
    f.clock.advance(13ms);
    for (auto& p : held) {
        p.success();
    }
    for (int i = 0; i < 43; ++i) { // 43 more requests end the minRTT calculation
        CHECK(f.limit.limit() == 7);
        f.sample(13ms);
    }
    CHECK_FALSE(f.measuring());
    CHECK(f.min_rtt() == 13ms);
}

TEST_CASE("gradient_controller: GradientControllerTest.CancelLatencySample (minRTT is the p50)",
          "[gradient_controller]") {
    fixture f{basic(5)};
    for (int i = 1; i <= 5; ++i) {
        f.sample(std::chrono::milliseconds{i});
    }
    CHECK(f.min_rtt() == 3ms);
}

TEST_CASE("gradient_controller: GradientControllerTest.SamplePercentileProcessTest",
          "[gradient_controller]") {
    fixture f{basic(5)};
    auto a = f.limit.try_acquire();
    auto b = f.limit.try_acquire();
    auto c = f.limit.try_acquire();
    CHECK((a && b && c));
    CHECK_FALSE(f.limit.try_acquire());
    c.ignore(); // cancelLatencySample
    auto d = f.limit.try_acquire();
    CHECK(d);
    CHECK_FALSE(f.limit.try_acquire());
}

TEST_CASE("gradient_controller: GradientControllerTest.MinRTTBufferTest", "[gradient_controller]") {
    auto o = basic(5);
    o.buffer = 0.5;
    fixture f{o};
    CHECK(f.limit.limit() == 3);
    f.past_min_rtt(5, 5ms);
    CHECK(f.min_rtt() == 5ms);
    for (int recalcs = 0; recalcs < 10; ++recalcs) {
        int const last = f.limit.limit();
        f.recalc(6ms); // above minRTT, but within the 50 % buffer: the limit still grows
        CHECK(f.limit.limit() > last);
    }
}

TEST_CASE("gradient_controller: GradientControllerTest.ConcurrencyLimitBehaviorTestBasic",
          "[gradient_controller]") {
    auto o = basic(5);
    o.buffer = 0.1;
    o.min_concurrency = 7;
    fixture f{o};
    CHECK(f.limit.limit() == 7);
    f.past_min_rtt(5, 5ms);
    CHECK(f.min_rtt() == 5ms);
    f.clock.advance(101ms);
    f.limit.poll();
    CHECK(f.limit.limit() >= 7);
    CHECK(f.limit.limit() / 7.0 <= 2.0);
    for (int recalcs = 0; recalcs < 10; ++recalcs) {
        int const last = f.limit.limit();
        f.recalc(4ms);
        CHECK(last <= f.limit.limit());
        CHECK(static_cast<double>(last) / f.limit.limit() >= 0.5);
    }
    for (int recalcs = 0; recalcs < 10; ++recalcs) {
        int const last = f.limit.limit();
        f.recalc(6ms);
        CHECK(f.limit.limit() < last);
        CHECK(f.limit.limit() >= 7);
    }
}

TEST_CASE("gradient_controller: GradientControllerTest.MinRTTReturnToPreviousLimit",
          "[gradient_controller]") {
    fixture f{basic(5)};
    CHECK(f.limit.limit() == 3);
    f.past_min_rtt(5, 5ms);
    f.clock.advance(1s);
    for (int iters = 0; iters < 5; ++iters) {
        int const last = f.limit.limit();
        f.recalc(4ms);
        CHECK(f.limit.limit() > last);
    }
    int const before = f.limit.limit();
    f.clock.advance(31s); // the next minRTT measurement begins
    f.limit.poll();
    CHECK(f.limit.limit() == 3);
    f.clock.advance(1s);
    for (int i = 0; i < 5; ++i) {
        CHECK(f.limit.limit() == 3);
        f.sample(13ms);
    }
    CHECK(f.limit.limit() == before); // the old limit is restored
}

TEST_CASE("gradient_controller: GradientControllerTest.MinRTTRescheduleTest",
          "[gradient_controller]") {
    fixture f{basic(5)};
    f.past_min_rtt(5, 5ms);
    f.clock.advance(1s);
    for (int iters = 0; iters < 5; ++iters) {
        int const last = f.limit.limit();
        f.recalc(4ms);
        CHECK(f.limit.limit() > last);
    }
    f.clock.advance(31s);
    f.limit.poll();
    CHECK(f.limit.limit() == 3);
    f.clock.advance(101ms); // no recalculation during the minRTT window
    f.limit.poll();
    CHECK(f.limit.limit() == 3);
}

TEST_CASE("gradient_controller: GradientControllerTest.NoSamplesTest", "[gradient_controller]") {
    fixture f{basic(5)};
    f.past_min_rtt(5, 5ms);
    for (int iters = 0; iters < 5; ++iters) {
        int const last = f.limit.limit();
        f.recalc(4ms);
        CHECK(f.limit.limit() > last);
    }
    for (int iters = 0; iters < 5; ++iters) {
        int const old = f.limit.limit();
        f.clock.advance(101ms);
        f.limit.poll();
        CHECK(f.limit.limit() == old);
    }
}

TEST_CASE("gradient_controller: GradientControllerTest.MinRTTEpoch (calls started before a "
          "measurement are not sampled)",
          "[gradient_controller]") {
    auto o = basic(25);
    o.min_concurrency = 2;
    o.buffer = 0;
    fixture f{o};
    f.past_min_rtt(25, 10ms);
    CHECK_FALSE(f.measuring());
    CHECK(f.min_rtt() == 10ms);
    for (int i = 0; i < 10; ++i) {
        f.recalc(5ms); // inflate the limit
    }
    REQUIRE(f.limit.limit() > 25);
    std::vector<limit_type::permit> held;
    for (int i = 0; i < 26; ++i) {
        held.push_back(f.limit.try_acquire());
        REQUIRE(held.back());
    }
    f.clock.advance(31s); // into the next minRTT window while they are outstanding
    f.limit.poll();
    CHECK(f.measuring());
    CHECK(f.limit.limit() == 2);
    for (auto& p : held) { // more than request_count completions, all from the old epoch
        p.success();
    }
    CHECK(f.measuring());
    for (int i = 0; i < 25; ++i) {
        f.sample(20ms);
    }
    CHECK_FALSE(f.measuring());
    CHECK(f.min_rtt() == 20ms);
}

TEST_CASE("gradient_controller: GradientControllerTest.ConsecutiveMinConcurrencyReset",
          "[gradient_controller]") {
    auto o = basic(5);
    o.min_rtt_interval = 3600s;
    o.buffer = 0;
    o.min_concurrency = 7;
    fixture f{o};
    CHECK(f.limit.limit() == 7);
    f.past_min_rtt(5, 5ms);
    CHECK(f.min_rtt() == 5ms);
    f.clock.advance(101ms);
    f.limit.poll();
    CHECK(f.limit.limit() >= 7);
    CHECK(f.limit.limit() / 7.0 <= 2.0);
    for (int recalcs = 0; recalcs < 5; ++recalcs) {
        f.recalc(10ms); // elevated latency pins the limit at the minimum
    }
    for (int recalcs = 0; recalcs < 10; ++recalcs) {
        int const last = f.limit.limit();
        f.recalc(10ms);
        CHECK(f.limit.limit() >= last);
    }
    CHECK(f.min_rtt() == 10ms); // re-measured after the 5th window at the minimum
    CHECK(f.limit.limit() > 7);
}

namespace {
// Drives the controller alone: five 5 ms samples end the first measurement at `now`.
std::int64_t end_first_measurement(keel::gradient_controller& c, keel::detail::sample_window& w) {
    std::int64_t now = 0;
    for (int i = 0; i < 5; ++i) {
        now += 5'000'000;
        w.add(5'000'000, 1);
    }
    c.check(now, w);
    REQUIRE_FALSE(c.measuring_min_rtt());
    return now;
}
} // namespace

TEST_CASE("gradient_controller: GradientControllerTest.TimerAccuracyTest (jitter is random % "
          "ceil(interval x jitter) ms)",
          "[gradient_controller]") {
    keel::gradient_controller c{
        {.update_interval = 123ms, .min_rtt_interval = 100s, .request_count = 5, .jitter = 0.1},
        0,
        [] { return std::uint64_t{15000}; }};
    keel::detail::sample_window w{0.5};
    auto const end = end_first_measurement(c, w);
    CHECK(c.next_check_ns() == end + 123'000'000); // the sample window restarts
    c.check(end + 105'000'000'000 - 1, w);
    CHECK_FALSE(c.measuring_min_rtt());
    c.check(end + 105'000'000'000, w); // 100000 + 15000 % 10000 ms
    CHECK(c.measuring_min_rtt());
}

TEST_CASE("gradient_controller: GradientControllerTest.TimerAccuracyTestNoJitter",
          "[gradient_controller]") {
    keel::gradient_controller c{
        {.update_interval = 123ms, .min_rtt_interval = 45s, .request_count = 5, .jitter = 0.0},
        0,
        [] { return std::uint64_t{15000}; }};
    keel::detail::sample_window w{0.5};
    auto const end = end_first_measurement(c, w);
    c.check(end + 45'000'000'000 - 1, w);
    CHECK_FALSE(c.measuring_min_rtt());
    c.check(end + 45'000'000'000, w);
    CHECK(c.measuring_min_rtt());
}

TEST_CASE("gradient_controller: the gradient is clamped to 0.5..2 with sqrt headroom",
          "[gradient_controller]") {
    keel::gradient_controller c{{.max_limit = 1000, .request_count = 1, .jitter = 0, .buffer = 0},
                                0,
                                [] { return std::uint64_t{0}; }};
    keel::detail::sample_window w{0.5};
    w.add(10'000'000, 1);
    c.check(1, w); // minRTT = 10 ms; limit back to 3
    REQUIRE(c.limit() == 3);
    w.add(1'000'000, 1); // 10x faster: gradient clamps at 2 -> 6 + sqrt(6) = 8.4
    c.check(200'000'000, w);
    CHECK(c.limit() == 8);
    w.add(1'000'000'000, 1); // 100x slower: 0.5 -> 4 + 2 = 6
    c.check(400'000'000, w);
    CHECK(c.limit() == 6);
}

TEST_CASE("gradient_controller: rejects invalid options naming the field and range",
          "[gradient_controller]") {
    auto const make = [](keel::gradient_controller_options o) {
        keel::gradient_controller c{o, 0, [] { return std::uint64_t{0}; }};
    };
    CHECK_THROWS_WITH(make({.sample_percentile = 0}),
                      "keel::gradient_controller: sample_percentile must be in (0, 1], got 0.0");
    CHECK_THROWS_WITH(make({.min_rtt_interval = 0ms}),
                      "keel::gradient_controller: min_rtt_interval must be >= 1ms, got 0s");
    CHECK_THROWS_WITH(make({.jitter = 1.5}),
                      "keel::gradient_controller: jitter must be in [0, 1], got 1.5");
    CHECK_THROWS_WITH(make({.max_limit = 2, .min_concurrency = 3}),
                      "keel::gradient_controller: max_limit must be >= min_concurrency, got 2");
    CHECK_THROWS_WITH(make({.update_interval = 0ms}),
                      "keel::gradient_controller: update_interval must be > 0, got 0s");
}
