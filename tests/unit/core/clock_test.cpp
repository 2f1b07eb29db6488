// SPDX-License-Identifier: MIT
#include <keel/core/clock.hpp>

#include <catch2/catch.hpp>

#include <chrono>

using namespace std::chrono_literals;

TEST_CASE("steady_clock reads std::chrono::steady_clock and never goes back", "[clock]") {
    auto const before = std::chrono::steady_clock::now();
    auto const a = keel::steady_clock::now();
    auto const b = keel::steady_clock{}.now();
    auto const after = std::chrono::steady_clock::now();
    CHECK(before <= a);
    CHECK(a <= b);
    CHECK(b <= after);
}

TEST_CASE("coarse_clock shares steady_clock's epoch and lags it by at most a tick", "[clock]") {
    for (int i = 0; i < 1000; ++i) {
        auto const coarse = keel::coarse_clock::now();
        auto const steady = keel::steady_clock::now();
        // A coarse reading is at most one kernel tick (<= 10 ms even at HZ=100) behind.
        CHECK(coarse <= steady);
        CHECK(steady - coarse < 20ms);
    }
}

TEST_CASE("coarse_clock is monotonic", "[clock]") {
    auto previous = keel::coarse_clock::now();
    for (int i = 0; i < 10000; ++i) {
        auto const now = keel::coarse_clock::now();
        REQUIRE(now >= previous);
        previous = now;
    }
}

namespace {
struct no_now {
    using duration = std::chrono::nanoseconds;
    using time_point = std::chrono::steady_clock::time_point;
};
struct wrong_type {
    using duration = std::chrono::nanoseconds;
    using time_point = std::chrono::steady_clock::time_point;
    int now() const { return 0; }
};
} // namespace

TEST_CASE("the clock concept accepts keel's clocks and rejects look-alikes", "[clock]") {
    STATIC_REQUIRE(keel::clock<keel::steady_clock>);
    STATIC_REQUIRE(keel::clock<keel::coarse_clock>);
    STATIC_REQUIRE_FALSE(keel::clock<no_now>);
    STATIC_REQUIRE_FALSE(keel::clock<wrong_type>);
    STATIC_REQUIRE_FALSE(keel::clock<int>);
}
