// SPDX-License-Identifier: MIT
#include <keel/ops/health_report.hpp>

#include <catch2/catch.hpp>

#include <cmath>

using keel::ops::check_result;
using keel::ops::health_status;

TEST_CASE("health_status orders pass < warn < fail and names them as the draft does", "[health]") {
    STATIC_REQUIRE(keel::ops::worst(health_status::pass, health_status::warn) ==
                   health_status::warn);
    STATIC_REQUIRE(keel::ops::worst(health_status::fail, health_status::warn) ==
                   health_status::fail);
    STATIC_REQUIRE(keel::ops::to_string(health_status::warn) == "warn");
    STATIC_REQUIRE(keel::ops::to_string(health_status::pass) == "pass");
    STATIC_REQUIRE(keel::ops::to_string(keel::ops::probe_kind::startup) == "startup");
}

TEST_CASE("check_result's factories set the status, value and output", "[health]") {
    auto const ok = check_result::pass(12.5, "ms");
    CHECK(ok.status == health_status::pass);
    CHECK(ok.observed_value == 12.5);
    CHECK(ok.observed_unit == "ms");
    CHECK(ok.output.empty());
    auto const slow = check_result::warn("slow");
    CHECK(slow.status == health_status::warn);
    CHECK_FALSE(slow.observed_value);
    CHECK(slow.output == "slow");
    CHECK(check_result::fail("down").status == health_status::fail);
}

TEST_CASE("health_report maps fail to 503 and pass or warn to 200", "[health]") {
    keel::ops::health_report report;
    CHECK(report.http_status() == 200);
    CHECK(report.ok());
    report.status = health_status::warn;
    CHECK(report.http_status() == 200);
    report.status = health_status::fail;
    CHECK(report.http_status() == 503);
    CHECK_FALSE(report.ok());
}
