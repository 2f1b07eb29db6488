// SPDX-License-Identifier: MIT
// A per-client limit shared by every instance of a service through Redis, and
// what the limiter answers when Redis cannot be reached. Reads the server's port
// from $KEEL_REDIS_PORT (default 6379) or from the file named by
// $KEEL_REDIS_PORT_FILE; without a server the first part shows the fail-open policy.
#include <keel/redis/redis.hpp>

#include "redis_port.hpp"

#include <fmt/format.h>

#include <chrono>
#include <string>
#include <string_view>
#include <unistd.h>

using namespace std::chrono_literals;

namespace {

std::string_view source_name(keel::decision_source s) {
    switch (s) {
    case keel::decision_source::local: return "local";
    case keel::decision_source::remote: return "redis";
    case keel::decision_source::fallback_open: return "fallback: fail open";
    case keel::decision_source::fallback_closed: return "fallback: fail closed";
    case keel::decision_source::fallback_local: return "fallback: local limiter";
    }
    return "?";
}

void show(std::string_view what, keel::decision const& d) {
    fmt::print("{:<22} {:<8} by {:<24} remaining {:>2}  retry after {:>6} ms\n", what,
               d.allowed ? "allowed" : "refused", source_name(d.source), d.remaining,
               std::chrono::duration_cast<std::chrono::milliseconds>(d.retry_after).count());
}

} // namespace

int main() {
    // One pool per Redis server, shared by every limiter of the process.
    keel::redis::pool redis{{.connection = {.port = keel_example::redis_port(),
                                            .connect_timeout = 100ms,
                                            .command_timeout = 50ms}}};

    // 5 requests per 10 s per client, counted in Redis: every instance of the
    // service that uses the same name shares the count.
    keel::redis::fixed_window per_client{redis,
                                         {.name = "example:per-client", .limit = 5, .window = 10s}};
    std::string const client = "client-" + std::to_string(::getpid());
    fmt::print("-- a per-client limit of 5 per 10 s, shared through Redis\n");
    for (int i = 1; i <= 7; ++i) {
        show("request " + std::to_string(i), per_client.try_acquire(client));
    }

    // A Redis nobody listens on: the failure policy answers, and after two
    // failures the breaker stops trying for a second (no network wait at all).
    keel::redis::pool nowhere{{.connection = {.port = 1, .connect_timeout = 50ms}}};
    keel::redis::gcra guarded{
        nowhere,
        {.name = "example:guarded",
         .rate = 10,
         .on_failure = {.mode = keel::redis::failure_mode::fail_closed, .breaker_failures = 2}}};
    fmt::print("-- the same decision while Redis is down (fail closed)\n");
    for (int i = 1; i <= 3; ++i) {
        show("request " + std::to_string(i), guarded.try_acquire());
    }
    fmt::print("breaker open: {}\n", guarded.breaker_open());
    return 0;
}
