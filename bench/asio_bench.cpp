// SPDX-License-Identifier: MIT
// What keel::asio costs per call on the success path, against a bare co_await of
// the same immediately-completing operation in the same run (the baseline): the
// pipeline alone, with retry, timeout, guard(breaker), all three, and keel::hedge
// with the primary winning; the synchronous guard(breaker) and a direct call, for
// the breaker's async/sync ratio; the parts of the timeout's cost (a co_spawn, a
// deadline registered in and withdrawn from the io_context's deadline queue, with
// and without another deadline pending, the timer armed and cancelled per call
// that the queue replaced, a trip through the io_context's queue with and without
// a reactor). Also heap allocations per call, and the heap each call
// holds while suspended in flight. docs/async-bench.md has the figures.
//
// Design. Every asynchronous benchmark runs on one io_context, run by the
// benchmark's own thread: one coroutine holds the `for (auto _ : state)` loop and
// co_awaits one call per iteration, so the time per iteration is the time of one
// call, including the coroutine frames it creates, the handlers it posts (a
// cancelled timer's completion runs when the loop next yields to the io_context,
// inside the timed loop) and resuming the loop. The operation is an awaitable
// coroutine that returns without suspending: what remains is keel's (and Asio's)
// own cost. Built twice, at -O3 (keel_asio_bench) and -O2 (keel_asio_bench_o2).
//
// Allocations. This program replaces the global operator new/delete and
// interposes aligned_alloc, counting (thread-local counters, nothing else
// changes). Asio's recycling allocator (coroutine frames, the timeout's
// cancel_scope, handlers) keeps two freed blocks per purpose per thread, inside
// io_context::run, and allocates only on a cache miss: through std::aligned_alloc
// ("aligned"), or through ::operator new ("new") when Asio's config is read
// before any standard header, as here (keel's headers come first). Either way
// the counters count calls into the allocator (malloc calls), not frames. The
// frames themselves, cache hits included, are counted by keel_asio_bench_frames:
// this source built with ASIO_DISABLE_AWAITABLE_FRAME_RECYCLING, where each frame
// is one operator new.
// "sys_ns" is the CPU time per call spent in the kernel (a timer Asio arms makes
// system calls). The in_flight_* benchmarks suspend N calls on one timer and
// report the heap in use per call (glibc's mallinfo2) and the bytes requested.
#include <keel/asio/detail/deadline_queue.hpp>
#include <keel/asio/hedge.hpp>
#include <keel/asio/resilient.hpp>
#include <keel/core/clock.hpp>
#include <keel/policy/circuit_breaker.hpp>
#include <keel/policy/retry.hpp>
#include <keel/policy/timeout.hpp>
#include <keel/resilient.hpp>

#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <benchmark/benchmark.h>
#include <malloc.h>
#include <sys/resource.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <new>

using namespace std::chrono_literals;
namespace net = keel::asio::net;

// ---------------------------------------------------------------------------
// Counting allocation: every operator new and every aligned_alloc on this thread.
namespace {
struct allocation_tally {
    std::uint64_t news = 0;    ///< operator new calls (all forms)
    std::uint64_t aligned = 0; ///< aligned_alloc calls (Asio's recycling cache misses)
    std::uint64_t bytes = 0;   ///< bytes requested by both
};
constinit thread_local allocation_tally tally{};

void* allocate_counted(std::size_t size) {
    ++tally.news;
    tally.bytes += size;
    if (void* p = std::malloc(size == 0 ? 1 : size)) {
        return p;
    }
    throw std::bad_alloc{};
}

void* allocate_counted(std::size_t size, std::align_val_t align) {
    ++tally.news;
    tally.bytes += size;
    void* p = nullptr;
    auto const a = static_cast<std::size_t>(align);
    if (posix_memalign(&p, a < sizeof(void*) ? sizeof(void*) : a, size == 0 ? 1 : size) != 0) {
        throw std::bad_alloc{};
    }
    return p;
}
} // namespace

void* operator new(std::size_t size) {
    return allocate_counted(size);
}
void* operator new[](std::size_t size) {
    return allocate_counted(size);
}
void* operator new(std::size_t size, std::nothrow_t const&) noexcept {
    try {
        return allocate_counted(size);
    } catch (...) {
        return nullptr;
    }
}
void* operator new[](std::size_t size, std::nothrow_t const&) noexcept {
    try {
        return allocate_counted(size);
    } catch (...) {
        return nullptr;
    }
}
void* operator new(std::size_t size, std::align_val_t align) {
    return allocate_counted(size, align);
}
void* operator new[](std::size_t size, std::align_val_t align) {
    return allocate_counted(size, align);
}
void operator delete(void* p) noexcept {
    std::free(p);
}
void operator delete[](void* p) noexcept {
    std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
    std::free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
    std::free(p);
}
void operator delete(void* p, std::align_val_t) noexcept {
    std::free(p);
}
void operator delete[](void* p, std::align_val_t) noexcept {
    std::free(p);
}
void operator delete(void* p, std::size_t, std::align_val_t) noexcept {
    std::free(p);
}
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept {
    std::free(p);
}

// Asio's aligned_new calls std::aligned_alloc: this definition takes the symbol.
extern "C" void* aligned_alloc(std::size_t align, std::size_t size) noexcept {
    ++tally.aligned;
    tally.bytes += size;
    void* p = nullptr;
    if (posix_memalign(&p, align < sizeof(void*) ? sizeof(void*) : align, size) != 0) {
        return nullptr;
    }
    return p;
}

namespace {

// ---------------------------------------------------------------------------
// The guarded work: opaque to the optimiser, about a nanosecond. Never inlined,
// so that under callgrind its call count is the number of calls measured.
[[gnu::noinline]] int work(int x) {
    benchmark::DoNotOptimize(x);
    return x + 1;
}

// The immediately-completing operation: a coroutine that returns without suspending.
keel::asio::awaitable<int> operation(int x) {
    co_return work(x);
}

auto const op = [](int x) { return operation(x); };

// What the loop has cost so far beyond its time: allocations, and the CPU time
// spent in the kernel (Asio's timers make system calls).
struct cost_snapshot {
    allocation_tally allocations = tally;
    double system_ns = system_time_ns();

    static double system_time_ns() {
        rusage usage{};
        getrusage(RUSAGE_THREAD, &usage);
        return static_cast<double>(usage.ru_stime.tv_sec) * 1e9 +
               static_cast<double>(usage.ru_stime.tv_usec) * 1e3;
    }
};

// Reports the costs since `before`, per iteration.
void report_costs(benchmark::State& state, cost_snapshot const& before) {
    auto const n = static_cast<double>(state.iterations());
    if (n == 0) {
        return;
    }
    state.counters["new"] = static_cast<double>(tally.news - before.allocations.news) / n;
    state.counters["aligned"] = static_cast<double>(tally.aligned - before.allocations.aligned) / n;
    state.counters["bytes"] = static_cast<double>(tally.bytes - before.allocations.bytes) / n;
    state.counters["sys_ns"] = (cost_snapshot::system_time_ns() - before.system_ns) / n;
}

// Runs `body(state)`, a coroutine holding the benchmark loop, on a fresh
// io_context run by this thread.
template <class Body>
void run_on_io(benchmark::State& state, Body body) {
    net::io_context io{1};
    std::exception_ptr failed;
    net::co_spawn(io, body(state), [&](std::exception_ptr e) { failed = e; });
    io.run();
    if (failed) {
        std::rethrow_exception(failed);
    }
}

// The loop of the pipelines: one call per iteration, its outcome checked.
template <class Pipeline>
keel::asio::awaitable<void> guarded_loop(benchmark::State& state, Pipeline const& pipeline) {
    int x = 0;
    cost_snapshot const before;
    for (auto _ : state) {
        auto const result = co_await pipeline.async_call(x);
        if (!result) [[unlikely]] {
            state.SkipWithError("the guarded call failed");
            break;
        }
        x = *result;
        benchmark::DoNotOptimize(x);
    }
    report_costs(state, before);
}

template <class Pipeline>
void run_pipeline(benchmark::State& state, Pipeline const& pipeline) {
    run_on_io(state, [&](benchmark::State& s) { return guarded_loop(s, pipeline); });
}

// ---------------------------------------------------------------------------
// The baseline: a bare co_await of the operation.
void baseline_bare_co_await(benchmark::State& state) {
    run_on_io(state, [](benchmark::State& s) -> keel::asio::awaitable<void> {
        int x = 0;
        cost_snapshot const before;
        for (auto _ : s) {
            x = co_await op(x);
            benchmark::DoNotOptimize(x);
        }
        report_costs(s, before);
    });
}
BENCHMARK(baseline_bare_co_await);

void async_resilient_no_policy(benchmark::State& state) {
    auto const pipeline = keel::asio::resilient{op};
    run_pipeline(state, pipeline);
}
BENCHMARK(async_resilient_no_policy);

void async_resilient_retry(benchmark::State& state) {
    auto const pipeline = keel::asio::resilient{op, keel::retry{}};
    run_pipeline(state, pipeline);
}
BENCHMARK(async_resilient_retry);

void async_resilient_timeout(benchmark::State& state) {
    auto const pipeline = keel::asio::resilient{op, keel::timeout{5s}};
    run_pipeline(state, pipeline);
}
BENCHMARK(async_resilient_timeout);

// The same call, each followed by a trip through the io_context's queue with no
// other call pending (calls spaced out so that the context goes idle between them):
// the timeout's timer is then cancelled after each call and armed again by the next.
void async_resilient_timeout_idle(benchmark::State& state) {
    auto const pipeline = keel::asio::resilient{op, keel::timeout{5s}};
    run_on_io(state, [&](benchmark::State& s) -> keel::asio::awaitable<void> {
        auto const executor = co_await net::this_coro::executor;
        int x = 0;
        cost_snapshot const before;
        for (auto _ : s) {
            auto const result = co_await pipeline.async_call(x);
            if (!result) [[unlikely]] {
                s.SkipWithError("the guarded call failed");
                break;
            }
            x = *result;
            benchmark::DoNotOptimize(x);
            co_await net::post(executor, net::use_awaitable);
        }
        report_costs(s, before);
    });
}
BENCHMARK(async_resilient_timeout_idle);

// A breaker that stays closed: every call succeeds.
keel::circuit_breaker& closed_breaker() {
    static keel::circuit_breaker breaker;
    return breaker;
}

void async_resilient_breaker(benchmark::State& state) {
    auto const pipeline = keel::asio::resilient{op, keel::guard(closed_breaker())};
    run_pipeline(state, pipeline);
}
BENCHMARK(async_resilient_breaker);

void async_resilient_breaker_retry_timeout(benchmark::State& state) {
    auto const pipeline =
        keel::asio::resilient{op, keel::guard(closed_breaker()), keel::retry{}, keel::timeout{5s}};
    run_pipeline(state, pipeline);
}
BENCHMARK(async_resilient_breaker_retry_timeout);

// keel::hedge with its default 2 s delay: the primary completes at once, the hedge never starts.
void async_hedge_primary_wins(benchmark::State& state) {
    auto const pipeline = keel::asio::resilient{op, keel::hedge{}};
    run_pipeline(state, pipeline);
}
BENCHMARK(async_hedge_primary_wins);

// ---------------------------------------------------------------------------
// The synchronous breaker's closed path, for the async/sync ratio.
auto const call = [](int x) { return work(x); };

void sync_direct_call(benchmark::State& state) {
    int x = 0;
    for (auto _ : state) {
        x = call(x);
        benchmark::DoNotOptimize(x);
    }
}
BENCHMARK(sync_direct_call);

void sync_resilient_breaker(benchmark::State& state) {
    auto const guarded = keel::resilient{call, keel::guard(closed_breaker())};
    int x = 0;
    for (auto _ : state) {
        x = guarded(x);
        benchmark::DoNotOptimize(x);
    }
}
BENCHMARK(sync_resilient_breaker);

// ---------------------------------------------------------------------------
// The parts of the timeout's cost, each bare.

// One co_spawn of the operation, awaited as run_in_scope awaits its scope.
void part_co_spawn(benchmark::State& state) {
    run_on_io(state, [](benchmark::State& s) -> keel::asio::awaitable<void> {
        auto const executor = co_await net::this_coro::executor;
        net::cancellation_signal signal;
        int x = 0;
        cost_snapshot const before;
        for (auto _ : s) {
            auto [error, value] = co_await net::co_spawn(
                executor, op(x),
                net::bind_cancellation_slot(signal.slot(),
                                            net::experimental::as_tuple(net::use_awaitable)));
            benchmark::DoNotOptimize(error);
            x = value;
            benchmark::DoNotOptimize(x);
        }
        report_costs(s, before);
    });
}
BENCHMARK(part_co_spawn);

// One trip through the io_context's queue (post and resume).
void part_post(benchmark::State& state) {
    run_on_io(state, [](benchmark::State& s) -> keel::asio::awaitable<void> {
        auto const executor = co_await net::this_coro::executor;
        cost_snapshot const before;
        for (auto _ : s) {
            co_await net::post(executor, net::use_awaitable);
        }
        report_costs(s, before);
    });
}
BENCHMARK(part_post);

// The same trip while a timer waits far ahead (as in a service with sockets and
// timers): the scheduler then also polls the reactor once per round of its queue.
void part_post_with_reactor(benchmark::State& state) {
    run_on_io(state, [](benchmark::State& s) -> keel::asio::awaitable<void> {
        auto const executor = co_await net::this_coro::executor;
        net::steady_timer pending{executor, 1h};
        pending.async_wait([](keel::asio::error_code ec) { benchmark::DoNotOptimize(ec); });
        cost_snapshot const before;
        for (auto _ : s) {
            co_await net::post(executor, net::use_awaitable);
        }
        report_costs(s, before);
        pending.cancel();
    });
}
BENCHMARK(part_post_with_reactor);

// A steady_timer armed with a handler and cancelled, then the queue trip that
// runs the cancelled handler (what the timeout policy did per call before the
// deadline queue, without the co_spawn).
void part_timer_arm_cancel_post(benchmark::State& state) {
    run_on_io(state, [](benchmark::State& s) -> keel::asio::awaitable<void> {
        auto const executor = co_await net::this_coro::executor;
        net::steady_timer timer{executor};
        cost_snapshot const before;
        for (auto _ : s) {
            timer.expires_after(5s);
            timer.async_wait([](keel::asio::error_code ec) { benchmark::DoNotOptimize(ec); });
            timer.cancel();
            co_await net::post(executor, net::use_awaitable);
        }
        report_costs(s, before);
    });
}
BENCHMARK(part_timer_arm_cancel_post);

// A timeout's deadline registered in the io_context's deadline queue and withdrawn,
// with its scope made as the policy makes it, then the queue trip a call's
// co_spawn makes, while another deadline an hour ahead stays pending (a steady
// stream of calls: the queue's timer stays armed, no system call).
void part_deadline_queue_busy(benchmark::State& state) {
    run_on_io(state, [](benchmark::State& s) -> keel::asio::awaitable<void> {
        using queue_type = keel::asio::detail::deadline_queue<keel::steady_clock>;
        auto const executor = co_await net::this_coro::executor;
        keel::steady_clock const clock;
        queue_type::entry const pending{keel::asio::detail::deadline_queue_for(executor, clock),
                                        clock.now() + 1h, keel::asio::detail::make_cancel_scope(),
                                        executor};
        cost_snapshot const before;
        for (auto _ : s) {
            {
                auto scope = keel::asio::detail::make_cancel_scope();
                queue_type::entry const alarm{
                    keel::asio::detail::deadline_queue_for(executor, clock), clock.now() + 5s,
                    std::move(scope), executor};
                benchmark::DoNotOptimize(&alarm);
            }
            co_await net::post(executor, net::use_awaitable);
        }
        report_costs(s, before);
    });
}
BENCHMARK(part_deadline_queue_busy);

// The same with no other deadline pending: each withdrawal empties the queue, the
// queue trip runs its idle check, which cancels the timer (so that an idle
// io_context's run() returns), and the next registration arms it again.
void part_deadline_queue_idle(benchmark::State& state) {
    run_on_io(state, [](benchmark::State& s) -> keel::asio::awaitable<void> {
        using queue_type = keel::asio::detail::deadline_queue<keel::steady_clock>;
        auto const executor = co_await net::this_coro::executor;
        keel::steady_clock const clock;
        cost_snapshot const before;
        for (auto _ : s) {
            {
                auto scope = keel::asio::detail::make_cancel_scope();
                queue_type::entry const alarm{
                    keel::asio::detail::deadline_queue_for(executor, clock), clock.now() + 5s,
                    std::move(scope), executor};
                benchmark::DoNotOptimize(&alarm);
            }
            co_await net::post(executor, net::use_awaitable);
        }
        report_costs(s, before);
    });
}
BENCHMARK(part_deadline_queue_idle);

// ---------------------------------------------------------------------------
// Memory per call in flight: N calls suspended at once on one timer (the
// operation waits on it), the heap they hold divided by N.
constexpr int in_flight_calls = 10'000;

// The operation in flight: waits on `gate`.
keel::asio::awaitable<int> gated_operation(net::steady_timer& gate, int x) {
    co_await gate.async_wait(net::experimental::as_tuple(net::use_awaitable));
    co_return work(x);
}

// Starts `in_flight_calls` of `start(i)` on `io`, runs them until all wait on
// `gate`, reports the heap they hold, then opens the gate and finishes them.
template <class Start>
void measure_in_flight(benchmark::State& state, net::io_context& io, net::steady_timer& gate,
                       Start start) {
    for (auto _ : state) {
        int completed = 0;
        auto const heap_before = mallinfo2().uordblks;
        allocation_tally const before = tally;
        for (int i = 0; i < in_flight_calls; ++i) {
            net::co_spawn(io, start(i), [&](std::exception_ptr e) {
                if (!e) {
                    ++completed;
                }
            });
        }
        while (io.poll() != 0) {
        }
        auto const heap_after = mallinfo2().uordblks;
        allocation_tally const after = tally;
        gate.expires_at(net::steady_timer::time_point::min()); // completes every wait
        io.run();
        if (completed != in_flight_calls) {
            state.SkipWithError("not every call completed");
            return;
        }
        constexpr auto n = static_cast<double>(in_flight_calls);
        state.counters["heap_bytes"] =
            (static_cast<double>(heap_after) - static_cast<double>(heap_before)) / n;
        state.counters["requested_bytes"] = static_cast<double>(after.bytes - before.bytes) / n;
        state.counters["new"] = static_cast<double>(after.news - before.news) / n;
        state.counters["aligned"] = static_cast<double>(after.aligned - before.aligned) / n;
    }
}

void in_flight_bare(benchmark::State& state) {
    net::io_context io{1};
    net::steady_timer gate{io, net::steady_timer::time_point::max()};
    measure_in_flight(state, io, gate, [&](int x) -> keel::asio::awaitable<void> {
        benchmark::DoNotOptimize(co_await gated_operation(gate, x));
    });
}
BENCHMARK(in_flight_bare)->Iterations(1);

template <class... Policies>
void in_flight_pipeline(benchmark::State& state, Policies... policies) {
    net::io_context io{1};
    net::steady_timer gate{io, net::steady_timer::time_point::max()};
    auto const pipeline = keel::asio::resilient{[&gate](int x) { return gated_operation(gate, x); },
                                                std::move(policies)...};
    measure_in_flight(state, io, gate, [&](int x) -> keel::asio::awaitable<void> {
        auto const result = co_await pipeline.async_call(x);
        benchmark::DoNotOptimize(result);
    });
}

void in_flight_resilient_no_policy(benchmark::State& state) {
    in_flight_pipeline(state);
}
BENCHMARK(in_flight_resilient_no_policy)->Iterations(1);

void in_flight_resilient_retry(benchmark::State& state) {
    in_flight_pipeline(state, keel::retry{});
}
BENCHMARK(in_flight_resilient_retry)->Iterations(1);

void in_flight_resilient_timeout(benchmark::State& state) {
    in_flight_pipeline(state, keel::timeout{1h});
}
BENCHMARK(in_flight_resilient_timeout)->Iterations(1);

void in_flight_resilient_breaker(benchmark::State& state) {
    in_flight_pipeline(state, keel::guard(closed_breaker()));
}
BENCHMARK(in_flight_resilient_breaker)->Iterations(1);

void in_flight_resilient_breaker_retry_timeout(benchmark::State& state) {
    in_flight_pipeline(state, keel::guard(closed_breaker()), keel::retry{}, keel::timeout{1h});
}
BENCHMARK(in_flight_resilient_breaker_retry_timeout)->Iterations(1);

// A delay of an hour: no hedge starts while the calls are held.
void in_flight_hedge(benchmark::State& state) {
    in_flight_pipeline(state, keel::hedge{{.delay = 1h}});
}
BENCHMARK(in_flight_hedge)->Iterations(1);

} // namespace

BENCHMARK_MAIN();
