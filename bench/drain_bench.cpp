// SPDX-License-Identifier: MIT
// What tracking a request costs: drain_coordinator::try_enter() plus the ticket's
// release, beside the floor (one atomic RMW pair on a counter, which is all a drain
// tracker can be) and a plain mutex-guarded "draining flag + count" baseline. Fast path
// (admitted), rejection path (draining) and contended (2 threads) path.
#include <keel/ops/drain.hpp>

#include <benchmark/benchmark.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>

using namespace std::chrono_literals;

namespace {

// The floor: one fetch_add to enter and one fetch_sub to leave, no draining check.
std::atomic<std::uint64_t> floor_counter{0};

void baseline_atomic_pair(benchmark::State& state) {
    for (auto _ : state) {
        benchmark::DoNotOptimize(floor_counter.fetch_add(1, std::memory_order_acq_rel));
        benchmark::DoNotOptimize(floor_counter.fetch_sub(1, std::memory_order_acq_rel));
    }
}
BENCHMARK(baseline_atomic_pair)->Threads(1)->Threads(2);

// A plain mutex version: a flag and a count under one lock.
struct mutex_tracker {
    std::mutex mutex;
    bool draining = false;
    std::uint64_t count = 0;
    bool enter() {
        std::lock_guard lock{mutex};
        if (draining) {
            return false;
        }
        ++count;
        return true;
    }
    void leave() {
        std::lock_guard lock{mutex};
        --count;
    }
};
mutex_tracker shared_mutex_tracker;

void baseline_mutex(benchmark::State& state) {
    for (auto _ : state) {
        if (shared_mutex_tracker.enter()) {
            shared_mutex_tracker.leave();
        }
    }
}
BENCHMARK(baseline_mutex)->Threads(1)->Threads(2);

keel::ops::drain_coordinator shared_drain;

void drain_try_enter_release(benchmark::State& state) {
    for (auto _ : state) {
        auto ticket = shared_drain.try_enter();
        benchmark::DoNotOptimize(ticket);
    }
}
BENCHMARK(drain_try_enter_release)->Threads(1)->Threads(2);

void drain_try_enter_rejected(benchmark::State& state) {
    // A coordinator that already refuses work: no budgets to wait through.
    static keel::ops::drain_coordinator draining{keel::ops::drain_options{.pre_stop_delay = 0s}};
    static bool const started = [] {
        (void)draining.shutdown();
        return true;
    }();
    (void)started;
    for (auto _ : state) {
        auto ticket = draining.try_enter();
        benchmark::DoNotOptimize(ticket);
    }
}
BENCHMARK(drain_try_enter_rejected)->Threads(1)->Threads(2);

} // namespace

BENCHMARK_MAIN();
