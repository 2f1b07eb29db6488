// SPDX-License-Identifier: MIT
// The first three cases port Netflix concurrency-limits'
// concurrency-limits-core/src/test/java/com/netflix/concurrency/limits/limit/AIMDLimitTest.java
// (testDefault, increaseOnSuccess, decreaseOnDrops) with the same numbers.
#include <keel/policy/adaptive/aimd.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <stdexcept>

using namespace std::chrono_literals;

TEST_CASE("aimd_limit: the initial limit stands until the first sample (AIMDLimitTest.testDefault)",
          "[aimd]") {
    keel::aimd_limit limit{{.initial_limit = 10}};
    CHECK(limit.limit() == 10);
}

TEST_CASE("aimd_limit: a success with half the limit in flight adds one "
          "(AIMDLimitTest.increaseOnSuccess)",
          "[aimd]") {
    keel::aimd_limit limit{{.initial_limit = 20}};
    CHECK(limit.update({.rtt = 1ms, .in_flight = 10, .dropped = false}) == 21);
}

TEST_CASE("aimd_limit: a drop multiplies by the backoff ratio (AIMDLimitTest.decreaseOnDrops)",
          "[aimd]") {
    keel::aimd_limit limit{{.initial_limit = 30}};
    CHECK(limit.update({.rtt = 0ns, .in_flight = 0, .dropped = true}) == 27);
}

TEST_CASE("aimd_limit: an RTT above the timeout counts as a drop, the limit stays in [min, max]",
          "[aimd]") {
    keel::aimd_limit limit{{.initial_limit = 30, .min_limit = 25, .max_limit = 31, .timeout = 1s}};
    CHECK(limit.update({.rtt = 1s + 1ns, .in_flight = 30}) == 27);
    CHECK(limit.update({.rtt = 2s, .in_flight = 30}) == 25);  // floor(27 x 0.9) = 24, clamped
    CHECK(limit.update({.rtt = 1ms, .in_flight = 12}) == 25); // 12 x 2 < 25: app-limited
    for (int i = 0; i < 10; ++i) {
        limit.update({.rtt = 1ms, .in_flight = 40});
    }
    CHECK(limit.limit() == 31);
}

TEST_CASE("aimd_limit: defaults follow AIMDLimit.Builder", "[aimd]") {
    keel::aimd_options const o;
    CHECK(o.initial_limit == 20);
    CHECK(o.min_limit == 20);
    CHECK(o.max_limit == 200);
    CHECK(o.backoff_ratio == 0.9);
    CHECK(o.timeout == 5s);
}

TEST_CASE("aimd_limit: rejects invalid options naming the field and range", "[aimd]") {
    CHECK_THROWS_WITH(keel::aimd_limit({.backoff_ratio = 1.0}),
                      "keel::aimd_limit: backoff_ratio must be in [0.5, 1), got 1.0");
    CHECK_THROWS_WITH(keel::aimd_limit({.backoff_ratio = 0.4}),
                      "keel::aimd_limit: backoff_ratio must be in [0.5, 1), got 0.4");
    CHECK_THROWS_WITH(keel::aimd_limit({.timeout = 0s}),
                      "keel::aimd_limit: timeout must be > 0, got 0s");
    CHECK_THROWS_WITH(keel::aimd_limit({.min_limit = 30, .max_limit = 20}),
                      "keel::aimd_limit: max_limit must be >= min_limit, got 20");
    CHECK_THROWS_WITH(keel::aimd_limit({.initial_limit = 0}),
                      "keel::aimd_limit: initial_limit must be >= 1, got 0");
}
