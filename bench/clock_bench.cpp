// SPDX-License-Identifier: MIT
// What a clock read costs: keel::steady_clock and keel::coarse_clock beside
// std::chrono::steady_clock (the baseline) and keel::manual_clock (tests only).
#include <keel/core/clock.hpp>
#include <keel/testing/manual_clock.hpp>

#include <benchmark/benchmark.h>

#include <atomic>
#include <chrono>

namespace {

void baseline_std_steady_clock(benchmark::State& state) {
    for (auto _ : state) {
        benchmark::DoNotOptimize(std::chrono::steady_clock::now());
    }
}
BENCHMARK(baseline_std_steady_clock);

void baseline_atomic_fetch_add(benchmark::State& state) {
    std::atomic<long> counter{0};
    for (auto _ : state) {
        benchmark::DoNotOptimize(counter.fetch_add(1, std::memory_order_relaxed));
    }
}
BENCHMARK(baseline_atomic_fetch_add);

void keel_steady_clock(benchmark::State& state) {
    for (auto _ : state) {
        benchmark::DoNotOptimize(keel::steady_clock::now());
    }
}
BENCHMARK(keel_steady_clock);

void keel_coarse_clock(benchmark::State& state) {
    for (auto _ : state) {
        benchmark::DoNotOptimize(keel::coarse_clock::now());
    }
}
BENCHMARK(keel_coarse_clock);

void keel_manual_clock(benchmark::State& state) {
    keel::manual_clock clock;
    for (auto _ : state) {
        benchmark::DoNotOptimize(clock.now());
    }
}
BENCHMARK(keel_manual_clock);

} // namespace

BENCHMARK_MAIN();
