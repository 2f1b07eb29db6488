// SPDX-License-Identifier: MIT
#include <keel/policy/adaptive/sample.hpp>

#include <catch2/catch.hpp>

#include <chrono>

using namespace std::chrono_literals;

TEST_CASE("limit_sample: an aggregate of the window's RTT, in-flight peak and drop flag",
          "[adaptive_limit]") {
    constexpr keel::limit_sample s{.rtt = 5ms, .in_flight = 3};
    static_assert(s.rtt == 5ms);
    static_assert(s.in_flight == 3);
    static_assert(!s.dropped);
}
