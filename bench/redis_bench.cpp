// SPDX-License-Identifier: MIT
// Decisions per second of keel's Redis limiters against a local redis-server the
// program starts itself on a free loopback port, beside the ceiling: a raw
// hiredis EVALSHA loop running the same script. 1 and 4 client threads, one
// connection per thread; p50/p99 latency (µs) reported as counters. Skips with a
// message when no redis-server can be started.
#include <keel/redis/fixed_window.hpp>
#include <keel/redis/gcra.hpp>
#include <keel/redis/sliding_counter.hpp>

#include "redis_server.hpp"

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

using namespace std::chrono_literals;

namespace {

keel_test::redis_server* server = nullptr;
keel::redis::pool* shared_pool = nullptr;

constexpr std::int64_t huge_limit = 2'000'000'000; // admit path: never runs out

// Records per-iteration latencies and reports p50/p99 in µs (averaged over threads).
class latencies {
public:
    explicit latencies(benchmark::State const& state) {
        m_samples.reserve(static_cast<std::size_t>(
            std::min<benchmark::IterationCount>(state.max_iterations, 1'000'000)));
    }
    void add(std::chrono::steady_clock::duration d) {
        m_samples.push_back(std::chrono::duration<double, std::micro>(d).count());
    }
    void report(benchmark::State& state) {
        if (m_samples.empty()) {
            return;
        }
        std::sort(m_samples.begin(), m_samples.end());
        auto at = [&](double q) {
            return m_samples[std::min(
                m_samples.size() - 1,
                static_cast<std::size_t>(q * static_cast<double>(m_samples.size())))];
        };
        state.counters["p50_us"] = benchmark::Counter(at(0.50), benchmark::Counter::kAvgThreads);
        state.counters["p99_us"] = benchmark::Counter(at(0.99), benchmark::Counter::kAvgThreads);
        state.counters["decisions"] =
            benchmark::Counter(static_cast<double>(m_samples.size()), benchmark::Counter::kIsRate);
    }

private:
    std::vector<double> m_samples;
};

// The ceiling: EVALSHA of the same fixed-window script over a bare hiredis
// connection per thread, no pool, no breaker, no decision building.
void ceiling_raw_evalsha_fixed_window(benchmark::State& state) {
    auto const& lua = keel::redis::fixed_window::lua();
    keel::redis::connection conn{{.port = server->port(), .command_timeout = 2000ms}};
    conn.command({"SCRIPT", "LOAD", lua.source()});
    redisContext* c = redisConnect("127.0.0.1", server->port());
    std::string const key = "keel:{bench-raw}";
    std::string const window = "1000000";
    std::string const limit = std::to_string(huge_limit);
    char const* argv[] = {"EVALSHA",      lua.sha().c_str(), "1", key.c_str(),
                          window.c_str(), limit.c_str(),     "1", "1"};
    std::size_t const lengths[] = {
        7, lua.sha().size(), 1, key.size(), window.size(), limit.size(), 1, 1};
    latencies lat{state};
    for (auto _ : state) {
        auto const start = std::chrono::steady_clock::now();
        auto* r = static_cast<redisReply*>(redisCommandArgv(c, 8, argv, lengths));
        lat.add(std::chrono::steady_clock::now() - start);
        if (r == nullptr || r->type != REDIS_REPLY_ARRAY) {
            state.SkipWithError("raw EVALSHA failed");
            break;
        }
        freeReplyObject(r);
    }
    redisFree(c);
    lat.report(state);
}
BENCHMARK(ceiling_raw_evalsha_fixed_window)->Threads(1)->Threads(4)->UseRealTime();

template <class Limiter>
void run_limiter(benchmark::State& state, Limiter& limiter) {
    latencies lat{state};
    std::int64_t admitted = 0;
    std::int64_t remote = 0;
    for (auto _ : state) {
        auto const start = std::chrono::steady_clock::now();
        keel::decision const d = limiter.try_acquire();
        lat.add(std::chrono::steady_clock::now() - start);
        admitted += d.allowed ? 1 : 0;
        remote += d.source == keel::decision_source::remote ? 1 : 0;
    }
    if (remote != state.iterations()) {
        state.SkipWithError("a decision did not come from Redis");
    }
    state.counters["admitted_share"] =
        benchmark::Counter(static_cast<double>(admitted) / static_cast<double>(state.iterations()),
                           benchmark::Counter::kAvgThreads);
    lat.report(state);
}

void keel_fixed_window_admit(benchmark::State& state) {
    static keel::redis::fixed_window limiter{
        *shared_pool, {.name = "bench-fw", .limit = huge_limit, .window = 1s}};
    run_limiter(state, limiter);
}
BENCHMARK(keel_fixed_window_admit)->Threads(1)->Threads(4)->UseRealTime();

void keel_fixed_window_reject(benchmark::State& state) {
    static keel::redis::fixed_window limiter{*shared_pool,
                                             {.name = "bench-fw-reject", .limit = 1, .window = 1h}};
    run_limiter(state, limiter);
}
BENCHMARK(keel_fixed_window_reject)->Threads(1)->Threads(4)->UseRealTime();

void keel_sliding_counter_admit(benchmark::State& state) {
    static keel::redis::sliding_counter limiter{
        *shared_pool, {.name = "bench-sc", .limit = huge_limit, .window = 1s}};
    run_limiter(state, limiter);
}
BENCHMARK(keel_sliding_counter_admit)->Threads(1)->Threads(4)->UseRealTime();

void keel_gcra_admit(benchmark::State& state) {
    static keel::redis::gcra limiter{*shared_pool,
                                     {.name = "bench-gcra", .rate = 1'000'000'000, .period = 1s}};
    run_limiter(state, limiter);
}
BENCHMARK(keel_gcra_admit)->Threads(1)->Threads(4)->UseRealTime();

// Leasing 64 permits per round trip: most decisions never leave the process.
void keel_fixed_window_lease64(benchmark::State& state) {
    static keel::redis::fixed_window limiter{
        *shared_pool, {.name = "bench-fw-lease", .limit = huge_limit, .window = 1s, .lease = 64}};
    run_limiter(state, limiter);
}
BENCHMARK(keel_fixed_window_lease64)->Threads(1)->Threads(4)->UseRealTime();

// The same comparison, interleaved: each iteration runs one raw EVALSHA and one
// keel decision, timing each, so the machine's noise hits both alike. Reports
// throughput_vs_ceiling = raw time / keel time (1.0: keel as fast as the ceiling).
void keel_fixed_window_vs_ceiling_interleaved(benchmark::State& state) {
    static keel::redis::fixed_window limiter{
        *shared_pool, {.name = "bench-fw-inter", .limit = huge_limit, .window = 1s}};
    auto const& lua = keel::redis::fixed_window::lua();
    keel::redis::connection loader{{.port = server->port(), .command_timeout = 2000ms}};
    loader.command({"SCRIPT", "LOAD", lua.source()});
    redisContext* c = redisConnect("127.0.0.1", server->port());
    std::string const key = "keel:{bench-fw-inter}";
    std::string const window = "1000000";
    std::string const limit = std::to_string(huge_limit);
    char const* argv[] = {"EVALSHA",      lua.sha().c_str(), "1", key.c_str(),
                          window.c_str(), limit.c_str(),     "1", "1"};
    std::size_t const lengths[] = {
        7, lua.sha().size(), 1, key.size(), window.size(), limit.size(), 1, 1};
    std::chrono::steady_clock::duration raw{0};
    std::chrono::steady_clock::duration keel{0};
    for (auto _ : state) {
        auto const t0 = std::chrono::steady_clock::now();
        auto* r = static_cast<redisReply*>(redisCommandArgv(c, 8, argv, lengths));
        auto const t1 = std::chrono::steady_clock::now();
        keel::decision const d = limiter.try_acquire();
        auto const t2 = std::chrono::steady_clock::now();
        if (r == nullptr || r->type != REDIS_REPLY_ARRAY ||
            d.source != keel::decision_source::remote) {
            state.SkipWithError("a call failed");
            break;
        }
        freeReplyObject(r);
        raw += t1 - t0;
        keel += t2 - t1;
    }
    redisFree(c);
    if (keel.count() > 0) {
        state.counters["throughput_vs_ceiling"] =
            benchmark::Counter(std::chrono::duration<double>(raw).count() /
                                   std::chrono::duration<double>(keel).count(),
                               benchmark::Counter::kAvgThreads);
    }
}
BENCHMARK(keel_fixed_window_vs_ceiling_interleaved)->Threads(1)->Threads(4)->UseRealTime();

} // namespace

int main(int argc, char** argv) {
    keel_test::redis_server redis;
    if (!redis.running()) {
        std::printf("keel_redis_bench: skipped, could not start redis-server on a free loopback "
                    "port\n");
        return 0;
    }
    keel::redis::pool pool{
        {.connection = {.port = redis.port(), .command_timeout = 2000ms}, .size = 4}};
    server = &redis;
    shared_pool = &pool;
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) {
        return 1;
    }
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
