// SPDX-License-Identifier: MIT
#include <keel/testing/virtual_sleeper.hpp>

#include <catch2/catch.hpp>

#include <stop_token>
#include <vector>

using namespace std::chrono_literals;

TEST_CASE("virtual_sleeper advances the manual clock and records each sleep", "[virtual_sleeper]") {
    keel::manual_clock clock;
    keel::virtual_sleeper sleeper{clock};
    CHECK(sleeper.sleep_for(100ms));
    CHECK(sleeper.sleep_for(250ms));
    CHECK(clock.now().time_since_epoch() == 350ms);
    CHECK(sleeper.sleeps() == std::vector<std::chrono::nanoseconds>{100ms, 250ms});
    CHECK(sleeper.total() == 350ms);
    sleeper.clear();
    CHECK(sleeper.sleeps().empty());
}

TEST_CASE("virtual_sleeper does not move time when the token has fired", "[virtual_sleeper]") {
    keel::manual_clock clock;
    keel::virtual_sleeper sleeper{clock};
    std::stop_source source;
    source.request_stop();
    CHECK_FALSE(sleeper.sleep_for(1s, source.get_token()));
    CHECK(clock.now().time_since_epoch() == 0s);
}

TEST_CASE("virtual_sleeper is cut short by a timer that fires its token", "[virtual_sleeper]") {
    keel::manual_clock clock;
    keel::virtual_sleeper sleeper{clock};
    std::stop_source deadline;
    clock.call_at(clock.now() + 400ms, [&] { deadline.request_stop(); });
    CHECK_FALSE(sleeper.sleep_for(1s, deadline.get_token()));
    CHECK(clock.now().time_since_epoch() == 400ms);
}

TEST_CASE("virtual_sleeper copies share the clock and the record", "[virtual_sleeper]") {
    keel::manual_clock clock;
    keel::virtual_sleeper sleeper{clock};
    auto copy = sleeper;
    copy.sleep_for(1s);
    CHECK(sleeper.total() == 1s);
    CHECK(sleeper.clock().now().time_since_epoch() == 1s);
}

TEST_CASE("virtual_sleeper::sleep_for(nanoseconds::max()) saturates at the clock's end",
          "[virtual_sleeper]") {
    keel::manual_clock clock{keel::manual_clock::time_point{10s}};
    keel::virtual_sleeper sleeper{clock};
    bool ran = false;
    clock.call_at(clock.now() + 24h, [&] { ran = true; });
    CHECK(sleeper.sleep_for(std::chrono::nanoseconds::max()));
    CHECK(ran); // the timer a day ahead fell due during "forever"
    CHECK(clock.now() == keel::manual_clock::time_point::max());
}
