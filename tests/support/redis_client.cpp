// SPDX-License-Identifier: MIT
// A client process for the multi-process tests of keel::redis: asks one shared
// limit for a permit `attempts` times as fast as it can and prints
// "<admitted> <decided by Redis> <decided by the fallback>".
// Usage: keel_redis_client <port>|cluster:<port> fixed_window|sliding_counter|gcra <name>
//                          <limit> <window ms> <attempts> [lease] [keys]
// cluster:<port> speaks to the Redis Cluster that node belongs to; keys > 0 spreads
// the attempts round-robin over the per-key limits "k0" ... "k<keys - 1>".
#include <keel/redis/cluster.hpp>
#include <keel/redis/fixed_window.hpp>
#include <keel/redis/gcra.hpp>
#include <keel/redis/sliding_counter.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace {

long keys = 0;

template <class Limiter>
int run(Limiter& limiter, long attempts) {
    long admitted = 0;
    long remote = 0;
    long fallback = 0;
    std::vector<std::string> names;
    for (long k = 0; k < keys; ++k) {
        names.push_back("k" + std::to_string(k));
    }
    for (long i = 0; i < attempts; ++i) {
        keel::decision const d =
            keys > 0 ? limiter.try_acquire(names[static_cast<std::size_t>(i % keys)], 1)
                     : limiter.try_acquire(1);
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
    std::string_view const where = argv[1];
    bool const on_cluster = where.starts_with("cluster:");
    int const port = std::atoi(argv[1] + (on_cluster ? 8 : 0));
    std::string_view const algorithm = argv[2];
    std::string const name = argv[3];
    std::int64_t const limit = std::atoll(argv[4]);
    std::chrono::milliseconds const window{std::atoll(argv[5])};
    long const attempts = std::atol(argv[6]);
    std::int64_t const lease = argc > 7 ? std::atoll(argv[7]) : 1;
    keys = argc > 8 ? std::atol(argv[8]) : 0;
    using namespace std::chrono_literals;
    keel::redis::pool_options const options{
        .connection = {.port = port, .connect_timeout = 1000ms, .command_timeout = 2000ms},
        .size = 1};
    std::unique_ptr<keel::redis::target> target;
    if (on_cluster) {
        target = std::make_unique<keel::redis::cluster>(
            keel::redis::cluster_options{.seeds = {{"127.0.0.1", port}}, .node = options});
    } else {
        target = std::make_unique<keel::redis::pool>(options);
    }
    keel::redis::target& redis = *target;
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
