// SPDX-License-Identifier: MIT
// A limit shared through Redis, decided inside an Asio event loop without
// blocking it: a keel::redis::async_connection as the limiter's target, a
// per-client decision awaited directly, and keel::guard(limiter) in a
// keel::asio::resilient pipeline. Reads the server's port from $KEEL_REDIS_PORT
// (default 6379) or from the file named by $KEEL_REDIS_PORT_FILE; without a
// server the failure policy answers (fail open).
#include <keel/asio/limiter.hpp>
#include <keel/asio/policies.hpp>
#include <keel/asio/resilient.hpp>
#include <keel/redis/async_connection.hpp>
#include <keel/redis/fixed_window.hpp>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <fmt/format.h>

#include "redis_port.hpp"

#include <chrono>
#include <string>
#include <unistd.h>

using namespace std::chrono_literals;

int main() {
    asio::io_context io;
    // One connection per Redis server and io_context; what the loop's coroutines ask
    // in one turn goes out in one write.
    keel::redis::async_connection redis{
        io.get_executor(),
        {.port = keel_example::redis_port(), .connect_timeout = 100ms, .command_timeout = 50ms}};
    std::string const run = std::to_string(::getpid());
    keel::redis::fixed_window per_client{
        redis, {.name = "example-async-client-" + run, .limit = 3, .window = 10s}};
    keel::redis::fixed_window api{redis,
                                  {.name = "example-async-api-" + run, .limit = 2, .window = 10s}};

    auto backend = [](keel::asio::context const&) -> keel::asio::awaitable<std::string> {
        co_return std::string{"200 OK"};
    };
    // The guard awaits Redis: the io thread serves other coroutines meanwhile.
    auto guarded = keel::asio::resilient{backend, keel::guard(api)};

    asio::co_spawn(
        io,
        [&]() -> keel::asio::awaitable<void> {
            for (int i = 1; i <= 4; ++i) {
                keel::outcome<keel::decision> d =
                    co_await keel::asio::async_try_acquire(per_client, "203.0.113.7");
                fmt::print("client request {}: {} (remaining {})\n", i,
                           d && d->allowed ? "allowed" : "refused", d ? d->remaining : 0);
            }
            for (int i = 1; i <= 3; ++i) {
                keel::outcome<std::string> r = co_await guarded.async_call();
                fmt::print("api call {}: {}\n", i,
                           r ? *r : std::string{"refused: "} + r.error().message());
            }
        },
        asio::detached);
    io.run();
    auto const s = redis.stats();
    fmt::print("connections opened {}, writes {}, replies {}\n", s.connects, s.batches, s.commands);
    return 0;
}
