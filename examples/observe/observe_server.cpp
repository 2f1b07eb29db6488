// SPDX-License-Identifier: MIT
// keel_example_observe: a small HTTP service (cpp-httplib) whose /metrics page
// comes from a keel::observe::registry, in the format the scrape's Accept
// header asks for (OpenMetrics for Prometheus, the 0.0.4 text format for
// others), and whose events (breaker transitions, health flags, retries,
// rejections, drain phases) are logged through a keel::observe::event_listener bridged to fmt.
//
//   GET /work          one request: a per-client rate limit (X-Client header), then
//                      a guarded call to a simulated dependency, bulkhead(breaker(
//                      retry(call))); `?fail=1` makes every attempt fail
//   GET /metrics       the registry's page
//   GET /counts        what the service counted itself, without the registry
//
// Usage:
//   keel_example_observe            runs its scenario against itself over HTTP, checks
//                                   its own /metrics in both formats, drains, exits 0
//   keel_example_observe --serve    runs the scenario, prints "ready port=<p> ...", then
//                                   serves until SIGTERM and drains (tests/e2e has a real
//                                   Prometheus scrape it)
// The scenario: client "greedy" sends 12 requests (10 pass its burst of 10, 2 get 429),
// then six clients send one failing request each: 5 fail after 3 attempts (2 retries
// each), which opens the breaker (5 failures in its window of 10), and the sixth is
// rejected by the open breaker (503).
#include <keel/core/context.hpp>
#include <keel/core/error.hpp>
#include <keel/limiter/keyed.hpp>
#include <keel/limiter/token_bucket.hpp>
#include <keel/observe/events.hpp>
#include <keel/observe/exposition.hpp>
#include <keel/observe/pipeline_counters.hpp>
#include <keel/observe/registry.hpp>
#include <keel/ops/drain.hpp>
#include <keel/ops/health.hpp>
#include <keel/ops/signals.hpp>
#include <keel/policy/backoff.hpp>
#include <keel/policy/bulkhead.hpp>
#include <keel/policy/circuit_breaker.hpp>
#include <keel/policy/retry.hpp>
#include <keel/policy/retry_budget.hpp>
#include <keel/resilient.hpp>

#include <httplib.h>

#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>

using namespace std::chrono_literals;

namespace {

// The events bridge: one log line per event, written whole, through fmt.
class fmt_log final : public keel::observe::event_listener {
public:
    void on_state_change(keel::observe::state_change_event const& e) override {
        line(fmt::format("event=state_change kind={} name={} from={} to={} reason={}",
                         keel::observe::to_string(e.kind), e.component, e.from, e.to, e.reason));
    }
    void on_retry(keel::observe::retry_attempt_event const& e) override {
        line(fmt::format("event=retry name={} attempt={} delay_ms={} cause=\"{}\"", e.component,
                         e.attempt, std::chrono::duration<double, std::milli>(e.delay).count(),
                         e.what));
    }
    void on_rejection(keel::observe::rejection_event const& e) override {
        line(fmt::format(
            "event=rejection kind={} name={} why=\"{}\" retry_after_ms={}",
            keel::observe::to_string(e.kind), e.component, e.why.message(),
            e.retry_after
                ? std::chrono::duration_cast<std::chrono::milliseconds>(*e.retry_after).count()
                : -1));
    }
    void on_drain_phase(keel::observe::drain_phase_event const& e) override {
        line(fmt::format(
            "event=drain_phase name={} phase={} elapsed_ms={} timed_out={}", e.component, e.phase,
            std::chrono::duration<double, std::milli>(e.elapsed).count(), e.timed_out));
    }

private:
    void line(std::string const& text) {
        std::lock_guard lock{m_mutex};
        fmt::print("{}\n", text);
        std::fflush(stdout);
    }
    std::mutex m_mutex;
};

// What the service counts itself, to compare with what the registry renders.
struct own_counts {
    std::atomic<std::int64_t> ok{0};
    std::atomic<std::int64_t> failed{0};
    std::atomic<std::int64_t> circuit_open{0};
    std::atomic<std::int64_t> rate_limited{0};
    std::atomic<std::int64_t> retries{0};
    std::atomic<std::int64_t> openmetrics_scrapes{0};
    std::atomic<std::int64_t> text_scrapes{0};

    std::string text(keel::circuit_state breaker) const {
        return fmt::format("ok={} failed={} circuit_open={} refused={} retries={} "
                           "openmetrics_scrapes={} text_scrapes={} breaker={}",
                           ok.load(), failed.load(), circuit_open.load(), rate_limited.load(),
                           retries.load(), openmetrics_scrapes.load(), text_scrapes.load(),
                           keel::to_string(breaker));
    }
};

class dependency_error : public std::runtime_error {
    using std::runtime_error::runtime_error;
};

// Drives the scenario over real HTTP; returns the statuses seen, in order, as text.
std::string run_scenario(int port) {
    httplib::Client client{"127.0.0.1", port};
    std::string statuses;
    auto const get = [&](std::string const& path, std::string const& who) {
        auto const r = client.Get(path, httplib::Headers{{"X-Client", who}});
        statuses += r ? std::to_string(r->status) : std::string{"error"};
        statuses += ' ';
    };
    for (int i = 0; i < 12; ++i) {
        get("/work", "greedy");
    }
    for (int i = 0; i < 6; ++i) {
        get("/work?fail=1", fmt::format("flaky-{}", i));
    }
    return statuses;
}

// Checks a page for one line; prints what is missing.
bool has_line(std::string const& page, std::string const& line) {
    if (page.find(line + "\n") != std::string::npos) {
        return true;
    }
    fmt::print(stderr, "keel_example_observe: /metrics lacks the line {}\n", line);
    return false;
}

} // namespace

int main(int argc, char** argv) try {
    bool const serve = argc > 1 && std::string_view{argv[1]} == "--serve";
    // In serve mode, before any thread starts: SIGTERM and SIGINT go to the waiter.
    std::optional<keel::ops::signal_waiter> signals;
    if (serve) {
        signals.emplace();
    }

    own_counts own;
    auto log = std::make_shared<fmt_log>();
    keel::observe::event_hub events;
    events.subscribe(log);

    // The dependency's breaker: opens at 50 % failures among at least 5 of its last
    // 10 calls and stays open a minute (long enough for the e2e test to see it open).
    keel::circuit_breaker breaker{{.failure_rate_threshold = 50,
                                   .window_size = 10,
                                   .minimum_calls = 5,
                                   .reset_timeout = 60s,
                                   .max_reset_timeout = 60s,
                                   .reset_jitter = 0s}};
    keel::retry_budget budget;
    keel::bulkhead bulkhead{{.max_concurrent_calls = 8}};
    keel::keyed<keel::token_bucket, std::string> per_client{{.rate = 1, .period = 1h, .burst = 10},
                                                            {.max_keys = 10'000}};
    keel::observe::pipeline_counters calls;
    keel::ops::health_registry health{{.service_id = "keel-observe-example"}};
    keel::ops::drain_coordinator drain{{.total_budget = 5s,
                                        .pre_stop_delay = 100ms,
                                        .in_flight_budget = 2s,
                                        .close_budget = 1s,
                                        .flush_budget = 1s}};

    // Everything /metrics shows, by name; the components stay owned here.
    keel::observe::registry metrics;
    metrics.add("inventory", breaker, {{"dependency", "inventory"}});
    metrics.add("inventory", budget, {{"dependency", "inventory"}});
    metrics.add("inventory", bulkhead, {{"dependency", "inventory"}});
    metrics.add("inventory", calls, {{"dependency", "inventory"}});
    metrics.add("per_client", per_client);
    metrics.add("service", drain);
    metrics.add("service", health);

    events.watch("inventory", breaker);
    events.watch_drain("service", drain);
    events.watch_health("service", health);
    auto const log_retry = events.retry_listener("inventory");

    auto const inventory = keel::resilient{
        [&](keel::context const&, bool fail) -> std::string {
            calls.record_attempt();
            if (fail) {
                throw dependency_error("inventory: HTTP 503");
            }
            return "in stock\n";
        },
        keel::guard(bulkhead),
        keel::guard(breaker),
        keel::retry{{.max_attempts = 3,
                     .backoff = keel::constant{1ms},
                     .jitter = keel::jitter::none,
                     .budget = &budget,
                     .on_retry =
                         [&](keel::retry_event const& e) {
                             ++own.retries;
                             calls.record_retry(e.delay());
                             log_retry(e);
                         }}},
    };

    httplib::Server server;
    server.new_task_queue = [] { return new httplib::ThreadPool(4); };
    drain.attach(health, "draining");
    drain.on_stop_accepting("listener", [&](std::stop_token) { server.stop(); });

    server.Get("/work", [&](httplib::Request const& req, httplib::Response& res) {
        auto const ticket = drain.try_enter();
        if (!ticket) {
            events.report("service", keel::make_error_code(keel::errc::shutting_down));
            res.status = 503;
            res.set_content("shutting down\n", "text/plain");
            return;
        }
        auto const decision = per_client.try_acquire(req.get_header_value("X-Client"));
        if (!decision) {
            ++own.rate_limited;
            events.report("per_client", keel::make_error_code(keel::errc::rate_limited),
                          decision.retry_after);
            res.status = 429;
            res.set_content("rate limited\n", "text/plain");
            return;
        }
        auto const result = inventory.try_call(req.has_param("fail"));
        calls.record(result);
        events.report("inventory", result);
        if (result) {
            ++own.ok;
            res.set_content(*result, "text/plain");
        } else if (result.error() == keel::errc::circuit_open) {
            ++own.circuit_open;
            res.status = 503;
            res.set_content("circuit open\n", "text/plain");
        } else {
            ++own.failed;
            res.status = 502;
            res.set_content("inventory failed\n", "text/plain");
        }
    });

    server.Get("/metrics", [&](httplib::Request const& req, httplib::Response& res) {
        auto const format = keel::observe::negotiate(req.get_header_value("Accept"));
        ++(format == keel::observe::exposition_format::openmetrics ? own.openmetrics_scrapes
                                                                   : own.text_scrapes);
        res.set_content(metrics.render(format), std::string{keel::observe::content_type(format)});
    });

    server.Get("/counts", [&](httplib::Request const&, httplib::Response& res) {
        res.set_content(own.text(breaker.state()) + "\n", "text/plain");
    });

    int const port = server.bind_to_any_port("127.0.0.1");
    if (port < 0) {
        fmt::print(stderr, "keel_example_observe: cannot bind 127.0.0.1\n");
        return 1;
    }
    std::thread listener{[&] { server.listen_after_bind(); }};
    health.mark_started();

    std::string const statuses = run_scenario(port);
    fmt::print("scenario statuses: {}\n", statuses);
    std::string const expected = "200 200 200 200 200 200 200 200 200 200 429 429 "
                                 "502 502 502 502 502 503 ";
    bool ok = statuses == expected;
    if (!ok) {
        fmt::print(stderr, "keel_example_observe: expected statuses {}\n", expected);
    }

    if (serve) {
        fmt::print("ready port={} {}\n", port, own.text(breaker.state()));
        std::fflush(stdout);
        signals->wait();
    } else {
        // Check the page in both formats against the service's own counts.
        httplib::Client client{"127.0.0.1", port};
        for (bool const openmetrics : {true, false}) {
            httplib::Headers headers;
            if (openmetrics) {
                // What Prometheus 2.42 sends.
                headers.emplace("Accept", "application/openmetrics-text;version=1.0.0,"
                                          "application/openmetrics-text;version=0.0.1;q=0.75,"
                                          "text/plain;version=0.0.4;q=0.5,*/*;q=0.1");
            }
            auto const r = client.Get("/metrics", headers);
            if (!r || r->status != 200) {
                fmt::print(stderr, "keel_example_observe: GET /metrics failed\n");
                ok = false;
                continue;
            }
            std::string const& page = r->body;
            auto const type = r->get_header_value("Content-Type");
            ok = ok && type.starts_with(openmetrics ? "application/openmetrics-text; version=1.0.0"
                                                    : "text/plain; version=0.0.4");
            ok = ok && page.ends_with("# EOF\n") == openmetrics;
            ok = has_line(page, "keel_circuit_breaker_state{name=\"inventory\",dependency="
                                "\"inventory\",state=\"open\"} 1") &&
                 ok;
            ok = has_line(page, fmt::format("keel_pipeline_retries_total{{name=\"inventory\","
                                            "dependency=\"inventory\"}} {}",
                                            own.retries.load())) &&
                 ok;
            ok =
                has_line(page, fmt::format("keel_rate_limiter_decisions_total{{name=\"per_client\","
                                           "decision=\"refused\"}} {}",
                                           own.rate_limited.load())) &&
                ok;
            ok =
                has_line(page, fmt::format("keel_pipeline_calls_total{{name=\"inventory\","
                                           "dependency=\"inventory\",outcome=\"circuit_open\"}} {}",
                                           own.circuit_open.load())) &&
                ok;
        }
        fmt::print("counts {}\n", own.text(breaker.state()));
    }

    auto const report = drain.shutdown();
    listener.join();
    fmt::print("drained exit={}\n", report.exit_code());
    return ok ? report.exit_code() : 1;
} catch (std::exception const& e) {
    fmt::print(stderr, "keel_example_observe: {}\n", e.what());
    return 2;
}
