// SPDX-License-Identifier: MIT
#include <keel/detail/integer.hpp>

#include <keel/core/random.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <limits>

TEST_CASE("detail::floor_div, mul_div_floor and mul_div_ceil", "[detail]") {
    using keel::detail::floor_div;
    CHECK(floor_div(7, 2) == 3);
    CHECK(floor_div(-7, 2) == -4);
    CHECK(floor_div(-8, 2) == -4);
    CHECK(floor_div(0, 5) == 0);
    // 128-bit products: (2^62 * 6) / 4 does not fit in 64 bits before dividing.
    std::int64_t const big = std::int64_t{1} << 62;
    CHECK(keel::detail::mul_div_floor(big, 6, 8) == big / 8 * 6);
    CHECK(keel::detail::mul_div_floor(7, 3, 2) == 10);
    CHECK(keel::detail::mul_div_ceil(7, 3, 2) == 11);
    CHECK(keel::detail::mul_div_ceil(4, 3, 2) == 6);
}

TEST_CASE("detail::divider divides exactly like floor division", "[detail]") {
    keel::xoshiro256ss rng{17};
    for (std::int64_t d :
         {std::int64_t{1}, std::int64_t{3}, std::int64_t{1'000'000}, std::int64_t{999'999'937},
          std::int64_t{1} << 40, std::numeric_limits<std::int64_t>::max()}) {
        keel::detail::divider const div{d};
        for (int i = 0; i < 20'000; ++i) {
            auto const n = static_cast<std::int64_t>((rng() >> 1) >> (rng() % 63)); // >= 0
            REQUIRE(div.floor_div(n) == n / d);
            REQUIRE(div.floor_div(-n) == keel::detail::floor_div(-n, d));
        }
        auto const top = std::numeric_limits<std::int64_t>::max();
        REQUIRE(div.floor_div(top) == top / d);
        REQUIRE(div.floor_div(top - 1) == (top - 1) / d);
        REQUIRE(div.floor_div(d) == 1);
        REQUIRE(div.floor_div(d - 1) == 0);
    }
}
