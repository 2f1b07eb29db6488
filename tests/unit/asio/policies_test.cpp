// SPDX-License-Identifier: MIT
// keel's synchronous policy objects in the asynchronous pipeline, in virtual
// time: the same decisions as their execute(), with waits on Asio timers.
#include <keel/asio/detail/deadline_queue.hpp>
#include <keel/asio/resilient.hpp>
#include <keel/core/clock.hpp>
#include <keel/limiter/token_bucket.hpp>
#include <keel/policy/bulkhead.hpp>
#include <keel/policy/circuit_breaker.hpp>
#include <keel/policy/fallback.hpp>
#include <keel/policy/rate_limit.hpp>
#include <keel/policy/retry.hpp>
#include <keel/policy/retry_budget.hpp>
#include <keel/policy/timeout.hpp>
#include <keel/resilient.hpp>
#include <keel/testing/manual_clock.hpp>
#include <keel/testing/virtual_sleeper.hpp>

#include <catch2/catch.hpp>

#if defined(KEEL_ASIO_BOOST) && KEEL_ASIO_BOOST
#include <boost/asio/strand.hpp>
#else
#include <asio/strand.hpp>
#endif

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "asio_support.hpp"

using namespace std::chrono_literals;
using keel::testing_asio::at;
namespace net = keel::asio::net;
using keel::testing_asio::vcontext;

namespace {

keel::failure boom() {
    return keel::failure{std::make_error_code(std::errc::io_error), nullptr, {}};
}

// A retry on the manual clock with the given options (jitter off unless set).
auto vretry(keel::manual_clock clock, keel::basic_retry_options<keel::manual_clock> options) {
    return keel::retry{std::move(options), keel::on_failure{}, clock, keel::virtual_sleeper{clock}};
}

keel::circuit_breaker_options small_breaker() {
    keel::circuit_breaker_options o;
    o.window_size = 4;
    o.minimum_calls = 4;
    o.failure_rate_threshold = 50.0;
    o.reset_timeout = 10s;
    o.reset_jitter = 0s;
    o.permitted_calls_in_half_open = 1;
    return o;
}

} // namespace

// ---------------------------------------------------------------- retry

TEST_CASE("async retry waits the exact exponential delays between attempts and records each "
          "attempt's start",
          "[asio][retry]") {
    keel::manual_clock clock;
    net::io_context io;
    std::vector<std::chrono::nanoseconds> starts;
    std::vector<int> attempts;
    auto pipeline = keel::asio::resilient{
        [&](vcontext const& ctx) -> keel::asio::awaitable<keel::outcome<int>> {
            starts.push_back(clock.now().time_since_epoch());
            attempts.push_back(ctx.attempt());
            co_return boom();
        },
        vretry(clock, {.max_attempts = 4,
                       .backoff = keel::exponential{100ms, 2.0, 1s},
                       .jitter = keel::jitter::none})};
    auto const result = keel::testing_asio::run(io, clock, pipeline.async_call());
    REQUIRE_FALSE(result.has_value());
    CHECK(result.failure().code == std::make_error_code(std::errc::io_error));
    CHECK(attempts == std::vector<int>{1, 2, 3, 4});
    CHECK(starts == std::vector<std::chrono::nanoseconds>{0ms, 100ms, 300ms, 700ms});
}

TEST_CASE("async retry waits a retry-after hint longer than its backoff", "[asio][retry]") {
    keel::manual_clock clock;
    net::io_context io;
    std::vector<std::chrono::nanoseconds> starts;
    auto pipeline = keel::asio::resilient{
        [&]() -> keel::asio::awaitable<keel::outcome<int>> {
            starts.push_back(clock.now().time_since_epoch());
            if (starts.size() == 1) {
                co_return keel::failure::from(keel::errc::rate_limited, 750ms);
            }
            co_return 7;
        },
        vretry(clock, {.backoff = keel::constant{100ms}, .jitter = keel::jitter::none})};
    auto const result = keel::testing_asio::run(io, clock, pipeline.async_call());
    REQUIRE(result.has_value());
    CHECK(*result == 7);
    CHECK(starts == std::vector<std::chrono::nanoseconds>{0ms, 750ms});
}

TEST_CASE("async retry stops when its budget refuses, with errc::retry_budget_exhausted",
          "[asio][retry]") {
    keel::manual_clock clock;
    net::io_context io;
    keel::basic_retry_budget<keel::manual_clock> budget{
        {.retry_ratio = 0.0, .min_retries_per_second = 0.1, .ttl = 10s}, clock};
    int calls = 0;
    auto pipeline = keel::asio::resilient{[&]() -> keel::asio::awaitable<keel::outcome<int>> {
                                              ++calls;
                                              co_return boom();
                                          },
                                          vretry(clock, {.max_attempts = 5,
                                                         .backoff = keel::constant{10ms},
                                                         .jitter = keel::jitter::none,
                                                         .budget = &budget})};
    auto const result = keel::testing_asio::run(io, clock, pipeline.async_call());
    REQUIRE_FALSE(result.has_value());
    CHECK(result.failure().is(keel::errc::retry_budget_exhausted));
    CHECK(calls == 2); // the floor of 0.1/s over 10 s holds one retry
    CHECK(budget.snapshot().refused == 1);
}

TEST_CASE("async retry inside a timeout gives up at the deadline instead of starting a wait "
          "past it",
          "[asio][retry][timeout]") {
    keel::manual_clock clock;
    net::io_context io;
    int calls = 0;
    auto pipeline = keel::asio::resilient{[&]() -> keel::asio::awaitable<keel::outcome<int>> {
                                              ++calls;
                                              co_return boom();
                                          },
                                          keel::basic_timeout<keel::manual_clock>{250ms, clock},
                                          vretry(clock, {.max_attempts = 10,
                                                         .backoff = keel::constant{100ms},
                                                         .jitter = keel::jitter::none})};
    auto const result = keel::testing_asio::run(io, clock, pipeline.async_call());
    REQUIRE_FALSE(result.has_value());
    // Attempts at 0, 100, 200 ms; the wait to 300 ms would pass 250 ms.
    CHECK(calls == 3);
    CHECK(result.failure().code == std::make_error_code(std::errc::io_error));
    CHECK(clock.now().time_since_epoch() == 200ms);
}

TEST_CASE("async retry reports an on_retry listener's exception as the call's failure",
          "[asio][retry]") {
    keel::manual_clock clock;
    net::io_context io;
    auto pipeline = keel::asio::resilient{
        []() -> keel::asio::awaitable<keel::outcome<int>> { co_return boom(); },
        vretry(clock, {.backoff = keel::constant{10ms},
                       .jitter = keel::jitter::none,
                       .on_retry = [](keel::retry_event const&) {
                           throw std::runtime_error{"listener"};
                       }})};
    auto const result = keel::testing_asio::run(io, clock, pipeline.async_call());
    REQUIRE_FALSE(result.has_value());
    CHECK_THROWS_WITH(std::rethrow_exception(result.failure().exception), "listener");
}

// ---------------------------------------------------------------- timeout

TEST_CASE("async timeout cancels a slow attempt's wait at the deadline: errc::timeout at "
          "exactly the deadline",
          "[asio][timeout]") {
    keel::manual_clock clock;
    net::io_context io;
    std::optional<bool> op_wait_completed;
    std::optional<keel::manual_clock::time_point> seen_deadline;
    auto pipeline = keel::asio::resilient{[&](vcontext const& ctx) -> keel::asio::awaitable<int> {
                                              seen_deadline = ctx.deadline();
                                              op_wait_completed =
                                                  co_await keel::testing_asio::take(clock, 10s);
                                              co_return 1;
                                          },
                                          keel::basic_timeout<keel::manual_clock>{100ms, clock}};
    auto record = keel::testing_asio::spawn(io, clock, pipeline.async_call());
    keel::asio::run_in_virtual_time(io, clock);
    REQUIRE(record->done);
    REQUIRE(record->value);
    REQUIRE_FALSE(record->value->has_value());
    CHECK(record->value->failure().is(keel::errc::timeout));
    CHECK(record->at == at(100ms));
    CHECK(op_wait_completed == false); // the attempt's own wait was cancelled
    CHECK(seen_deadline == at(100ms));
}

TEST_CASE("async timeout keeps a failure that arrives before the deadline", "[asio][timeout]") {
    keel::manual_clock clock;
    net::io_context io;
    auto pipeline = keel::asio::resilient{[&]() -> keel::asio::awaitable<keel::outcome<int>> {
                                              co_await keel::testing_asio::take(clock, 5ms);
                                              co_return boom();
                                          },
                                          keel::basic_timeout<keel::manual_clock>{100ms, clock}};
    auto const result = keel::testing_asio::run(io, clock, pipeline.async_call());
    REQUIRE_FALSE(result.has_value());
    CHECK(result.failure().code == std::make_error_code(std::errc::io_error));
    CHECK(clock.now().time_since_epoch() == 5ms); // the deadline timer went with the call
}

TEST_CASE("async timeouts nest: an inner timeout never extends an outer deadline",
          "[asio][timeout]") {
    keel::manual_clock clock;
    net::io_context io;
    std::optional<keel::manual_clock::time_point> seen;
    auto pipeline = keel::asio::resilient{[&](vcontext const& ctx) -> keel::asio::awaitable<int> {
                                              seen = ctx.deadline();
                                              co_await keel::testing_asio::take(clock, 1s);
                                              co_return 1;
                                          },
                                          keel::basic_timeout<keel::manual_clock>{100ms, clock},
                                          keel::basic_timeout<keel::manual_clock>{500ms, clock}};
    auto record = keel::testing_asio::spawn(io, clock, pipeline.async_call());
    keel::asio::run_in_virtual_time(io, clock);
    REQUIRE(record->value);
    CHECK(record->value->failure().is(keel::errc::timeout));
    CHECK(seen == at(100ms));
    CHECK(record->at == at(100ms));
}

TEST_CASE("async timeout fires the attempt's stop token, and an attempt that ignores "
          "cancellation and returns late is still a timeout",
          "[asio][timeout]") {
    keel::manual_clock clock;
    net::io_context io;
    bool stopped_in_time = false;
    auto pipeline = keel::asio::resilient{
        [&](vcontext const& ctx) -> keel::asio::awaitable<int> {
            auto const token = ctx.stop_token();
            // Ignores the cancellation slot: waits on a timer bound to no slot.
            keel::asio::basic_timer<keel::manual_clock> stubborn{co_await net::this_coro::executor,
                                                                 clock};
            co_await stubborn.async_wait_until(
                at(300ms),
                net::bind_cancellation_slot(net::cancellation_slot{},
                                            net::experimental::as_tuple(net::use_awaitable)));
            stopped_in_time = token.stop_requested();
            co_return 1;
        },
        keel::basic_timeout<keel::manual_clock>{100ms, clock}};
    auto record = keel::testing_asio::spawn(io, clock, pipeline.async_call());
    keel::asio::run_in_virtual_time(io, clock);
    REQUIRE(record->value);
    CHECK(record->value->failure().is(keel::errc::timeout));
    CHECK(record->at == at(300ms));
    CHECK(stopped_in_time);
}

TEST_CASE("async timeouts of many calls in flight on one io_context share one timer armed at the "
          "earliest deadline, and fire in deadline order, each at its own deadline",
          "[asio][timeout]") {
    keel::manual_clock clock;
    net::io_context io;
    std::vector<int> fired;
    auto make = [&](std::chrono::milliseconds duration, int id) {
        return keel::asio::resilient{[&clock, &fired, id]() -> keel::asio::awaitable<int> {
                                         if (!co_await keel::testing_asio::take(clock, 10s)) {
                                             fired.push_back(id);
                                         }
                                         co_return id;
                                     },
                                     keel::basic_timeout<keel::manual_clock>{duration, clock}};
    };
    std::vector<std::chrono::milliseconds> const durations{70ms, 10ms, 50ms, 30ms,
                                                           80ms, 20ms, 60ms, 40ms};
    std::vector<decltype(make(1ms, 0))> pipelines;
    for (std::size_t i = 0; i < durations.size(); ++i) {
        pipelines.push_back(make(durations[i], static_cast<int>(i)));
    }
    std::vector<std::shared_ptr<keel::testing_asio::completion<keel::outcome<int>>>> records;
    for (auto const& pipeline : pipelines) {
        records.push_back(keel::testing_asio::spawn(io, clock, pipeline.async_call()));
    }
    io.poll();
    auto const queue = keel::asio::detail::deadline_queue_for(io.get_executor(), clock);
    CHECK(queue->pending() == durations.size());
    CHECK(queue->armed_at() == at(10ms));
    CHECK(clock.pending_timers() == durations.size() + 1); // the operations' waits and one timer

    keel::asio::run_in_virtual_time(io, clock);
    CHECK(fired == std::vector<int>{1, 5, 3, 7, 2, 6, 0, 4});
    for (std::size_t i = 0; i < durations.size(); ++i) {
        REQUIRE(records[i]->value);
        CHECK(records[i]->value->failure().is(keel::errc::timeout));
        CHECK(records[i]->at == at(durations[i]));
    }
    CHECK(queue->pending() == 0);
    CHECK_FALSE(queue->armed_at());
    CHECK(clock.pending_timers() == 0);
}

TEST_CASE("async timeout: a later deadline of the same duration does not re-arm the timer, and "
          "still fires at its own time",
          "[asio][timeout]") {
    keel::manual_clock clock;
    net::io_context io;
    auto pipeline = keel::asio::resilient{[&]() -> keel::asio::awaitable<int> {
                                              co_await keel::testing_asio::take(clock, 1s);
                                              co_return 1;
                                          },
                                          keel::basic_timeout<keel::manual_clock>{100ms, clock}};
    auto const queue = keel::asio::detail::deadline_queue_for(io.get_executor(), clock);
    auto first = keel::testing_asio::spawn(io, clock, pipeline.async_call());
    keel::asio::run_in_virtual_time(io, clock, at(30ms));
    clock.set(at(30ms));
    auto second = keel::testing_asio::spawn(io, clock, pipeline.async_call());
    io.restart();
    io.poll();
    CHECK(queue->pending() == 2);
    CHECK(queue->armed_at() == at(100ms));
    keel::asio::run_in_virtual_time(io, clock);
    REQUIRE(first->value);
    REQUIRE(second->value);
    CHECK(first->value->failure().is(keel::errc::timeout));
    CHECK(second->value->failure().is(keel::errc::timeout));
    CHECK(first->at == at(100ms));
    CHECK(second->at == at(130ms));
}

TEST_CASE("async timeout: a call that completes early leaves no timer armed behind it and "
          "delays no other call's deadline",
          "[asio][timeout]") {
    keel::manual_clock clock;
    net::io_context io;
    auto op = [&](std::chrono::milliseconds takes) {
        return [&clock, takes]() -> keel::asio::awaitable<int> {
            co_await keel::testing_asio::take(clock, takes);
            co_return 1;
        };
    };
    auto early =
        keel::asio::resilient{op(5ms), keel::basic_timeout<keel::manual_clock>{100ms, clock}};
    auto late =
        keel::asio::resilient{op(1s), keel::basic_timeout<keel::manual_clock>{300ms, clock}};
    auto const queue = keel::asio::detail::deadline_queue_for(io.get_executor(), clock);

    auto quick = keel::testing_asio::spawn(io, clock, early.async_call());
    auto slow = keel::testing_asio::spawn(io, clock, late.async_call());
    keel::asio::run_in_virtual_time(io, clock);
    REQUIRE(quick->value);
    CHECK(quick->value->value() == 1);
    CHECK(quick->at == at(5ms));
    REQUIRE(slow->value);
    CHECK(slow->value->failure().is(keel::errc::timeout));
    CHECK(slow->at == at(300ms)); // the early call's armed deadline (100 ms) changed nothing

    // Alone, an early completion takes the timer with it: virtual time stops there.
    auto alone = keel::testing_asio::spawn(io, clock, early.async_call());
    keel::asio::run_in_virtual_time(io, clock);
    REQUIRE(alone->value);
    CHECK(alone->value->value() == 1);
    CHECK(clock.now() == at(305ms));
    CHECK(queue->pending() == 0);
    CHECK_FALSE(queue->armed_at());
    CHECK(clock.pending_timers() == 0);
}

TEST_CASE("async timeout on keel::steady_clock: io_context::run() returns once the calls are "
          "done, not when their deadlines pass",
          "[asio][timeout]") {
    net::io_context io;
    auto pipeline = keel::asio::resilient{[]() -> keel::asio::awaitable<int> { co_return 1; },
                                          keel::timeout{1h}};
    int ok = 0;
    for (int i = 0; i < 3; ++i) {
        net::co_spawn(
            io,
            [&]() -> keel::asio::awaitable<void> {
                for (int j = 0; j < 10; ++j) {
                    ok += (co_await pipeline.async_call()).value();
                }
            },
            net::detached);
    }
    io.run_for(10s);
    CHECK(io.stopped()); // no work left: nothing waits for the deadlines an hour ahead
    CHECK(ok == 30);
    auto const queue =
        keel::asio::detail::deadline_queue_for(io.get_executor(), keel::steady_clock{});
    CHECK(queue->pending() == 0);
    CHECK_FALSE(queue->armed_at());
}

TEST_CASE("async timeouts on two strands of a 2-thread io_context share the context's timer, "
          "each expired call is cancelled on its own strand",
          "[asio][timeout][concurrency]") {
    net::io_context io{2};
    using strand_type = net::strand<net::io_context::executor_type>;
    std::vector<strand_type> strands{net::make_strand(io), net::make_strand(io)};
    std::atomic<int> succeeded{0};
    std::atomic<int> timed_out{0};
    std::atomic<int> off_strand{0};
    std::atomic<int> other{0};
    for (auto const& strand : strands) {
        for (int c = 0; c < 4; ++c) {
            net::co_spawn(
                strand,
                [&, strand, c]() -> keel::asio::awaitable<void> {
                    auto const slow = keel::asio::resilient{
                        [&, strand](keel::asio::context const& ctx) -> keel::asio::awaitable<int> {
                            std::stop_callback const on_stop{
                                ctx.stop_token(), [&, strand] {
                                    if (!strand.running_in_this_thread()) {
                                        off_strand.fetch_add(1);
                                    }
                                }};
                            keel::asio::timer wait{co_await net::this_coro::executor};
                            co_await wait.async_wait_for(
                                1s, net::experimental::as_tuple(net::use_awaitable));
                            co_return 1;
                        },
                        keel::timeout{std::chrono::microseconds{500 + 250 * c}}};
                    auto const fast = keel::asio::resilient{
                        []() -> keel::asio::awaitable<int> { co_return 1; }, keel::timeout{1s}};
                    for (int i = 0; i < 4; ++i) {
                        auto const quick = co_await fast.async_call();
                        (quick.has_value() ? succeeded : other).fetch_add(1);
                        auto const late = co_await slow.async_call();
                        (!late.has_value() && late.failure().is(keel::errc::timeout) ? timed_out
                                                                                     : other)
                            .fetch_add(1);
                    }
                },
                net::detached);
        }
    }
    auto const start = std::chrono::steady_clock::now();
    std::thread second{[&] { io.run(); }};
    io.run();
    second.join();
    CHECK(succeeded == 32);
    CHECK(timed_out == 32);
    CHECK(other == 0);
    CHECK(off_strand == 0);
    CHECK(std::chrono::steady_clock::now() - start < 900ms); // not one of the 1 s waits ran out
}

TEST_CASE("an io_context destroyed while async timeouts are pending frees their calls and "
          "leaves the queue empty and disarmed",
          "[asio][timeout]") {
    auto gated = [](keel::asio::context const&) -> keel::asio::awaitable<int> {
        keel::asio::timer gate{co_await net::this_coro::executor};
        co_await gate.async_wait_for(1h, net::use_awaitable);
        co_return 1;
    };
    auto const hour = keel::asio::resilient{gated, keel::timeout{1h}};
    auto const nested = keel::asio::resilient{gated, keel::timeout{2h}, keel::timeout{30min}};
    std::shared_ptr<keel::asio::detail::deadline_queue<keel::steady_clock>> queue;
    {
        net::io_context io;
        auto start = [&](auto const& pipeline) {
            net::co_spawn(
                io, [&]() -> keel::asio::awaitable<void> { co_await pipeline.async_call(); },
                net::detached);
        };
        for (int i = 0; i < 3; ++i) {
            start(hour);
        }
        start(nested);
        io.poll();
        queue = keel::asio::detail::deadline_queue_for(io.get_executor(), keel::steady_clock{});
        CHECK(queue->pending() == 5);
        CHECK(queue->armed_at());
    }
    CHECK(queue->pending() == 0);
    CHECK_FALSE(queue->armed_at());
}

// ---------------------------------------------------------------- breaker

TEST_CASE("async guard(breaker) opens on failures and then rejects without running the "
          "operation, with the time to half-open as retry_after",
          "[asio][circuit_breaker]") {
    keel::manual_clock clock;
    net::io_context io;
    keel::basic_circuit_breaker<keel::manual_clock> breaker{small_breaker(), clock};
    int calls = 0;
    auto pipeline = keel::asio::resilient{[&]() -> keel::asio::awaitable<keel::outcome<int>> {
                                              ++calls;
                                              co_return boom();
                                          },
                                          keel::guard(breaker)};
    for (int i = 0; i < 4; ++i) {
        CHECK_FALSE(keel::testing_asio::run(io, clock, pipeline.async_call()).has_value());
    }
    CHECK(breaker.state() == keel::circuit_state::open);
    auto const rejected = keel::testing_asio::run(io, clock, pipeline.async_call());
    REQUIRE_FALSE(rejected.has_value());
    CHECK(rejected.failure().is(keel::errc::circuit_open));
    CHECK(rejected.failure().retry_after == std::optional<std::chrono::nanoseconds>{10s});
    CHECK(calls == 4);
    CHECK_THROWS_AS(keel::testing_asio::run(io, clock, pipeline()), keel::circuit_open);
}

TEST_CASE("async guard(breaker) releases the permit of an attempt the caller cancelled, "
          "recording no verdict",
          "[asio][circuit_breaker][cancel]") {
    keel::manual_clock clock;
    net::io_context io;
    auto options = small_breaker();
    options.window_size = 2;
    options.minimum_calls = 1;
    keel::basic_circuit_breaker<keel::manual_clock> breaker{options, clock};
    auto pipeline = keel::asio::resilient{
        [&]() -> keel::asio::awaitable<keel::outcome<int>> {
            if (!co_await keel::testing_asio::take(clock, 1s)) {
                co_return keel::failure{keel::testing_asio::aborted(), nullptr, {}};
            }
            co_return 1;
        },
        keel::guard(breaker)};
    net::cancellation_signal signal;
    auto record = keel::testing_asio::spawn(io, clock, pipeline.async_call(), signal.slot());
    keel::testing_asio::emit_at(io, clock, signal, at(10ms));
    keel::asio::run_in_virtual_time(io, clock);
    REQUIRE(record->value);
    CHECK(record->value->failure().is(keel::errc::cancelled));
    CHECK(record->at == at(10ms));
    auto const m = breaker.metrics();
    CHECK(m.calls == 0);
    CHECK(m.failed_calls == 0);
    CHECK(breaker.state() == keel::circuit_state::closed);
}

TEST_CASE("async guard(breaker) counts an attempt a timeout cut short as a failure",
          "[asio][circuit_breaker][timeout]") {
    keel::manual_clock clock;
    net::io_context io;
    auto options = small_breaker();
    options.window_size = 2;
    options.minimum_calls = 1;
    keel::basic_circuit_breaker<keel::manual_clock> breaker{options, clock};
    auto pipeline = keel::asio::resilient{[&]() -> keel::asio::awaitable<int> {
                                              co_await keel::testing_asio::take(clock, 1s);
                                              co_return 1;
                                          },
                                          keel::basic_timeout<keel::manual_clock>{100ms, clock},
                                          keel::guard(breaker)};
    auto const result = keel::testing_asio::run(io, clock, pipeline.async_call());
    CHECK(result.failure().is(keel::errc::timeout));
    CHECK(breaker.metrics().failed_calls == 1);
    CHECK(breaker.state() == keel::circuit_state::open);
}

// ---------------------------------------------------------------- bulkhead

TEST_CASE("async guard(bulkhead) queues in FIFO order, parks coroutines instead of threads, "
          "and rejects beyond the queue",
          "[asio][bulkhead]") {
    keel::manual_clock clock;
    net::io_context io;
    keel::basic_bulkhead<keel::virtual_sleeper> bulkhead{
        {.max_concurrent_calls = 1, .max_queued_calls = 2, .max_wait = 1s},
        keel::virtual_sleeper{clock}};
    std::vector<int> order;
    auto pipeline = keel::asio::resilient{[&](int id) -> keel::asio::awaitable<int> {
                                              order.push_back(id);
                                              co_await keel::testing_asio::take(clock, 100ms);
                                              co_return id;
                                          },
                                          keel::guard(bulkhead)};
    auto a = keel::testing_asio::spawn(io, clock, pipeline.async_call(1));
    auto b = keel::testing_asio::spawn(io, clock, pipeline.async_call(2));
    auto c = keel::testing_asio::spawn(io, clock, pipeline.async_call(3));
    auto d = keel::testing_asio::spawn(io, clock, pipeline.async_call(4));
    keel::asio::run_in_virtual_time(io, clock);
    CHECK(order == std::vector<int>{1, 2, 3});
    CHECK(a->at == at(100ms));
    CHECK(b->at == at(200ms));
    CHECK(c->at == at(300ms));
    REQUIRE(d->value);
    CHECK(d->value->failure().is(keel::errc::bulkhead_full));
    CHECK(d->at == at(0ms));
    CHECK(bulkhead.snapshot().in_flight == 0);
    CHECK(bulkhead.snapshot().queued == 0);
}

TEST_CASE("async guard(bulkhead) gives up after max_wait, and a caller's cancellation ends a "
          "queued wait with errc::cancelled",
          "[asio][bulkhead][cancel]") {
    keel::manual_clock clock;
    net::io_context io;
    keel::basic_bulkhead<keel::virtual_sleeper> bulkhead{
        {.max_concurrent_calls = 1, .max_queued_calls = 2, .max_wait = 50ms},
        keel::virtual_sleeper{clock}};
    auto pipeline = keel::asio::resilient{[&]() -> keel::asio::awaitable<int> {
                                              co_await keel::testing_asio::take(clock, 100ms);
                                              co_return 0;
                                          },
                                          keel::guard(bulkhead)};
    net::cancellation_signal signal;
    auto holder = keel::testing_asio::spawn(io, clock, pipeline.async_call());
    auto timed_out = keel::testing_asio::spawn(io, clock, pipeline.async_call());
    auto cancelled = keel::testing_asio::spawn(io, clock, pipeline.async_call(), signal.slot());
    keel::testing_asio::emit_at(io, clock, signal, at(20ms));
    keel::asio::run_in_virtual_time(io, clock);
    REQUIRE(holder->value);
    CHECK(holder->value->has_value());
    REQUIRE(timed_out->value);
    CHECK(timed_out->value->failure().is(keel::errc::bulkhead_full));
    CHECK(timed_out->at == at(50ms));
    REQUIRE(cancelled->value);
    CHECK(cancelled->value->failure().is(keel::errc::cancelled));
    CHECK(cancelled->at == at(20ms));
    CHECK(bulkhead.snapshot().queued == 0);
}

TEST_CASE("async guard(bulkhead) counts its rejections in the bulkhead, as the synchronous "
          "guard does",
          "[asio][bulkhead]") {
    keel::manual_clock clock;
    net::io_context io;
    keel::basic_bulkhead<keel::virtual_sleeper> queued{
        {.max_concurrent_calls = 1, .max_queued_calls = 1, .max_wait = 50ms},
        keel::virtual_sleeper{clock}};
    keel::basic_bulkhead<keel::virtual_sleeper> unqueued{{.max_concurrent_calls = 1},
                                                         keel::virtual_sleeper{clock}};
    auto const work = [&]() -> keel::asio::awaitable<int> {
        co_await keel::testing_asio::take(clock, 100ms);
        co_return 0;
    };
    auto through_queue = keel::asio::resilient{work, keel::guard(queued)};
    auto direct = keel::asio::resilient{work, keel::guard(unqueued)};
    auto holder = keel::testing_asio::spawn(io, clock, through_queue.async_call());
    auto timed_out = keel::testing_asio::spawn(io, clock, through_queue.async_call());
    auto queue_full = keel::testing_asio::spawn(io, clock, through_queue.async_call());
    auto held = keel::testing_asio::spawn(io, clock, direct.async_call());
    auto full = keel::testing_asio::spawn(io, clock, direct.async_call());
    keel::asio::run_in_virtual_time(io, clock);
    REQUIRE(timed_out->value);
    CHECK(timed_out->value->failure().is(keel::errc::bulkhead_full));
    REQUIRE(queue_full->value);
    CHECK(queue_full->value->failure().is(keel::errc::bulkhead_full));
    REQUIRE(full->value);
    CHECK(full->value->failure().is(keel::errc::bulkhead_full));
    CHECK(queued.snapshot().rejected_full == 1);
    CHECK(queued.snapshot().rejected_waits == 1);
    CHECK(unqueued.snapshot().rejected_full == 1);
    CHECK(unqueued.snapshot().rejected_waits == 0);
}

// ---------------------------------------------------------------- rate_limit

TEST_CASE("async guard(limiter) waits the limiter's retry_after within max_wait and rejects "
          "beyond it",
          "[asio][rate_limit]") {
    keel::manual_clock clock;
    net::io_context io;
    keel::basic_token_bucket<keel::manual_clock> bucket{{.rate = 10, .burst = 1}, clock};
    std::vector<std::chrono::nanoseconds> starts;
    auto op = [&]() -> keel::asio::awaitable<int> {
        starts.push_back(clock.now().time_since_epoch());
        co_return 0;
    };
    auto waits = keel::asio::resilient{
        op, keel::guard(bucket, {.max_wait = 150ms}, keel::virtual_sleeper{clock})};
    CHECK(keel::testing_asio::run(io, clock, waits.async_call()).has_value());
    CHECK(keel::testing_asio::run(io, clock, waits.async_call()).has_value());
    CHECK(starts == std::vector<std::chrono::nanoseconds>{0ms, 100ms});
    auto rejects = keel::asio::resilient{op, keel::guard(bucket)};
    auto const refused = keel::testing_asio::run(io, clock, rejects.async_call());
    REQUIRE_FALSE(refused.has_value());
    CHECK(refused.failure().is(keel::errc::rate_limited));
    CHECK(refused.failure().retry_after == std::optional<std::chrono::nanoseconds>{100ms});
}

// ---------------------------------------------------------------- fallback

TEST_CASE("async fallback substitutes a failure and passes a value through", "[asio][fallback]") {
    keel::manual_clock clock;
    net::io_context io;
    bool fail = true;
    auto pipeline = keel::asio::resilient{
        [&]() -> keel::asio::awaitable<keel::outcome<std::string>> {
            if (fail) {
                co_return boom();
            }
            co_return std::string{"fresh"};
        },
        keel::fallback{[](keel::failure const&) { return std::string{"cached"}; }}};
    CHECK(keel::testing_asio::run(io, clock, pipeline.async_call()).value() == "cached");
    fail = false;
    CHECK(keel::testing_asio::run(io, clock, pipeline.async_call()).value() == "fresh");
}

TEST_CASE("a bulkhead shared by asynchronous and synchronous callers never runs more than its "
          "limit, and a slot released on a thread wakes a coroutine waiting on the io thread",
          "[asio][bulkhead][concurrency]") {
    keel::bulkhead shared{{.max_concurrent_calls = 2, .max_queued_calls = 64, .max_wait = 10s}};
    std::atomic<int> running{0};
    std::atomic<int> most{0};
    auto enter = [&] {
        int const now = running.fetch_add(1) + 1;
        int seen = most.load();
        while (now > seen && !most.compare_exchange_weak(seen, now)) {
        }
    };
    net::io_context io;
    auto async_pipeline =
        keel::asio::resilient{[&]() -> keel::asio::awaitable<int> {
                                  enter();
                                  co_await keel::asio::sleep_for(keel::steady_clock{}, 200us);
                                  running.fetch_sub(1);
                                  co_return 1;
                              },
                              keel::guard(shared)};
    auto sync_pipeline = keel::resilient{[&] {
                                             enter();
                                             std::this_thread::sleep_for(200us);
                                             running.fetch_sub(1);
                                             return 1;
                                         },
                                         keel::guard(shared)};
    constexpr int async_calls = 40;
    constexpr int sync_calls = 20;
    std::atomic<int> async_ok{0};
    for (int i = 0; i < async_calls; ++i) {
        net::co_spawn(
            io,
            [&]() -> keel::asio::awaitable<void> {
                auto const r = co_await async_pipeline.async_call();
                if (r.has_value()) {
                    async_ok.fetch_add(1);
                }
            },
            net::detached);
    }
    std::atomic<int> sync_ok{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 2; ++t) {
        threads.emplace_back([&] {
            for (int i = 0; i < sync_calls / 2; ++i) {
                if (sync_pipeline.try_call().has_value()) {
                    sync_ok.fetch_add(1);
                }
            }
        });
    }
    io.run();
    for (auto& t : threads) {
        t.join();
    }
    CHECK(async_ok == async_calls);
    CHECK(sync_ok == sync_calls);
    CHECK(most.load() <= 2);
    CHECK(shared.snapshot().in_flight == 0);
    CHECK(shared.snapshot().queued == 0);
}

TEST_CASE("async retry and guard(limiter) record the attempts made and the time waited in the "
          "outcome",
          "[asio][retry][stats]") {
    keel::manual_clock clock;
    net::io_context io;
    keel::basic_token_bucket<keel::manual_clock> bucket{{.rate = 10, .burst = 1}, clock};
    int calls = 0;
    auto pipeline = keel::asio::resilient{
        [&]() -> keel::asio::awaitable<keel::outcome<int>> {
            if (++calls < 3) {
                co_return boom();
            }
            co_return calls;
        },
        vretry(clock,
               {.max_attempts = 4, .backoff = keel::constant{30ms}, .jitter = keel::jitter::none}),
        keel::guard(bucket, {.max_wait = 1s}, keel::virtual_sleeper{clock})};
    auto const result = keel::testing_asio::run(io, clock, pipeline.async_call());
    REQUIRE(result.has_value());
    // Attempts at 0 (bucket full), 30 ms (waits 70 ms for a permit), 130 ms (waits 70 ms).
    CHECK(result.attempts() == 3);
    CHECK(result.waited() == 30ms + 70ms + 30ms + 70ms);
}

TEST_CASE("observe::count in the async pipeline records the awaited outcome and its attempts",
          "[asio][observe]") {
    keel::manual_clock clock;
    net::io_context io;
    keel::observe::pipeline_counters counters;
    int calls = 0;
    auto pipeline = keel::asio::resilient{
        [&]() -> keel::asio::awaitable<keel::outcome<int>> {
            if (++calls < 2) {
                co_return boom();
            }
            co_return calls;
        },
        keel::observe::count(counters),
        vretry(clock, {.backoff = keel::constant{5ms}, .jitter = keel::jitter::none})};
    CHECK(keel::testing_asio::run(io, clock, pipeline.async_call()).has_value());
    auto const s = counters.snapshot();
    CHECK(s.calls_of(keel::observe::call_outcome::success) == 1);
    CHECK(s.attempts == 2);
    CHECK(s.retries == 1);
    CHECK(s.retry_wait == 5ms);
}
