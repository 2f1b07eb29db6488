// SPDX-License-Identifier: MIT
// What a health probe costs on its fast path: readiness() served from the cache
// (two checks within their ttl), liveness(), a failing readiness (the manual
// not-ready flag set), the same cached probe from 2 threads, and rendering the
// report as health+json. Baselines in the same program: a direct call of the two
// check functions, a plain mutex-protected copy of a cached result, and the floor
// (a bare clock read plus one atomic RMW).
#include <keel/ops/health.hpp>
#include <keel/ops/health_json.hpp>

#include <benchmark/benchmark.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>

using namespace std::chrono_literals;

namespace {

keel::ops::check_result db_check() {
    return keel::ops::check_result::pass(3.2, "ms");
}
keel::ops::check_result cache_check() {
    return keel::ops::check_result::pass();
}

void setup(keel::ops::health_registry& health) {
    health.add_check({.name = "postgres",
                      .measurement = "responseTime",
                      .kind = keel::ops::check_kind::database,
                      .ttl = 1h},
                     db_check);
    health.add_check({.name = "redis", .kind = keel::ops::check_kind::cache, .ttl = 1h},
                     cache_check);
    health.mark_started();
    (void)health.readiness(); // fill the cache
}

void baseline_floor_clock_and_atomic(benchmark::State& state) {
    std::atomic<long> counter{0};
    for (auto _ : state) {
        benchmark::DoNotOptimize(keel::steady_clock::now());
        benchmark::DoNotOptimize(counter.fetch_add(1, std::memory_order_relaxed));
    }
}
BENCHMARK(baseline_floor_clock_and_atomic);

void baseline_direct_checks(benchmark::State& state) {
    for (auto _ : state) {
        benchmark::DoNotOptimize(db_check());
        benchmark::DoNotOptimize(cache_check());
    }
}
BENCHMARK(baseline_direct_checks);

void baseline_mutex_cached_copy(benchmark::State& state) {
    std::mutex mutex;
    keel::ops::check_result cached = db_check();
    auto const read_at = keel::steady_clock::now();
    for (auto _ : state) {
        auto const now = keel::steady_clock::now();
        std::lock_guard lock{mutex};
        if (now - read_at < 1h) {
            keel::ops::check_result copy = cached;
            benchmark::DoNotOptimize(copy);
        }
    }
}
BENCHMARK(baseline_mutex_cached_copy);

void readiness_cached(benchmark::State& state) {
    keel::ops::health_registry health;
    setup(health);
    for (auto _ : state) {
        auto report = health.readiness();
        benchmark::DoNotOptimize(report);
    }
}
BENCHMARK(readiness_cached);

void readiness_not_ready(benchmark::State& state) {
    keel::ops::health_registry health;
    setup(health);
    health.set_not_ready("draining");
    for (auto _ : state) {
        auto report = health.readiness();
        benchmark::DoNotOptimize(report);
    }
}
BENCHMARK(readiness_not_ready);

void liveness(benchmark::State& state) {
    keel::ops::health_registry health;
    for (auto _ : state) {
        auto report = health.liveness();
        benchmark::DoNotOptimize(report);
    }
}
BENCHMARK(liveness);

void readiness_cached_contended(benchmark::State& state) {
    static keel::ops::health_registry* health = nullptr;
    if (state.thread_index() == 0) {
        health = new keel::ops::health_registry{};
        setup(*health);
    }
    for (auto _ : state) {
        auto report = health->readiness();
        benchmark::DoNotOptimize(report);
    }
    if (state.thread_index() == 0) {
        delete health;
        health = nullptr;
    }
}
BENCHMARK(readiness_cached_contended)->Threads(2);

void render_readiness_json(benchmark::State& state) {
    keel::ops::health_registry health{{.service_id = "bench", .version = "1.0"}};
    setup(health);
    auto const report = health.readiness();
    for (auto _ : state) {
        auto body = keel::ops::render_health_json(report);
        benchmark::DoNotOptimize(body);
    }
}
BENCHMARK(render_readiness_json);

} // namespace

BENCHMARK_MAIN();
