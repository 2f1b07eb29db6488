// SPDX-License-Identifier: MIT
// What a rate limiter decision costs, for every keel algorithm, beside the
// floor (a clock read plus one atomic CAS) and a plain mutex-protected version
// of the same algorithm written straightforwardly. Paths: admit (steady_clock,
// coarse_clock, explicit now), reject, 2 threads on one limiter, 2 threads on
// distinct keys of a keyed table holding 1 M keys. Ends with a summary table.
#include <keel/core/clock.hpp>
#include <keel/limiter/fixed_window.hpp>
#include <keel/limiter/gcra.hpp>
#include <keel/limiter/keyed.hpp>
#include <keel/limiter/sliding_counter.hpp>
#include <keel/limiter/sliding_log.hpp>
#include <keel/limiter/token_bucket.hpp>

#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

using namespace std::chrono_literals;

namespace {

template <class Clock = keel::steady_clock>
std::int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
        .count();
}

std::int64_t steady_ns() {
    return now_ns<keel::steady_clock>();
}

// ---------------------------------------------------------------------------
// Mutex baselines: each algorithm as one would first write it, under a mutex.

template <class Clock>
struct mutex_fixed_window {
    std::int64_t limit, window;
    mutex_fixed_window(std::int64_t a, std::int64_t b) : limit(a), window(b) {}
    std::mutex mutex;
    std::int64_t start = 0, count = 0;
    bool try_acquire() {
        auto const now = now_ns<Clock>();
        std::lock_guard lock{mutex};
        if (now - start >= window) {
            start = now - now % window;
            count = 0;
        }
        if (count + 1 > limit) {
            return false;
        }
        ++count;
        return true;
    }
};

template <class Clock>
struct mutex_sliding_log {
    std::int64_t limit, window;
    mutex_sliding_log(std::int64_t a, std::int64_t b) : limit(a), window(b) {}
    std::mutex mutex;
    std::deque<std::int64_t> times;
    bool try_acquire() {
        auto const now = now_ns<Clock>();
        std::lock_guard lock{mutex};
        while (!times.empty() && times.front() <= now - window) {
            times.pop_front();
        }
        if (static_cast<std::int64_t>(times.size()) + 1 > limit) {
            return false;
        }
        times.push_back(now);
        return true;
    }
};

template <class Clock>
struct mutex_sliding_counter {
    std::int64_t limit, window;
    mutex_sliding_counter(std::int64_t a, std::int64_t b) : limit(a), window(b) {}
    std::mutex mutex;
    std::int64_t index = 0, prev = 0, curr = 0;
    bool try_acquire() {
        auto const now = now_ns<Clock>();
        std::lock_guard lock{mutex};
        auto const i = now / window;
        if (i != index) {
            prev = i == index + 1 ? curr : 0;
            curr = 0;
            index = i;
        }
        auto const f = static_cast<double>(now % window) / static_cast<double>(window);
        if (static_cast<double>(prev) * (1.0 - f) + static_cast<double>(curr) + 1.0 >
            static_cast<double>(limit)) {
            return false;
        }
        ++curr;
        return true;
    }
};

template <class Clock>
struct mutex_token_bucket { // x/time/rate's shape: tokens as a double, refilled on each call
    double rate_per_ns, burst;
    mutex_token_bucket(double a, double b) : rate_per_ns(a), burst(b) {}
    std::mutex mutex;
    double tokens = burst;
    std::int64_t last = 0;
    bool try_acquire() {
        auto const now = now_ns<Clock>();
        std::lock_guard lock{mutex};
        tokens += static_cast<double>(now - last) * rate_per_ns;
        tokens = tokens > burst ? burst : tokens;
        last = now;
        if (tokens < 1.0) {
            return false;
        }
        tokens -= 1.0;
        return true;
    }
};

template <class Clock>
struct mutex_gcra {
    std::int64_t interval, span;
    mutex_gcra(std::int64_t a, std::int64_t b) : interval(a), span(b) {}
    std::mutex mutex;
    std::int64_t tat = 0;
    bool try_acquire() {
        auto const now = now_ns<Clock>();
        std::lock_guard lock{mutex};
        auto const t = tat > now ? tat : now;
        if (t + interval - now > span) {
            return false;
        }
        tat = t + interval;
        return true;
    }
};

// ---------------------------------------------------------------------------
// Per algorithm: the keel type, options that admit (so the admit path is what
// is measured), options that reject, and the mutex baseline.

struct fixed_window_algo {
    static constexpr char const* name = "fixed_window";
    template <class C>
    using type = keel::basic_fixed_window<C>;
    static keel::fixed_window_options admit() { return {.limit = 4'000'000'000, .window = 1s}; }
    static keel::fixed_window_options reject() { return {.limit = 1, .window = 1h}; }
    static keel::fixed_window_options keyed() { return {.limit = 4'000'000'000, .window = 1h}; }
    template <class Clock>
    static auto baseline() {
        return std::unique_ptr<mutex_fixed_window<Clock>>(
            new mutex_fixed_window<Clock>(4'000'000'000, 1'000'000'000));
    }
};

struct sliding_log_algo {
    static constexpr char const* name = "sliding_log";
    template <class C>
    using type = keel::basic_sliding_log<C>;
    // 4096 per us admits every call at steady_clock speed; with coarse_clock the
    // time stands still for a tick, so that row is mostly the reject path.
    static keel::sliding_log_options admit() { return {.limit = 4096, .window = 1us}; }
    static keel::sliding_log_options reject() { return {.limit = 1, .window = 1h}; }
    template <class Clock>
    static auto baseline() {
        return std::unique_ptr<mutex_sliding_log<Clock>>(new mutex_sliding_log<Clock>(4096, 1'000));
    }
};

struct sliding_counter_algo {
    static constexpr char const* name = "sliding_counter";
    template <class C>
    using type = keel::basic_sliding_counter<C>;
    static keel::sliding_counter_options admit() { return {.limit = 4'000'000, .window = 1ms}; }
    static keel::sliding_counter_options reject() { return {.limit = 1, .window = 1h}; }
    static keel::sliding_counter_options keyed() { return {.limit = 4'000'000, .window = 1h}; }
    template <class Clock>
    static auto baseline() {
        return std::unique_ptr<mutex_sliding_counter<Clock>>(
            new mutex_sliding_counter<Clock>(4'000'000, 1'000'000));
    }
};

struct token_bucket_algo {
    static constexpr char const* name = "token_bucket";
    template <class C>
    using type = keel::basic_token_bucket<C>;
    static keel::token_bucket_options admit() {
        return {.rate = 1'000'000'000, .period = 1s, .burst = 1'000'000};
    }
    static keel::token_bucket_options reject() { return {.rate = 1, .period = 1h, .burst = 1}; }
    // One permit per hour: a key that took one permit is not at rest for an hour.
    static keel::token_bucket_options keyed() {
        return {.rate = 1, .period = 1h, .burst = 1'000'000};
    }
    template <class Clock>
    static auto baseline() {
        return std::unique_ptr<mutex_token_bucket<Clock>>(new mutex_token_bucket<Clock>(1.0, 1e6));
    }
};

struct gcra_algo {
    static constexpr char const* name = "gcra";
    template <class C>
    using type = keel::basic_gcra<C>;
    static keel::gcra_options admit() {
        return {.rate = 1'000'000'000, .period = 1s, .burst = 1'000'000};
    }
    static keel::gcra_options reject() { return {.rate = 1, .period = 1h, .burst = 1}; }
    static keel::gcra_options keyed() { return {.rate = 1, .period = 1h, .burst = 1'000'000}; }
    template <class Clock>
    static auto baseline() {
        return std::unique_ptr<mutex_gcra<Clock>>(new mutex_gcra<Clock>(1, 1'000'000));
    }
};

// ---------------------------------------------------------------------------
// The floor: what any limiter must at least do.

void floor_steady_clock_cas(benchmark::State& state) {
    std::atomic<std::uint64_t> word{0};
    for (auto _ : state) {
        auto const now = static_cast<std::uint64_t>(steady_ns());
        auto expected = word.load(std::memory_order_relaxed);
        benchmark::DoNotOptimize(
            word.compare_exchange_strong(expected, now ^ expected, std::memory_order_relaxed));
    }
}

void floor_coarse_clock_cas(benchmark::State& state) {
    std::atomic<std::uint64_t> word{0};
    for (auto _ : state) {
        auto const now =
            static_cast<std::uint64_t>(keel::coarse_clock::now().time_since_epoch().count());
        auto expected = word.load(std::memory_order_relaxed);
        benchmark::DoNotOptimize(
            word.compare_exchange_strong(expected, now ^ expected, std::memory_order_relaxed));
    }
}

// The refusal floor: a clock read plus one relaxed load of the word, all a
// refusal has to do before it answers.
void floor_steady_clock_load(benchmark::State& state) {
    std::atomic<std::uint64_t> word{0};
    for (auto _ : state) {
        auto const now = static_cast<std::uint64_t>(steady_ns());
        benchmark::DoNotOptimize(now ^ word.load(std::memory_order_relaxed));
    }
}

void floor_coarse_clock_load(benchmark::State& state) {
    std::atomic<std::uint64_t> word{0};
    for (auto _ : state) {
        auto const now =
            static_cast<std::uint64_t>(keel::coarse_clock::now().time_since_epoch().count());
        benchmark::DoNotOptimize(now ^ word.load(std::memory_order_relaxed));
    }
}

void floor_cas(benchmark::State& state) {
    std::atomic<std::uint64_t> word{0};
    std::uint64_t now = 0;
    for (auto _ : state) {
        auto expected = word.load(std::memory_order_relaxed);
        benchmark::DoNotOptimize(
            word.compare_exchange_strong(expected, ++now, std::memory_order_relaxed));
    }
}

void floor_steady_clock_cas_2threads(benchmark::State& state) {
    static std::atomic<std::uint64_t> word{0};
    for (auto _ : state) {
        auto const now = static_cast<std::uint64_t>(steady_ns());
        auto expected = word.load(std::memory_order_relaxed);
        while (!word.compare_exchange_weak(expected, now + expected, std::memory_order_relaxed)) {
        }
    }
}

// The same with the coarse clock, where the shared word's cache line, not the clock,
// sets the pace; and the mutex floor beside it: the coarse clock read outside a
// std::mutex that guards one increment. Their ratio bounds what any limiter keeping
// its state in one shared cache line can gain over a mutex on this machine.
void floor_coarse_clock_cas_2threads(benchmark::State& state) {
    static std::atomic<std::uint64_t> word{0};
    for (auto _ : state) {
        auto const now =
            static_cast<std::uint64_t>(keel::coarse_clock::now().time_since_epoch().count());
        auto expected = word.load(std::memory_order_relaxed);
        while (!word.compare_exchange_weak(expected, now + expected, std::memory_order_relaxed)) {
        }
    }
}

void floor_coarse_clock_mutex_2threads(benchmark::State& state) {
    static std::mutex mutex;
    static std::uint64_t word = 0;
    for (auto _ : state) {
        auto const now =
            static_cast<std::uint64_t>(keel::coarse_clock::now().time_since_epoch().count());
        std::lock_guard lock{mutex};
        word += now;
        benchmark::DoNotOptimize(word);
    }
}

// ---------------------------------------------------------------------------
// keel limiters.

template <class Algo, class Clock>
void admit(benchmark::State& state) {
    typename Algo::template type<Clock> limiter{Algo::admit()};
    std::int64_t admitted = 0;
    for (auto _ : state) {
        admitted += limiter.try_acquire().allowed ? 1 : 0;
    }
    state.counters["admitted"] =
        benchmark::Counter(static_cast<double>(admitted), benchmark::Counter::kAvgIterations);
}

template <class Algo>
void explicit_now(benchmark::State& state) {
    typename Algo::template type<keel::steady_clock> limiter{Algo::admit()};
    auto now = keel::steady_clock::now();
    for (auto _ : state) {
        now += 1ns;
        benchmark::DoNotOptimize(limiter.try_acquire(1, now));
    }
}

template <class Algo, class Clock>
void reject(benchmark::State& state) {
    typename Algo::template type<Clock> limiter{Algo::reject()};
    (void)limiter.try_acquire();
    for (auto _ : state) {
        benchmark::DoNotOptimize(limiter.try_acquire());
    }
}

template <class Algo, class Clock>
void shared_2threads(benchmark::State& state) {
    static typename Algo::template type<Clock> limiter{Algo::admit()};
    for (auto _ : state) {
        benchmark::DoNotOptimize(limiter.try_acquire());
    }
}

template <class Algo, class Clock>
void mutex_baseline(benchmark::State& state) {
    static auto limiter = Algo::template baseline<Clock>();
    for (auto _ : state) {
        benchmark::DoNotOptimize(limiter->try_acquire());
    }
}

// ---------------------------------------------------------------------------
// Keyed tables of 1 M keys (built once per program, on first use).

constexpr std::uint64_t table_keys = 1'000'000;

std::map<std::string, double>& bytes_per_key() {
    static std::map<std::string, double> m;
    return m;
}

template <class Algo>
auto& keyed_table() {
    using table_type = keel::keyed<typename Algo::template type<keel::steady_clock>, std::uint64_t>;
    static auto table = [] {
        // Options under which no key comes to rest while the program runs, so the
        // table really holds 1 M keys.
        auto t = std::make_unique<table_type>(
            Algo::keyed(), keel::keyed_options{.max_keys = std::size_t{1} << 21});
        for (std::uint64_t k = 0; k < table_keys; ++k) {
            (void)t->try_acquire(k);
        }
        if (t->size() != table_keys) {
            fmt::print(stderr, "{}: keyed table holds {} keys, not {}\n", Algo::name, t->size(),
                       table_keys);
        }
        bytes_per_key()[Algo::name] =
            static_cast<double>(t->memory_bytes()) / static_cast<double>(t->size());
        return t;
    }();
    return *table;
}

struct xorshift {
    std::uint64_t s;
    std::uint64_t operator()() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        return s;
    }
};

template <class Algo>
void keyed_2threads(benchmark::State& state) {
    auto& table = keyed_table<Algo>();
    xorshift rng{std::uint64_t{0x9e3779b97f4a7c15} +
                 static_cast<std::uint64_t>(state.thread_index())};
    auto const parity = static_cast<std::uint64_t>(state.thread_index());
    for (auto _ : state) {
        auto const key = (rng() % (table_keys / 2)) * 2 + parity; // distinct keys per thread
        benchmark::DoNotOptimize(table.try_acquire(key));
    }
    state.counters["bytes_per_key"] =
        benchmark::Counter(bytes_per_key()[Algo::name], benchmark::Counter::kAvgThreads);
}

// The keyed baseline: one mutex around one std::unordered_map of the same state words.
template <class Algo>
void keyed_mutex_2threads(benchmark::State& state) {
    using limiter_type = typename Algo::template type<keel::steady_clock>;
    struct table_type {
        limiter_type config{Algo::keyed()};
        std::mutex mutex;
        std::unordered_map<std::uint64_t, std::uint64_t> words;
    };
    static auto table = [] {
        auto t = std::make_unique<table_type>();
        auto const now = steady_ns();
        for (std::uint64_t k = 0; k < table_keys; ++k) {
            t->words[k] = t->config.step(limiter_type::fresh_state, 1, now).next;
        }
        return t;
    }();
    xorshift rng{std::uint64_t{0x9e3779b97f4a7c15} +
                 static_cast<std::uint64_t>(state.thread_index())};
    auto const parity = static_cast<std::uint64_t>(state.thread_index());
    for (auto _ : state) {
        auto const key = (rng() % (table_keys / 2)) * 2 + parity;
        auto const now = steady_ns();
        std::lock_guard lock{table->mutex};
        auto [it, fresh] = table->words.try_emplace(key, limiter_type::fresh_state);
        auto const r = table->config.step(it->second, 1, now);
        if (r.write) {
            it->second = r.next;
        }
        benchmark::DoNotOptimize(r.result);
    }
}

template <class Algo, bool Keyed>
void register_algorithm() {
    std::string const n = Algo::name;
    benchmark::RegisterBenchmark((n + "/steady").c_str(), admit<Algo, keel::steady_clock>);
    benchmark::RegisterBenchmark((n + "/coarse").c_str(), admit<Algo, keel::coarse_clock>);
    benchmark::RegisterBenchmark((n + "/explicit_now").c_str(), explicit_now<Algo>);
    benchmark::RegisterBenchmark((n + "/reject").c_str(), reject<Algo, keel::steady_clock>);
    benchmark::RegisterBenchmark((n + "/reject_coarse").c_str(), reject<Algo, keel::coarse_clock>);
    benchmark::RegisterBenchmark((n + "/mutex").c_str(), mutex_baseline<Algo, keel::steady_clock>);
    benchmark::RegisterBenchmark((n + "/2threads").c_str(),
                                 shared_2threads<Algo, keel::steady_clock>)
        ->Threads(2)
        ->UseRealTime();
    benchmark::RegisterBenchmark((n + "/mutex_2threads").c_str(),
                                 mutex_baseline<Algo, keel::steady_clock>)
        ->Threads(2)
        ->UseRealTime();
    // With the cheap clock the synchronisation is most of the cost.
    benchmark::RegisterBenchmark((n + "/coarse_2threads").c_str(),
                                 shared_2threads<Algo, keel::coarse_clock>)
        ->Threads(2)
        ->UseRealTime();
    benchmark::RegisterBenchmark((n + "/mutex_coarse_2threads").c_str(),
                                 mutex_baseline<Algo, keel::coarse_clock>)
        ->Threads(2)
        ->UseRealTime();
    if constexpr (Keyed) {
        benchmark::RegisterBenchmark((n + "/keyed_2threads").c_str(), keyed_2threads<Algo>)
            ->Threads(2)
            ->UseRealTime();
        benchmark::RegisterBenchmark((n + "/keyed_mutex_2threads").c_str(),
                                     keyed_mutex_2threads<Algo>)
            ->Threads(2)
            ->UseRealTime();
    }
}

// ---------------------------------------------------------------------------
// Keyed churn: one shard of state.range(0) keys, each holding a token bucket of
// one permit refilled in 1 s, so a key comes to rest 1 s after its request. The
// table starts full, its keys' requests spread over the last second; then a new
// key arrives every 1 s / keys, just as the oldest key comes to rest, so every
// new key finds the shard full (the case that once swept the whole shard per
// request). The lookup case times requests for keys in the same full table.
// "slot" is the share of new keys that got a slot (the rest got the overflow
// limiter). Explicit times, so the clock is not measured.

template <bool NewKeys>
void keyed_churn(benchmark::State& state) {
    using table_type = keel::keyed<keel::token_bucket, std::uint64_t>;
    auto const keys = static_cast<std::uint64_t>(state.range(0));
    table_type table{{.rate = 1, .period = 1s, .burst = 1},
                     {.max_keys = static_cast<std::size_t>(keys), .shards = 1}};
    auto const step = std::chrono::nanoseconds{1s} / static_cast<std::int64_t>(keys);
    auto now = keel::steady_clock::time_point{} + 1h;
    std::uint64_t next = 0;
    for (; next < keys; ++next, now += step) {
        (void)table.try_acquire(next, 1, now);
    }
    xorshift rng{0x9e3779b97f4a7c15};
    std::int64_t admitted = 0;
    for (auto _ : state) {
        auto const key = NewKeys ? next++ : rng() % keys;
        auto const d = table.try_acquire(key, 1, now);
        admitted += d.allowed ? 1 : 0;
        now += step;
    }
    if (NewKeys) {
        state.counters["slot"] =
            benchmark::Counter(static_cast<double>(admitted), benchmark::Counter::kAvgIterations);
    }
}
BENCHMARK(keyed_churn<true>)->Name("keyed_churn/new_keys")->Arg(16384)->Arg(65536);
BENCHMARK(keyed_churn<false>)->Name("keyed_churn/lookup")->Arg(16384)->Arg(65536);

// ---------------------------------------------------------------------------
// Collects the per-op times (the median when repetitions are on) for the summary.

class collecting_reporter : public benchmark::ConsoleReporter {
public:
    void ReportRuns(std::vector<Run> const& runs) override {
        for (auto const& run : runs) {
            auto const name = run.run_name.function_name;
            bool const median = run.run_type == Run::RT_Aggregate && run.aggregate_name == "median";
            if ((run.run_type == Run::RT_Iteration && !m_has_median[name]) || median) {
                m_wall[name] = run.GetAdjustedRealTime();
                m_cpu[name] = run.GetAdjustedCPUTime();
                m_has_median[name] = m_has_median[name] || median;
            }
        }
        ConsoleReporter::ReportRuns(runs);
    }

    // Wall time per op: the figure for multi-threaded runs.
    double wall(std::string const& name) const { return find(m_wall, name); }
    // CPU time per op: the figure for single-threaded runs on a shared machine,
    // where wall time also counts the time the thread waited for a core.
    double cpu(std::string const& name) const { return find(m_cpu, name); }

private:
    static double find(std::map<std::string, double> const& m, std::string const& name) {
        auto it = m.find(name);
        return it == m.end() ? 0.0 : it->second;
    }

    std::map<std::string, double> m_wall;
    std::map<std::string, double> m_cpu;
    std::map<std::string, bool> m_has_median;
};

std::string cell(double ns) {
    return ns > 0 ? fmt::format("{:.1f}", ns) : std::string{"n/a"};
}
std::string ratio(double a, double b) {
    return a > 0 && b > 0 ? fmt::format("{:.2f}x", a / b) : std::string{"n/a"};
}

// The refusal path beside its floor: a clock read plus one relaxed load.
void print_reject_summary(collecting_reporter const& r) {
    auto const steady = r.cpu("floor_steady_clock_load");
    auto const coarse = r.cpu("floor_coarse_clock_load");
    fmt::print("\nrefusal floor (CPU ns/op): steady_clock + load {}, coarse_clock + load {}\n\n",
               cell(steady), cell(coarse));
    fmt::print("| algorithm | reject steady ns/op | vs floor | reject coarse ns/op | vs floor |\n");
    fmt::print("|---|---|---|---|---|\n");
    for (char const* name :
         {"fixed_window", "sliding_log", "sliding_counter", "token_bucket", "gcra"}) {
        std::string const n = name;
        auto const rs = r.cpu(n + "/reject");
        auto const rc = r.cpu(n + "/reject_coarse");
        fmt::print("| {} | {} | {} | {} | {} |\n", n, cell(rs), ratio(rs, steady), cell(rc),
                   ratio(rc, coarse));
    }
}

void print_summary(collecting_reporter const& r) {
    auto const floor_steady = r.cpu("floor_steady_clock_cas");
    auto const floor_coarse = r.cpu("floor_coarse_clock_cas");
    fmt::print("\nfloor (CPU ns/op): steady_clock + CAS {}, coarse_clock + CAS {}, CAS alone {}\n",
               cell(floor_steady), cell(floor_coarse), cell(r.cpu("floor_cas")));
    auto const cas_two = r.wall("floor_coarse_clock_cas_2threads");
    auto const mutex_two = r.wall("floor_coarse_clock_mutex_2threads");
    fmt::print("2-thread floor (wall ns/op, coarse clock, one shared word): CAS {}, mutex {}; "
               "mutex / CAS {}: the most a one-word limiter can gain over a mutex here\n",
               cell(cas_two), cell(mutex_two), ratio(mutex_two, cas_two));
    fmt::print("Single-thread columns: CPU time per op (medians when repeated); 2-thread "
               "columns: wall time per op, and the mutex baseline's time divided by keel's "
               "(above 1: keel is faster).\n\n");
    fmt::print("| algorithm | steady ns/op | vs floor | coarse ns/op | vs floor | explicit now "
               "ns/op | reject ns/op | 2 threads ns/op | vs mutex | 2 threads coarse vs mutex "
               "| keyed 2 threads, 1 M keys, ns/op | vs mutex map | bytes/key |\n");
    fmt::print("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (char const* name :
         {"fixed_window", "sliding_log", "sliding_counter", "token_bucket", "gcra"}) {
        std::string const n = name;
        auto const steady = r.cpu(n + "/steady");
        auto const coarse = r.cpu(n + "/coarse");
        auto const two = r.wall(n + "/2threads");
        auto const keyed_two = r.wall(n + "/keyed_2threads");
        auto const bytes = bytes_per_key().count(n) ? bytes_per_key()[n] : 0.0;
        fmt::print("| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n", n,
                   cell(steady), ratio(steady, floor_steady), cell(coarse),
                   ratio(coarse, floor_coarse), cell(r.cpu(n + "/explicit_now")),
                   cell(r.cpu(n + "/reject")), cell(two), ratio(r.wall(n + "/mutex_2threads"), two),
                   ratio(r.wall(n + "/mutex_coarse_2threads"), r.wall(n + "/coarse_2threads")),
                   cell(keyed_two), ratio(r.wall(n + "/keyed_mutex_2threads"), keyed_two),
                   bytes > 0 ? fmt::format("{:.1f}", bytes) : std::string{"n/a"});
    }
    print_reject_summary(r);
}

} // namespace

int main(int argc, char** argv) {
    benchmark::RegisterBenchmark("floor_steady_clock_cas", floor_steady_clock_cas);
    benchmark::RegisterBenchmark("floor_coarse_clock_cas", floor_coarse_clock_cas);
    benchmark::RegisterBenchmark("floor_cas", floor_cas);
    benchmark::RegisterBenchmark("floor_steady_clock_load", floor_steady_clock_load);
    benchmark::RegisterBenchmark("floor_coarse_clock_load", floor_coarse_clock_load);
    benchmark::RegisterBenchmark("floor_steady_clock_cas_2threads", floor_steady_clock_cas_2threads)
        ->Threads(2)
        ->UseRealTime();
    benchmark::RegisterBenchmark("floor_coarse_clock_cas_2threads", floor_coarse_clock_cas_2threads)
        ->Threads(2)
        ->UseRealTime();
    benchmark::RegisterBenchmark("floor_coarse_clock_mutex_2threads",
                                 floor_coarse_clock_mutex_2threads)
        ->Threads(2)
        ->UseRealTime();
    register_algorithm<fixed_window_algo, true>();
    register_algorithm<sliding_log_algo, false>(); // O(limit) per key: no keyed table
    register_algorithm<sliding_counter_algo, true>();
    register_algorithm<token_bucket_algo, true>();
    register_algorithm<gcra_algo, true>();

    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) {
        return 1;
    }
    collecting_reporter reporter;
    benchmark::RunSpecifiedBenchmarks(&reporter);
    print_summary(reporter);
    benchmark::Shutdown();
    return 0;
}
