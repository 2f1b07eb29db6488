// SPDX-License-Identifier: MIT
// Per-client rate limiting for an HTTP API: a keel::keyed table of sliding
// counters (one per client id, bounded memory), the decision turned into the
// Retry-After and IETF RateLimit / RateLimit-Policy header values, and a
// keel::rate_limit policy guarding an outgoing call. Runs on a manual clock so
// the output is the same on every run.
#include <keel/fmt.hpp>
#include <keel/keel.hpp>
#include <keel/testing/manual_clock.hpp>
#include <keel/testing/virtual_sleeper.hpp>

#include <fmt/format.h>

#include <chrono>
#include <cstdint>

using namespace std::chrono_literals;

int main() {
    keel::manual_clock clock;

    // 5 requests per client per 10 s, at most 100,000 clients remembered.
    keel::keyed<keel::basic_sliding_counter<keel::manual_clock>, std::uint64_t> per_client{
        {.limit = 5, .window = 10s}, {.max_keys = 100'000}, clock};
    auto const policy = keel::ratelimit_policy_value("per-client", 5, 10s);

    std::uint64_t const client = 42;
    for (int i = 1; i <= 7; ++i) {
        auto const d = per_client.try_acquire(client);
        if (d) {
            fmt::print("request {}: 200  RateLimit-Policy: {}  RateLimit: {}\n", i, policy,
                       keel::ratelimit_value("per-client", d));
        } else {
            fmt::print("request {}: 429  Retry-After: {}  RateLimit: {}\n", i,
                       keel::retry_after_value(d), keel::ratelimit_value("per-client", d));
        }
        clock.advance(1s);
    }

    // An outgoing call limited to 2 per second, waiting at most 600 ms for a permit.
    keel::basic_gcra<keel::manual_clock> upstream{{.rate = 2, .period = 1s, .burst = 1}, clock};
    keel::virtual_sleeper sleeper{clock};
    keel::rate_limit guard{upstream, {.max_wait = 600ms}, sleeper};
    keel::basic_context<keel::manual_clock> ctx;
    auto call = [](keel::basic_context<keel::manual_clock> const&) -> keel::outcome<int> {
        return 200;
    };
    for (int i = 1; i <= 3; ++i) {
        auto const r = guard.execute(call, ctx);
        fmt::print("upstream call {}: {} after waiting {} ms in total\n", i,
                   r ? fmt::format("{}", *r) : fmt::format("{}", r.failure()),
                   std::chrono::duration_cast<std::chrono::milliseconds>(sleeper.total()).count());
    }
    return 0;
}
