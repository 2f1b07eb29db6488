// SPDX-License-Identifier: MIT
#include <keel/policy/timeout.hpp>

#include <keel/core/random.hpp>
#include <keel/policy/retry.hpp>
#include <keel/resilient.hpp>
#include <keel/testing/manual_clock.hpp>
#include <keel/testing/virtual_sleeper.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <stop_token>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using std::chrono::nanoseconds;

namespace {
using context = keel::basic_context<keel::manual_clock>;

struct upstream_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

nanoseconds elapsed(keel::manual_clock const& clock) {
    return clock.now().time_since_epoch();
}
} // namespace

TEST_CASE("timeout: the stop token fires at the deadline and the outcome is timeout", "[timeout]") {
    keel::manual_clock clock;
    keel::virtual_sleeper sleeper{clock};
    bool saw_stop = false;
    std::optional<context::time_point> deadline;
    auto guarded = keel::resilient{[&](context const& ctx) {
                                       deadline = ctx.deadline();
                                       // Cooperative work: a 5 s wait that the token interrupts.
                                       saw_stop = !sleeper.sleep_for(5s, ctx.stop_token());
                                       return 1;
                                   },
                                   keel::basic_timeout{1s, clock}};
    auto const r = guarded.try_call();
    CHECK(r.error() == keel::errc::timeout);
    CHECK(saw_stop);
    CHECK(deadline == context::time_point{1s});
    CHECK(elapsed(clock) == 1s);
    CHECK(clock.pending_timers() == 0);
    CHECK_THROWS_AS(guarded(), keel::timeout_expired);
}

TEST_CASE("timeout: a late result is replaced by timeout even if the call ignores the token",
          "[timeout]") {
    keel::manual_clock clock;
    auto guarded = keel::resilient{[&] {
                                       clock.advance(3s); // ignores cancellation
                                       return 42;
                                   },
                                   keel::basic_timeout{1s, clock}};
    CHECK(guarded.try_call().error() == keel::errc::timeout);
    CHECK(elapsed(clock) == 3s); // cooperative: the caller waited for the call
}

TEST_CASE("timeout: an early result passes unchanged and cancels its timer", "[timeout]") {
    keel::manual_clock clock;
    auto guarded = keel::resilient{[&](context const& ctx) {
                                       CHECK(clock.pending_timers() == 1);
                                       clock.advance(999ms);
                                       CHECK_FALSE(ctx.stop_requested());
                                       return 42;
                                   },
                                   keel::basic_timeout{1s, clock}};
    CHECK(guarded() == 42);
    CHECK(clock.pending_timers() == 0);
}

TEST_CASE("timeout: exceptions thrown before the deadline propagate unchanged", "[timeout]") {
    keel::manual_clock clock;
    auto guarded = keel::resilient{[]() -> int { throw upstream_error{"boom"}; },
                                   keel::basic_timeout{1s, clock}};
    CHECK_THROWS_AS(guarded(), upstream_error);
}

TEST_CASE("timeout: an inner timeout never extends an outer one", "[timeout]") {
    keel::manual_clock clock;
    keel::virtual_sleeper sleeper{clock};
    std::optional<context::time_point> deadline;
    auto const call = [&](context const& ctx) {
        deadline = ctx.deadline();
        sleeper.sleep_for(10s, ctx.stop_token());
        return 0;
    };
    SECTION("outer shorter") {
        auto guarded =
            keel::resilient{call, keel::basic_timeout{1s, clock}, keel::basic_timeout{5s, clock}};
        CHECK(guarded.try_call().error() == keel::errc::timeout);
        CHECK(deadline == context::time_point{1s});
        CHECK(elapsed(clock) == 1s);
    }
    SECTION("inner shorter") {
        auto guarded =
            keel::resilient{call, keel::basic_timeout{5s, clock}, keel::basic_timeout{2s, clock}};
        CHECK(guarded.try_call().error() == keel::errc::timeout);
        CHECK(deadline == context::time_point{2s});
        CHECK(elapsed(clock) == 2s);
    }
    SECTION("a caller's deadline bounds the timeout") {
        auto guarded = keel::resilient{call, keel::basic_timeout{5s, clock}};
        CHECK(guarded.try_call_with(context{1, context::time_point{500ms}, {}}).error() ==
              keel::errc::timeout);
        CHECK(deadline == context::time_point{500ms});
    }
    CHECK(clock.pending_timers() == 0);
}

TEST_CASE("timeout: a deadline already passed fails without calling", "[timeout]") {
    keel::manual_clock clock{keel::manual_clock::time_point{10s}};
    int calls = 0;
    auto guarded = keel::resilient{[&] { return ++calls; }, keel::basic_timeout{5s, clock}};
    CHECK(guarded.try_call_with(context{1, context::time_point{1s}, {}}).error() ==
          keel::errc::timeout);
    CHECK(calls == 0);
}

TEST_CASE("timeout: the caller's stop token reaches the call", "[timeout]") {
    keel::manual_clock clock;
    std::stop_source caller;
    bool stopped = false;
    auto guarded = keel::resilient{[&](context const& ctx) {
                                       caller.request_stop();
                                       stopped = ctx.stop_requested();
                                       return 1;
                                   },
                                   keel::basic_timeout{1s, clock}};
    CHECK(guarded.call_with(context{}.with_stop_token(caller.get_token())) == 1);
    CHECK(stopped);
}

TEST_CASE("timeout: retry(timeout) gives each attempt its own deadline", "[timeout][retry]") {
    keel::manual_clock clock;
    keel::virtual_sleeper sleeper{clock};
    int attempts = 0;
    auto const slow = [&](context const& ctx) {
        ++attempts;
        sleeper.sleep_for(2s, ctx.stop_token()); // needs 2 s, stops at the token
        return 1;
    };
    auto guarded = keel::resilient{
        slow,
        keel::retry{keel::basic_retry_options<keel::manual_clock>{.max_attempts = 3,
                                                                  .backoff = keel::constant{100ms},
                                                                  .jitter = keel::jitter::none},
                    keel::on_failure{}, clock, sleeper},
        keel::basic_timeout{1s, clock}};
    CHECK(guarded.try_call().error() == keel::errc::timeout);
    CHECK(attempts == 3);
    CHECK(elapsed(clock) == 3s + 200ms); // three 1 s attempts, two waits
}

TEST_CASE("timeout: timeout(retry) gives all attempts and waits one deadline", "[timeout][retry]") {
    keel::manual_clock clock;
    keel::virtual_sleeper sleeper{clock};
    int attempts = 0;
    auto const slow = [&](context const& ctx) {
        ++attempts;
        sleeper.sleep_for(2s, ctx.stop_token());
        return 1;
    };
    auto guarded = keel::resilient{
        slow, keel::basic_timeout{1s, clock},
        keel::retry{keel::basic_retry_options<keel::manual_clock>{.max_attempts = 3,
                                                                  .backoff = keel::constant{100ms},
                                                                  .jitter = keel::jitter::none},
                    keel::on_failure{}, clock, sleeper}};
    CHECK(guarded.try_call().error() == keel::errc::timeout);
    CHECK(attempts == 1); // the deadline ended the only attempt; no time left to retry
    CHECK(elapsed(clock) == 1s);
}

TEST_CASE("timeout: with fast failures, the orders differ in how many attempts fit",
          "[timeout][retry]") {
    keel::manual_clock clock;
    keel::virtual_sleeper sleeper{clock};
    int attempts = 0;
    auto const failing = [&]() -> int {
        ++attempts;
        clock.advance(400ms);
        throw upstream_error{"503"};
    };
    auto const make_retry = [&] {
        return keel::retry{
            keel::basic_retry_options<keel::manual_clock>{
                .max_attempts = 3, .backoff = keel::constant{100ms}, .jitter = keel::jitter::none},
            keel::on_failure{}, clock, sleeper};
    };
    SECTION("retry(timeout 1 s): three attempts, 1.4 s") {
        auto guarded = keel::resilient{failing, make_retry(), keel::basic_timeout{1s, clock}};
        CHECK_THROWS_AS(guarded(), upstream_error);
        CHECK(attempts == 3);
        CHECK(elapsed(clock) == 1400ms);
    }
    SECTION("timeout 1 s (retry): two attempts, the retry will not wait past the deadline") {
        auto guarded = keel::resilient{failing, keel::basic_timeout{1s, clock}, make_retry()};
        CHECK_THROWS_AS(guarded(), upstream_error);
        CHECK(attempts == 2);
        CHECK(elapsed(clock) == 900ms);
    }
}

TEST_CASE("timeout: rejects a duration d unless 0 < d <= 1 year", "[timeout]") {
    CHECK_THROWS_WITH(keel::timeout{std::chrono::hours{24 * 366}},
                      Catch::StartsWith("keel::timeout: duration must be in (0, 1 year], got"));
    CHECK_NOTHROW(keel::timeout{std::chrono::hours{24 * 365}});
    CHECK_THROWS_WITH(keel::timeout{0s}, "keel::timeout: duration must be in (0, 1 year], got 0s");
    CHECK_THROWS_WITH(keel::timeout{-1ms},
                      "keel::timeout: duration must be in (0, 1 year], got -1ms");
}

TEST_CASE("timeout: on a clock near its end the deadline saturates instead of expiring",
          "[timeout]") {
    keel::manual_clock clock{keel::manual_clock::time_point{nanoseconds::max() - 1s}};
    int calls = 0;
    std::optional<context::time_point> deadline;
    auto guarded = keel::resilient{[&](context const& ctx) {
                                       ++calls;
                                       deadline = ctx.deadline();
                                       return 1;
                                   },
                                   keel::basic_timeout{1h, clock}};
    CHECK(guarded.try_call().value() == 1);
    CHECK(calls == 1);
    CHECK(deadline == context::time_point::max());
    CHECK(clock.pending_timers() == 0);
}

TEST_CASE("timeout: on the real clock one timer thread fires a short deadline",
          "[timeout][concurrency]") {
    auto guarded = keel::resilient{[](keel::context const& ctx) {
                                       keel::real_sleeper{}.sleep_for(10s, ctx.stop_token());
                                       return ctx.stop_requested();
                                   },
                                   keel::timeout{3ms}};
    auto const start = std::chrono::steady_clock::now();
    auto const r = guarded.try_call();
    auto const took = std::chrono::steady_clock::now() - start;
    CHECK(r.error() == keel::errc::timeout);
    CHECK(took >= 3ms);
    CHECK(took < 5s);
    CHECK(keel::detail::deadline_timer<std::chrono::steady_clock>::instance().pending() == 0);
}

TEST_CASE("timeout: on the real clock a late result that ignores the token is a timeout",
          "[timeout][concurrency]") {
    auto guarded = keel::resilient{[] {
                                       std::this_thread::sleep_for(4ms);
                                       return 1;
                                   },
                                   keel::timeout{1ms}};
    CHECK(guarded.try_call().error() == keel::errc::timeout);
}

TEST_CASE("timeout: concurrent deadlines on the real clock share the timer",
          "[timeout][concurrency]") {
    auto guarded = keel::resilient{[](keel::context const& ctx) {
                                       keel::real_sleeper{}.sleep_for(10s, ctx.stop_token());
                                       return 0;
                                   },
                                   keel::timeout{2ms}};
    std::vector<std::thread> threads;
    std::atomic<int> timeouts{0};
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&] {
            for (int i = 0; i < 5; ++i) {
                if (guarded.try_call().error() == keel::errc::timeout) {
                    timeouts.fetch_add(1);
                }
            }
        });
    }
    for (auto& t : threads) {
        t.join();
    }
    CHECK(timeouts.load() == 20);
}

TEST_CASE("timeout: a short deadline fires on time while the timer sleeps toward a long one",
          "[timeout][concurrency]") {
    using timer = keel::detail::deadline_timer<std::chrono::steady_clock>;
    std::stop_source far;
    std::optional<timer::scheduled> far_deadline;
    far_deadline.emplace(std::chrono::steady_clock::now() + 60s, far);
    std::this_thread::sleep_for(2ms); // let the timer thread settle on the 60 s deadline
    auto guarded = keel::resilient{[](keel::context const& ctx) {
                                       keel::real_sleeper{}.sleep_for(10s, ctx.stop_token());
                                       return 0;
                                   },
                                   keel::timeout{2ms}};
    auto const start = std::chrono::steady_clock::now();
    CHECK(guarded.try_call().error() == keel::errc::timeout);
    CHECK(std::chrono::steady_clock::now() - start < 5s);
    far_deadline.reset();
    CHECK_FALSE(far.stop_requested());
}

TEST_CASE("timeout: the real-clock timer keeps the earliest deadline first through any "
          "schedule and cancel order",
          "[timeout]") {
    using timer = keel::detail::deadline_timer<std::chrono::steady_clock>;
    auto const base = std::chrono::steady_clock::now() + 1h; // never fires during the test
    std::stop_source source;
    std::map<int, std::unique_ptr<timer::scheduled>> live; // by id
    std::multiset<std::chrono::steady_clock::time_point> expected;
    std::map<int, std::chrono::steady_clock::time_point> when_of;
    keel::xoshiro256ss random{42};
    for (int step = 0; step < 3000; ++step) {
        bool const add = live.empty() || random() % 3 != 0;
        if (add) {
            auto const when = base + std::chrono::microseconds{random() % 1000}; // with ties
            live.emplace(step, std::make_unique<timer::scheduled>(when, source));
            expected.insert(when);
            when_of[step] = when;
        } else {
            auto it = live.begin();
            std::advance(it, static_cast<long>(random() % live.size()));
            expected.erase(expected.find(when_of[it->first]));
            live.erase(it);
        }
        REQUIRE(timer::instance().pending() == expected.size());
        if (expected.empty()) {
            REQUIRE_FALSE(timer::instance().earliest());
        } else {
            REQUIRE(timer::instance().earliest() == std::optional{*expected.begin()});
        }
    }
    live.clear();
    CHECK(timer::instance().pending() == 0);
    CHECK_FALSE(timer::instance().earliest());
    CHECK_FALSE(source.stop_requested());
}

TEST_CASE("timeout: the real-clock timer never fires a deadline early, under threads",
          "[timeout][concurrency]") {
    using timer = keel::detail::deadline_timer<std::chrono::steady_clock>;
    std::atomic<int> early{0};
    std::atomic<int> fired{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            keel::xoshiro256ss random{static_cast<std::uint64_t>(t) + 1};
            for (int i = 0; i < 1000; ++i) {
                std::stop_source source;
                auto const when =
                    std::chrono::steady_clock::now() + std::chrono::microseconds{random() % 100};
                {
                    timer::scheduled const deadline{when, source};
                    for (int spin = 0; spin < 100 && !source.stop_requested(); ++spin) {
                        std::this_thread::yield();
                    }
                }
                if (source.stop_requested()) {
                    fired.fetch_add(1);
                    if (std::chrono::steady_clock::now() < when) {
                        early.fetch_add(1);
                    }
                }
            }
        });
    }
    for (auto& t : threads) {
        t.join();
    }
    CHECK(early.load() == 0);
    CHECK(timer::instance().pending() == 0);
    INFO("fired " << fired.load() << " of 4000");
    SUCCEED();
}
