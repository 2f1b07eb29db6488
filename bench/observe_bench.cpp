// SPDX-License-Identifier: MIT
// What a scrape costs: keel::observe::registry rendering 100 components (20
// circuit breakers, 20 token buckets, 5 keyed tables, 20 bulkheads, 15 retry
// budgets, 20 pipelines' counters) in each format, into a string reused across
// scrapes and into a fresh one, with the heap allocations per render counted by
// this program's operator new. Baselines in the same program: reading the 100
// snapshots alone (the floor: what rendering cannot avoid), and writing the same
// number of sample lines with std::to_chars into a reused string (the formatting
// without the registry). Target: under 100 us per render. Last, what counting
// costs a registered lock-free limiter's admission.
#include <keel/limiter/keyed.hpp>
#include <keel/limiter/token_bucket.hpp>
#include <keel/observe/exposition.hpp>
#include <keel/observe/pipeline_counters.hpp>
#include <keel/observe/registry.hpp>
#include <keel/policy/bulkhead.hpp>
#include <keel/policy/circuit_breaker.hpp>
#include <keel/policy/retry_budget.hpp>

#include <benchmark/benchmark.h>

#include <atomic>
#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <new>
#include <string>

using namespace std::chrono_literals;

namespace {
std::atomic<std::uint64_t> g_allocations{0};
} // namespace

// Counts every allocation of the program (the benchmark library's included, but
// none happen inside a timed loop except the code under test's). Not inlined, as in
// net_bench.cpp: inlined, g++ pairs the malloc with a delete and warns.
[[gnu::noinline]] void* operator new(std::size_t size) {
    g_allocations.fetch_add(1, std::memory_order_relaxed);
    if (void* p = std::malloc(size == 0 ? 1 : size)) {
        return p;
    }
    throw std::bad_alloc{};
}
[[gnu::noinline]] void operator delete(void* p) noexcept {
    std::free(p);
}
[[gnu::noinline]] void operator delete(void* p, std::size_t) noexcept {
    std::free(p);
}

namespace {

// The 100 components a service might register, with some traffic recorded.
struct service {
    std::deque<keel::circuit_breaker> breakers;
    std::deque<keel::token_bucket> buckets;
    std::deque<keel::keyed<keel::token_bucket, std::uint64_t>> tables;
    std::deque<keel::bulkhead> bulkheads;
    std::deque<keel::retry_budget> budgets;
    std::deque<keel::observe::pipeline_counters> pipelines;
    keel::observe::registry registry;

    service() {
        for (int i = 0; i < 20; ++i) {
            auto const name = "dependency_" + std::to_string(i);
            auto& b = breakers.emplace_back(keel::circuit_breaker_options{.minimum_calls = 100});
            registry.add(name, b, {{"dependency", name}});
            auto& t = buckets.emplace_back(keel::token_bucket_options{.rate = 1000});
            registry.add(name, t);
            registry.add(name, bulkheads.emplace_back(keel::bulkhead_options{}));
            auto& p = pipelines.emplace_back();
            registry.add(name, p, {{"dependency", name}});
            for (int k = 0; k < 10; ++k) {
                if (auto permit = b.try_acquire()) {
                    permit.success();
                }
                (void)t.try_acquire();
                p.record_attempt();
                p.record(keel::observe::call_outcome::success);
            }
        }
        for (int i = 0; i < 15; ++i) {
            registry.add("budget_" + std::to_string(i), budgets.emplace_back());
        }
        for (int i = 0; i < 5; ++i) {
            auto& k = tables.emplace_back(keel::token_bucket_options{.rate = 10},
                                          keel::keyed_options{.max_keys = 10'000});
            for (std::uint64_t key = 0; key < 100; ++key) {
                (void)k.try_acquire(key);
            }
            registry.add("per_client_" + std::to_string(i), k);
        }
    }
};

service& the_service() {
    static service s;
    return s;
}

template <keel::observe::exposition_format Format>
void render_reused(benchmark::State& state) {
    auto& s = the_service();
    std::string page;
    s.registry.render_to(page, Format); // grow the string and the render buffers once
    auto const before = g_allocations.load();
    for (auto _ : state) {
        page.clear();
        s.registry.render_to(page, Format);
        benchmark::DoNotOptimize(page.data());
    }
    state.counters["allocs_per_render"] = benchmark::Counter(
        static_cast<double>(g_allocations.load() - before), benchmark::Counter::kAvgIterations);
    state.counters["bytes"] = static_cast<double>(page.size());
    state.counters["components"] = static_cast<double>(s.registry.size());
}
BENCHMARK(render_reused<keel::observe::exposition_format::prometheus>)
    ->Name("render_100/prometheus/reused_string")
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(render_reused<keel::observe::exposition_format::openmetrics>)
    ->Name("render_100/openmetrics/reused_string")
    ->Unit(benchmark::kMicrosecond);

template <keel::observe::exposition_format Format>
void render_fresh(benchmark::State& state) {
    auto& s = the_service();
    (void)s.registry.render(Format);
    auto const before = g_allocations.load();
    for (auto _ : state) {
        benchmark::DoNotOptimize(s.registry.render(Format));
    }
    state.counters["allocs_per_render"] = benchmark::Counter(
        static_cast<double>(g_allocations.load() - before), benchmark::Counter::kAvgIterations);
}
BENCHMARK(render_fresh<keel::observe::exposition_format::prometheus>)
    ->Name("render_100/prometheus/fresh_string")
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(render_fresh<keel::observe::exposition_format::openmetrics>)
    ->Name("render_100/openmetrics/fresh_string")
    ->Unit(benchmark::kMicrosecond);

// The floor: the 100 snapshots, read and thrown away.
void baseline_snapshots_only(benchmark::State& state) {
    auto& s = the_service();
    for (auto _ : state) {
        for (auto& b : s.breakers) {
            benchmark::DoNotOptimize(b.metrics());
        }
        for (auto& t : s.buckets) {
            benchmark::DoNotOptimize(t.decisions());
            benchmark::DoNotOptimize(t.try_acquire(0));
        }
        for (auto& k : s.tables) {
            benchmark::DoNotOptimize(k.decisions());
            benchmark::DoNotOptimize(k.size());
        }
        for (auto const& b : s.bulkheads) {
            benchmark::DoNotOptimize(b.snapshot());
        }
        for (auto const& b : s.budgets) {
            benchmark::DoNotOptimize(b.snapshot());
        }
        for (auto const& p : s.pipelines) {
            benchmark::DoNotOptimize(p.snapshot());
        }
    }
}
BENCHMARK(baseline_snapshots_only)->Unit(benchmark::kMicrosecond);

// Formatting alone: as many `name{labels} value` lines as a 0.0.4 render writes,
// with to_chars into a reused string.
void baseline_to_chars_lines(benchmark::State& state) {
    auto& s = the_service();
    std::string reference;
    s.registry.render_to(reference, keel::observe::exposition_format::prometheus);
    std::size_t lines = 0;
    for (char const c : reference) {
        lines += c == '\n' ? 1U : 0U;
    }
    std::string page;
    page.reserve(reference.size());
    for (auto _ : state) {
        page.clear();
        for (std::size_t i = 0; i < lines; ++i) {
            page += R"(keel_some_family_total{name="dependency_7",dependency="dependency_7"} )";
            char buffer[24];
            auto const r = std::to_chars(buffer, buffer + sizeof buffer, i);
            page.append(buffer, r.ptr);
            page += '\n';
        }
        benchmark::DoNotOptimize(page.data());
    }
    state.counters["lines"] = static_cast<double>(lines);
}
BENCHMARK(baseline_to_chars_lines)->Unit(benchmark::kMicrosecond);

// What a registered (counting) lock-free limiter pays per admission, beside the
// same limiter unregistered: a token bucket refilled exactly as fast as it is
// asked (explicit times 1 ns apart), so every request is admitted.
template <bool Counted>
void token_bucket_admission(benchmark::State& state) {
    keel::token_bucket bucket{{.rate = 1'000'000'000, .period = 1s, .burst = 1000}};
    if constexpr (Counted) {
        bucket.count_decisions();
    }
    auto now = keel::steady_clock::now();
    for (auto _ : state) {
        now += 1ns;
        benchmark::DoNotOptimize(bucket.try_acquire(1, now));
    }
    state.counters["allowed"] = static_cast<double>(bucket.decisions().allowed);
}
BENCHMARK(token_bucket_admission<false>)->Name("token_bucket_admission/not_counted");
BENCHMARK(token_bucket_admission<true>)->Name("token_bucket_admission/counted");

} // namespace

BENCHMARK_MAIN();
