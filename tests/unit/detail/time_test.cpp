// SPDX-License-Identifier: MIT
#include <keel/detail/time.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <limits>

using namespace std::chrono_literals;
namespace detail = keel::detail;
using tp = std::chrono::steady_clock::time_point;

TEST_CASE("detail::saturating_cast: clamps to the target's range", "[detail]") {
    using std::chrono::hours;
    using std::chrono::nanoseconds;
    using std::chrono::seconds;
    CHECK(detail::saturating_cast<nanoseconds>(hours::max()) == nanoseconds::max());
    CHECK(detail::saturating_cast<nanoseconds>(hours::min()) == nanoseconds::min());
    CHECK(detail::saturating_cast<nanoseconds>(2s) == 2'000'000'000ns);
    CHECK(detail::saturating_cast<seconds>(nanoseconds::max()) ==
          seconds{std::numeric_limits<std::int64_t>::max() / 1'000'000'000});
    CHECK(detail::saturating_cast<nanoseconds>(-3ms) == -3'000'000ns);
}

TEST_CASE("detail::saturating_add: now + forever stays forever", "[detail]") {
    tp const now{std::chrono::hours{1}};
    CHECK(detail::saturating_add(now, std::chrono::nanoseconds::max()) == tp::max());
    CHECK(detail::saturating_add(now, std::chrono::hours::max()) == tp::max());
    CHECK(detail::saturating_add(tp{-std::chrono::hours{1}}, std::chrono::nanoseconds::min()) ==
          tp::min());
    CHECK(detail::saturating_add(tp::max(), 1ns) == tp::max());
    CHECK(detail::saturating_add(now, 5ms) == now + 5ms);
    CHECK(detail::saturating_add(now, -5ms) == now - 5ms);
}

TEST_CASE("detail::saturating_add on integers clamps both ends", "[detail]") {
    constexpr auto max = std::numeric_limits<std::int64_t>::max();
    constexpr auto min = std::numeric_limits<std::int64_t>::min();
    STATIC_REQUIRE(detail::saturating_add(max - 1, 5) == max);
    STATIC_REQUIRE(detail::saturating_add(min + 1, -5) == min);
    STATIC_REQUIRE(detail::saturating_add(40, 2) == 42);
    STATIC_REQUIRE(detail::saturating_sub(min + 1, 5) == min);
    STATIC_REQUIRE(detail::saturating_sub(max - 1, -5) == max);
    STATIC_REQUIRE(detail::saturating_sub(40, -2) == 42);
}
