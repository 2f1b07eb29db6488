// SPDX-License-Identifier: MIT
// "ExpAvgMeasurementTest.testWarmup" ports Netflix concurrency-limits'
// concurrency-limits-core/src/test/java/com/netflix/concurrency/limits/limit/ExpAvgMeasurementTest.java
// (the version over the mean warm-up). Gradient2Limit has no test of its own upstream; the
// other cases check its update rule (limit/Gradient2Limit.java _update) on numbers worked by hand.
#include <keel/policy/adaptive/gradient2.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <stdexcept>

using namespace std::chrono_literals;

TEST_CASE("exp_avg_measurement: ExpAvgMeasurementTest.testWarmup", "[gradient2]") {
    keel::detail::exp_avg_measurement avg{100, 10};
    double const expected[] = {10.0, 10.5, 11, 11.5, 12, 12.5, 13, 13.5, 14, 14.5};
    for (int i = 0; i < 10; ++i) {
        avg.add(i + 10);
        CHECK(avg.get() == Approx(expected[i]).margin(0.01));
    }
    avg.add(100);
    CHECK(avg.get() == Approx(16.2).margin(0.1));
}

TEST_CASE("gradient2_limit: steady RTTs grow the limit by smoothing x queue_size per window",
          "[gradient2]") {
    keel::gradient2_limit limit{{.initial_limit = 20}};
    // gradient = clamp(1.5 x 10 / 10, 0.5, 1) = 1: new = 20 + 4, smoothed 20 x 0.8 + 24 x 0.2.
    CHECK(limit.update({.rtt = 10ms, .in_flight = 20}) == 20); // 20.8
    CHECK(limit.update({.rtt = 10ms, .in_flight = 20}) == 21); // 21.6
    CHECK(limit.long_rtt() == 10ms);
}

TEST_CASE("gradient2_limit: an RTT above tolerance x long RTT shrinks the limit by the gradient",
          "[gradient2]") {
    keel::gradient2_limit limit{{.initial_limit = 100, .min_limit = 1}};
    CHECK(limit.update({.rtt = 10ms, .in_flight = 100}) == 100); // 100 x 0.8 + 104 x 0.2 = 100.8
    // long = mean(10, 40) = 25ms; gradient = clamp(1.5 x 25 / 40) = 0.9375;
    // new = 100.8 x 0.9375 + 4 = 98.5; smoothed 100.8 x 0.8 + 98.5 x 0.2 = 100.34.
    CHECK(limit.update({.rtt = 40ms, .in_flight = 100}) == 100);
    // long = mean(10, 40, 400) = 150ms; gradient = 1.5 x 150 / 400 = 0.5625:
    // new = 100.34 x 0.5625 + 4 = 60.44; smoothed 100.34 x 0.8 + 60.44 x 0.2 = 92.36.
    CHECK(limit.update({.rtt = 400ms, .in_flight = 100}) == 92);
    // long = mean(10, 40, 400, 4000) = 1112.5ms; gradient clamps at 0.5:
    // new = 92.36 x 0.5 + 4 = 50.18; smoothed 92.36 x 0.8 + 50.18 x 0.2 = 83.92.
    CHECK(limit.update({.rtt = 4000ms, .in_flight = 100}) == 83);
}

TEST_CASE("gradient2_limit: app-limited windows and drops leave the limit alone", "[gradient2]") {
    keel::gradient2_limit limit{{.initial_limit = 50, .min_limit = 1}};
    CHECK(limit.update({.rtt = 10ms, .in_flight = 24}) == 50);                  // 24 < 50 / 2
    CHECK(limit.update({.rtt = 10ms, .in_flight = 25, .dropped = true}) == 50); // 50.8
}

TEST_CASE("gradient2_limit: a long RTT twice the short one decays by 5 %", "[gradient2]") {
    keel::gradient2_limit limit{{.initial_limit = 20, .long_window = 1}};
    limit.update({.rtt = 100ms, .in_flight = 0});
    limit.update({.rtt = 10ms, .in_flight = 0}); // mean 55ms, 55 / 10 > 2: x 0.95
    CHECK(limit.long_rtt() == std::chrono::nanoseconds{52'250'000});
}

TEST_CASE("gradient2_limit: defaults follow Gradient2Limit.Builder", "[gradient2]") {
    keel::gradient2_options const o;
    CHECK(o.initial_limit == 20);
    CHECK(o.min_limit == 20);
    CHECK(o.max_limit == 200);
    CHECK(o.smoothing == 0.2);
    CHECK(o.queue_size == 4);
    CHECK(o.long_window == 600);
    CHECK(o.rtt_tolerance == 1.5);
}

TEST_CASE("gradient2_limit: rejects invalid options naming the field and range", "[gradient2]") {
    CHECK_THROWS_WITH(keel::gradient2_limit({.rtt_tolerance = 0.9}),
                      "keel::gradient2_limit: rtt_tolerance must be >= 1, got 0.9");
    CHECK_THROWS_WITH(keel::gradient2_limit({.smoothing = 1.5}),
                      "keel::gradient2_limit: smoothing must be in (0, 1], got 1.5");
    CHECK_THROWS_WITH(keel::gradient2_limit({.queue_size = -1}),
                      "keel::gradient2_limit: queue_size must be >= 0, got -1");
    CHECK_THROWS_WITH(keel::gradient2_limit({.long_window = 0}),
                      "keel::gradient2_limit: long_window must be >= 1, got 0");
}
