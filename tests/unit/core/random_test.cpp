// SPDX-License-Identifier: MIT
#include <keel/core/random.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <random>
#include <set>
#include <thread>
#include <vector>

TEST_CASE("xoshiro256ss is reproducible for a seed and differs across seeds", "[random]") {
    keel::xoshiro256ss a{42};
    keel::xoshiro256ss b{42};
    keel::xoshiro256ss c{43};
    bool any_differs = false;
    for (int i = 0; i < 100; ++i) {
        auto const x = a();
        REQUIRE(x == b());
        any_differs = any_differs || x != c();
    }
    CHECK(any_differs);
}

TEST_CASE("xoshiro256ss copies continue independently from the same state", "[random]") {
    keel::xoshiro256ss original{7};
    original();
    auto copy = original;
    CHECK(original() == copy());
}

TEST_CASE("xoshiro256ss seeded with zero is not stuck", "[random]") {
    keel::xoshiro256ss zero{0};
    std::set<std::uint64_t> seen;
    for (int i = 0; i < 64; ++i) {
        seen.insert(zero());
    }
    CHECK(seen.size() == 64);
}

TEST_CASE("uniform_unit stays in 0 <= u < 1 and has mean 1/2", "[random]") {
    keel::xoshiro256ss generator{1};
    double sum = 0;
    constexpr int draws = 200000;
    for (int i = 0; i < draws; ++i) {
        double const u = keel::uniform_unit(generator);
        REQUIRE(u >= 0.0);
        REQUIRE(u < 1.0);
        sum += u;
    }
    // Standard error of the mean is sqrt(1/12 / n) ~ 0.00065; allow 6 of them.
    CHECK(sum / draws == Approx(0.5).margin(0.004));
}

TEST_CASE("uniform_unit works with 32-bit generators", "[random]") {
    std::mt19937 generator{5};
    for (int i = 0; i < 10000; ++i) {
        double const u = keel::uniform_unit(generator);
        REQUIRE(u >= 0.0);
        REQUIRE(u < 1.0);
    }
}

TEST_CASE("uniform_unit maps the extremes of a 64-bit generator", "[random]") {
    struct fixed {
        using result_type = std::uint64_t;
        std::uint64_t value;
        static constexpr result_type min() { return 0; }
        static constexpr result_type max() { return ~std::uint64_t{0}; }
        result_type operator()() { return value; }
    };
    fixed lowest{0};
    fixed highest{~std::uint64_t{0}};
    CHECK(keel::uniform_unit(lowest) == 0.0);
    CHECK(keel::uniform_unit(highest) < 1.0);
    CHECK(keel::uniform_unit(highest) > 0.9999999);
}

TEST_CASE("thread_random gives each thread its own well-mixed stream", "[random][concurrency]") {
    std::vector<std::uint64_t> first(4);
    {
        std::vector<std::jthread> threads;
        for (std::size_t t = 0; t < first.size(); ++t) {
            threads.emplace_back([&first, t] {
                keel::thread_random random;
                std::uint64_t x = 0;
                for (int i = 0; i < 10000; ++i) {
                    x ^= random();
                }
                first[t] = x;
            });
        }
    }
    std::set<std::uint64_t> distinct(first.begin(), first.end());
    CHECK(distinct.size() == first.size());
}
