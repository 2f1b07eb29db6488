// SPDX-License-Identifier: MIT
#include <keel/fmt.hpp>

#include <catch2/catch.hpp>

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

TEST_CASE("fmt formats keel::net addresses, ranges and stop reasons", "[fmt][net]") {
    auto const a = *keel::net::ip_address::parse("2001:DB8:0:0:0:0:0:1");
    CHECK(fmt::format("{}", a) == "2001:db8::1");
    CHECK(fmt::format("[{:>12}]", *keel::net::ip_address::parse("10.0.0.1")) == "[    10.0.0.1]");
    CHECK(fmt::format("{}", *keel::net::cidr::parse("10.0.0.0/255.0.0.0")) == "10.0.0.0/8");
    CHECK(fmt::format("{}", keel::net::stop_reason::invalid_entry) == "invalid_entry");
}
