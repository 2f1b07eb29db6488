// SPDX-License-Identifier: MIT
// keel::asio::basic_timer and the waits built on it, on the manual clock (and
// once on the real one), and keel::asio::run_in_virtual_time.
#include <keel/asio/timer.hpp>
#include <keel/core/clock.hpp>
#include <keel/testing/asio.hpp>
#include <keel/testing/manual_clock.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <optional>
#include <vector>

#include "asio_support.hpp"

using namespace std::chrono_literals;
using keel::testing_asio::at;
namespace net = keel::asio::net;

TEST_CASE("keel::asio::basic_timer on a manual clock completes when the clock reaches its "
          "time, not before",
          "[asio][timer]") {
    keel::manual_clock clock;
    net::io_context io;
    keel::asio::basic_timer<keel::manual_clock> timer{io.get_executor(), clock};
    std::optional<keel::asio::error_code> result;
    timer.async_wait_until(at(100ms), [&](keel::asio::error_code ec) { result = ec; });
    CHECK(clock.pending_timers() == 1);
    clock.advance(99ms);
    io.poll();
    CHECK_FALSE(result);
    clock.advance(1ms);
    CHECK_FALSE(result); // completions are posted to the executor, never run inside advance
    io.restart();
    io.poll();
    REQUIRE(result);
    CHECK_FALSE(*result);
}

TEST_CASE("keel::asio::basic_timer: cancel(), destruction and the handler's cancellation slot "
          "complete the wait with operation_aborted and take it off the clock",
          "[asio][timer]") {
    keel::manual_clock clock;
    net::io_context io;
    std::vector<keel::asio::error_code> results;
    auto record = [&](keel::asio::error_code ec) { results.push_back(ec); };
    {
        keel::asio::basic_timer<keel::manual_clock> timer{io.get_executor(), clock};
        timer.async_wait_until(at(1s), record);
        CHECK(timer.cancel() == 1);
        CHECK(timer.cancel() == 0);
        timer.async_wait_until(at(1s), record);
    } // destroyed with a wait pending
    net::cancellation_signal signal;
    keel::asio::basic_timer<keel::manual_clock> timer{io.get_executor(), clock};
    timer.async_wait_until(at(1s), net::bind_cancellation_slot(signal.slot(), record));
    signal.emit(net::cancellation_type::terminal);
    CHECK(clock.pending_timers() == 0);
    io.poll();
    REQUIRE(results.size() == 3);
    for (auto const& ec : results) {
        CHECK(ec == net::error::operation_aborted);
    }
}

TEST_CASE("keel::asio::basic_timer never schedules a wait until time_point::max(): it ends "
          "only when cancelled",
          "[asio][timer]") {
    keel::manual_clock clock;
    net::io_context io;
    keel::asio::basic_timer<keel::manual_clock> timer{io.get_executor(), clock};
    std::optional<keel::asio::error_code> result;
    timer.async_wait_until(keel::manual_clock::time_point::max(),
                           [&](keel::asio::error_code ec) { result = ec; });
    CHECK(clock.pending_timers() == 0);
    keel::asio::run_in_virtual_time(io, clock);
    CHECK_FALSE(result);
    timer.cancel();
    keel::asio::run_in_virtual_time(io, clock);
    REQUIRE(result);
    CHECK(*result == net::error::operation_aborted);
}

TEST_CASE("keel::asio::basic_timer on keel::steady_clock is an Asio timer", "[asio][timer]") {
    net::io_context io;
    keel::asio::timer timer{io.get_executor()};
    std::optional<keel::asio::error_code> result;
    auto const start = std::chrono::steady_clock::now();
    timer.async_wait_for(2ms, [&](keel::asio::error_code ec) { result = ec; });
    io.run();
    REQUIRE(result);
    CHECK_FALSE(*result);
    CHECK(std::chrono::steady_clock::now() - start >= 2ms);
}

TEST_CASE("keel::asio::sleep_for returns false at once when cancellation was already "
          "requested, and true after a non-positive wait otherwise",
          "[asio][timer]") {
    keel::manual_clock clock;
    net::io_context io;
    auto waits = [&]() -> keel::asio::awaitable<std::vector<bool>> {
        std::vector<bool> r;
        r.push_back(co_await keel::asio::sleep_for(clock, 0ms));
        r.push_back(co_await keel::asio::sleep_for(clock, -5ms));
        r.push_back(co_await keel::asio::sleep_for(clock, 10ms));
        co_return r;
    };
    CHECK(keel::testing_asio::run(io, clock, waits()) == std::vector<bool>{true, true, true});
    CHECK(clock.now() == at(10ms));

    net::cancellation_signal signal;
    auto after_cancel = [&]() -> keel::asio::awaitable<std::vector<bool>> {
        co_await net::this_coro::throw_if_cancelled(false);
        std::vector<bool> r;
        r.push_back(co_await keel::asio::sleep_for(clock, 1s)); // cancelled at 15 ms
        r.push_back(co_await keel::asio::sleep_for(clock, 1s)); // already cancelled
        r.push_back(co_await keel::asio::sleep_for(clock, 0s));
        co_return r;
    };
    auto record = keel::testing_asio::spawn(io, clock, after_cancel(), signal.slot());
    keel::testing_asio::emit_at(io, clock, signal, at(15ms));
    keel::asio::run_in_virtual_time(io, clock);
    REQUIRE(record->value);
    CHECK(*record->value == std::vector<bool>{false, false, false});
    CHECK(record->at == at(15ms));
}

TEST_CASE("keel::asio::run_in_virtual_time stops before the first timer at or after `until`",
          "[asio][timer]") {
    keel::manual_clock clock;
    net::io_context io;
    int fired = 0;
    keel::asio::basic_timer<keel::manual_clock> a{io.get_executor(), clock};
    keel::asio::basic_timer<keel::manual_clock> b{io.get_executor(), clock};
    a.async_wait_until(at(10ms), [&](keel::asio::error_code) { ++fired; });
    b.async_wait_until(at(50ms), [&](keel::asio::error_code) { ++fired; });
    keel::asio::run_in_virtual_time(io, clock, at(50ms));
    CHECK(fired == 1);
    CHECK(clock.now() == at(10ms));
    keel::asio::run_in_virtual_time(io, clock);
    CHECK(fired == 2);
    CHECK(clock.now() == at(50ms));
}
