// SPDX-License-Identifier: MIT
// keel_service: the demo HTTP API, every keel part working together.
//
// For each GET /api/work it
//   1. takes a drain ticket (503 "shutting down" once SIGTERM has stopped intake),
//   2. finds the real client address behind one trusted loopback proxy
//      (X-Forwarded-For, keel::net),
//   3. applies that client's rate limit (keel::keyed token buckets: 429 with
//      Retry-After, RateLimit and RateLimit-Policy when over),
//   4. calls the downstream through keel::resilient{call, guard(breaker), retry,
//      timeout}: the HTTP call's connect and read timeouts come from the attempt's
//      deadline and the context's stop token aborts it.
// It also serves /health/live, /health/ready, /health/startup (keel::ops health
// registry, health+json) and /metrics (Prometheus text), and drains on SIGTERM
// through keel::ops::drain_coordinator, then exits 0.
//
// Usage: keel_service --downstream-port N [--port N] [options below]
// Prints "listening port=<port>" once bound, and one "event ..." line per breaker
// transition and drain phase, with the steady-clock time in ns, for the driver.
#include "prometheus.hpp"

#include <keel/keel.hpp>

#include <httplib.h>

#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>

using namespace std::chrono_literals;

namespace {

// Command-line settings; the defaults suit the demo's compressed timescale.
struct settings {
    int port = 0;            // 0: chosen by the OS
    int downstream_port = 0; // required
    int timeout_ms = 500;    // per attempt
    int attempts = 3;        // total, the first included
    int min_calls = 10;      // breaker volume threshold
    int failure_rate = 50;   // percent
    int open_ms = 2000;      // breaker reset timeout (base)
    int window = 20;         // breaker count window
    int rate = 50;           // per client, permits per second
    int burst = 50;          // per client
    int pre_stop_ms = 1000;  // drain: keep serving after readiness fails
    int drain_ms = 10000;    // drain: wait for in-flight requests
    int threads = 32;        // HTTP worker threads
};

settings parse(int argc, char** argv) {
    settings s;
    std::map<std::string_view, int*> const known{
        {"--port", &s.port},
        {"--downstream-port", &s.downstream_port},
        {"--timeout-ms", &s.timeout_ms},
        {"--attempts", &s.attempts},
        {"--min-calls", &s.min_calls},
        {"--failure-rate", &s.failure_rate},
        {"--open-ms", &s.open_ms},
        {"--window", &s.window},
        {"--rate", &s.rate},
        {"--burst", &s.burst},
        {"--pre-stop-ms", &s.pre_stop_ms},
        {"--drain-ms", &s.drain_ms},
        {"--threads", &s.threads},
    };
    for (int i = 1; i < argc; ++i) {
        auto const it = known.find(argv[i]);
        if (it == known.end() || i + 1 == argc) {
            throw std::invalid_argument(fmt::format("keel_service: unknown option {}", argv[i]));
        }
        *it->second = std::atoi(argv[++i]);
    }
    if (s.downstream_port <= 0) {
        throw std::invalid_argument("keel_service: --downstream-port is required");
    }
    return s;
}

// One line per event on stdout, whole lines only, flushed at once.
void emit(std::string const& line) {
    static std::mutex mutex;
    std::lock_guard lock{mutex};
    auto const at = std::chrono::duration_cast<std::chrono::nanoseconds>(
                        std::chrono::steady_clock::now().time_since_epoch())
                        .count();
    std::fprintf(stdout, "event at_ns=%lld %s\n", static_cast<long long>(at), line.c_str());
    std::fflush(stdout);
}

// What /metrics reports that keel's own snapshots do not already hold.
struct counters {
    std::atomic<std::int64_t> ok{0};
    std::atomic<std::int64_t> downstream_failed{0};
    std::atomic<std::int64_t> timed_out{0};
    std::atomic<std::int64_t> circuit_open{0};
    std::atomic<std::int64_t> rate_limited{0};
    std::atomic<std::int64_t> draining{0};
    std::atomic<std::int64_t> allowed{0};
    std::atomic<std::int64_t> attempts{0};
    std::atomic<std::int64_t> retries{0};
    std::atomic<std::int64_t> in_flight{0};
};

// A failed downstream call: a transport error or a 5xx answer.
class downstream_error : public std::runtime_error {
    using std::runtime_error::runtime_error;
};

// Counts a request in flight for as long as it lives.
class in_flight_mark {
public:
    explicit in_flight_mark(std::atomic<std::int64_t>& gauge) : m_gauge(gauge) { ++m_gauge; }
    ~in_flight_mark() { --m_gauge; }
    in_flight_mark(in_flight_mark const&) = delete;
    in_flight_mark& operator=(in_flight_mark const&) = delete;

private:
    std::atomic<std::int64_t>& m_gauge;
};

thread_local int t_attempts = 0; // attempts of the request this thread is serving

} // namespace

int main(int argc, char** argv) try {
    settings const cfg = parse(argc, argv);

    // SIGTERM and SIGINT are blocked before any thread starts, so every thread
    // inherits the mask and only the drain coordinator's signal thread sees them.
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);

    counters stats;

    // The downstream call: one HTTP GET per attempt, bounded by the attempt's deadline.
    auto call_downstream = [&](keel::context const& ctx) -> std::string {
        ++t_attempts;
        ++stats.attempts;
        httplib::Client client{"127.0.0.1", cfg.downstream_port};
        if (auto const deadline = ctx.deadline()) {
            auto const left = std::max(std::chrono::steady_clock::duration{1ms},
                                       *deadline - std::chrono::steady_clock::now());
            client.set_connection_timeout(left);
            client.set_read_timeout(left);
            client.set_write_timeout(left);
        }
        // The timeout's stop token aborts the socket operation in progress.
        std::stop_callback abort{ctx.stop_token(), [&client] { client.stop(); }};
        auto result = client.Get("/work");
        if (!result) {
            throw downstream_error(
                fmt::format("downstream: {}", httplib::to_string(result.error())));
        }
        if (result->status >= 500) {
            throw downstream_error(fmt::format("downstream: HTTP {}", result->status));
        }
        return result->body;
    };

    // Health: liveness has no dependencies; readiness adds the breaker check and
    // fails while draining; startup passes once the listener is bound.
    keel::ops::health_registry<> health{
        {.service_id = "keel-demo", .description = "keel demo service"}};

    httplib::Server server;
    server.new_task_queue = [n = cfg.threads] {
        return new httplib::ThreadPool(static_cast<std::size_t>(n));
    };
    server.set_keep_alive_timeout(1);

    server.Get("/api/work", [&](httplib::Request const& req, httplib::Response& res) {
        in_flight_mark const mark{stats.in_flight};
        t_attempts = 0;
        auto body = call_downstream(keel::context{});
        res.set_header("X-Attempts", std::to_string(t_attempts));
        ++stats.ok;
        res.set_content(body, "text/plain");
        (void)req;
    });

    auto const probe = [](httplib::Response& res, keel::ops::health_report const& report) {
        auto const answer = keel::ops::to_http_response(report);
        res.status = answer.status;
        res.set_content(answer.body, answer.content_type);
    };
    server.Get("/health/live", [&](httplib::Request const&, httplib::Response& res) {
        probe(res, health.liveness());
    });
    server.Get("/health/ready", [&](httplib::Request const&, httplib::Response& res) {
        probe(res, health.readiness());
    });
    server.Get("/health/startup", [&](httplib::Request const&, httplib::Response& res) {
        probe(res, health.startup());
    });

    server.Get("/metrics", [&](httplib::Request const&, httplib::Response& res) {
        keel_demo::prometheus_text page;
        page.family("keel_demo_requests_total", "counter",
                    "Requests to /api/work by how they ended.");
        auto const outcome = [&](std::string_view name, std::atomic<std::int64_t> const& v) {
            page.sample("keel_demo_requests_total", {{"outcome", name}},
                        static_cast<double>(v.load()));
        };
        outcome("ok", stats.ok);
        outcome("downstream_failed", stats.downstream_failed);
        outcome("timeout", stats.timed_out);
        outcome("circuit_open", stats.circuit_open);
        outcome("rate_limited", stats.rate_limited);
        outcome("draining", stats.draining);
        page.family("keel_demo_downstream_attempts_total", "counter",
                    "Attempts made to call the downstream, retries included.");
        page.sample("keel_demo_downstream_attempts_total", static_cast<double>(stats.attempts));
        page.family("keel_demo_retries_total", "counter",
                    "Retries of downstream calls chosen by keel::retry.");
        page.sample("keel_demo_retries_total", static_cast<double>(stats.retries));
        page.family("keel_demo_in_flight_requests", "gauge",
                    "Requests to /api/work being served now.");
        page.sample("keel_demo_in_flight_requests", static_cast<double>(stats.in_flight));
        res.set_content(page.text(), keel_demo::prometheus_content_type);
    });

    int const port = cfg.port == 0 ? server.bind_to_any_port("127.0.0.1")
                                   : (server.bind_to_port("127.0.0.1", cfg.port) ? cfg.port : -1);
    if (port < 0) {
        fmt::print(stderr, "keel_service: cannot bind 127.0.0.1:{}\n", cfg.port);
        return 1;
    }
    std::thread listener{[&] { server.listen_after_bind(); }};
    health.mark_started();
    fmt::print("listening port={}\n", port);
    std::fflush(stdout);

    int received = 0;
    sigwait(&signals, &received);
    server.stop();
    listener.join();
    emit("kind=exit code=0");
    return 0;
} catch (std::exception const& e) {
    fmt::print(stderr, "{}\n", e.what());
    return 2;
}
