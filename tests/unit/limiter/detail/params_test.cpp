// SPDX-License-Identifier: MIT
#include <keel/limiter/detail/params.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <stdexcept>

using namespace std::chrono_literals;

TEST_CASE("detail::make_rate_params derives the emission interval and rejects bad rates",
          "[limiter]") {
    auto const p = keel::detail::make_rate_params("keel::token_bucket", 3, 1s, 0);
    CHECK(p.burst == 3);              // 0 means the same as the rate
    CHECK(p.interval == 333'333'334); // rounded up: the rate is never exceeded
    CHECK(p.span == 3 * 333'333'334);
    CHECK_THROWS_WITH(keel::detail::make_rate_params("keel::token_bucket", 2'000'000'000, 1s, 0),
                      "keel::token_bucket: rate must be in [1, period in ns], got 2000000000");
    CHECK_THROWS_AS(keel::detail::make_rate_params("keel::token_bucket", 0, 1s, 0),
                    std::invalid_argument);
    CHECK_THROWS_AS(keel::detail::make_rate_params("keel::token_bucket", 1, 1s, -1),
                    std::invalid_argument);
}

TEST_CASE("detail::check_window accepts 1 ns to 2^61 ns and names the field otherwise",
          "[limiter]") {
    CHECK_NOTHROW(keel::detail::check_window("keel::x", "window", 1ns));
    CHECK_NOTHROW(keel::detail::check_window(
        "keel::x", "window", std::chrono::nanoseconds{keel::detail::max_window_ns}));
    CHECK_THROWS_WITH(keel::detail::check_window("keel::x", "window", 0ns),
                      "keel::x: window must be in [1, 2^61] ns (about 73 years), got 0s");
    CHECK_THROWS_AS(
        keel::detail::check_window("keel::x", "window",
                                   std::chrono::nanoseconds{keel::detail::max_window_ns + 1}),
        std::invalid_argument);
}
