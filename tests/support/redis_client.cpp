// SPDX-License-Identifier: MIT
// A client process for the multi-process tests of keel::redis: asks one shared
// limit for a permit `attempts` times as fast as it can and prints
// "<admitted> <decided by Redis> <decided by the fallback>".
// Usage: keel_redis_client <port> fixed_window|sliding_counter|gcra <name> <limit>
//                          <window ms> <attempts> [lease]
#include <keel/redis/fixed_window.hpp>
#include <keel/redis/gcra.hpp>
#include <keel/redis/sliding_counter.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace {

template <class Limiter>
int run(Limiter& limiter, long attempts) {
    long admitted = 0;
    long remote = 0;
    long fallback = 0;
    for (long i = 0; i < attempts; ++i) {
        keel::decision const d = limiter.try_acquire(1);
        admitted += d.allowed ? 1 : 0;
        (d.source == keel::decision_source::remote ? remote : fallback) += 1;
    }
    std::printf("%ld %ld %ld\n", admitted, remote, fallback);
    return 0;
}

} // namespace

int main(int argc, char** argv) {
    if (argc < 7) {
        std::fprintf(stderr, "usage: %s port algorithm name limit window_ms attempts [lease]\n",
                     argv[0]);
        return 2;
    }
    int const port = std::atoi(argv[1]);
    std::string_view const algorithm = argv[2];
    std::string const name = argv[3];
    std::int64_t const limit = std::atoll(argv[4]);
    std::chrono::milliseconds const window{std::atoll(argv[5])};
    long const attempts = std::atol(argv[6]);
    std::int64_t const lease = argc > 7 ? std::atoll(argv[7]) : 1;
    using namespace std::chrono_literals;
    keel::redis::pool redis{
        {.connection = {.port = port, .connect_timeout = 1000ms, .command_timeout = 2000ms},
         .size = 1}};
    if (algorithm == "fixed_window") {
        keel::redis::fixed_window limiter{
            redis, {.name = name, .limit = limit, .window = window, .lease = lease}};
        return run(limiter, attempts);
    }
    if (algorithm == "sliding_counter") {
        keel::redis::sliding_counter limiter{
            redis, {.name = name, .limit = limit, .window = window, .lease = lease}};
        return run(limiter, attempts);
    }
    if (algorithm == "gcra") {
        keel::redis::gcra limiter{redis,
                                  {.name = name, .rate = limit, .period = window, .burst = limit}};
        return run(limiter, attempts);
    }
    std::fprintf(stderr, "unknown algorithm %s\n", argv[2]);
    return 2;
}
