// SPDX-License-Identifier: MIT
// What keel::adaptive_limit costs per call (acquire + complete with success), on one
// and two threads, beside its baselines in the same run: a bare atomic in-flight counter
// (the floor of any concurrency limit), keel::bulkhead (a fixed limit: one CAS and one
// decrement), and a plain mutex-based adaptive limit (in-flight count, window sums and
// the update under one mutex). The adaptive limit reads its clock twice per call (to time
// the call), so it runs on keel::steady_clock and on keel::coarse_clock. Also the
// rejection path. Built twice, at -O3 (keel_adaptive_limit_bench) and at -O2
// (keel_adaptive_limit_bench_o2).
#include <keel/core/clock.hpp>
#include <keel/policy/adaptive_limit.hpp>
#include <keel/policy/bulkhead.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>

using namespace std::chrono_literals;

namespace {

// A limit that never moves and never rejects on the measured path.
keel::adaptive_limit_options wide() {
    return {.algorithm = keel::gradient2_options{
                .initial_limit = 1'000'000, .min_limit = 1'000'000, .max_limit = 1'000'000}};
}

// The mutex baseline: what the adaptive limit does, written the straightforward way.
template <class Clock>
class mutex_limit {
public:
    struct permit {
        bool admitted;
        typename Clock::time_point start;
        int in_flight;
    };
    permit try_acquire() {
        auto const now = Clock::now();
        std::lock_guard lock{m_mutex};
        if (m_in_flight >= m_limit) {
            return {false, now, 0};
        }
        return {true, now, ++m_in_flight};
    }
    void success(permit const& p) {
        auto const now = Clock::now();
        std::lock_guard lock{m_mutex};
        --m_in_flight;
        auto const rtt =
            std::chrono::duration_cast<std::chrono::nanoseconds>(now - p.start).count();
        ++m_count;
        m_sum += rtt;
        m_min = std::min(m_min, rtt);
        m_max_in_flight = std::max(m_max_in_flight, p.in_flight);
        if (now >= m_next_update) {
            m_next_update = now + 1s;
            m_count = m_sum = 0;
        }
    }

private:
    std::mutex m_mutex;
    int m_in_flight = 0;
    int m_limit = 1'000'000;
    std::int64_t m_count = 0;
    std::int64_t m_sum = 0;
    std::int64_t m_min = INT64_MAX;
    int m_max_in_flight = 0;
    typename Clock::time_point m_next_update{};
};

std::atomic<int> g_counter{0};

void atomic_counter(benchmark::State& state) {
    for (auto _ : state) {
        int const seen = g_counter.fetch_add(1, std::memory_order_acquire);
        benchmark::DoNotOptimize(seen);
        g_counter.fetch_sub(1, std::memory_order_release);
    }
}

keel::bulkhead g_bulkhead{{.max_concurrent_calls = 1'000'000}};

void bulkhead(benchmark::State& state) {
    for (auto _ : state) {
        bool const ok = g_bulkhead.try_acquire();
        benchmark::DoNotOptimize(ok);
        g_bulkhead.release();
    }
}

template <class Clock>
void adaptive(benchmark::State& state) {
    static keel::basic_adaptive_limit<Clock> limit{wide(), Clock{}};
    for (auto _ : state) {
        auto permit = limit.try_acquire();
        benchmark::DoNotOptimize(permit);
        permit.success();
    }
}

template <class Clock>
void mutex_baseline(benchmark::State& state) {
    static mutex_limit<Clock> limit;
    for (auto _ : state) {
        auto const permit = limit.try_acquire();
        benchmark::DoNotOptimize(permit);
        limit.success(permit);
    }
}

void adaptive_rejected(benchmark::State& state) {
    static keel::adaptive_limit limit{
        {.algorithm = keel::aimd_options{.initial_limit = 1, .min_limit = 1, .max_limit = 1}}};
    static auto const held = limit.try_acquire();
    for (auto _ : state) {
        auto permit = limit.try_acquire();
        benchmark::DoNotOptimize(permit);
    }
}

} // namespace

BENCHMARK(atomic_counter);
BENCHMARK(atomic_counter)->Threads(2);
BENCHMARK(bulkhead);
BENCHMARK(bulkhead)->Threads(2);
BENCHMARK(adaptive<keel::steady_clock>);
BENCHMARK(adaptive<keel::steady_clock>)->Threads(2);
BENCHMARK(adaptive<keel::coarse_clock>);
BENCHMARK(adaptive<keel::coarse_clock>)->Threads(2);
BENCHMARK(mutex_baseline<keel::steady_clock>);
BENCHMARK(mutex_baseline<keel::steady_clock>)->Threads(2);
BENCHMARK(mutex_baseline<keel::coarse_clock>);
BENCHMARK(mutex_baseline<keel::coarse_clock>)->Threads(2);
BENCHMARK(adaptive_rejected);

BENCHMARK_MAIN();
