// SPDX-License-Identifier: MIT
#include <keel/ops/probe.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <stdexcept>

using namespace std::chrono_literals;
using keel::ops::probe_config;
using keel::ops::time_window;

TEST_CASE("probe_config defaults are the Kubernetes defaults", "[probe]") {
    constexpr probe_config probe;
    STATIC_REQUIRE(probe.initial_delay == 0s);
    STATIC_REQUIRE(probe.period == 10s);
    STATIC_REQUIRE(probe.timeout == 1s);
    STATIC_REQUIRE(probe.success_threshold == 1);
    STATIC_REQUIRE(probe.failure_threshold == 3);
    CHECK_NOTHROW(probe.validate());
}

TEST_CASE("failure_detection_window is (F-1)P to FP+T: 20 s to 31 s by default", "[probe]") {
    STATIC_REQUIRE(keel::ops::failure_detection_window(probe_config{}) == time_window{20s, 31s});
    // initialDelay plays no part in a mid-life failure.
    STATIC_REQUIRE(keel::ops::failure_detection_window({.initial_delay = 60s}) ==
                   time_window{20s, 31s});
    // lightship's suggested readiness (P5 F1 T5) and liveness (P30 F3 T5).
    STATIC_REQUIRE(keel::ops::failure_detection_window(
                       {.period = 5s, .timeout = 5s, .failure_threshold = 1}) ==
                   time_window{0s, 10s});
    STATIC_REQUIRE(keel::ops::failure_detection_window({.period = 30s, .timeout = 5s}) ==
                   time_window{60s, 95s});
    // Aggressive: P1 F3 T1.
    STATIC_REQUIRE(keel::ops::failure_detection_window({.period = 1s}) == time_window{2s, 4s});
}

TEST_CASE("startup_bound is the article's initialDelay + period x failureThreshold = 30 s",
          "[probe]") {
    STATIC_REQUIRE(keel::ops::startup_bound(probe_config{}) == 30s);
    STATIC_REQUIRE(keel::ops::startup_bound({.initial_delay = 15s}) == 45s);
    // The Kubernetes docs' startup sizing example: 30 x 10 = 300 s.
    STATIC_REQUIRE(keel::ops::startup_bound({.failure_threshold = 30}) == 300s);
    STATIC_REQUIRE(keel::ops::startup_window(probe_config{}) == time_window{20s, 31s});
    STATIC_REQUIRE(keel::ops::startup_window({.initial_delay = 15s, .failure_threshold = 30}) ==
                   time_window{305s, 316s});
}

TEST_CASE("recovery_window is (S-1)P to SP+T", "[probe]") {
    STATIC_REQUIRE(keel::ops::recovery_window(probe_config{}) == time_window{0s, 11s});
    STATIC_REQUIRE(keel::ops::recovery_window({.success_threshold = 3}) == time_window{20s, 31s});
}

TEST_CASE("failed_requests_during gives the article's 300,000 for 30 s at 10,000 req/s",
          "[probe]") {
    STATIC_REQUIRE(keel::ops::failed_requests_during(30s, 10'000) == 300'000);
    STATIC_REQUIRE(keel::ops::failed_requests_during(keel::ops::startup_bound({}), 10'000) ==
                   300'000);
    // The exact detection window gives 200,000 to 310,000.
    constexpr auto window = keel::ops::failure_detection_window({});
    STATIC_REQUIRE(keel::ops::failed_requests_during(window.earliest, 10'000) == 200'000);
    STATIC_REQUIRE(keel::ops::failed_requests_during(window.latest, 10'000) == 310'000);
    // One of ten equal replicas dead: a tenth of the traffic fails.
    CHECK(keel::ops::failed_requests_during(30s, 10'000, 0.1) == Approx(30'000));
    STATIC_REQUIRE(keel::ops::failed_requests_during(1500ms, 100) == 150);
}

TEST_CASE("probe_config::validate names the field and the Kubernetes minimum", "[probe]") {
    CHECK_THROWS_WITH(
        probe_config{.initial_delay = -1s}.validate(),
        "keel::ops::probe_config: initial_delay must be in [0s, 2147483647s], got -1s");
    CHECK_THROWS_WITH(probe_config{.period = 0s}.validate(),
                      "keel::ops::probe_config: period must be in [1s, 2147483647s], got 0s");
    CHECK_THROWS_WITH(probe_config{.timeout = 0s}.validate(),
                      "keel::ops::probe_config: timeout must be in [1s, 2147483647s], got 0s");
    CHECK_THROWS_WITH(probe_config{.success_threshold = 0}.validate(),
                      "keel::ops::probe_config: success_threshold must be >= 1, got 0");
    CHECK_THROWS_WITH(probe_config{.failure_threshold = 0}.validate(),
                      "keel::ops::probe_config: failure_threshold must be >= 1, got 0");
    CHECK_THROWS_AS(probe_config{.period = -5s}.validate(), std::invalid_argument);
}

TEST_CASE("probe_config::validate rejects seconds beyond the Kubernetes API's int32", "[probe]") {
    // period x failure_threshold would overflow: the windows' precondition must exclude it.
    CHECK_THROWS_WITH(probe_config{.period = std::chrono::seconds::max()}.validate(),
                      "keel::ops::probe_config: period must be in [1s, 2147483647s], got "
                      "9223372036854775807s");
    CHECK_THROWS_AS(probe_config{.initial_delay = std::chrono::seconds::max()}.validate(),
                    std::invalid_argument);
    CHECK_THROWS_AS(probe_config{.timeout = 2147483648s}.validate(), std::invalid_argument);
    constexpr probe_config widest{.initial_delay = probe_config::max_seconds,
                                  .period = probe_config::max_seconds,
                                  .timeout = probe_config::max_seconds,
                                  .success_threshold = 2147483647,
                                  .failure_threshold = 2147483647};
    CHECK_NOTHROW(widest.validate());
    STATIC_REQUIRE(keel::ops::startup_window(widest).latest.count() ==
                   2147483647LL * 2147483647LL + 2 * 2147483647LL);
}
