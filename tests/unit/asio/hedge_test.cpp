// SPDX-License-Identifier: MIT
#include <keel/asio/hedge.hpp>
#include <keel/asio/resilient.hpp>
#include <keel/policy/circuit_breaker.hpp>
#include <keel/policy/policy.hpp>
#include <keel/policy/retry_budget.hpp>
#include <keel/testing/manual_clock.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "asio_support.hpp"

using namespace std::chrono_literals;
using keel::testing_asio::at;
using keel::testing_asio::vcontext;
namespace net = keel::asio::net;

namespace {

using vhedge = keel::hedge<keel::on_failure, keel::never, keel::manual_clock>;

// One attempt's script: how long it takes and what it gives (a value, or a failure code).
struct script {
    std::chrono::nanoseconds takes;
    int value = 0;
    std::errc fails_with{};
};

// What each attempt saw and how it ended.
struct trace {
    std::vector<int> hedges;                      // ctx.hedge() at each start
    std::vector<std::chrono::nanoseconds> starts; // start times
    std::vector<int> cancelled;                   // hedges whose wait was cancelled
    std::vector<int> ended;                       // hedges that completed, in order
};

auto scripted_op(keel::manual_clock clock, std::vector<script> const& scripts, trace& t) {
    return [clock, &scripts, &t](vcontext const& ctx) -> keel::asio::awaitable<keel::outcome<int>> {
        int const h = ctx.hedge();
        t.hedges.push_back(h);
        t.starts.push_back(clock.now().time_since_epoch());
        auto const& s = scripts[static_cast<std::size_t>(h)];
        bool const finished = co_await keel::testing_asio::take(clock, s.takes);
        t.ended.push_back(h);
        if (!finished) {
            t.cancelled.push_back(h);
            co_return keel::failure{keel::testing_asio::aborted(), nullptr, {}};
        }
        if (s.fails_with != std::errc{}) {
            co_return keel::failure{std::make_error_code(s.fails_with), nullptr, {}};
        }
        co_return s.value;
    };
}

} // namespace

TEST_CASE("keel::hedge starts a hedge after the delay, the first success wins and the loser "
          "is cancelled and awaited before the call returns",
          "[asio][hedge]") {
    keel::manual_clock clock;
    net::io_context io;
    std::vector<script> const scripts{{200ms, 1}, {10ms, 2}};
    trace t;
    auto pipeline =
        keel::asio::resilient{scripted_op(clock, scripts, t),
                              vhedge{{.max_hedged_attempts = 1, .delay = 50ms}, {}, {}, clock}};
    auto record = keel::testing_asio::spawn(io, clock, pipeline.async_call());
    keel::asio::run_in_virtual_time(io, clock);
    REQUIRE(record->value);
    REQUIRE(record->value->has_value());
    CHECK(**record->value == 2);
    CHECK(record->at == at(60ms));
    CHECK(t.hedges == std::vector<int>{0, 1});
    CHECK(t.starts == std::vector<std::chrono::nanoseconds>{0ms, 50ms});
    CHECK(t.cancelled == std::vector<int>{0});
    CHECK(t.ended == std::vector<int>{1, 0}); // the loser ended before the call returned
}

TEST_CASE("keel::hedge does not hedge when the primary answers within the delay", "[asio][hedge]") {
    keel::manual_clock clock;
    net::io_context io;
    std::vector<script> const scripts{{20ms, 1}, {10ms, 2}};
    trace t;
    auto pipeline = keel::asio::resilient{scripted_op(clock, scripts, t),
                                          vhedge{{.delay = 50ms}, {}, {}, clock}};
    auto const result = keel::testing_asio::run(io, clock, pipeline.async_call());
    CHECK(result.value() == 1);
    CHECK(t.hedges == std::vector<int>{0});
}

TEST_CASE("keel::hedge starts the next hedge at once when an attempt fails, and returns the "
          "primary's failure when every attempt fails",
          "[asio][hedge]") {
    keel::manual_clock clock;
    net::io_context io;
    std::vector<script> const scripts{{10ms, 0, std::errc::io_error},
                                      {5ms, 0, std::errc::timed_out},
                                      {5ms, 0, std::errc::connection_refused}};
    trace t;
    auto pipeline =
        keel::asio::resilient{scripted_op(clock, scripts, t),
                              vhedge{{.max_hedged_attempts = 2, .delay = 1s}, {}, {}, clock}};
    auto const result = keel::testing_asio::run(io, clock, pipeline.async_call());
    REQUIRE_FALSE(result.has_value());
    CHECK(result.failure().code == std::make_error_code(std::errc::io_error));
    CHECK(t.starts == std::vector<std::chrono::nanoseconds>{0ms, 10ms, 15ms});
    CHECK(clock.now().time_since_epoch() == 20ms);
}

TEST_CASE("keel::hedge with delay 0 starts every attempt at once, with delay_generator each "
          "hedge waits its own delay",
          "[asio][hedge]") {
    keel::manual_clock clock;
    net::io_context io;
    std::vector<script> const scripts{{100ms, 1}, {100ms, 2}, {30ms, 3}};
    SECTION("parallel") {
        trace t;
        auto pipeline =
            keel::asio::resilient{scripted_op(clock, scripts, t),
                                  vhedge{{.max_hedged_attempts = 2, .delay = 0ms}, {}, {}, clock}};
        CHECK(keel::testing_asio::run(io, clock, pipeline.async_call()).value() == 3);
        CHECK(t.starts == std::vector<std::chrono::nanoseconds>{0ms, 0ms, 0ms});
        CHECK(clock.now().time_since_epoch() == 30ms);
    }
    SECTION("generated") {
        trace t;
        auto pipeline = keel::asio::resilient{
            scripted_op(clock, scripts, t),
            vhedge{{.max_hedged_attempts = 2,
                    .delay_generator = [](int hedge) { return hedge * 10ms; }},
                   {},
                   {},
                   clock}};
        CHECK(keel::testing_asio::run(io, clock, pipeline.async_call()).value() == 3);
        CHECK(t.starts == std::vector<std::chrono::nanoseconds>{0ms, 10ms, 30ms});
        CHECK(clock.now().time_since_epoch() == 60ms);
    }
}

TEST_CASE("keel::hedge ends at once on a fatal outcome, cancelling the other attempts",
          "[asio][hedge]") {
    keel::manual_clock clock;
    net::io_context io;
    std::vector<script> const scripts{{100ms, 1}, {10ms, 0, std::errc::permission_denied}};
    trace t;
    auto const fatal = keel::on_error(std::errc::permission_denied);
    auto pipeline =
        keel::asio::resilient{scripted_op(clock, scripts, t),
                              keel::hedge<keel::on_failure, decltype(fatal), keel::manual_clock>{
                                  {.delay = 20ms}, {}, fatal, clock}};
    auto record = keel::testing_asio::spawn(io, clock, pipeline.async_call());
    keel::asio::run_in_virtual_time(io, clock);
    REQUIRE(record->value);
    CHECK(record->value->failure().code == std::make_error_code(std::errc::permission_denied));
    CHECK(record->at == at(30ms));
    CHECK(t.cancelled == std::vector<int>{0});
}

TEST_CASE("keel::hedge draws each hedge from the retry budget and starts none it refuses",
          "[asio][hedge]") {
    keel::manual_clock clock;
    net::io_context io;
    keel::basic_retry_budget<keel::manual_clock> budget{
        {.retry_ratio = 0.0, .min_retries_per_second = 0.1, .ttl = 10s}, clock};
    std::vector<script> const scripts{{100ms, 1}, {100ms, 2}, {10ms, 3}};
    trace t;
    auto pipeline = keel::asio::resilient{
        scripted_op(clock, scripts, t),
        vhedge{{.max_hedged_attempts = 2, .delay = 20ms, .budget = &budget}, {}, {}, clock}};
    auto const result = keel::testing_asio::run(io, clock, pipeline.async_call());
    CHECK(result.value() == 1);
    CHECK(t.starts == std::vector<std::chrono::nanoseconds>{0ms, 20ms}); // one hedge allowed
    CHECK(budget.snapshot().refused == 1);
}

TEST_CASE("keel::hedge: the caller's cancellation cancels every attempt and awaits them",
          "[asio][hedge][cancel]") {
    keel::manual_clock clock;
    net::io_context io;
    std::vector<script> const scripts{{1s, 1}, {1s, 2}};
    trace t;
    auto pipeline = keel::asio::resilient{scripted_op(clock, scripts, t),
                                          vhedge{{.delay = 10ms}, {}, {}, clock}};
    net::cancellation_signal signal;
    auto record = keel::testing_asio::spawn(io, clock, pipeline.async_call(), signal.slot());
    keel::testing_asio::emit_at(io, clock, signal, at(30ms));
    keel::asio::run_in_virtual_time(io, clock);
    REQUIRE(record->value);
    CHECK(record->value->failure().is(keel::errc::cancelled));
    CHECK(record->at == at(30ms));
    CHECK(t.cancelled.size() == 2);
}

TEST_CASE("keel::hedge: a losing attempt's breaker permit is released with no verdict",
          "[asio][hedge][circuit_breaker]") {
    keel::manual_clock clock;
    net::io_context io;
    keel::circuit_breaker_options options;
    options.window_size = 10;
    options.minimum_calls = 10;
    options.reset_jitter = 0s;
    keel::basic_circuit_breaker<keel::manual_clock> breaker{options, clock};
    std::vector<script> const scripts{{100ms, 1}, {10ms, 2}};
    trace t;
    auto pipeline =
        keel::asio::resilient{scripted_op(clock, scripts, t),
                              vhedge{{.delay = 20ms}, {}, {}, clock}, keel::guard(breaker)};
    CHECK(keel::testing_asio::run(io, clock, pipeline.async_call()).value() == 2);
    auto const m = breaker.metrics();
    CHECK(m.calls == 1); // the winner's success; the loser recorded nothing
    CHECK(m.failed_calls == 0);
}

TEST_CASE("keel::hedge rejects options out of range, naming the field", "[asio][hedge]") {
    CHECK_THROWS_WITH(keel::hedge<>({.max_hedged_attempts = 0}),
                      Catch::Contains("max_hedged_attempts") && Catch::Contains("[1, 10]"));
    CHECK_THROWS_WITH(keel::hedge<>({.max_hedged_attempts = 11}),
                      Catch::Contains("max_hedged_attempts"));
    CHECK_THROWS_WITH(keel::hedge<>({.delay = -1ms}), Catch::Contains("delay"));
}

// The synchronous pipeline cannot run attempts in parallel: keel::resilient refuses it.
static_assert(!keel::policy_for<keel::hedge<>, int>, "keel::hedge is asynchronous only");

TEST_CASE("keel::hedge is deduced from its options alone, on keel::steady_clock", "[asio][hedge]") {
    auto const h = keel::hedge{{.max_hedged_attempts = 2, .delay = 50ms}};
    static_assert(std::is_same_v<std::remove_cv_t<decltype(h)>, keel::hedge<>>);
    CHECK(h.delay_before(1) == 50ms);
    CHECK(h.options().max_hedged_attempts == 2);
}
