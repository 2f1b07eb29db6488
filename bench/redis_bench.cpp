// SPDX-License-Identifier: MIT
// Decisions per second of keel's Redis limiters against a local redis-server the
// program starts itself on a free loopback port, beside the ceiling: a raw
// hiredis EVALSHA loop running the same script. 1 and 4 client threads, one
// connection per thread; one connection shared by 1, 16 and 64 callers per call,
// auto-pipelined, and (with an Asio) as coroutines over keel::redis::async_connection;
// p50/p99 latency (µs) reported as counters; and the
// server's CPU per decision (INFO commandstats) of each script against the
// scripts before they were trimmed. Skips with a message when no redis-server can
// be started.
#include <keel/redis/cluster.hpp>
#include <keel/redis/connection.hpp>
#include <keel/redis/fixed_window.hpp>
#include <keel/redis/gcra.hpp>
#include <keel/redis/sliding_counter.hpp>
#if KEEL_BENCH_ASIO
#include <keel/asio/limiter.hpp>
#include <keel/redis/async_connection.hpp>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#endif

#include <string>
// The tests' cluster fixture script, found beside this file.
std::string cluster_script();
#define KEEL_REDIS_CLUSTER_SCRIPT cluster_script()
#include "redis_cluster.hpp"
#include "redis_server.hpp"

#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
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

// `callers` threads each call `decide(thread, i)` (true: Redis decided) in a loop
// for `span`; returns decisions/s (those completed within the span) and the
// callers' latencies. A fixed span, not a fixed count, so one descheduled thread
// on a loaded machine does not stretch the wall time.
struct callers_result {
    double per_second = 0.0;
    std::vector<double> latencies_us;
    std::int64_t not_remote = 0; // decisions the failure policy made (a wait past the timeout)
};
template <class Decide>
callers_result run_callers(int callers, std::chrono::milliseconds span, Decide decide) {
    std::vector<std::vector<double>> samples(static_cast<std::size_t>(callers));
    std::atomic<bool> go{false};
    std::atomic<std::int64_t> not_remote{0};
    std::atomic<std::int64_t> done{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < callers; ++t) {
        threads.emplace_back([&, t] {
            while (!go.load()) {
                std::this_thread::yield();
            }
            auto const end = std::chrono::steady_clock::now() + span;
            auto& mine = samples[static_cast<std::size_t>(t)];
            for (int i = 0;; ++i) {
                auto const t0 = std::chrono::steady_clock::now();
                if (t0 >= end) {
                    break;
                }
                if (!decide(t, i)) {
                    not_remote += 1;
                }
                auto const t1 = std::chrono::steady_clock::now();
                if (t1 <= end) {
                    mine.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
                    done += 1;
                }
            }
        });
    }
    go = true;
    for (auto& t : threads) {
        t.join();
    }
    callers_result r;
    r.per_second = static_cast<double>(done.load()) / std::chrono::duration<double>(span).count();
    for (auto& v : samples) {
        r.latencies_us.insert(r.latencies_us.end(), v.begin(), v.end());
    }
    std::sort(r.latencies_us.begin(), r.latencies_us.end());
    r.not_remote = not_remote.load();
    return r;
}

void report(benchmark::State& state, std::vector<callers_result> const& runs) {
    std::vector<double> rates;
    std::vector<double> all;
    std::int64_t not_remote = 0;
    for (auto const& r : runs) {
        not_remote += r.not_remote;
        rates.push_back(r.per_second);
        all.insert(all.end(), r.latencies_us.begin(), r.latencies_us.end());
    }
    std::sort(all.begin(), all.end());
    auto at = [&](double q) {
        return all.empty()
                   ? 0.0
                   : all[std::min(all.size() - 1,
                                  static_cast<std::size_t>(q * static_cast<double>(all.size())))];
    };
    double sum = 0.0;
    for (double r : rates) {
        sum += r;
    }
    state.counters["decisions_per_s"] =
        rates.empty() ? 0.0 : sum / static_cast<double>(rates.size());
    state.counters["p50_us"] = at(0.50);
    state.counters["p99_us"] = at(0.99);
    state.counters["not_remote"] = static_cast<double>(not_remote);
}

// One connection shared by 1, 16 and 64 callers: per-call mode (the callers take
// turns on it, one decision per round trip) against auto-pipelining (whoever
// finds it idle writes every queued decision in one batch). decisions_per_s is
// what the one connection served in 300 ms of wall time; p50_us/p99_us are the
// callers' latencies.
keel::redis::fixed_window* plain_one = nullptr;
keel::redis::fixed_window* piped_one = nullptr;

void callers_on_one_connection(benchmark::State& state, keel::redis::fixed_window& limiter) {
    std::vector<callers_result> runs;
    for (auto _ : state) {
        runs.push_back(run_callers(static_cast<int>(state.range(0)), 300ms, [&](int, int) {
            return limiter.try_acquire().source == keel::decision_source::remote;
        }));
    }
    report(state, runs);
}
void per_call_one_connection(benchmark::State& state) {
    callers_on_one_connection(state, *plain_one);
}
void pipelined_one_connection(benchmark::State& state) {
    callers_on_one_connection(state, *piped_one);
}
BENCHMARK(per_call_one_connection)->Arg(1)->Arg(16)->Arg(64)->Iterations(1)->UseRealTime();
BENCHMARK(pipelined_one_connection)->Arg(1)->Arg(16)->Arg(64)->Iterations(1)->UseRealTime();

#if KEEL_BENCH_ASIO
// The same connection shared by 1, 16 and 64 callers that are coroutines on one
// io thread, over keel::redis::async_connection: each awaits its decision, so the
// one thread keeps `callers` decisions in flight and whatever they submit while a
// write or a round trip is under way goes out in the next write.
asio::io_context* async_io = nullptr;
keel::redis::fixed_window* async_one = nullptr;

callers_result run_coroutines(int callers, std::chrono::milliseconds span) {
    std::vector<double> samples;
    std::int64_t not_remote = 0;
    std::int64_t done = 0;
    auto const end = std::chrono::steady_clock::now() + span;
    for (int c = 0; c < callers; ++c) {
        asio::co_spawn(
            *async_io,
            [&]() -> keel::asio::awaitable<void> {
                for (;;) {
                    auto const t0 = std::chrono::steady_clock::now();
                    if (t0 >= end) {
                        co_return;
                    }
                    auto d = co_await keel::asio::async_try_acquire(*async_one);
                    if (!d || d->source != keel::decision_source::remote) {
                        not_remote += 1;
                    }
                    auto const t1 = std::chrono::steady_clock::now();
                    if (t1 <= end) {
                        samples.push_back(
                            std::chrono::duration<double, std::micro>(t1 - t0).count());
                        done += 1;
                    }
                }
            },
            asio::detached);
    }
    async_io->restart();
    async_io->run();
    callers_result r;
    r.per_second = static_cast<double>(done) / std::chrono::duration<double>(span).count();
    std::sort(samples.begin(), samples.end());
    r.latencies_us = std::move(samples);
    r.not_remote = not_remote;
    return r;
}

void async_one_connection(benchmark::State& state) {
    std::vector<callers_result> runs;
    for (auto _ : state) {
        runs.push_back(run_coroutines(static_cast<int>(state.range(0)), 300ms));
    }
    report(state, runs);
}
BENCHMARK(async_one_connection)->Arg(1)->Arg(16)->Arg(64)->Iterations(1)->UseRealTime();
#endif

// Per-key decisions from 8 threads for 300 ms (pipelined, 2 connections per node) on a
// 3-master Redis Cluster against the same on one server. The cluster is started
// on first use by the tests' fixture script (about 2 s); the benchmark skips when
// that fails. Client and servers share this machine's cores, so the ratio shows
// what spreading the scripts' CPU over three processes buys here, not over three
// machines.
void per_key_callers(benchmark::State& state, keel::redis::target& redis, char const* name) {
    keel::redis::fixed_window limiter{redis, {.name = name, .limit = huge_limit}};
    std::vector<callers_result> runs;
    for (auto _ : state) {
        runs.push_back(run_callers(8, 300ms, [&](int t, int i) {
            std::string const key = std::to_string(t) + ":" + std::to_string(i % 1000);
            return limiter.try_acquire(key).source == keel::decision_source::remote;
        }));
    }
    report(state, runs);
}

keel::redis::pool_options const per_node{
    .connection = {.command_timeout = 2000ms}, .size = 2, .auto_pipelining = true};

void per_key_one_server(benchmark::State& state) {
    keel::redis::pool_options o = per_node;
    o.connection.port = server->port();
    keel::redis::pool redis{o};
    per_key_callers(state, redis, "bench-one-server");
}
BENCHMARK(per_key_one_server)->Iterations(1)->UseRealTime();

void per_key_three_masters(benchmark::State& state) {
    static keel_test::redis_cluster const cluster = keel_test::redis_cluster::start_private();
    if (!cluster.running()) {
        state.SkipWithError("could not start a Redis Cluster");
        return;
    }
    keel::redis::cluster redis{{.seeds = cluster.seeds(), .node = per_node}};
    per_key_callers(state, redis, "bench-three-masters");
}
BENCHMARK(per_key_three_masters)->Iterations(1)->UseRealTime();

// Server CPU per decision, read from Redis' own accounting: INFO commandstats'
// usec_per_call of EVALSHA (the script's whole run, its redis.call()s included)
// after CONFIG RESETSTAT, and the main thread's CPU time (INFO cpu) per call,
// which also counts reading and writing the commands. 16 commands are pipelined
// per round trip so the client's speed hardly matters. Baselines in the same
// run: the scripts as they were before they were trimmed (four Redis calls:
// TIME, HMGET, HSET, PEXPIRE, on a hash), INCR, EVALSHA "return 1" and a script
// calling only TIME.
namespace before_trim {
char const* const fixed_window = R"lua(-- keel fixed window
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local permits = tonumber(ARGV[3])
local want = tonumber(ARGV[4])
local index = math.floor(now / window)
local reset = (index + 1) * window - now
local state = redis.call('HMGET', KEYS[1], 'w', 'n')
local used = 0
if tonumber(state[1]) == index then used = tonumber(state[2]) end
if used + permits > limit then
  return {0, limit - used, reset, reset, 0}
end
local granted = math.min(want, limit - used)
used = used + granted
redis.call('HSET', KEYS[1], 'w', string.format('%.0f', index), 'n', string.format('%.0f', used))
redis.call('PEXPIRE', KEYS[1], math.ceil(reset / 1000))
return {1, limit - used, 0, reset, granted}
)lua";
char const* const sliding_counter = R"lua(-- keel sliding counter
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local permits = tonumber(ARGV[3])
local want = tonumber(ARGV[4])
local index = math.floor(now / window)
local left = (index + 1) * window - now
local state = redis.call('HMGET', KEYS[1], 'w', 'c', 'p')
local w = tonumber(state[1])
local curr, prev = 0, 0
if w == index then
  curr = tonumber(state[2]) or 0
  prev = tonumber(state[3]) or 0
elseif w == index - 1 then
  prev = tonumber(state[2]) or 0
end
-- Everything scaled by window: room = limit*W - prev*(time left) - curr*W, exact below 2^53.
local room = limit * window - prev * left - curr * window
local reset = left
if curr > 0 then reset = left + window end
if room < permits * window then
  local retry
  local need = (limit - curr - permits) * window
  if prev > 0 and need >= 0 then
    retry = left - math.floor(need / prev)
  elseif curr + permits <= limit or curr == 0 then
    retry = left
  else
    retry = left + window - math.floor((limit - permits) * window / curr)
  end
  if retry < 1 then retry = 1 end
  return {0, math.floor(room / window), retry, reset, 0}
end
local granted = math.min(want, math.floor(room / window))
curr = curr + granted
redis.call('HSET', KEYS[1], 'w', string.format('%.0f', index), 'c', string.format('%.0f', curr),
           'p', string.format('%.0f', prev))
redis.call('PEXPIRE', KEYS[1], math.ceil((left + window) / 1000))
return {1, math.floor((room - granted * window) / window), 0, left + window, granted}
)lua";
} // namespace before_trim

double info_field(keel::redis::connection& c, char const* section, std::string_view field) {
    auto r = c.command({"INFO", section});
    if (!r) {
        return -1.0;
    }
    std::string_view const text = r->text();
    std::size_t const at = text.find(field);
    if (at == std::string_view::npos) {
        return -1.0;
    }
    return std::strtod(std::string{text.substr(at + field.size(), 32)}.c_str(), nullptr);
}

// Runs `args` (a command) 16 at a time per round trip; reports what Redis spent.
void server_cost(benchmark::State& state, std::vector<std::string> args, std::string_view stat) {
    keel::redis::connection admin{{.port = server->port(), .command_timeout = 2000ms}};
    redisContext* c = redisConnect("127.0.0.1", server->port());
    std::vector<char const*> argv;
    std::vector<std::size_t> lengths;
    for (auto const& a : args) {
        argv.push_back(a.c_str());
        lengths.push_back(a.size());
    }
    admin.command({"CONFIG", "RESETSTAT"});
    double const cpu0 = info_field(admin, "cpu", "used_cpu_user_main_thread:") +
                        info_field(admin, "cpu", "used_cpu_sys_main_thread:");
    constexpr int batch = 16;
    std::int64_t calls = 0;
    for (auto _ : state) {
        for (int i = 0; i < batch; ++i) {
            redisAppendCommandArgv(c, static_cast<int>(argv.size()), argv.data(), lengths.data());
        }
        for (int i = 0; i < batch; ++i) {
            void* reply = nullptr;
            if (redisGetReply(c, &reply) != REDIS_OK ||
                static_cast<redisReply*>(reply)->type == REDIS_REPLY_ERROR) {
                state.SkipWithError("a command failed");
                freeReplyObject(reply);
                redisFree(c);
                return;
            }
            freeReplyObject(reply);
        }
        calls += batch;
    }
    double const cpu1 = info_field(admin, "cpu", "used_cpu_user_main_thread:") +
                        info_field(admin, "cpu", "used_cpu_sys_main_thread:");
    std::string const field = "cmdstat_" + std::string{stat} + ":";
    auto r = admin.command({"INFO", "commandstats"});
    double per_call = -1.0;
    if (r) {
        std::string_view const text = r->text();
        std::size_t const at = text.find(field);
        std::size_t const usec = text.find("usec_per_call=", at);
        if (at != std::string_view::npos && usec != std::string_view::npos) {
            per_call = std::strtod(std::string{text.substr(usec + 14, 16)}.c_str(), nullptr);
        }
    }
    redisFree(c);
    state.counters["server_us_per_call"] = per_call;
    state.counters["server_cpu_us"] =
        calls > 0 ? (cpu1 - cpu0) * 1e6 / static_cast<double>(calls) : 0.0;
    state.counters["calls"] =
        benchmark::Counter(static_cast<double>(calls), benchmark::Counter::kIsRate);
}

// EVALSHA of `source` (loaded first) on one key with `argv_tail`.
void script_cost(benchmark::State& state, std::string const& source,
                 std::vector<std::string> argv_tail) {
    keel::redis::script const lua{source};
    keel::redis::connection admin{{.port = server->port(), .command_timeout = 2000ms}};
    admin.command({"SCRIPT", "LOAD", source});
    std::vector<std::string> args{"EVALSHA", lua.sha(), "1",
                                  "keel:{cost-" + lua.sha().substr(0, 8) + "}"};
    args.insert(args.end(), argv_tail.begin(), argv_tail.end());
    server_cost(state, std::move(args), "evalsha");
}

std::vector<std::string> const window_args{"1000000", std::to_string(huge_limit), "1", "1"};

void cost_incr(benchmark::State& state) {
    server_cost(state, {"INCR", "keel:{cost-incr}"}, "incr");
}
void cost_eval_return_1(benchmark::State& state) {
    script_cost(state, "return 1", {});
}
void cost_eval_time_only(benchmark::State& state) {
    script_cost(state, "local t = redis.call('TIME') return 1", {});
}
void cost_fixed_window_before(benchmark::State& state) {
    script_cost(state, before_trim::fixed_window, window_args);
}
void cost_fixed_window_after(benchmark::State& state) {
    script_cost(state, keel::redis::fixed_window::lua().source(), window_args);
}
void cost_sliding_counter_before(benchmark::State& state) {
    script_cost(state, before_trim::sliding_counter, window_args);
}
void cost_sliding_counter_after(benchmark::State& state) {
    script_cost(state, keel::redis::sliding_counter::lua().source(), window_args);
}
void cost_gcra(benchmark::State& state) {
    script_cost(state, keel::redis::gcra::lua().source(),
                {"1", std::to_string(huge_limit), "1", "1"});
}
BENCHMARK(cost_incr)->UseRealTime();
BENCHMARK(cost_eval_return_1)->UseRealTime();
BENCHMARK(cost_eval_time_only)->UseRealTime();
BENCHMARK(cost_fixed_window_before)->UseRealTime();
BENCHMARK(cost_fixed_window_after)->UseRealTime();
BENCHMARK(cost_sliding_counter_before)->UseRealTime();
BENCHMARK(cost_sliding_counter_after)->UseRealTime();
BENCHMARK(cost_gcra)->UseRealTime();

} // namespace

std::string cluster_script() {
    std::string const here = __FILE__;
    return here.substr(0, here.rfind('/')) + "/../tests/support/redis_cluster_fixture.sh";
}

int main(int argc, char** argv) {
    keel_test::redis_server redis;
    if (!redis.running()) {
        std::printf("keel_redis_bench: skipped, could not start redis-server on a free loopback "
                    "port\n");
        return 0;
    }
    keel::redis::pool pool{
        {.connection = {.port = redis.port(), .command_timeout = 2000ms}, .size = 4}};
    keel::redis::pool plain{
        {.connection = {.port = redis.port(), .command_timeout = 2000ms}, .size = 1}};
    keel::redis::pool piped{{.connection = {.port = redis.port(), .command_timeout = 2000ms},
                             .size = 1,
                             .auto_pipelining = true}};
    keel::redis::fixed_window plain_limiter{plain,
                                            {.name = "bench-one-plain", .limit = huge_limit}};
    keel::redis::fixed_window piped_limiter{piped,
                                            {.name = "bench-one-piped", .limit = huge_limit}};
#if KEEL_BENCH_ASIO
    asio::io_context io;
    keel::redis::async_connection async{io.get_executor(),
                                        {.port = redis.port(), .command_timeout = 2000ms}};
    keel::redis::fixed_window async_limiter{async,
                                            {.name = "bench-one-async", .limit = huge_limit}};
    async_io = &io;
    async_one = &async_limiter;
#endif
    server = &redis;
    shared_pool = &pool;
    plain_one = &plain_limiter;
    piped_one = &piped_limiter;
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) {
        return 1;
    }
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
