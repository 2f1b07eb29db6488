// SPDX-License-Identifier: MIT
// Graceful drain on SIGTERM: worker threads serve simulated requests through a
// keel::ops::drain_coordinator; SIGTERM (here the program sends it to itself) is
// received on a signal_waiter's thread; main then runs the shutdown phases and exits
// with the report's exit code (0: clean). The health registry's readiness fails as
// soon as the shutdown starts. A real service would use the default
// budgets (28 s in total, 5 s pre-stop delay); this one shrinks them to run in a blink.
// The pool for the downstream is sized with Little's law and Erlang C.
#include <keel/ops/drain.hpp>
#include <keel/ops/health.hpp>
#include <keel/ops/pool_sizing.hpp>
#include <keel/ops/signals.hpp>

#include <fmt/format.h>

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

int main() {
    // First thing in main, before any thread starts: SIGTERM and SIGINT go to the waiter.
    keel::ops::signal_waiter signals;

    // 200 req/s holding a connection for 20 ms each: 4 busy on average.
    constexpr double rate = 200.0;
    constexpr auto hold = 20ms;
    constexpr auto by_headroom = keel::ops::recommended_pool_size(rate, hold); // 12
    constexpr auto by_erlang = keel::ops::min_pool_for_wait_probability(rate, hold, 0.05);
    fmt::print("pool: L = {} busy on average; x3 headroom -> {}; Erlang C, <= 5% wait -> {}\n",
               keel::ops::littles_law(rate, hold), by_headroom, by_erlang);

    keel::ops::drain_coordinator drain{{
        .total_budget = 2s,
        .pre_stop_delay = 20ms, // in Kubernetes: about readinessProbe.periodSeconds
        .in_flight_budget = 500ms,
        .close_budget = 200ms,
        .flush_budget = 100ms,
    }};

    keel::ops::health_registry health{{.service_id = "example"}};
    health.mark_started();
    drain.attach(health); // shutdown fails readiness at once: the probe answers 503

    std::atomic<int> served{0};
    std::atomic<int> refused{0};

    std::vector<std::thread> workers;
    for (int i = 0; i < 4; ++i) {
        workers.emplace_back([&] {
            for (;;) {
                auto ticket = drain.try_enter();
                if (!ticket) {
                    refused.fetch_add(1); // a server would answer 503 or close
                    return;
                }
                std::this_thread::sleep_for(2ms); // the request's work
                served.fetch_add(1);
            }
        });
    }
    drain.on_stop_accepting("listener", [](std::stop_token) { /* close the listening socket */ });
    drain.on_close("workers", [&](std::stop_token) {
        for (auto& worker : workers) {
            worker.join();
        }
    });
    drain.on_flush("log", [](std::stop_token) { std::fflush(stdout); });

    // Let some requests through, then play Kubernetes and send SIGTERM.
    std::this_thread::sleep_for(30ms);
    ::kill(::getpid(), SIGTERM);

    int const sig = signals.wait();
    fmt::print("received signal {}; draining\n", sig);
    auto const report = drain.shutdown();

    for (auto const& phase : report.phases) {
        fmt::print("  {:<16} took {:>4} ms of {:>4} ms{}\n", keel::ops::to_string(phase.phase),
                   std::chrono::duration_cast<std::chrono::milliseconds>(phase.elapsed).count(),
                   std::chrono::duration_cast<std::chrono::milliseconds>(phase.budget).count(),
                   phase.timed_out ? " (budget ran out)" : "");
    }
    fmt::print("served {} requests ({} granted before draining, {} in flight then, {} left "
               "over); refused {}; readiness {}; exit {}\n",
               served.load(), report.admitted, report.in_flight_at_drain,
               report.in_flight_abandoned, refused.load(), health.readiness().http_status(),
               report.exit_code());
    return report.exit_code();
}
