// SPDX-License-Identifier: MIT
// Simulated calls per second of CPU. The baseline is the simulator's event loop
// with a bare call (no policy); then keel's breaker + retry + timeout, the
// pipeline the issue sets its target on (>= 1 M simulated calls per CPU second),
// healthy and through an outage (rejections and retries), and two layers of
// retries. Each iteration simulates 10 s of an open-loop 10,000 calls/s
// against 2 instances of 200 servers; items/s is simulated calls per second.
#include <keel/sim/simulator.hpp>

#include <benchmark/benchmark.h>

#include <chrono>

using namespace std::chrono_literals;

namespace {

keel::sim::scenario base() {
    keel::sim::scenario s;
    s.name = "bench";
    s.duration = 10s;
    s.downstream.instances = 2;
    s.downstream.servers = 200;
    s.downstream.service = {keel::sim::distribution::exponential, 5ms, 0.5};
    s.clients = {keel::sim::client_group{.rate = 10'000}};
    return s;
}

std::vector<keel::sim::stage> breaker_retry_timeout() {
    return {keel::sim::breaker_stage{},
            keel::sim::retry_stage{.max_attempts = 3,
                                   .backoff = keel::exponential{10ms, 2.0, 1s},
                                   .budget = keel::retry_budget_options{}},
            keel::sim::timeout_stage{100ms}};
}

void run(benchmark::State& state, keel::sim::scenario const& s) {
    std::uint64_t calls = 0;
    std::uint64_t attempts = 0;
    for (auto _ : state) {
        auto const r = keel::sim::run(s);
        calls += r.totals.requests;
        attempts += r.totals.attempts;
        benchmark::DoNotOptimize(r.totals.succeeded);
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(calls));
    state.counters["attempts_per_call"] =
        calls == 0 ? 0.0 : static_cast<double>(attempts) / static_cast<double>(calls);
}

void baseline_event_loop_bare_call(benchmark::State& state) {
    run(state, base());
}
BENCHMARK(baseline_event_loop_bare_call)->Unit(benchmark::kMillisecond);

void breaker_retry_timeout_healthy(benchmark::State& state) {
    auto s = base();
    s.pipeline = breaker_retry_timeout();
    run(state, s);
}
BENCHMARK(breaker_retry_timeout_healthy)->Unit(benchmark::kMillisecond);

// Failing 30 % for 3 s, then down (refused) for 3 s: retries, budget refusals, an
// open breaker shedding, half-open probes.
void breaker_retry_timeout_outage(benchmark::State& state) {
    auto s = base();
    s.pipeline = breaker_retry_timeout();
    s.downstream.phases = {keel::sim::phase{.start = 2s, .failure_probability = 0.3},
                           keel::sim::phase{.start = 5s, .down = true},
                           keel::sim::phase{.start = 8s}};
    run(state, s);
}
BENCHMARK(breaker_retry_timeout_outage)->Unit(benchmark::kMillisecond);

// Two retry layers under a 30 % failure rate: the deepest coroutine nesting.
void two_retry_layers_failing(benchmark::State& state) {
    auto s = base();
    s.pipeline = {keel::sim::retry_stage{.max_attempts = 3, .backoff = keel::constant{5ms}},
                  keel::sim::retry_stage{.max_attempts = 3, .backoff = keel::constant{1ms}},
                  keel::sim::timeout_stage{100ms}};
    s.downstream.phases = {keel::sim::phase{.start = 0s, .failure_probability = 0.3}};
    run(state, s);
}
BENCHMARK(two_retry_layers_failing)->Unit(benchmark::kMillisecond);

} // namespace

BENCHMARK_MAIN();
