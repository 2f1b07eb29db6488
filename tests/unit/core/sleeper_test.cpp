// SPDX-License-Identifier: MIT
#include <keel/core/sleeper.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <stop_token>
#include <thread>

using namespace std::chrono_literals;

TEST_CASE("real_sleeper returns at once for non-positive durations", "[sleeper]") {
    keel::real_sleeper sleeper;
    CHECK(sleeper.sleep_for(0ns));
    CHECK(sleeper.sleep_for(-5s));
}

TEST_CASE("real_sleeper sleeps a short interval in full", "[sleeper]") {
    keel::real_sleeper sleeper;
    auto const start = std::chrono::steady_clock::now();
    CHECK(sleeper.sleep_for(2ms));
    CHECK(std::chrono::steady_clock::now() - start >= 2ms);
}

TEST_CASE("real_sleeper does not sleep when the token has already fired", "[sleeper]") {
    std::stop_source source;
    source.request_stop();
    keel::real_sleeper sleeper;
    auto const start = std::chrono::steady_clock::now();
    CHECK_FALSE(sleeper.sleep_for(10s, source.get_token()));
    CHECK_FALSE(sleeper.sleep_for(0s, source.get_token()));
    CHECK(std::chrono::steady_clock::now() - start < 1s);
}

TEST_CASE("real_sleeper wakes early when another thread fires the token",
          "[sleeper][concurrency]") {
    std::stop_source source;
    keel::real_sleeper sleeper;
    auto const start = std::chrono::steady_clock::now();
    std::jthread stopper{[&] {
        std::this_thread::sleep_for(1ms);
        source.request_stop();
    }};
    // Without the interruption this would wait 60 s; the test passes only if it wakes.
    CHECK_FALSE(sleeper.sleep_for(60s, source.get_token()));
    CHECK(std::chrono::steady_clock::now() - start < 30s);
}

TEST_CASE("the sleeper concept describes sleep_for(duration, stop_token) -> bool", "[sleeper]") {
    STATIC_REQUIRE(keel::sleeper<keel::real_sleeper>);
    STATIC_REQUIRE_FALSE(keel::sleeper<int>);
}

TEST_CASE("real_sleeper::sleep_for(nanoseconds::max()) waits until the token fires",
          "[sleeper][concurrency]") {
    std::stop_source source;
    keel::real_sleeper sleeper;
    auto const start = std::chrono::steady_clock::now();
    std::jthread stopper{[&] {
        std::this_thread::sleep_for(2ms);
        source.request_stop();
    }};
    // "Forever" saturates: now() + max() must not wrap into the past and return at once.
    CHECK_FALSE(sleeper.sleep_for(std::chrono::nanoseconds::max(), source.get_token()));
    CHECK(std::chrono::steady_clock::now() - start >= 2ms);
}
