// SPDX-License-Identifier: MIT
#include <keel/core/random.hpp>
#include <keel/testing/scripted_random.hpp>

#include <catch2/catch.hpp>

#include <stdexcept>

TEST_CASE("scripted_random returns its values in order and cycles", "[scripted_random]") {
    STATIC_REQUIRE(keel::random_generator<keel::scripted_random>);
    keel::scripted_random random{1, 2, 3};
    CHECK(random() == 1);
    CHECK(random() == 2);
    CHECK(random() == 3);
    CHECK(random() == 1);
    CHECK(random.draws() == 4);
}

TEST_CASE("scripted_random::from_units makes uniform_unit return those fractions",
          "[scripted_random]") {
    auto random = keel::scripted_random::from_units({0.25, 0.0, 0.75, 0.5});
    CHECK(keel::uniform_unit(random) == 0.25);
    CHECK(keel::uniform_unit(random) == 0.0);
    CHECK(keel::uniform_unit(random) == 0.75);
    CHECK(keel::uniform_unit(random) == 0.5);
}

TEST_CASE("scripted_random copies share the position", "[scripted_random]") {
    keel::scripted_random random{10, 20};
    auto copy = random;
    CHECK(copy() == 10);
    CHECK(random() == 20);
}

TEST_CASE("scripted_random rejects empty sequences and fractions f unless 0 <= f < 1",
          "[scripted_random]") {
    CHECK_THROWS_AS(keel::scripted_random(std::vector<std::uint64_t>{}), std::invalid_argument);
    CHECK_THROWS_AS(keel::scripted_random::from_units({1.0}), std::invalid_argument);
    CHECK_THROWS_AS(keel::scripted_random::from_units({-0.1}), std::invalid_argument);
    CHECK_THROWS_WITH(keel::scripted_random::from_units({1.0}),
                      "keel::scripted_random::from_units: each value must be in [0, 1), got 1.0");
}
