// SPDX-License-Identifier: MIT
#include <keel/fmt.hpp>

#include <catch2/catch.hpp>

#include <chrono>

#include <stdexcept>

TEST_CASE("fmt formats keel::errc as its message", "[fmt]") {
    CHECK(fmt::format("{}", keel::errc::circuit_open) == "circuit breaker is open");
}

TEST_CASE("fmt formats a failure by code or by exception", "[fmt]") {
    CHECK(fmt::format("{}", keel::failure::from(keel::errc::rate_limited)) ==
          "keel:2 rate limit exceeded");
    auto const thrown = keel::failure::from(std::make_exception_ptr(std::runtime_error{"boom"}));
    CHECK(fmt::format("{}", thrown) == "exception: boom");
}

TEST_CASE("fmt formats circuit breaker states and reasons by name", "[fmt]") {
    CHECK(fmt::format("{}", keel::circuit_state::half_open) == "half_open");
    CHECK(fmt::format("{:>8}", keel::circuit_state::open) == "    open");
    CHECK(fmt::format("{}", keel::circuit_state::forced_open) == "forced_open");
    CHECK(fmt::format("{}", keel::circuit_reason::probes_failed) == "probes_failed");
}

TEST_CASE("fmt formats bulkhead and retry budget snapshots", "[fmt]") {
    CHECK(fmt::format("{}", keel::bulkhead_snapshot{3, 1, 25, 4}) == "in_flight 3/25, queued 1/4");
    CHECK(fmt::format("{}", keel::retry_budget_snapshot{100, 20, 3, 10.0}) ==
          "calls 100, retries 20, refused 3, balance 10.00");
}

TEST_CASE("fmt formats health statuses and probe kinds as the draft spells them", "[fmt]") {
    CHECK(fmt::format("{}", keel::ops::health_status::warn) == "warn");
    CHECK(fmt::format("{:>5}", keel::ops::health_status::fail) == " fail");
    CHECK(fmt::format("{}", keel::ops::probe_kind::readiness) == "readiness");
}

TEST_CASE("fmt formats keel::net addresses, ranges and stop reasons", "[fmt][net]") {
    auto const a = *keel::net::ip_address::parse("2001:DB8:0:0:0:0:0:1");
    CHECK(fmt::format("{}", a) == "2001:db8::1");
    CHECK(fmt::format("[{:>12}]", *keel::net::ip_address::parse("10.0.0.1")) == "[    10.0.0.1]");
    CHECK(fmt::format("{}", *keel::net::cidr::parse("10.0.0.0/255.0.0.0")) == "10.0.0.0/8");
    CHECK(fmt::format("{}", keel::net::stop_reason::invalid_entry) == "invalid_entry");
}

TEST_CASE("fmt formats a limiter decision and a header value", "[fmt]") {
    keel::decision d;
    d.limit = 10;
    d.remaining = 0;
    d.retry_after = std::chrono::milliseconds{5};
    d.reset = std::chrono::seconds{1};
    CHECK(fmt::format("{}", d) ==
          "refused limit=10 remaining=0 retry_after=5000000ns reset=1000000000ns");
    d.allowed = true;
    CHECK(fmt::format("{}", d).rfind("allowed ", 0) == 0);
    d.allowed = false;
    d.unsatisfiable = true;
    CHECK(fmt::format("{}", d).rfind("unsatisfiable ", 0) == 0);
    CHECK(fmt::format("{}", keel::retry_after_value(keel::decision{})) == "0");
}
