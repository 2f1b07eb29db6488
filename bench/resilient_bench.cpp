// SPDX-License-Identifier: MIT
// What guarding a call costs on the success path: a direct call (the baseline),
// keel::resilient with no policy, with a retry, with retry + timeout, with a
// bulkhead; the floor (a clock read + one atomic RMW); the parts of the timeout's
// cost (a std::stop_source, a deadline timer insertion/removal); rejection and
// failure paths; and the bulkhead and retry budget under two threads.
#include <keel/policy/bulkhead.hpp>
#include <keel/policy/retry.hpp>
#include <keel/policy/retry_budget.hpp>
#include <keel/policy/timeout.hpp>
#include <keel/resilient.hpp>

#include <benchmark/benchmark.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <stop_token>

using namespace std::chrono_literals;

namespace {

// The guarded work: opaque to the optimiser, about a nanosecond.
int work(int x) {
    benchmark::DoNotOptimize(x);
    return x + 1;
}

auto const call = [](int x) { return work(x); };

void baseline_direct_call(benchmark::State& state) {
    int x = 0;
    for (auto _ : state) {
        x = call(x);
        benchmark::DoNotOptimize(x);
    }
}
BENCHMARK(baseline_direct_call);

void baseline_clock_and_atomic(benchmark::State& state) {
    std::atomic<long> counter{0};
    for (auto _ : state) {
        benchmark::DoNotOptimize(keel::steady_clock::now());
        benchmark::DoNotOptimize(counter.fetch_add(1, std::memory_order_relaxed));
    }
}
BENCHMARK(baseline_clock_and_atomic);

void baseline_mutex_counter(benchmark::State& state) {
    std::mutex mutex;
    int in_flight = 0;
    int x = 0;
    for (auto _ : state) {
        {
            std::lock_guard lock{mutex};
            ++in_flight;
        }
        x = call(x);
        {
            std::lock_guard lock{mutex};
            --in_flight;
        }
        benchmark::DoNotOptimize(x);
    }
}
BENCHMARK(baseline_mutex_counter);

void resilient_no_policy(benchmark::State& state) {
    auto const guarded = keel::resilient{call};
    int x = 0;
    for (auto _ : state) {
        x = guarded(x);
        benchmark::DoNotOptimize(x);
    }
}
BENCHMARK(resilient_no_policy);

void resilient_retry(benchmark::State& state) {
    auto const guarded = keel::resilient{call, keel::retry{}};
    int x = 0;
    for (auto _ : state) {
        x = guarded(x);
        benchmark::DoNotOptimize(x);
    }
}
BENCHMARK(resilient_retry);

void resilient_retry_try_call(benchmark::State& state) {
    auto const guarded = keel::resilient{call, keel::retry{}};
    int x = 0;
    for (auto _ : state) {
        x = *guarded.try_call(x);
        benchmark::DoNotOptimize(x);
    }
}
BENCHMARK(resilient_retry_try_call);

void resilient_retry_with_budget(benchmark::State& state) {
    keel::retry_budget budget;
    auto const guarded = keel::resilient{call, keel::retry{{.budget = &budget}}};
    int x = 0;
    for (auto _ : state) {
        x = guarded(x);
        benchmark::DoNotOptimize(x);
    }
}
BENCHMARK(resilient_retry_with_budget);

void resilient_retry_timeout(benchmark::State& state) {
    auto const guarded = keel::resilient{call, keel::retry{}, keel::timeout{5s}};
    int x = 0;
    for (auto _ : state) {
        x = guarded(x);
        benchmark::DoNotOptimize(x);
    }
}
BENCHMARK(resilient_retry_timeout);

void resilient_bulkhead(benchmark::State& state) {
    keel::bulkhead b;
    auto const guarded = keel::resilient{call, keel::guard(b)};
    int x = 0;
    for (auto _ : state) {
        x = guarded(x);
        benchmark::DoNotOptimize(x);
    }
}
BENCHMARK(resilient_bulkhead);

void resilient_bulkhead_retry_timeout(benchmark::State& state) {
    keel::bulkhead b;
    auto const guarded = keel::resilient{call, keel::guard(b), keel::retry{}, keel::timeout{5s}};
    int x = 0;
    for (auto _ : state) {
        x = guarded(x);
        benchmark::DoNotOptimize(x);
    }
}
BENCHMARK(resilient_bulkhead_retry_timeout);

// The parts of the timeout's cost.
void timeout_part_stop_source(benchmark::State& state) {
    for (auto _ : state) {
        std::stop_source source;
        benchmark::DoNotOptimize(source);
    }
}
BENCHMARK(timeout_part_stop_source);

void timeout_part_timer_schedule_cancel(benchmark::State& state) {
    using timer = keel::detail::deadline_timer<std::chrono::steady_clock>;
    std::stop_source source;
    for (auto _ : state) {
        timer::scheduled const deadline{std::chrono::steady_clock::now() + 5s, source};
        benchmark::DoNotOptimize(&deadline);
    }
}
BENCHMARK(timeout_part_timer_schedule_cancel);

// Rejection and failure paths.
void rejection_bulkhead_full(benchmark::State& state) {
    keel::bulkhead b{{.max_concurrent_calls = 1}};
    (void)b.try_acquire();
    auto const guarded = keel::resilient{call, keel::guard(b)};
    for (auto _ : state) {
        benchmark::DoNotOptimize(guarded.try_call(1));
    }
    b.release();
}
BENCHMARK(rejection_bulkhead_full);

void failure_retry_exhausted_outcome(benchmark::State& state) {
    auto const guarded = keel::resilient{
        [](int) -> keel::outcome<int> { return keel::failure::from(keel::errc::unavailable); },
        keel::retry{{.max_attempts = 3, .backoff = keel::constant{0ms}}}};
    for (auto _ : state) {
        benchmark::DoNotOptimize(guarded.try_call(1));
    }
}
BENCHMARK(failure_retry_exhausted_outcome);

// Contended: two threads on one bulkhead, one retry budget.
keel::bulkhead shared_bulkhead{{.max_concurrent_calls = 1000}};
keel::retry_budget shared_budget;

void contended_bulkhead(benchmark::State& state) {
    auto const guarded = keel::resilient{call, keel::guard(shared_bulkhead)};
    int x = 0;
    for (auto _ : state) {
        x = guarded(x);
        benchmark::DoNotOptimize(x);
    }
}
BENCHMARK(contended_bulkhead)->Threads(2);

void contended_retry_budget(benchmark::State& state) {
    auto const guarded = keel::resilient{call, keel::retry{{.budget = &shared_budget}}};
    int x = 0;
    for (auto _ : state) {
        x = guarded(x);
        benchmark::DoNotOptimize(x);
    }
}
BENCHMARK(contended_retry_budget)->Threads(2);

void contended_retry_timeout(benchmark::State& state) {
    auto const guarded = keel::resilient{call, keel::retry{}, keel::timeout{5s}};
    int x = 0;
    for (auto _ : state) {
        x = guarded(x);
        benchmark::DoNotOptimize(x);
    }
}
BENCHMARK(contended_retry_timeout)->Threads(2);

} // namespace

BENCHMARK_MAIN();
