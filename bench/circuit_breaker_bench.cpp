// SPDX-License-Identifier: MIT
// What a circuit breaker costs per call in CLOSED (acquire + record), on one and
// two threads, beside its baselines in the same run: the floor (one clock read and
// one atomic read-modify-write, the least any breaker that times calls or counts
// them must do) and a plain mutex-based breaker with the same semantics (a ring
// of the last N outcomes, failure and slow counts, thresholds with a minimum,
// generation check), written the straightforward way. Also the rejection path.
// Built twice, at -O3 (keel_circuit_breaker_bench) and at -O2
// (keel_circuit_breaker_bench_o2): the hot paths must inline at both.
#include <keel/core/clock.hpp>
#include <keel/policy/circuit_breaker.hpp>

#include <benchmark/benchmark.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <vector>

using namespace std::chrono_literals;

namespace {

// ---------------------------------------------------------------------------
// The mutex baseline: the same CLOSED/OPEN semantics, one mutex around everything.
template <class Clock>
class mutex_breaker {
public:
    explicit mutex_breaker(keel::circuit_breaker_options o)
        : m_options(o), m_ring(o.window_size, 0) {}

    struct permit {
        bool admitted;
        std::uint64_t generation;
        typename Clock::time_point start;
    };

    permit try_acquire() {
        auto const now = Clock::now();
        std::lock_guard lock{m_mutex};
        if (m_open) {
            if (now < m_until) {
                ++m_rejected;
                return {false, m_generation, now};
            }
            close_locked(); // (no half-open in the baseline: not on the measured path)
        }
        return {true, m_generation, now};
    }

    void record(permit const& p, bool failed, std::chrono::nanoseconds elapsed) {
        std::lock_guard lock{m_mutex};
        if (p.generation != m_generation || m_open) {
            return;
        }
        std::uint8_t const outcome = static_cast<std::uint8_t>(
            (failed ? 2 : 0) | (elapsed > m_options.slow_call_duration ? 1 : 0));
        std::uint8_t const old = m_ring[m_position];
        m_ring[m_position] = outcome;
        m_position = (m_position + 1) % m_ring.size();
        m_calls = std::min<std::size_t>(m_calls + 1, m_ring.size());
        m_failures += (outcome >> 1) - (old >> 1);
        m_slow += (outcome & 1) - (old & 1);
        if ((outcome != 0) &&
            m_calls >= std::min<std::size_t>(m_options.minimum_calls, m_ring.size()) &&
            (static_cast<double>(m_failures) * 100.0 >=
                 m_options.failure_rate_threshold * static_cast<double>(m_calls) ||
             static_cast<double>(m_slow) * 100.0 >=
                 m_options.slow_call_rate_threshold * static_cast<double>(m_calls))) {
            m_open = true;
            ++m_generation;
            m_until = Clock::now() + m_options.reset_timeout;
        }
    }

    void force_open_for(std::chrono::nanoseconds d) {
        std::lock_guard lock{m_mutex};
        m_open = true;
        ++m_generation;
        m_until = Clock::now() + d;
    }

private:
    void close_locked() {
        m_open = false;
        ++m_generation;
        std::fill(m_ring.begin(), m_ring.end(), 0);
        m_position = m_calls = 0;
        m_failures = m_slow = 0;
    }

    keel::circuit_breaker_options m_options;
    std::mutex m_mutex;
    std::vector<std::uint8_t> m_ring;
    std::size_t m_position = 0;
    std::size_t m_calls = 0;
    std::int64_t m_failures = 0;
    std::int64_t m_slow = 0;
    bool m_open = false;
    std::uint64_t m_generation = 0;
    std::uint64_t m_rejected = 0;
    typename Clock::time_point m_until{};
};

keel::circuit_breaker_options count_options() {
    return {.failure_rate_threshold = 50, .window_size = 100, .minimum_calls = 20};
}

keel::circuit_breaker_options time_options() {
    return {.failure_rate_threshold = 50,
            .window = keel::circuit_window::time_based,
            .window_size = 10,
            .minimum_calls = 20};
}

// Shared by the threads of a multi-threaded run (function-local statics).
std::atomic<std::uint64_t>& floor_counter() {
    alignas(64) static std::atomic<std::uint64_t> counter{0};
    return counter;
}
template <class Clock>
keel::basic_circuit_breaker<Clock>& count_breaker() {
    static keel::basic_circuit_breaker<Clock> breaker{count_options()};
    return breaker;
}
template <class Clock>
keel::basic_circuit_breaker<Clock>& time_breaker() {
    static keel::basic_circuit_breaker<Clock> breaker{time_options()};
    return breaker;
}
template <class Clock>
mutex_breaker<Clock>& plain_breaker() {
    static mutex_breaker<Clock> breaker{count_options()};
    return breaker;
}

using keel::coarse_clock;
using keel::steady_clock;

// ---------------------------------------------------------------------------
// Baselines.

template <class Clock>
void baseline_floor_clock_and_rmw(benchmark::State& state) {
    auto& counter = floor_counter();
    for (auto _ : state) {
        benchmark::DoNotOptimize(Clock::now());
        benchmark::DoNotOptimize(counter.fetch_add(1, std::memory_order_acq_rel));
    }
}
BENCHMARK_TEMPLATE(baseline_floor_clock_and_rmw, steady_clock)
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime();
BENCHMARK_TEMPLATE(baseline_floor_clock_and_rmw, coarse_clock)
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime();

// The floor of a path that reads no clock: one atomic read-modify-write.
void baseline_floor_rmw(benchmark::State& state) {
    auto& counter = floor_counter();
    for (auto _ : state) {
        benchmark::DoNotOptimize(counter.fetch_add(1, std::memory_order_acq_rel));
    }
}
BENCHMARK(baseline_floor_rmw)->Threads(1)->Threads(2)->UseRealTime();

void baseline_floor_two_clocks_and_rmw(benchmark::State& state) {
    auto& counter = floor_counter();
    for (auto _ : state) {
        benchmark::DoNotOptimize(steady_clock::now());
        benchmark::DoNotOptimize(counter.fetch_add(1, std::memory_order_acq_rel));
        benchmark::DoNotOptimize(steady_clock::now());
    }
}
BENCHMARK(baseline_floor_two_clocks_and_rmw)->Threads(1)->Threads(2)->UseRealTime();

template <class Clock>
void baseline_mutex_breaker(benchmark::State& state) {
    auto& b = plain_breaker<Clock>();
    for (auto _ : state) {
        auto const p = b.try_acquire();
        benchmark::DoNotOptimize(p.admitted);
        b.record(p, false, 1us);
    }
}
BENCHMARK_TEMPLATE(baseline_mutex_breaker, steady_clock)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK_TEMPLATE(baseline_mutex_breaker, coarse_clock)->Threads(1)->Threads(2)->UseRealTime();

void baseline_mutex_breaker_timed(benchmark::State& state) {
    auto& b = plain_breaker<steady_clock>();
    for (auto _ : state) {
        auto const p = b.try_acquire();
        benchmark::DoNotOptimize(p.admitted);
        b.record(p, false, steady_clock::now() - p.start);
    }
}
BENCHMARK(baseline_mutex_breaker_timed)->Threads(1)->Threads(2)->UseRealTime();

void baseline_mutex_breaker_10pct_failures(benchmark::State& state) {
    auto& b = plain_breaker<steady_clock>();
    unsigned i = 0;
    for (auto _ : state) {
        auto const p = b.try_acquire();
        benchmark::DoNotOptimize(p.admitted);
        b.record(p, ++i % 10 == 0, 1us);
    }
}
BENCHMARK(baseline_mutex_breaker_10pct_failures)->Threads(1)->Threads(2)->UseRealTime();

// ---------------------------------------------------------------------------
// keel::circuit_breaker, CLOSED: acquire + record a success.

// The caller passes the duration it measured, but admission was asked to time the
// call (try_acquire()): one clock read.
template <class Clock>
void keel_breaker_count_window(benchmark::State& state) {
    auto& b = count_breaker<Clock>();
    for (auto _ : state) {
        auto p = b.try_acquire();
        benchmark::DoNotOptimize(p.admitted());
        p.success(1us);
    }
}
BENCHMARK_TEMPLATE(keel_breaker_count_window, steady_clock)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK_TEMPLATE(keel_breaker_count_window, coarse_clock)->Threads(1)->Threads(2)->UseRealTime();

// The caller times the call and says so at admission: no clock read at all.
template <class Clock>
void keel_breaker_count_window_caller_timed(benchmark::State& state) {
    auto& b = count_breaker<Clock>();
    for (auto _ : state) {
        auto p = b.try_acquire(keel::call_timing::by_caller);
        benchmark::DoNotOptimize(p.admitted());
        p.success(1us);
    }
}
BENCHMARK_TEMPLATE(keel_breaker_count_window_caller_timed, steady_clock)
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime();

// The breaker times the call: two clock reads.
void keel_breaker_count_window_timed(benchmark::State& state) {
    auto& b = count_breaker<steady_clock>();
    for (auto _ : state) {
        auto p = b.try_acquire();
        benchmark::DoNotOptimize(p.admitted());
        p.success();
    }
}
BENCHMARK(keel_breaker_count_window_timed)->Threads(1)->Threads(2)->UseRealTime();

// A time-based window reads the clock at record time too.
void keel_breaker_time_window(benchmark::State& state) {
    auto& b = time_breaker<steady_clock>();
    for (auto _ : state) {
        auto p = b.try_acquire();
        benchmark::DoNotOptimize(p.admitted());
        p.success(1us);
    }
}
BENCHMARK(keel_breaker_time_window)->Threads(1)->Threads(2)->UseRealTime();

// One failure in ten: the ring's eviction path and the threshold check run too.
void keel_breaker_count_window_10pct_failures(benchmark::State& state) {
    auto& b = count_breaker<steady_clock>();
    unsigned i = 0;
    for (auto _ : state) {
        auto p = b.try_acquire();
        benchmark::DoNotOptimize(p.admitted());
        ++i % 10 == 0 ? p.failure(1us) : p.success(1us);
    }
}
BENCHMARK(keel_breaker_count_window_10pct_failures)->Threads(1)->Threads(2)->UseRealTime();

// ---------------------------------------------------------------------------
// Rejection path: OPEN, every call refused as a value.

void keel_breaker_rejected(benchmark::State& state) {
    static keel::circuit_breaker b{{.reset_timeout = 1h, .max_reset_timeout = 1h}};
    if (state.thread_index() == 0 && b.state() != keel::circuit_state::open) {
        for (int i = 0; i < 100; ++i) {
            b.try_acquire().failure();
        }
    }
    for (auto _ : state) {
        auto p = b.try_acquire();
        benchmark::DoNotOptimize(p.retry_after());
    }
}
BENCHMARK(keel_breaker_rejected)->Threads(1)->UseRealTime();

void baseline_mutex_breaker_rejected(benchmark::State& state) {
    static mutex_breaker<steady_clock> b{count_options()};
    b.force_open_for(1h);
    for (auto _ : state) {
        auto const p = b.try_acquire();
        benchmark::DoNotOptimize(p.admitted);
    }
}
BENCHMARK(baseline_mutex_breaker_rejected)->Threads(1)->UseRealTime();

} // namespace

BENCHMARK_MAIN();
