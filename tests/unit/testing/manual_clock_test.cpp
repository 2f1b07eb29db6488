// SPDX-License-Identifier: MIT
#include <keel/core/clock.hpp>
#include <keel/testing/manual_clock.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

TEST_CASE("manual_clock starts where told and moves only when told", "[manual_clock]") {
    STATIC_REQUIRE(keel::clock<keel::manual_clock>);
    keel::manual_clock clock;
    CHECK(clock.now().time_since_epoch() == 0ns);
    clock.advance(1500ms);
    CHECK(clock.now().time_since_epoch() == 1500ms);
    clock.advance(-3s); // ignored: advance never goes back
    CHECK(clock.now().time_since_epoch() == 1500ms);

    keel::manual_clock later{keel::manual_clock::time_point{1h}};
    CHECK(later.now().time_since_epoch() == 1h);
}

TEST_CASE("manual_clock copies share one time line", "[manual_clock]") {
    keel::manual_clock clock;
    auto copy = clock;
    copy.advance(2s);
    CHECK(clock.now().time_since_epoch() == 2s);
    CHECK(copy == clock);
    CHECK_FALSE(keel::manual_clock{} == clock);
}

TEST_CASE("manual_clock::set moves either way", "[manual_clock]") {
    keel::manual_clock clock;
    clock.set(keel::manual_clock::time_point{10s});
    CHECK(clock.now().time_since_epoch() == 10s);
    clock.set(keel::manual_clock::time_point{4s});
    CHECK(clock.now().time_since_epoch() == 4s);
}

TEST_CASE("manual_clock runs timers in time order, at their own time", "[manual_clock]") {
    keel::manual_clock clock;
    std::vector<std::pair<int, std::chrono::nanoseconds>> fired;
    auto record = [&](int id) {
        return [&fired, &clock, id] { fired.emplace_back(id, clock.now().time_since_epoch()); };
    };
    clock.call_at(clock.now() + 3s, record(3));
    clock.call_at(clock.now() + 1s, record(1));
    clock.call_at(clock.now() + 2s, record(2));
    clock.call_at(clock.now() + 2s, record(22)); // same time: scheduling order
    CHECK(clock.pending_timers() == 4);

    clock.advance(2s);
    REQUIRE(fired.size() == 3);
    CHECK(fired[0] == std::pair{1, std::chrono::nanoseconds{1s}});
    CHECK(fired[1] == std::pair{2, std::chrono::nanoseconds{2s}});
    CHECK(fired[2] == std::pair{22, std::chrono::nanoseconds{2s}});
    CHECK(clock.now().time_since_epoch() == 2s);

    clock.advance(10s);
    REQUIRE(fired.size() == 4);
    CHECK(fired[3] == std::pair{3, std::chrono::nanoseconds{3s}});
    CHECK(clock.now().time_since_epoch() == 12s);
    CHECK(clock.pending_timers() == 0);
}

TEST_CASE("manual_clock timers can be cancelled and can schedule more", "[manual_clock]") {
    keel::manual_clock clock;
    int runs = 0;
    auto const id = clock.call_at(clock.now() + 1s, [&] { ++runs; });
    CHECK(clock.cancel(id));
    CHECK_FALSE(clock.cancel(id));
    clock.call_at(clock.now() + 1s, [&] {
        ++runs;
        clock.call_at(clock.now() + 1s, [&] { runs += 10; });
    });
    clock.advance(5s);
    CHECK(runs == 11);
}

TEST_CASE("a timer already due runs at the next advance, even of zero", "[manual_clock]") {
    keel::manual_clock clock{keel::manual_clock::time_point{5s}};
    bool ran = false;
    clock.call_at(keel::manual_clock::time_point{1s}, [&] { ran = true; });
    clock.advance(0s);
    CHECK(ran);
    CHECK(clock.now().time_since_epoch() == 5s); // a past timer never moves time back
}

TEST_CASE("advance_to stops at the timer that fires the token", "[manual_clock]") {
    keel::manual_clock clock;
    std::stop_source source;
    clock.call_at(clock.now() + 3s, [&] { source.request_stop(); });
    CHECK_FALSE(clock.advance_to(clock.now() + 10s, source.get_token()));
    CHECK(clock.now().time_since_epoch() == 3s);
}

TEST_CASE("manual_clock is safe to read and advance from several threads",
          "[manual_clock][concurrency]") {
    keel::manual_clock clock;
    std::atomic<int> fired{0};
    for (int i = 1; i <= 100; ++i) {
        clock.call_at(keel::manual_clock::time_point{std::chrono::milliseconds{i}},
                      [&] { fired.fetch_add(1); });
    }
    std::atomic<bool> went_back{false};
    {
        std::vector<std::jthread> threads;
        for (int t = 0; t < 4; ++t) {
            threads.emplace_back([&] {
                auto previous = clock.now();
                for (int i = 0; i < 1000; ++i) {
                    clock.advance(1us);
                    auto const now = clock.now();
                    // Catch2 assertions are not thread-safe: record, assert after joining.
                    if (now < previous) {
                        went_back = true;
                    }
                    previous = now;
                }
            });
        }
    }
    CHECK_FALSE(went_back.load());
    CHECK(clock.now().time_since_epoch() == 4000us);
    CHECK(fired.load() == 4);
}

TEST_CASE("manual_clock::advance saturates at the end of time", "[manual_clock]") {
    keel::manual_clock clock{keel::manual_clock::time_point{1s}};
    int fired = 0;
    clock.call_at(clock.now() + 1h, [&] { ++fired; });
    clock.advance(std::chrono::nanoseconds::max());
    CHECK(clock.now() == keel::manual_clock::time_point::max());
    CHECK(fired == 1);
    clock.advance(1s); // stays there
    CHECK(clock.now() == keel::manual_clock::time_point::max());
}

TEST_CASE("an advance_to that its token stopped early leaves no claim on the time it did not "
          "reach: a later advance(d) moves d from where time stopped",
          "[manual_clock]") {
    keel::manual_clock clock;
    std::stop_source source;
    clock.call_at(clock.now() + 1s, [&] { source.request_stop(); });
    CHECK_FALSE(clock.advance_to(clock.now() + 1h, source.get_token()));
    CHECK(clock.now().time_since_epoch() == 1s);
    clock.advance(7ms);
    CHECK(clock.now().time_since_epoch() == 1s + 7ms);
}
