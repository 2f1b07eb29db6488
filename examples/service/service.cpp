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

#include <keel/core/context.hpp>
#include <keel/core/error.hpp>
#include <keel/limiter/headers.hpp>
#include <keel/limiter/keyed.hpp>
#include <keel/limiter/token_bucket.hpp>
#include <keel/net/client_address.hpp>
#include <keel/net/ip_address.hpp>
#include <keel/net/trust.hpp>
#include <keel/ops/drain.hpp>
#include <keel/ops/health.hpp>
#include <keel/ops/health_json.hpp>
#include <keel/ops/signals.hpp>
#include <keel/policy/backoff.hpp>
#include <keel/policy/circuit_breaker.hpp>
#include <keel/policy/retry.hpp>
#include <keel/policy/timeout.hpp>
#include <keel/resilient.hpp>

#include "sanitizers.hpp"

#include <httplib.h>

#include <fmt/format.h>

#include <atomic>
#include <charconv>
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

// Parses argv into settings; throws std::invalid_argument naming an unknown option, a
// value that is not a whole decimal number, or one outside the option's range.
settings parse(int argc, char** argv) {
    struct option {
        int* value;
        int min;
        int max;
    };
    settings s;
    constexpr int max_ms = 24 * 3600 * 1000; // a day: beyond any sensible demo setting
    std::map<std::string_view, option> const known{
        {"--port", {&s.port, 0, 65535}},
        {"--downstream-port", {&s.downstream_port, 1, 65535}},
        {"--timeout-ms", {&s.timeout_ms, 1, max_ms}},
        {"--attempts", {&s.attempts, 1, 100}},
        {"--min-calls", {&s.min_calls, 1, 32768}},
        {"--failure-rate", {&s.failure_rate, 1, 100}},
        {"--open-ms", {&s.open_ms, 1, max_ms}},
        {"--window", {&s.window, 1, 32768}},
        {"--rate", {&s.rate, 1, 1000000}},
        {"--burst", {&s.burst, 1, 1000000}},
        {"--pre-stop-ms", {&s.pre_stop_ms, 0, max_ms}},
        {"--drain-ms", {&s.drain_ms, 1, max_ms}},
        {"--threads", {&s.threads, 1, 1024}},
    };
    for (int i = 1; i < argc; ++i) {
        auto const it = known.find(argv[i]);
        if (it == known.end()) {
            throw std::invalid_argument(fmt::format("keel_service: unknown option {}", argv[i]));
        }
        if (i + 1 == argc) {
            throw std::invalid_argument(fmt::format("keel_service: {} needs a value", argv[i]));
        }
        std::string_view const text = argv[++i];
        int const min = it->second.min;
        int const max = it->second.max;
        int value = 0;
        auto const [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
        if (error != std::errc{} || end != text.data() + text.size() || value < min ||
            value > max) {
            throw std::invalid_argument(
                fmt::format("keel_service: {} must be a whole number in [{}, {}], got '{}'",
                            it->first, min, max, text));
        }
        *it->second.value = value;
    }
    if (s.downstream_port == 0) {
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
    std::atomic<std::int64_t> to_open{0};
    std::atomic<std::int64_t> to_half_open{0};
    std::atomic<std::int64_t> to_closed{0};
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
    // First, before any thread starts: SIGTERM and SIGINT are blocked in every
    // thread and received by the waiter's own thread.
    keel::ops::signal_waiter signals;
    settings const cfg = parse(argc, argv);
    counters stats;

    // The downstream's breaker: opens at `failure_rate` % failures among at least
    // `min_calls` calls of the last `window`, stays open `open_ms` (doubling on
    // consecutive re-openings, up to 8x), then lets 3 probes decide.
    keel::circuit_breaker breaker{{.failure_rate_threshold = static_cast<double>(cfg.failure_rate),
                                   .window_size = static_cast<std::uint32_t>(cfg.window),
                                   .minimum_calls = static_cast<std::uint32_t>(cfg.min_calls),
                                   .reset_timeout = std::chrono::milliseconds{cfg.open_ms},
                                   .max_reset_timeout = std::chrono::milliseconds{cfg.open_ms} * 8,
                                   .reset_jitter = std::chrono::milliseconds{cfg.open_ms} / 10,
                                   .permitted_calls_in_half_open = 3}};
    breaker.on_transition([&](auto const& t) {
        auto& count = t.to == keel::circuit_state::open        ? stats.to_open
                      : t.to == keel::circuit_state::half_open ? stats.to_half_open
                                                               : stats.to_closed;
        ++count;
        emit(fmt::format("kind=breaker from={} to={} why={}", keel::to_string(t.from),
                         keel::to_string(t.to), keel::to_string(t.why)));
    });

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

    // breaker(retry(timeout(call))): one breaker outcome per logical call, each
    // attempt with its own deadline, jittered exponential backoff between them.
    auto const downstream = keel::resilient{
        call_downstream,
        keel::guard(breaker),
        keel::retry{{.max_attempts = cfg.attempts,
                     .backoff = keel::exponential{20ms, 2.0, 200ms},
                     .jitter = keel::jitter::full,
                     .on_retry = [&](keel::retry_event const&) { ++stats.retries; }}},
        keel::timeout{std::chrono::milliseconds{cfg.timeout_ms}},
    };

    // The real client: the socket peer is trusted only as one loopback proxy hop,
    // so the address that proxy appended is the client, and entries further left
    // (written by the client itself) are never believed.
    keel::net::client_resolver const resolver{
        {.trust = keel::net::trust_policy::predicate(
             [proxies = keel::net::cidr_list{"loopback"}](keel::net::ip_address const& a,
                                                          std::size_t hop) {
                 return hop == 0 && proxies.contains(a);
             })}};

    // Per-client limits: a token bucket per address, at most 100 000 addresses.
    keel::keyed<keel::token_bucket, std::string> limits{
        {.rate = cfg.rate, .period = 1s, .burst = cfg.burst}, {.max_keys = 100'000}};
    auto const policy_header =
        keel::ratelimit_policy_value("per-client", limits.overflow_limiter()).str();

    // Health: liveness has no dependencies; readiness adds the breaker check and
    // fails while draining; startup passes once the listener is bound.
    keel::ops::health_registry health{
        {.service_id = "keel-demo", .description = "keel demo service"}};
    health.add_check({.name = "downstream",
                      .measurement = "circuit",
                      .kind = keel::ops::check_kind::downstream,
                      .ttl = 0s,
                      .critical = false},
                     [&] {
                         auto const state = breaker.state();
                         if (state == keel::circuit_state::closed) {
                             return keel::ops::check_result::pass();
                         }
                         return keel::ops::check_result::warn(
                             fmt::format("circuit breaker {}", keel::to_string(state)));
                     });

    // Drain: readiness fails at once, the listener keeps serving for the pre-stop
    // delay, then closes; requests in flight finish within the drain budget.
    keel::ops::drain_coordinator drain{
        {.total_budget = std::chrono::milliseconds{cfg.pre_stop_ms + cfg.drain_ms} + 4s,
         .pre_stop_delay = std::chrono::milliseconds{cfg.pre_stop_ms},
         .in_flight_budget = std::chrono::milliseconds{cfg.drain_ms}}};

    httplib::Server server;
    server.new_task_queue = [n = cfg.threads] {
        return new httplib::ThreadPool(static_cast<std::size_t>(n));
    };
    // Busy clients keep their connection; an idle one is closed after 1 s, which
    // also bounds how long a drain waits for idle keep-alive connections.
    server.set_keep_alive_max_count(1000);
    server.set_tcp_nodelay(true);
    server.set_keep_alive_timeout(1);
    drain.attach(health, "draining");
    drain.on_not_ready([] { emit("kind=drain phase=not_ready"); });
    drain.on_stop_accepting("listener", [&](std::stop_token) { server.stop(); });

    server.Get("/api/work", [&](httplib::Request const& req, httplib::Response& res) {
        in_flight_mark const mark{stats.in_flight};
        auto const ticket = drain.try_enter();
        if (!ticket) {
            ++stats.draining;
            res.status = 503;
            res.set_header("Connection", "close");
            res.set_content("shutting down\n", "text/plain");
            return;
        }

        auto const peer = keel::net::ip_address::parse(req.remote_addr);
        auto const client =
            peer ? resolver.from_x_forwarded_for(*peer, req.get_header_value("X-Forwarded-For"))
                       .address.to_string()
                 : req.remote_addr;
        res.set_header("X-Client-Address", client);

        auto const decision = limits.try_acquire(client);
        res.set_header("RateLimit-Policy", policy_header);
        res.set_header("RateLimit", keel::ratelimit_value("per-client", decision).str());
        if (!decision) {
            ++stats.rate_limited;
            res.status = 429;
            res.set_header("Retry-After", keel::retry_after_value(decision).str());
            res.set_content("rate limited\n", "text/plain");
            return;
        }
        ++stats.allowed;

        t_attempts = 0;
        auto const result = downstream.try_call();
        res.set_header("X-Attempts", std::to_string(t_attempts));
        if (result) {
            ++stats.ok;
            res.set_content(*result, "text/plain");
            return;
        }
        auto const code = result.error();
        if (code == keel::errc::circuit_open) {
            ++stats.circuit_open;
            res.status = 503;
            auto const wait = result.retry_after().value_or(1s);
            res.set_header("Retry-After", std::to_string(keel::seconds_rounded_up(wait)));
            res.set_content("circuit open\n", "text/plain");
        } else if (code == keel::errc::timeout) {
            ++stats.timed_out;
            res.status = 504;
            res.set_content("downstream timed out\n", "text/plain");
        } else {
            ++stats.downstream_failed;
            res.status = 502;
            res.set_content("downstream failed\n", "text/plain");
        }
    });

    auto const probe = [](httplib::Response& res, keel::ops::health_report const& report) {
        auto const answer = keel::ops::to_http_response(report);
        res.status = answer.status;
        // A cached answer would report a health the service no longer has (docs/health.md).
        res.set_header("Cache-Control", "no-store");
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
        auto const value = [](std::atomic<std::int64_t> const& v) {
            return static_cast<double>(v.load());
        };
        keel_demo::prometheus_text page;
        page.family("keel_demo_requests_total", "counter",
                    "Requests to /api/work by how they ended.");
        for (auto const& [name, v] :
             {std::pair{"ok", &stats.ok}, std::pair{"downstream_failed", &stats.downstream_failed},
              std::pair{"timeout", &stats.timed_out},
              std::pair{"circuit_open", &stats.circuit_open},
              std::pair{"rate_limited", &stats.rate_limited},
              std::pair{"draining", &stats.draining}}) {
            page.sample("keel_demo_requests_total", {{"outcome", name}}, value(*v));
        }
        page.family("keel_demo_downstream_attempts_total", "counter",
                    "Attempts made to call the downstream, retries included.");
        page.sample("keel_demo_downstream_attempts_total", value(stats.attempts));
        page.family("keel_demo_retries_total", "counter",
                    "Retries of downstream calls chosen by keel::retry.");
        page.sample("keel_demo_retries_total", value(stats.retries));

        auto const m = breaker.metrics();
        page.family("keel_demo_breaker_state", "gauge",
                    "The downstream circuit breaker's state: 1 for the current one.");
        for (auto const state : {keel::circuit_state::closed, keel::circuit_state::open,
                                 keel::circuit_state::half_open, keel::circuit_state::forced_open,
                                 keel::circuit_state::disabled}) {
            page.sample("keel_demo_breaker_state", {{"state", keel::to_string(state)}},
                        m.state == state ? 1 : 0);
        }
        page.family("keel_demo_breaker_transitions_total", "counter",
                    "State changes of the downstream circuit breaker, by the state entered.");
        page.sample("keel_demo_breaker_transitions_total", {{"to", "open"}}, value(stats.to_open));
        page.sample("keel_demo_breaker_transitions_total", {{"to", "half_open"}},
                    value(stats.to_half_open));
        page.sample("keel_demo_breaker_transitions_total", {{"to", "closed"}},
                    value(stats.to_closed));
        page.family("keel_demo_breaker_rejections_total", "counter",
                    "Calls the circuit breaker rejected without calling the downstream.");
        page.sample("keel_demo_breaker_rejections_total", static_cast<double>(m.rejected_calls));
        page.family("keel_demo_breaker_failure_rate_percent", "gauge",
                    "Failure rate over the breaker's window, in percent.");
        page.sample("keel_demo_breaker_failure_rate_percent", m.failure_rate);

        page.family("keel_demo_rate_limit_decisions_total", "counter",
                    "Per-client rate limit decisions on /api/work.");
        page.sample("keel_demo_rate_limit_decisions_total", {{"decision", "allowed"}},
                    value(stats.allowed));
        page.sample("keel_demo_rate_limit_decisions_total", {{"decision", "limited"}},
                    value(stats.rate_limited));
        page.family("keel_demo_rate_limit_keys", "gauge",
                    "Client addresses the per-client limiter table holds.");
        page.sample("keel_demo_rate_limit_keys", static_cast<double>(limits.size()));

        page.family("keel_demo_in_flight_requests", "gauge",
                    "Requests to /api/work being served now.");
        page.sample("keel_demo_in_flight_requests", value(stats.in_flight));
        page.family("keel_demo_draining", "gauge", "1 once the service refuses new work.");
        page.sample("keel_demo_draining", drain.draining() ? 1 : 0);
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

    signals.wait();
    emit("kind=signal");
    auto const report = drain.shutdown();
    // The listener thread ends once its worker threads have written every response.
    listener.join();
    for (auto const& phase : report.phases) {
        emit(fmt::format(
            "kind=drain phase={} elapsed_us={} timed_out={}", keel::ops::to_string(phase.phase),
            std::chrono::duration_cast<std::chrono::microseconds>(phase.elapsed).count(),
            phase.timed_out ? 1 : 0));
    }
    emit(fmt::format("kind=drain_report in_flight_at_stop={} left={} exit={}",
                     report.in_flight_at_drain, report.in_flight_abandoned, report.exit_code()));
    return report.exit_code();
} catch (std::exception const& e) {
    fmt::print(stderr, "{}\n", e.what());
    return 2;
}
