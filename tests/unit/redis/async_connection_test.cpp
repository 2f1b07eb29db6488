// SPDX-License-Identifier: MIT
// keel::redis::async_connection against real redis-server processes, driven by an
// Asio io_context on the test's thread (or on one io thread for the blocking
// callers): admission sequences, batching, frozen and restarted servers, the
// event loop kept free, cancellation, AUTH/SELECT, and keel::asio's rate_limit
// over a Redis limiter.
#include <keel/asio/policies.hpp>
#include <keel/asio/resilient.hpp>
#include <keel/redis/async_connection.hpp>
#include <keel/redis/fixed_window.hpp>
#include <keel/redis/gcra.hpp>
#include <keel/redis/pool.hpp>

#include "loop_heartbeat.hpp"
#include "redis_server.hpp"

#include <asio/bind_cancellation_slot.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <future>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
namespace net = keel::asio::net;
using keel::asio::awaitable;
using clock_type = std::chrono::steady_clock;

namespace {

keel::redis::connection_options private_options(int port, std::chrono::milliseconds timeout) {
    return {.port = port, .connect_timeout = 200ms, .command_timeout = timeout};
}

/// Runs `io` until every coroutine spawned on it is done, with a bound so a broken
/// test fails instead of hanging.
void run_all(net::io_context& io, std::chrono::seconds bound = 20s) {
    io.run_for(bound);
    REQUIRE(io.stopped());
}

/// Awaits one limiter-wide decision.
awaitable<keel::decision> decide(keel::redis::fixed_window& limiter, std::int64_t permits = 1) {
    keel::outcome<keel::decision> d = co_await keel::asio::async_try_acquire(limiter, permits);
    REQUIRE(d);
    co_return *d;
}

} // namespace

TEST_CASE("redis::async_connection: decisions match a blocking pool's, one by one",
          "[redis][async]") {
    net::io_context io;
    keel::redis::async_connection async{io.get_executor(), keel_test::shared_connection()};
    keel::redis::pool plain{keel_test::shared_pool(1)};
    std::string const name = keel_test::unique_name("async-seq");
    keel::redis::fixed_window a{plain, {.name = name + "-a", .limit = 5, .window = 1h}};
    keel::redis::fixed_window b{async, {.name = name + "-b", .limit = 5, .window = 1h}};
    std::vector<keel::decision> got;
    net::co_spawn(
        io,
        [&]() -> awaitable<void> {
            for (int i = 0; i < 8; ++i) {
                auto d = co_await keel::asio::async_try_acquire(b, "k", 2);
                REQUIRE(d);
                got.push_back(*d);
            }
        },
        net::detached);
    run_all(io);
    REQUIRE(got.size() == 8);
    for (keel::decision const& y : got) {
        keel::decision const x = a.try_acquire("k", 2);
        CHECK(y.source == keel::decision_source::remote);
        CHECK(x.allowed == y.allowed);
        CHECK(x.remaining == y.remaining);
    }
    CHECK(async.stats().connects == 1);
}

TEST_CASE("redis::async_connection: 300 coroutines on one thread share one connection, are "
          "batched, and admit exactly the limit",
          "[redis][async]") {
    net::io_context io;
    keel::redis::async_connection redis{io.get_executor(), keel_test::shared_connection()};
    keel::redis::fixed_window limiter{
        redis, {.name = keel_test::unique_name("async-many"), .limit = 200, .window = 1h}};
    int admitted = 0;
    int remote = 0;
    for (int i = 0; i < 300; ++i) {
        net::co_spawn(
            io,
            [&]() -> awaitable<void> {
                keel::decision const d = co_await decide(limiter);
                admitted += d.allowed ? 1 : 0;
                remote += d.source == keel::decision_source::remote ? 1 : 0;
            },
            net::detached);
    }
    run_all(io);
    CHECK(remote == 300);
    CHECK(admitted == 200);
    auto const s = redis.stats();
    CHECK(s.connects == 1);
    CHECK(s.dropped == 0);
    CHECK(s.commands >= 300);
    CHECK(s.batches < 300 / 4); // callers of one loop turn went out together
}

TEST_CASE("redis::async_connection: keel::asio::resilient with keel::guard(redis limiter) "
          "admits the limit and rejects the rest with retry_after",
          "[redis][async]") {
    net::io_context io;
    keel::redis::async_connection redis{io.get_executor(), keel_test::shared_connection()};
    keel::redis::fixed_window limiter{
        redis, {.name = keel_test::unique_name("async-guard"), .limit = 3, .window = 1h}};
    int calls = 0;
    auto guarded = keel::asio::resilient{[&](keel::asio::context const&) -> awaitable<int> {
                                             ++calls;
                                             co_return 7;
                                         },
                                         keel::guard(limiter)};
    std::vector<keel::outcome<int>> results;
    net::co_spawn(
        io,
        [&]() -> awaitable<void> {
            for (int i = 0; i < 5; ++i) {
                results.push_back(co_await guarded.async_call());
            }
        },
        net::detached);
    run_all(io);
    REQUIRE(results.size() == 5);
    CHECK(calls == 3);
    for (int i = 0; i < 3; ++i) {
        CHECK(results[static_cast<std::size_t>(i)].value() == 7);
    }
    for (int i = 3; i < 5; ++i) {
        auto const& r = results[static_cast<std::size_t>(i)];
        REQUIRE_FALSE(r);
        CHECK(r.failure().is(keel::errc::rate_limited));
        REQUIRE(r.retry_after());
        CHECK(*r.retry_after() > 0ns);
        CHECK(*r.retry_after() <= 1h); // the rest of the aligned window
    }
}

TEST_CASE("redis::async_connection: a frozen server never stalls the event loop, every decision "
          "ends within its timeout and decisions return to Redis after SIGCONT",
          "[redis][async]") {
    keel_test::redis_server server;
    REQUIRE(server.running());
    net::io_context io;
    // A command timeout well above a loaded machine's scheduling hiccups, so the
    // heartbeat bound below tells a blocked loop from a descheduled process.
    keel::redis::async_connection redis{io.get_executor(), private_options(server.port(), 150ms)};
    keel::redis::fixed_window limiter{
        redis,
        {.name = "frozen",
         .limit = 1'000'000,
         .window = 1h,
         .on_failure = {.breaker_failures = 1000, .breaker_open_for = 50ms}}};
    std::atomic<bool> stop{false};
    bool frozen = false;
    bool thawed = false;
    long slow = 0;
    long fallbacks_while_frozen = 0;
    long remote_after = 0;
    long decisions = 0;
    // A heartbeat on the same loop: with blocking decisions it would stall for the
    // whole command timeout at every decision.
    keel_test::loop_heartbeat heartbeat{io.get_executor()};
    for (int c = 0; c < 16; ++c) {
        net::co_spawn(
            io,
            [&]() -> awaitable<void> {
                while (!stop) {
                    auto const start = clock_type::now();
                    keel::decision const d = co_await decide(limiter);
                    ++decisions;
                    if (clock_type::now() - start > 150ms + 60ms) {
                        ++slow;
                    }
                    if (frozen && d.source != keel::decision_source::remote) {
                        ++fallbacks_while_frozen;
                    }
                    if (thawed && d.source == keel::decision_source::remote) {
                        ++remote_after;
                    }
                }
            },
            net::detached);
    }
    // The script of events, on the loop's own timers.
    net::co_spawn(
        io,
        [&]() -> awaitable<void> {
            net::steady_timer t{co_await net::this_coro::executor};
            t.expires_after(30ms);
            co_await t.async_wait(net::use_awaitable);
            frozen = true;
            server.freeze();
            t.expires_after(400ms);
            co_await t.async_wait(net::use_awaitable);
            server.thaw();
            frozen = false;
            t.expires_after(60ms);
            co_await t.async_wait(net::use_awaitable);
            thawed = true;
            for (int i = 0; i < 200 && remote_after < 100; ++i) {
                t.expires_after(5ms);
                co_await t.async_wait(net::use_awaitable);
            }
            stop = true;
            heartbeat.stop();
        },
        net::detached);
    run_all(io);
    clock_type::duration const max_gap = heartbeat.longest_gap();
    double const gap_ms = std::chrono::duration<double, std::milli>(max_gap).count();
    INFO("decisions " << decisions << ", max heartbeat gap " << gap_ms << " ms");
    CHECK(slow == 0);
    CHECK(fallbacks_while_frozen >= 16);
    CHECK(remote_after >= 100);
    CHECK(redis.stats().dropped >= 1);
    CHECK(redis.stats().connects >= 2);
    // Well below the 150 ms a blocking decision would hold the loop at every
    // decision while Redis is frozen.
    CHECK(max_gap < 100ms);
    WARN("max heartbeat gap " << gap_ms << " ms over " << decisions << " decisions");
}

TEST_CASE("redis::async_connection: cancelling the awaiting operation ends an in-flight "
          "decision at once with errc::cancelled",
          "[redis][async]") {
    keel_test::redis_server server;
    REQUIRE(server.running());
    net::io_context io;
    keel::redis::async_connection redis{io.get_executor(), private_options(server.port(), 500ms)};
    keel::redis::fixed_window limiter{redis, {.name = "cancel", .limit = 10, .window = 1h}};
    std::optional<keel::outcome<keel::decision>> got;
    clock_type::duration took{};
    net::cancellation_signal signal;
    net::co_spawn(
        io,
        [&]() -> awaitable<void> {
            REQUIRE((co_await decide(limiter)).source == keel::decision_source::remote);
            server.freeze();
            net::co_spawn(
                co_await net::this_coro::executor,
                [&]() -> awaitable<void> {
                    auto const start = clock_type::now();
                    got = co_await keel::asio::async_try_acquire(limiter);
                    took = clock_type::now() - start;
                },
                net::bind_cancellation_slot(signal.slot(), net::detached));
            net::steady_timer t{co_await net::this_coro::executor};
            t.expires_after(10ms);
            co_await t.async_wait(net::use_awaitable);
            signal.emit(net::cancellation_type::terminal);
        },
        net::detached);
    io.run_for(2s);
    server.thaw();
    REQUIRE(got);
    REQUIRE_FALSE(*got);
    CHECK(got->failure().is(keel::errc::cancelled));
    CHECK(took < 200ms); // not the 500 ms command timeout
}

TEST_CASE("redis::async_connection: a refused connection lets the failure policy answer, "
          "decisions return to Redis once the server runs",
          "[redis][async]") {
    keel_test::redis_server server;
    REQUIRE(server.running());
    int const port = server.port();
    server.kill();
    net::io_context io;
    keel::redis::async_connection redis{io.get_executor(), private_options(port, 200ms)};
    keel::redis::fixed_window limiter{
        redis,
        {.name = "refused",
         .limit = 10,
         .window = 1h,
         .on_failure = {.mode = keel::redis::failure_mode::fail_closed, .breaker_failures = 100}}};
    std::vector<keel::decision> before;
    net::co_spawn(
        io,
        [&]() -> awaitable<void> {
            for (int i = 0; i < 3; ++i) {
                before.push_back(co_await decide(limiter));
            }
        },
        net::detached);
    run_all(io);
    REQUIRE(before.size() == 3);
    for (auto const& d : before) {
        CHECK_FALSE(d.allowed);
        CHECK(d.source == keel::decision_source::fallback_closed);
    }
    CHECK(redis.stats().connects == 0);
    REQUIRE(server.start());
    io.restart();
    std::optional<keel::decision> after;
    net::co_spawn(
        io, [&]() -> awaitable<void> { after = co_await decide(limiter); }, net::detached);
    run_all(io);
    REQUIRE(after);
    CHECK(after->allowed);
    CHECK(after->source == keel::decision_source::remote);
    CHECK(redis.stats().connects == 1);
}

TEST_CASE("redis::async_connection: a server restart between decisions goes unnoticed: the "
          "request goes out again on a new connection and the script is loaded again",
          "[redis][async]") {
    keel_test::redis_server server;
    REQUIRE(server.running());
    net::io_context io;
    keel::redis::async_connection redis{io.get_executor(), private_options(server.port(), 500ms)};
    keel::redis::gcra limiter{redis, {.name = "restart", .rate = 10, .burst = 5}};
    std::optional<keel::decision> first;
    net::co_spawn(
        io,
        [&]() -> awaitable<void> {
            auto d = co_await keel::asio::async_try_acquire(limiter);
            first = *d;
        },
        net::detached);
    run_all(io);
    REQUIRE(first);
    CHECK(first->source == keel::decision_source::remote);
    REQUIRE(server.start()); // stops it and starts a fresh one on the same port
    std::uint64_t const loads = keel::redis::gcra::lua().loads();
    io.restart();
    std::optional<keel::decision> second;
    net::co_spawn(
        io,
        [&]() -> awaitable<void> {
            auto d = co_await keel::asio::async_try_acquire(limiter);
            second = *d;
        },
        net::detached);
    run_all(io);
    REQUIRE(second);
    CHECK(second->source == keel::decision_source::remote);
    CHECK(second->remaining == 4); // a fresh server: the first decision there
    CHECK(redis.stats().connects == 2);
    CHECK(keel::redis::gcra::lua().loads() == loads + 1);
}

TEST_CASE("redis::async_connection: AUTH and SELECT are sent on connect, a wrong password "
          "fails over to the policy",
          "[redis][async]") {
    keel_test::redis_server server;
    REQUIRE(server.running());
    {
        keel::redis::connection admin{private_options(server.port(), 500ms)};
        REQUIRE(admin.command({"CONFIG", "SET", "requirepass", "s3cret"}));
    }
    net::io_context io;
    auto options = private_options(server.port(), 500ms);
    options.password = "s3cret";
    options.database = 3;
    keel::redis::async_connection redis{io.get_executor(), options};
    keel::redis::fixed_window limiter{redis, {.name = "auth", .limit = 10, .window = 1h}};
    auto wrong_options = options;
    wrong_options.password = "wrong";
    keel::redis::async_connection wrong{io.get_executor(), wrong_options};
    keel::redis::fixed_window refused{wrong, {.name = "auth", .limit = 10, .window = 1h}};
    std::optional<keel::decision> good;
    std::optional<keel::decision> bad;
    net::co_spawn(
        io,
        [&]() -> awaitable<void> {
            good = co_await decide(limiter);
            bad = co_await decide(refused);
        },
        net::detached);
    run_all(io);
    REQUIRE(good);
    CHECK(good->source == keel::decision_source::remote);
    CHECK(good->remaining == 9);
    REQUIRE(bad);
    CHECK(bad->source == keel::decision_source::fallback_open);
    keel::redis::connection check{options};
    auto exists = check.command({"EXISTS", limiter.redis_key()});
    REQUIRE(exists);
    CHECK(exists->integer() == 1); // in database 3
    options.database = 0;
    keel::redis::connection db0{options};
    auto none = db0.command({"EXISTS", limiter.redis_key()});
    REQUIRE(none);
    CHECK(none->integer() == 0);
}

TEST_CASE("redis::async_connection: NOSCRIPT after SCRIPT FLUSH is answered with one load",
          "[redis][async]") {
    net::io_context io;
    keel::redis::async_connection redis{io.get_executor(), keel_test::shared_connection()};
    keel::redis::fixed_window limiter{
        redis, {.name = keel_test::unique_name("async-noscript"), .limit = 9, .window = 1h}};
    std::vector<keel::decision> got;
    std::uint64_t loads = 0;
    net::co_spawn(
        io,
        [&]() -> awaitable<void> {
            got.push_back(co_await decide(limiter));
            {
                keel::redis::connection c{keel_test::shared_connection()};
                REQUIRE(c.command({"SCRIPT", "FLUSH"}));
            }
            loads = keel::redis::fixed_window::lua().loads();
            got.push_back(co_await decide(limiter));
        },
        net::detached);
    run_all(io);
    REQUIRE(got.size() == 2);
    CHECK(got[1].source == keel::decision_source::remote);
    CHECK(got[1].remaining == 7);
    CHECK(keel::redis::fixed_window::lua().loads() == loads + 1);
}

TEST_CASE("redis::async_connection: blocking try_acquire from four threads shares the loop's "
          "connection and admits exactly the limit, on the strand it refuses to wait",
          "[redis][async][concurrency]") {
    net::io_context io;
    auto work = net::make_work_guard(io);
    std::thread loop{[&] { io.run(); }};
    keel::redis::async_connection redis{io.get_executor(), keel_test::shared_connection()};
    keel::redis::fixed_window limiter{
        redis, {.name = keel_test::unique_name("async-threads"), .limit = 100, .window = 1h}};
    std::atomic<int> admitted{0};
    std::atomic<int> not_remote{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&] {
            for (int i = 0; i < 40; ++i) {
                keel::decision const d = limiter.try_acquire();
                admitted += d.allowed ? 1 : 0;
                not_remote += d.source == keel::decision_source::remote ? 0 : 1;
            }
        });
    }
    for (auto& t : threads) {
        t.join();
    }
    CHECK(not_remote.load() == 0);
    CHECK(admitted.load() == 100);
    // From a handler on the connection's strand, a blocking call would wait for itself.
    std::promise<keel::outcome<keel::redis::reply>> inner;
    std::string_view const ping[] = {"PING"};
    redis.async_command(ping, [&](keel::outcome<keel::redis::reply>) {
        std::string_view const args[] = {"1"};
        inner.set_value(redis.run(keel::redis::fixed_window::lua(), "k", args));
    });
    auto r = inner.get_future().get();
    REQUIRE_FALSE(r);
    CHECK(r.failure().is(keel::errc::unavailable));
    work.reset();
    loop.join();
    CHECK(redis.stats().connects == 1);
}

TEST_CASE("redis::async_connection: options out of range are rejected naming the field",
          "[redis][async]") {
    net::io_context io;
    CHECK_THROWS_WITH((keel::redis::async_connection{io.get_executor(), {.port = 0}}),
                      Catch::Contains("keel::redis::async_connection") && Catch::Contains("port"));
    CHECK_THROWS_WITH((keel::redis::async_connection{io.get_executor(), {.command_timeout = 0ms}}),
                      Catch::Contains("command_timeout"));
}
