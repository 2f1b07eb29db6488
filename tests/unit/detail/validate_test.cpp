// SPDX-License-Identifier: MIT
#include <keel/detail/validate.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>

using namespace std::chrono_literals;
namespace detail = keel::detail;

TEST_CASE("detail::format_duration: the largest unit that divides exactly", "[detail]") {
    CHECK(detail::format_duration(0ns) == "0s");
    CHECK(detail::format_duration(2s) == "2s");
    CHECK(detail::format_duration(1500ms) == "1500ms");
    CHECK(detail::format_duration(20us) == "20us");
    CHECK(detail::format_duration(7ns) == "7ns");
    CHECK(detail::format_duration(-250ms) == "-250ms");
    CHECK(detail::format_duration(90min) == "90min");
    CHECK(detail::format_duration(2h) == "2h");
    CHECK(detail::format_duration(std::chrono::nanoseconds::max()) == "forever");
}

TEST_CASE("detail::invalid_option: one message shape for every value type", "[detail]") {
    auto message = [](auto const& value) {
        try {
            detail::invalid_option("keel::thing", "field", "in [1, 10]", value);
        } catch (std::invalid_argument const& e) {
            return std::string{e.what()};
        }
        return std::string{"no throw"};
    };
    CHECK(message(std::int64_t{0}) == "keel::thing: field must be in [1, 10], got 0");
    CHECK(message(std::size_t{11}) == "keel::thing: field must be in [1, 10], got 11");
    CHECK(message(0.25) == "keel::thing: field must be in [1, 10], got 0.25");
    CHECK(message(100.0) == "keel::thing: field must be in [1, 10], got 100.0");
    CHECK(message(-5ms) == "keel::thing: field must be in [1, 10], got -5ms");
    // Beyond the nanosecond range the count prints in its own unit, not overflowed.
    CHECK(message(std::chrono::seconds::max()) ==
          "keel::thing: field must be in [1, 10], got 9223372036854775807s");
    CHECK(message(-std::chrono::hours::max()) ==
          "keel::thing: field must be in [1, 10], got -9223372036854775807h");
    CHECK(message(std::chrono::duration<double>{-1.5}) ==
          "keel::thing: field must be in [1, 10], got -1500ms");
    CHECK(message(std::chrono::duration<double>{-std::numeric_limits<double>::infinity()}) ==
          "keel::thing: field must be in [1, 10], got -infs");
    CHECK(message("x") == "keel::thing: field must be in [1, 10], got \"x\"");
    CHECK_THROWS_WITH(detail::invalid_configuration("keel::thing", "key must be unique"),
                      "keel::thing: key must be unique");
}
