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
