// SPDX-License-Identifier: MIT
#include <keel/ops/slo.hpp>

#include <catch2/catch.hpp>

#include <chrono>

using namespace std::chrono_literals;
using keel::ops::alert_severity;

namespace {
constexpr bool near(double a, double b, double tolerance = 1e-9) {
    return a - b <= tolerance && b - a <= tolerance;
}
constexpr auto month = std::chrono::days{30}; // 2,592,000 s
} // namespace

TEST_CASE("error_budget_time is 2,592 s for 99.9% over 30 days", "[slo]") {
    STATIC_REQUIRE(near(keel::ops::error_budget(0.999), 0.001));
    STATIC_REQUIRE(near(keel::ops::error_budget_time(0.999, month).count(), 2592.0, 1e-6));
    CHECK(keel::ops::error_budget_time(0.999, std::chrono::days{28}).count() == Approx(2419.2));
}

TEST_CASE("outage_budget_per_incident gives the article's 259.2 s for 0.1% over 30 days and "
          "10 incidents",
          "[slo]") {
    constexpr auto per_incident = keel::ops::outage_budget_per_incident(0.001, month, 10);
    STATIC_REQUIRE(near(per_incident.count(), 259.2, 1e-9));
    CHECK(per_incident.count() == Approx(259.2));
    // A partial outage (10% of requests fail) may last ten times longer.
    CHECK(keel::ops::outage_budget_per_incident(0.001, month, 10, 0.1).count() == Approx(2592.0));
    // It must cover detection and repair: the default probe's worst case of 31 s leaves
    // 228.2 s to repair.
    CHECK(per_incident.count() - 31 == Approx(228.2));
}

TEST_CASE("burn_rate and time_to_exhaustion follow the SRE workbook table", "[slo]") {
    CHECK(keel::ops::burn_rate(0.001, 0.999) == Approx(1));
    CHECK(keel::ops::burn_rate(0.002, 0.999) == Approx(2));
    CHECK(keel::ops::burn_rate(0.01, 0.999) == Approx(10));
    CHECK(keel::ops::burn_rate(1.0, 0.999) == Approx(1000));
    CHECK(keel::ops::time_to_exhaustion(1, month).count() == Approx(2'592'000));
    CHECK(keel::ops::time_to_exhaustion(2, month).count() == Approx(1'296'000)); // 15 d
    CHECK(keel::ops::time_to_exhaustion(10, month).count() == Approx(259'200));  // 3 d
    CHECK(keel::ops::time_to_exhaustion(1000, month).count() == Approx(2'592));  // 43.2 min
}

TEST_CASE("multiwindow_burn_rate_alerts are 14.4x 1h/5m, 6x 6h/30m and 1x 3d/6h over 30 days",
          "[slo]") {
    constexpr auto alerts = keel::ops::multiwindow_burn_rate_alerts();
    STATIC_REQUIRE(alerts[0].severity == alert_severity::page);
    STATIC_REQUIRE(alerts[0].long_window == 1h);
    STATIC_REQUIRE(alerts[0].short_window == 5min);
    STATIC_REQUIRE(near(alerts[0].budget_consumed, 0.02));
    STATIC_REQUIRE(near(alerts[0].burn_rate, 14.4));
    STATIC_REQUIRE(alerts[1].severity == alert_severity::page);
    STATIC_REQUIRE(alerts[1].long_window == 6h);
    STATIC_REQUIRE(alerts[1].short_window == 30min);
    STATIC_REQUIRE(near(alerts[1].budget_consumed, 0.05));
    STATIC_REQUIRE(near(alerts[1].burn_rate, 6));
    STATIC_REQUIRE(alerts[2].severity == alert_severity::ticket);
    STATIC_REQUIRE(alerts[2].long_window == 72h);
    STATIC_REQUIRE(alerts[2].short_window == 6h);
    STATIC_REQUIRE(near(alerts[2].budget_consumed, 0.10));
    STATIC_REQUIRE(near(alerts[2].burn_rate, 1));

    // Over 28 days the same budget shares give proportionally lower thresholds.
    auto const four_weeks = keel::ops::multiwindow_burn_rate_alerts(std::chrono::days{28});
    CHECK(four_weeks[0].burn_rate == Approx(13.44));
    CHECK(four_weeks[1].burn_rate == Approx(5.6));
    CHECK(four_weeks[2].burn_rate == Approx(28.0 / 30.0));
}

TEST_CASE("burn_rate_threshold and budget_consumed are inverses", "[slo]") {
    CHECK(keel::ops::burn_rate_threshold(0.02, month, 1h) == Approx(14.4));
    CHECK(keel::ops::burn_rate_threshold(0.05, month, 6h) == Approx(6));
    CHECK(keel::ops::burn_rate_threshold(0.10, month, 72h) == Approx(1));
    CHECK(keel::ops::budget_consumed(14.4, 1h, month) == Approx(0.02));
    CHECK(keel::ops::budget_consumed(6, 6h, month) == Approx(0.05));
    CHECK(keel::ops::budget_consumed(1, 72h, month) == Approx(0.10));
}

TEST_CASE("alert_detection_time matches the workbook's detection times at 99.9%", "[slo]") {
    // Full outage.
    CHECK(keel::ops::alert_detection_time(0.999, 1.0, 1h, 14.4).count() == Approx(51.84));
    CHECK(keel::ops::alert_detection_time(0.999, 1.0, 6h, 6).count() == Approx(129.6));
    CHECK(keel::ops::alert_detection_time(0.999, 1.0, 72h, 1).count() == Approx(259.2));
    // 10% of requests failing: 8.64 min for the fast page.
    CHECK(keel::ops::alert_detection_time(0.999, 0.1, 1h, 14.4).count() == Approx(518.4));
    // The plain "error ratio above 0.1% over 10 min" alert sees a full outage in 0.6 s.
    CHECK(keel::ops::alert_detection_time(0.999, 1.0, 10min, 1).count() == Approx(0.6));
}

TEST_CASE("wald_interval gives the article's roughly 19%-81% for p = 0.5, n = 10", "[slo]") {
    constexpr auto wald = keel::ops::wald_interval(0.5, 10);
    STATIC_REQUIRE(near(wald.lower, 0.19010, 1e-5));
    STATIC_REQUIRE(near(wald.upper, 0.80990, 1e-5));
    CHECK(wald.lower == Approx(0.190102).margin(1e-6));
    CHECK(wald.upper == Approx(0.809898).margin(1e-6));
    // It collapses to a point at p = 0 and is clamped to [0, 1].
    CHECK(keel::ops::wald_interval(0.0, 10).lower == 0);
    CHECK(keel::ops::wald_interval(0.0, 10).upper == 0);
    CHECK(keel::ops::wald_interval(0.9, 5).upper == 1);
    CHECK(keel::ops::wald_interval(0.5, 0).lower == 0);
    CHECK(keel::ops::wald_interval(0.5, 0).upper == 1);
}

TEST_CASE("wilson_interval gives about 23.7%-76.3% for p = 0.5, n = 10", "[slo]") {
    constexpr auto wilson = keel::ops::wilson_interval(0.5, 10);
    STATIC_REQUIRE(near(wilson.lower, 0.23659, 1e-5));
    STATIC_REQUIRE(near(wilson.upper, 0.76341, 1e-5));
    CHECK(wilson.lower == Approx(0.236593).margin(1e-6));
    CHECK(wilson.upper == Approx(0.763407).margin(1e-6));
    // At p = 0 it stays informative: 0 of 10 still allows up to about 27.8%.
    auto const none = keel::ops::wilson_interval(0.0, 10);
    CHECK(none.lower == Approx(0.0).margin(1e-12));
    CHECK(none.upper == Approx(0.277533).margin(1e-6));
    // More calls narrow it: 50 of 100.
    auto const hundred = keel::ops::wilson_interval(0.5, 100);
    CHECK(hundred.lower == Approx(0.403832).margin(1e-6));
    CHECK(hundred.upper == Approx(0.596168).margin(1e-6));
    CHECK(keel::ops::wilson_interval(0.5, -1).upper == 1);
    // A 90% interval uses z = 1.6449.
    auto const ninety = keel::ops::wilson_interval(0.5, 10, 1.6448536269514722);
    CHECK(ninety.lower > wilson.lower);
    CHECK(ninety.upper < wilson.upper);
}
