// SPDX-License-Identifier: MIT
#include <keel/asio/resilient.hpp>
#include <keel/policy/retry.hpp>
#include <keel/policy/timeout.hpp>
#include <keel/resilient.hpp>
#include <keel/testing/asio.hpp>
#include <keel/testing/manual_clock.hpp>
#include <keel/testing/virtual_sleeper.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "asio_support.hpp"

using namespace std::chrono_literals;
namespace net = keel::asio::net;

TEST_CASE("keel::asio::resilient with retry runs attempts until one succeeds, waiting the "
          "exact backoff in virtual time",
          "[asio][resilient]") {
    keel::manual_clock clock;
    net::io_context io;
    int calls = 0;
    auto pipeline = keel::asio::resilient{
        [&](keel::asio::basic_context<keel::manual_clock> const& ctx)
            -> keel::asio::awaitable<int> {
            ++calls;
            if (ctx.attempt() < 3) {
                throw std::runtime_error{"boom"};
            }
            co_return ctx.attempt();
        },
        keel::retry{
            {.max_attempts = 3, .backoff = keel::constant{100ms}, .jitter = keel::jitter::none},
            keel::on_failure{},
            clock,
            keel::virtual_sleeper{clock}}};
    auto const result = keel::testing_asio::run(io, clock, pipeline.async_call());
    REQUIRE(result.has_value());
    CHECK(*result == 3);
    CHECK(calls == 3);
    CHECK(clock.now().time_since_epoch() == 200ms);
}

TEST_CASE("keel::asio::resilient passes an operation's outcome through and turns its "
          "exception into a failure that operator() rethrows unchanged",
          "[asio][resilient]") {
    keel::manual_clock clock;
    net::io_context io;
    auto failing = keel::asio::resilient{[]() -> keel::asio::awaitable<int> {
        throw std::invalid_argument{"bad id"};
        co_return 0;
    }};
    auto const result = keel::testing_asio::run(io, clock, failing.async_call());
    REQUIRE_FALSE(result.has_value());
    CHECK(result.failure().exception != nullptr);
    CHECK_THROWS_AS(keel::testing_asio::run(io, clock, failing()), std::invalid_argument);

    auto coded = keel::asio::resilient{[]() -> keel::asio::awaitable<keel::outcome<int>> {
        co_return keel::failure::from(keel::errc::unavailable);
    }};
    CHECK(keel::testing_asio::run(io, clock, coded.async_call())
              .failure()
              .is(keel::errc::unavailable));
    CHECK_THROWS_AS(keel::testing_asio::run(io, clock, coded()), keel::unavailable);

    int seen = 0;
    auto with_args =
        keel::asio::resilient{[&](int a, std::string const& b) -> keel::asio::awaitable<void> {
            seen = a + static_cast<int>(b.size());
            co_return;
        }};
    CHECK(keel::testing_asio::run(io, clock, with_args.async_call(40, std::string{"ab"}))
              .has_value());
    CHECK(seen == 42);
}

TEST_CASE("keel::asio::resilient: the caller's terminal cancellation ends a backoff wait at "
          "once and gives errc::cancelled, restoring the caller's throw_if_cancelled",
          "[asio][resilient][cancel]") {
    keel::manual_clock clock;
    net::io_context io;
    int calls = 0;
    auto pipeline = keel::asio::resilient{
        [&]() -> keel::asio::awaitable<keel::outcome<int>> {
            ++calls;
            co_return keel::failure::from(keel::errc::unavailable);
        },
        keel::retry{
            {.max_attempts = 5, .backoff = keel::constant{1s}, .jitter = keel::jitter::none},
            keel::on_failure{},
            clock,
            keel::virtual_sleeper{clock}}};
    std::optional<bool> throws_after;
    auto caller = [&]() -> keel::asio::awaitable<keel::outcome<int>> {
        auto result = co_await pipeline.async_call();
        throws_after = co_await net::this_coro::throw_if_cancelled();
        co_return result;
    };
    net::cancellation_signal signal;
    auto record = keel::testing_asio::spawn(io, clock, caller(), signal.slot());
    keel::testing_asio::emit_at(io, clock, signal, keel::testing_asio::at(250ms));
    keel::asio::run_in_virtual_time(io, clock);
    REQUIRE(record->value);
    CHECK(record->value->failure().is(keel::errc::cancelled));
    CHECK(record->at == keel::testing_asio::at(250ms));
    CHECK(calls == 1);
    CHECK(throws_after == true);
    CHECK(clock.pending_timers() == 0); // the backoff's timer went with the wait
}

TEST_CASE("keel::asio::resilient: partial cancellation reaches the pipeline only when the "
          "caller's filter lets it through",
          "[asio][resilient][cancel]") {
    keel::manual_clock clock;
    net::io_context io;
    auto pipeline = keel::asio::resilient{[&]() -> keel::asio::awaitable<keel::outcome<int>> {
        if (!co_await keel::testing_asio::take(clock, 1s)) {
            co_return keel::failure{keel::testing_asio::aborted(), nullptr, {}};
        }
        co_return 1;
    }};
    SECTION("the default filter (terminal only) drops it") {
        net::cancellation_signal signal;
        auto record = keel::testing_asio::spawn(io, clock, pipeline.async_call(), signal.slot());
        keel::testing_asio::emit_at(io, clock, signal, keel::testing_asio::at(10ms),
                                    net::cancellation_type::partial);
        keel::asio::run_in_virtual_time(io, clock);
        REQUIRE(record->value);
        CHECK(record->value->value() == 1);
        CHECK(record->at == keel::testing_asio::at(1s));
    }
    SECTION("a caller that widened its filter sees errc::cancelled") {
        auto caller = [&]() -> keel::asio::awaitable<keel::outcome<int>> {
            co_await net::this_coro::reset_cancellation_state(net::enable_partial_cancellation());
            co_return co_await pipeline.async_call();
        };
        net::cancellation_signal signal;
        auto record = keel::testing_asio::spawn(io, clock, caller(), signal.slot());
        keel::testing_asio::emit_at(io, clock, signal, keel::testing_asio::at(10ms),
                                    net::cancellation_type::partial);
        keel::asio::run_in_virtual_time(io, clock);
        REQUIRE(record->value);
        CHECK(record->value->failure().is(keel::errc::cancelled));
        CHECK(record->at == keel::testing_asio::at(10ms));
    }
}

TEST_CASE("keel::asio::resilient: the caller's cancellation reaches an attempt running under a "
          "timeout, through the timeout's own coroutine",
          "[asio][resilient][cancel][timeout]") {
    keel::manual_clock clock;
    net::io_context io;
    bool attempt_saw_cancel = false;
    bool token_fired = false;
    auto pipeline = keel::asio::resilient{
        [&](keel::testing_asio::vcontext const& ctx) -> keel::asio::awaitable<int> {
            attempt_saw_cancel = !co_await keel::testing_asio::take(clock, 1s);
            token_fired = ctx.stop_token().stop_requested();
            co_return 1;
        },
        keel::basic_timeout<keel::manual_clock>{500ms, clock}};
    net::cancellation_signal signal;
    auto record = keel::testing_asio::spawn(io, clock, pipeline.async_call(), signal.slot());
    keel::testing_asio::emit_at(io, clock, signal, keel::testing_asio::at(20ms));
    keel::asio::run_in_virtual_time(io, clock);
    REQUIRE(record->value);
    // The attempt returned a value after its wait was cancelled: the caller gave up, so
    // the value stands (it completed); the timeout did not fire.
    CHECK(attempt_saw_cancel);
    CHECK(token_fired);
    CHECK(record->at == keel::testing_asio::at(20ms));
    CHECK(clock.pending_timers() == 0);
}

TEST_CASE("keel::asio::resilient gives each attempt its number and the deadline of the "
          "innermost timeout in its context",
          "[asio][resilient][context]") {
    keel::manual_clock clock;
    net::io_context io;
    std::vector<int> attempts;
    std::vector<std::chrono::nanoseconds> deadlines;
    auto pipeline = keel::asio::resilient{
        [&](keel::testing_asio::vcontext const& ctx) -> keel::asio::awaitable<keel::outcome<int>> {
            attempts.push_back(ctx.attempt());
            deadlines.push_back(ctx.deadline().value().time_since_epoch());
            co_return keel::failure::from(keel::errc::unavailable);
        },
        keel::retry{
            {.max_attempts = 3, .backoff = keel::constant{10ms}, .jitter = keel::jitter::none},
            keel::on_failure{},
            clock,
            keel::virtual_sleeper{clock}},
        keel::basic_timeout<keel::manual_clock>{100ms, clock}};
    CHECK_FALSE(keel::testing_asio::run(io, clock, pipeline.async_call()).has_value());
    CHECK(attempts == std::vector<int>{1, 2, 3});
    CHECK(deadlines == std::vector<std::chrono::nanoseconds>{100ms, 110ms, 120ms});
}

namespace {
// The user policy docs/async.md shows: one shape for each pipeline.
struct count_calls {
    std::atomic<long>* calls;

    template <class Next, class Context>
    auto execute(Next const& next, Context const& ctx) const {
        calls->fetch_add(1, std::memory_order_relaxed);
        return next(ctx);
    }

    template <class Next, class Context>
    auto async_execute(Next next, Context const& ctx) const
        -> std::invoke_result_t<Next&, Context const&> {
        calls->fetch_add(1, std::memory_order_relaxed);
        co_return co_await next(ctx);
    }
};
} // namespace

TEST_CASE("a user's policy with execute() and async_execute() runs in both pipelines",
          "[asio][resilient][policy]") {
    keel::manual_clock clock;
    net::io_context io;
    std::atomic<long> calls{0};
    auto async_pipeline = keel::asio::resilient{[]() -> keel::asio::awaitable<int> { co_return 5; },
                                                count_calls{&calls}};
    auto sync_pipeline = keel::resilient{[] { return 5; }, count_calls{&calls}};
    CHECK(keel::testing_asio::run(io, clock, async_pipeline()) == 5);
    CHECK(sync_pipeline() == 5);
    CHECK(calls == 2);
}
