// SPDX-License-Identifier: MIT
// A small "server" for keel_test.ops.drain: worker threads serve a steady stream of
// simulated requests (2 ms each) through a keel::ops::drain_coordinator until SIGTERM,
// then the process drains and exits with the report's exit code. Everything the test
// checks is printed to stdout, one line at a time:
//   serving                         requests are flowing (and, in stuck mode, the long
//                                   request holds its ticket)
//   phase <name>                    a drain hook ran
//   counts accepted=A completed=C rejected=R      (printed by the flush hook)
//   report admitted=.. in_flight_at_drain=.. abandoned=.. total_ms=.. clean=.. exit=..
//   timed_out=<phase bits>
// Modes (argv[1]):
//   clean   every request is short; exit 0.
//   stuck   one request takes 30 s, longer than the 200 ms in-flight budget; exit 1.
//   double  like stuck with a 10 s in-flight budget; a second SIGTERM forces exit 3.
#include <keel/ops/drain.hpp>
#include <keel/ops/signals.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

std::mutex output_mutex;

void say(std::string const& line) {
    std::lock_guard lock{output_mutex};
    std::fputs(line.c_str(), stdout);
    std::fputc('\n', stdout);
    std::fflush(stdout);
}

} // namespace

int main(int argc, char** argv) {
    // First, before any other thread exists: SIGTERM and SIGINT are blocked everywhere
    // and received by the waiter thread.
    keel::ops::signal_waiter signals{{.forced_exit_code = 3}};

    std::string_view const mode = argc > 1 ? argv[1] : "clean";
    bool const stuck = mode == "stuck" || mode == "double";
    constexpr int worker_count = 4;

    keel::ops::drain_coordinator drain{{
        .total_budget = 2s,
        .pre_stop_delay = 20ms,
        .stop_accepting_budget = 200ms,
        .in_flight_budget = mode == "double" ? 10s : (stuck ? 200ms : 1s),
        .close_budget = 500ms,
        .flush_budget = 200ms,
    }};

    std::atomic<long> accepted{0};
    std::atomic<long> completed{0};
    std::atomic<long> rejected{0};

    auto serve_one = [&](std::chrono::milliseconds work) {
        auto ticket = drain.try_enter();
        if (!ticket) {
            rejected.fetch_add(1);
            return false;
        }
        accepted.fetch_add(1);
        std::this_thread::sleep_for(work);
        completed.fetch_add(1);
        return true; // the ticket is released here, after the completion is counted
    };

    std::atomic<bool> long_request_started{false};
    if (stuck) {
        // Outlives every budget; never joined, the process exits under it.
        std::thread([&] {
            auto ticket = drain.try_enter();
            accepted.fetch_add(1);
            long_request_started.store(true);
            std::this_thread::sleep_for(30s);
            completed.fetch_add(1);
        }).detach();
    }

    std::vector<std::thread> workers;
    for (int i = 0; i < worker_count; ++i) {
        // Each worker serves until its first refusal: draining has begun.
        workers.emplace_back([&] {
            while (serve_one(2ms)) {
            }
        });
    }

    drain.on_not_ready([] { say("phase mark_not_ready"); });
    drain.on_stop_accepting("listener", [](std::stop_token) { say("phase stop_accepting"); });
    drain.on_close("workers", [&](std::stop_token) {
        for (auto& worker : workers) {
            worker.join();
        }
        say("phase close_resources");
    });
    drain.on_flush("log", [&](std::stop_token) {
        say("phase flush");
        say("counts accepted=" + std::to_string(accepted.load()) + " completed=" +
            std::to_string(completed.load()) + " rejected=" + std::to_string(rejected.load()));
    });

    while (completed.load() < 20 || (stuck && !long_request_started.load())) {
        std::this_thread::sleep_for(1ms);
    }
    say("serving");

    signals.wait();
    auto const report = drain.shutdown();

    std::string timed_out;
    for (auto const& phase : report.phases) {
        timed_out += phase.timed_out ? '1' : '0';
    }
    say("report admitted=" + std::to_string(report.admitted) +
        " in_flight_at_drain=" + std::to_string(report.in_flight_at_drain) +
        " abandoned=" + std::to_string(report.in_flight_abandoned) + " total_ms=" +
        std::to_string(
            std::chrono::duration_cast<std::chrono::milliseconds>(report.total).count()) +
        " clean=" + std::to_string(report.clean() ? 1 : 0) +
        " exit=" + std::to_string(report.exit_code()) + " timed_out=" + timed_out);
    // The long request (stuck modes) still runs on a detached thread: leave without
    // running destructors under it.
    std::_Exit(report.exit_code());
}
