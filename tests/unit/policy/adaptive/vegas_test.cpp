// SPDX-License-Identifier: MIT
// The "VegasLimitTest" cases port Netflix concurrency-limits'
// concurrency-limits-core/src/test/java/com/netflix/concurrency/limits/limit/VegasLimitTest.java
// (JUnit 5 version: largeLimitIncrease, increaseLimit, decreaseLimit, noChangeIfWithinThresholds,
// decreaseSmoothing, decreaseWithoutSmoothing) with the same samples and expectations.
#include <keel/policy/adaptive/vegas.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <stdexcept>

using namespace std::chrono_literals;

namespace {
// VegasLimitTest.create(): alpha 3, beta 6, smoothing 1, initial 10, max 20.
keel::vegas_limit create() {
    return keel::vegas_limit{{.initial_limit = 10,
                              .max_limit = 20,
                              .smoothing = 1.0,
                              .alpha = [](int) { return 3; },
                              .beta = [](int) { return 6; }}};
}
} // namespace

TEST_CASE("vegas_log10: is Log10RootFunction's lookup (max(1, floor(log10)))", "[vegas]") {
    CHECK(keel::vegas_log10(0) == 1);
    CHECK(keel::vegas_log10(1) == 1);
    CHECK(keel::vegas_log10(99) == 1);
    CHECK(keel::vegas_log10(100) == 2);
    CHECK(keel::vegas_log10(999) == 2);
    CHECK(keel::vegas_log10(1000) == 3);
    CHECK(keel::vegas_log10(10000) == 4);
}

TEST_CASE("vegas_limit: VegasLimitTest.largeLimitIncrease", "[vegas]") {
    keel::vegas_limit limit{{.initial_limit = 10000, .max_limit = 20000}};
    CHECK(limit.update({.rtt = 10s, .in_flight = 5000}) == 10000);
    CHECK(limit.update({.rtt = 10s, .in_flight = 6000}) == 10024);
}

TEST_CASE("vegas_limit: VegasLimitTest.increaseLimit", "[vegas]") {
    auto limit = create();
    CHECK(limit.update({.rtt = 10ms, .in_flight = 10}) == 10);
    CHECK(limit.update({.rtt = 10ms, .in_flight = 11}) == 16);
}

TEST_CASE("vegas_limit: VegasLimitTest.decreaseLimit", "[vegas]") {
    auto limit = create();
    CHECK(limit.update({.rtt = 10ms, .in_flight = 10}) == 10);
    CHECK(limit.update({.rtt = 50ms, .in_flight = 11}) == 9);
}

TEST_CASE("vegas_limit: VegasLimitTest.noChangeIfWithinThresholds", "[vegas]") {
    auto limit = create();
    CHECK(limit.update({.rtt = 10ms, .in_flight = 10}) == 10);
    CHECK(limit.update({.rtt = 14ms, .in_flight = 14}) == 10);
}

TEST_CASE("vegas_limit: VegasLimitTest.decreaseSmoothing", "[vegas]") {
    keel::vegas_limit limit{
        {.initial_limit = 100, .max_limit = 200, .smoothing = 0.5, .decrease = [](double current) {
             return current / 2;
         }}};
    CHECK(limit.update({.rtt = 10ms, .in_flight = 100}) == 100); // picks up the first min-rtt
    CHECK(limit.update({.rtt = 20ms, .in_flight = 100}) == 75);
    CHECK(limit.update({.rtt = 20ms, .in_flight = 100}) == 56);
}

TEST_CASE("vegas_limit: VegasLimitTest.decreaseWithoutSmoothing", "[vegas]") {
    keel::vegas_limit limit{{.initial_limit = 100,
                             .max_limit = 200,
                             .decrease = [](double current) { return current / 2; }}};
    CHECK(limit.update({.rtt = 10ms, .in_flight = 100}) == 100);
    CHECK(limit.update({.rtt = 20ms, .in_flight = 100}) == 50);
    CHECK(limit.update({.rtt = 20ms, .in_flight = 100}) == 25);
}

TEST_CASE("vegas_limit: a drop decreases by log10, fewer than half in flight changes nothing",
          "[vegas]") {
    keel::vegas_limit limit{{.initial_limit = 100}};
    CHECK(limit.update({.rtt = 10ms, .in_flight = 100}) == 100);
    CHECK(limit.update({.rtt = 10ms, .in_flight = 100, .dropped = true}) == 98);
    CHECK(limit.update({.rtt = 50ms, .in_flight = 40}) == 98);
    CHECK(limit.update({.rtt = 0ns, .in_flight = 100}) == 98); // a zero RTT is ignored
    CHECK(limit.rtt_noload() == 10ms);
}

TEST_CASE("vegas_limit: probes a new no-load RTT within probe_multiplier x limit samples",
          "[vegas]") {
    keel::vegas_limit limit{{.initial_limit = 10, .max_limit = 10, .probe_multiplier = 2}};
    CHECK(limit.update({.rtt = 10ms, .in_flight = 10}) == 10);
    // jitter in [0.5, 1): a probe comes within 2 x 10 samples, resetting rtt_noload to 30 ms.
    for (int i = 0; i < 20 && limit.rtt_noload() == 10ms; ++i) {
        limit.update({.rtt = 30ms, .in_flight = 10});
    }
    CHECK(limit.rtt_noload() == 30ms);
}

TEST_CASE("vegas_limit: defaults follow VegasLimit.Builder", "[vegas]") {
    keel::vegas_options const o;
    CHECK(o.initial_limit == 20);
    CHECK(o.max_limit == 1000);
    CHECK(o.smoothing == 1.0);
    CHECK(o.probe_multiplier == 30);
}

TEST_CASE("vegas_limit: rejects invalid options naming the field and range", "[vegas]") {
    CHECK_THROWS_WITH(keel::vegas_limit({.smoothing = 0}),
                      "keel::vegas_limit: smoothing must be in (0, 1], got 0.0");
    CHECK_THROWS_WITH(keel::vegas_limit({.probe_multiplier = 0}),
                      "keel::vegas_limit: probe_multiplier must be >= 1, got 0");
    CHECK_THROWS_WITH(keel::vegas_limit({.max_limit = 0}),
                      "keel::vegas_limit: max_limit must be >= 1, got 0");
}
