// SPDX-License-Identifier: MIT
// keel_demo: the README's first command. Starts keel_downstream and keel_service
// as real processes on loopback, drives a scripted scenario and prints a timeline
// of what keel did: healthy traffic, a downstream failing a share of calls
// (retries absorb it), the downstream down (the breaker opens and sheds load in
// microseconds), recovery (half-open probes, closed again), one client flooding
// (rate-limited per client, polite clients unaffected), and a slow downstream:
// 2000 requests at once served by the service's two threads (its bulkhead sheds
// what exceeds 1500 calls in flight), then SIGTERM under load (readiness 503,
// Connection: close, in-flight requests finish, exit 0). Ends by itself in about
// 25 s and exits 0 when the service drained cleanly.
//
// Usage: keel_demo [--service <path>] [--downstream <path>] [--svg <file>]
// (by default both servers are looked for next to keel_demo). --svg writes the
// timeline as a chart drawn by keel::sim::render_svg, the simulator's renderer:
// requests per interval stacked by outcome, the breaker's state as a band, the
// phases as markers.
#include "harness.hpp"
#include "sanitizers.hpp"

#include <keel/sim/svg.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using keel_demo::child_process;
using keel_demo::mono;

namespace {

mono::time_point const g_start = mono::now();

double seconds_since_start(mono::time_point t) {
    return std::chrono::duration<double>(t - g_start).count();
}

template <class... Args>
void say(fmt::format_string<Args...> format, Args&&... args) {
    fmt::print("[{:6.2f}s] {}\n", seconds_since_start(mono::now()),
               fmt::format(format, std::forward<Args>(args)...));
    std::fflush(stdout);
}

// How a request ended, as the timeline chart stacks it.
enum class ending { ok, retried, failed, shed, limited, refused, no_answer };
constexpr std::size_t ending_count = 7;

// Every answer and breaker transition with its time, for the --svg chart.
class timeline {
public:
    static constexpr double interval_s = 0.25;

    void add(ending e, mono::time_point at) {
        auto const i =
            static_cast<std::size_t>(std::max(0.0, seconds_since_start(at)) / interval_s);
        std::lock_guard lock{m_mutex};
        if (m_counts.size() <= i) {
            m_counts.resize(i + 1);
        }
        ++m_counts[i][static_cast<std::size_t>(e)];
    }
    void transition(std::string state, mono::time_point at) {
        std::lock_guard lock{m_mutex};
        m_states.emplace_back(seconds_since_start(at), std::move(state));
    }
    void phase(std::string name) {
        std::lock_guard lock{m_mutex};
        m_phases.emplace_back(seconds_since_start(mono::now()), std::move(name));
    }

    // The chart of everything recorded until now.
    keel::sim::chart chart() const {
        std::lock_guard lock{m_mutex};
        keel::sim::chart c{.title = "keel demo: requests to /api/work per 250 ms, by outcome",
                           .x_step = interval_s};
        c.y_label = "requests per interval";
        std::array<std::pair<char const*, char const*>, ending_count> const series{
            {{"ok", "#43a047"},
             {"ok after retries", "#9ccc65"},
             {"failed (502/504)", "#e53935"},
             {"shed (breaker open, bulkhead full)", "#90a4ae"},
             {"rate-limited (429)", "#fb8c00"},
             {"refused (draining)", "#8e24aa"},
             {"no answer", "#212121"}}};
        for (std::size_t e = 0; e < ending_count; ++e) {
            keel::sim::chart_series s{series[e].first, series[e].second, {}};
            for (auto const& counts : m_counts) {
                s.values.push_back(counts[e]);
            }
            c.bars.push_back(std::move(s));
        }
        // The flooder's refusals outnumber everything else a hundredfold: the y axis
        // fits the other outcomes and clips the rate-limited bars at the top.
        double top = 0;
        for (auto const& counts : m_counts) {
            double stack = 0;
            for (std::size_t e = 0; e < ending_count; ++e) {
                stack += e == static_cast<std::size_t>(ending::limited) ? 0 : counts[e];
            }
            top = std::max(top, stack);
        }
        c.y_max = top * 1.1;
        c.subtitle = "rate-limited bars above the axis are clipped at the top";
        double const end = static_cast<double>(m_counts.size()) * interval_s;
        std::map<std::string, char const*> const colors{
            {"closed", "#a5d6a7"}, {"open", "#ef9a9a"}, {"half_open", "#fff59d"}};
        keel::sim::chart_band band{"breaker", {}};
        std::string state = "closed";
        double from = 0;
        auto const span = [&](double to) {
            auto const it = colors.find(state);
            band.spans.push_back({from, to, it != colors.end() ? it->second : "#757575", state});
        };
        for (auto const& [at, to] : m_states) {
            span(at);
            state = to;
            from = at;
        }
        span(end);
        c.bands.push_back(std::move(band));
        for (auto const& [at, name] : m_phases) {
            c.markers.push_back({at, name});
        }
        return c;
    }

private:
    mutable std::mutex m_mutex;
    std::vector<std::array<double, ending_count>> m_counts;
    std::vector<std::pair<double, std::string>> m_states; // (time, state entered)
    std::vector<std::pair<double, std::string>> m_phases; // (time, short name)
};

timeline g_timeline;

// How the requests of one phase (or one client) ended.
struct tally {
    std::atomic<int> sent{0};
    std::atomic<int> ok{0};
    std::atomic<int> retried{0}; // served, after at least one retry
    std::atomic<int> failed{0};  // 502 / 504: the downstream failed every attempt
    std::atomic<int> shed{0};    // 503 circuit open or downstream busy: not called
    std::atomic<int> limited{0}; // 429
    std::atomic<int> refused{0}; // 503 shutting down
    std::atomic<int> errors{0};  // no answer at all
    std::mutex mutex;
    std::vector<mono::duration> latencies;

    // Counts `r`, answered at `at` (now by default).
    void add(keel_demo::reply const& r, mono::time_point at = mono::now()) {
        ++sent;
        ending e = ending::failed;
        if (r.status == 200) {
            ++ok;
            bool const again = std::atoi(r.header("X-Attempts").c_str()) > 1;
            retried += again ? 1 : 0;
            e = again ? ending::retried : ending::ok;
        } else if (r.status == 429) {
            ++limited;
            e = ending::limited;
        } else if (r.status == 503 && r.body.find("shutting down") != std::string::npos) {
            ++refused;
            e = ending::refused;
        } else if (r.status == 503) {
            ++shed;
            e = ending::shed;
        } else if (r.status == 0) {
            ++errors;
            e = ending::no_answer;
        } else {
            ++failed;
        }
        g_timeline.add(e, at);
        std::lock_guard lock{mutex};
        latencies.push_back(r.latency);
    }

    std::string summary() {
        std::lock_guard lock{mutex};
        auto const p50 = keel_demo::percentile(latencies, 50);
        auto const p99 = keel_demo::percentile(latencies, 99);
        return fmt::format(
            "{} requests: {} ok ({} after retries), {} failed, {} shed (breaker "
            "open or bulkhead full), {} rate-limited{}{}; p50 {:.1f} ms, p99 {:.1f} ms",
            sent.load(), ok.load(), retried.load(), failed.load(), shed.load(), limited.load(),
            refused.load() > 0 ? fmt::format(", {} refused (draining)", refused.load()) : "",
            errors.load() > 0 ? fmt::format(", {} without answer", errors.load()) : "",
            keel_demo::ms(p50), keel_demo::ms(p99));
    }
};

// Clients sending requests one after another, each with its own address behind
// the (simulated) trusted proxy, counting into whichever tally is current.
class load {
public:
    load(int port, int clients, std::string address_prefix, mono::duration pause) : m_port(port) {
        for (int i = 0; i < clients; ++i) {
            m_threads.emplace_back([this, i, address_prefix, pause] {
                httplib::Headers const headers{
                    {"X-Forwarded-For", fmt::format("{}{}", address_prefix, i + 1)}};
                while (m_running.load()) {
                    auto const r = keel_demo::get(m_port, "/api/work", headers, 10s);
                    if (auto* t = m_tally.load()) {
                        t->add(r);
                    }
                    // Like a load balancer: a draining instance gets no more requests.
                    if (r.status == 503 && r.body.find("shutting down") != std::string::npos) {
                        return;
                    }
                    if (r.status == 0 && r.error == "Connection") {
                        return;
                    }
                    if (m_routed.load() == false) {
                        return;
                    }
                    if (pause > 0s) {
                        std::this_thread::sleep_for(pause);
                    }
                }
            });
        }
    }
    ~load() { stop(); }

    void count_into(tally* t) { m_tally = t; }
    void unroute() { m_routed = false; }
    void stop() {
        m_running = false;
        for (auto& t : m_threads) {
            if (t.joinable()) {
                t.join();
            }
        }
    }

private:
    int m_port;
    std::atomic<bool> m_running{true};
    std::atomic<bool> m_routed{true};
    std::atomic<tally*> m_tally{nullptr};
    std::vector<std::thread> m_threads;
};

// The servers, and the breaker's transitions as the service reports them.
class stage {
public:
    stage(std::string const& service, std::string const& downstream) {
        m_downstream =
            std::make_unique<child_process>(std::vector<std::string>{downstream}, "downstream");
        auto const ready = m_downstream->wait_line("listening", 30s);
        if (!ready) {
            throw std::runtime_error("keel_downstream did not start");
        }
        data_port = static_cast<int>(keel_demo::field(*ready, "data"));
        control_port = static_cast<int>(keel_demo::field(*ready, "control"));
        m_service =
            std::make_unique<child_process>(std::vector<std::string>{service,
                                                                     "--downstream-port",
                                                                     std::to_string(data_port),
                                                                     "--timeout-ms",
                                                                     "1000",
                                                                     "--attempts",
                                                                     "3",
                                                                     "--min-calls",
                                                                     "10",
                                                                     "--window",
                                                                     "20",
                                                                     "--failure-rate",
                                                                     "50",
                                                                     "--open-ms",
                                                                     "1500",
                                                                     "--rate",
                                                                     "30",
                                                                     "--burst",
                                                                     "30",
                                                                     "--pre-stop-ms",
                                                                     "1000",
                                                                     "--drain-ms",
                                                                     "5000",
                                                                     "--threads",
                                                                     "2",
                                                                     "--max-in-flight",
                                                                     "1500"},
                                            "service");
        auto const listening = m_service->wait_line("listening", 30s);
        if (!listening) {
            throw std::runtime_error("keel_service did not start");
        }
        port = static_cast<int>(keel_demo::field(*listening, "port"));
    }

    void control(std::string const& path) const { keel_demo::get(control_port, path); }

    // Waits `d`, printing the service's events as they arrive.
    void wait(mono::duration d) {
        auto const end = mono::now() + d;
        while (mono::now() < end) {
            pump();
            std::this_thread::sleep_for(20ms);
        }
        pump();
    }

    // Prints events read from the service since the last call.
    void pump() {
        m_service->drain_lines([this](std::string const& line) {
            if (!line.starts_with("event ")) {
                return;
            }
            auto const at =
                mono::time_point{std::chrono::nanoseconds{keel_demo::field(line, "at_ns")}};
            auto const kind = keel_demo::text_field(line, "kind");
            auto const stamp = fmt::format("[{:6.2f}s]", seconds_since_start(at));
            if (kind == "breaker") {
                auto const to = keel_demo::text_field(line, "to");
                fmt::print("{} breaker {} -> {}{}\n", stamp, keel_demo::text_field(line, "from"),
                           to,
                           line.find(" why=") != std::string::npos
                               ? fmt::format(" ({})", keel_demo::text_field(line, "why"))
                               : "");
                g_timeline.transition(to, at);
                if (to == "open" && !opened) {
                    opened = at;
                }
                if (to == "closed" && !closed) {
                    closed = at; // the first close after the downstream came back
                }
            } else if (kind == "signal") {
                fmt::print("{} service: SIGTERM received, drain starts\n", stamp);
            } else if (kind == "drain" && keel_demo::text_field(line, "phase") == "not_ready") {
                fmt::print("{} drain: readiness fails now; still serving during the pre-stop "
                           "delay, every answer with Connection: close\n",
                           stamp);
            } else if (kind == "drain" &&
                       keel_demo::text_field(line, "phase") == "listener_closed") {
                fmt::print("{} drain: listener closed, {} idle connections closed\n", stamp,
                           keel_demo::field(line, "idle_closed"));
            } else if (kind == "drain") {
                fmt::print("{} drain: {} took {:.0f} ms{}\n", stamp,
                           keel_demo::text_field(line, "phase"),
                           static_cast<double>(keel_demo::field(line, "elapsed_us")) / 1000.0,
                           keel_demo::field(line, "timed_out") == 1 ? " (budget ran out)" : "");
            } else if (kind == "drain_report") {
                fmt::print("{} drain finished: {} in flight when intake stopped, {} left over, "
                           "{} connections still open closed at the end, exit code {}\n",
                           stamp, keel_demo::field(line, "in_flight_at_stop"),
                           keel_demo::field(line, "left"),
                           keel_demo::field(line, "connections_closed"),
                           keel_demo::field(line, "exit"));
            }
            std::fflush(stdout);
        });
    }

    child_process& service() { return *m_service; }

    int port = 0;
    int data_port = 0;
    int control_port = 0;
    std::optional<mono::time_point> opened;
    std::optional<mono::time_point> closed;

private:
    std::unique_ptr<child_process> m_downstream;
    std::unique_ptr<child_process> m_service;
};

struct phase {
    std::string name;
    tally counts;
};

} // namespace

// The command line: each option takes a value; anything else is refused.
struct options {
    std::string service = keel_demo::program_directory() + "/keel_service";
    std::string downstream = keel_demo::program_directory() + "/keel_downstream";
    std::string svg; // empty: no chart
};

options parse(int argc, char** argv) {
    options o;
    std::map<std::string_view, std::string*> const known{
        {"--service", &o.service}, {"--downstream", &o.downstream}, {"--svg", &o.svg}};
    for (int i = 1; i < argc; i += 2) {
        auto const it = known.find(argv[i]);
        if (it == known.end()) {
            throw std::invalid_argument(fmt::format("keel_demo: unknown option {}", argv[i]));
        }
        if (i + 1 == argc || std::string_view{argv[i + 1]}.empty()) {
            throw std::invalid_argument(
                fmt::format("keel_demo: {} needs a value (a file path)", argv[i]));
        }
        *it->second = argv[i + 1];
    }
    // Checked now, not after the 25 s the scenario takes.
    if (!o.svg.empty() && !std::ofstream{o.svg}) {
        throw std::invalid_argument(
            fmt::format("keel_demo: --svg must be a file that can be written, got '{}'", o.svg));
    }
    return o;
}

int main(int argc, char** argv) try {
    options opts;
    try {
        opts = parse(argc, argv);
    } catch (std::invalid_argument const& e) {
        fmt::print(stderr,
                   "{}\nusage: keel_demo [--service PATH] [--downstream PATH] [--svg FILE]\n",
                   e.what());
        return 2;
    }
    auto const& service = opts.service;
    auto const& downstream = opts.downstream;

    fmt::print("keel demo: an asynchronous service (2 threads) calling a flaky downstream "
               "through\nkeel::asio::resilient{{call, count, guard(breaker), retry, timeout}}, a "
               "bulkhead, per-client rate limits behind a\ntrusted proxy, health probes, "
               "/metrics and a graceful drain.\n\n");
    stage s{service, downstream};
    say("downstream listening on 127.0.0.1:{} (control port {}), service on 127.0.0.1:{}",
        s.data_port, s.control_port, s.port);
    say("service: 1 s per attempt, 3 attempts, breaker opens at 50 % failures of >= 10 "
        "calls, 30 req/s per client, 1500 downstream calls in flight at most");

    std::array<phase, 8> phases{phase{"healthy", {}},
                                phase{"downstream failing 30 %", {}},
                                phase{"downstream down", {}},
                                phase{"recovery", {}},
                                phase{"flood: polite clients", {}},
                                phase{"flood: the flooder", {}},
                                phase{"2000 at once", {}},
                                phase{"SIGTERM under load", {}}};
    load polite{s.port, 4, "10.0.0.", 40ms};

    say("phase 1: healthy downstream, 4 polite clients");
    g_timeline.phase("1 healthy");
    polite.count_into(&phases[0].counts);
    s.wait(3s);
    say("  {}", phases[0].counts.summary());

    say("phase 2: the downstream fails 30 % of calls");
    g_timeline.phase("2 failing");
    s.control("/control?fail=0.3");
    polite.count_into(&phases[1].counts);
    s.wait(3s);
    say("  {}", phases[1].counts.summary());

    say("phase 3: the downstream goes down (stops listening)");
    g_timeline.phase("3 down");
    polite.count_into(&phases[2].counts);
    s.control("/down");
    auto const down_at = mono::now();
    s.wait(4s);
    say("  {}", phases[2].counts.summary());
    if (s.opened) {
        say("  detection: the breaker opened {:.0f} ms after the downstream went down",
            std::chrono::duration<double, std::milli>(*s.opened - down_at).count());
    } else {
        say("  the breaker did not open");
    }

    say("phase 4: the downstream comes back");
    g_timeline.phase("4 back");
    s.closed.reset();
    s.control("/control?fail=0");
    s.control("/up");
    auto const up_at = mono::now();
    polite.count_into(&phases[3].counts);
    s.wait(5s);
    say("  {}", phases[3].counts.summary());
    if (s.closed) {
        say("  recovery: the breaker closed {:.0f} ms after the downstream came back",
            std::chrono::duration<double, std::milli>(*s.closed - up_at).count());
    } else {
        say("  the breaker has not closed yet");
    }

    g_timeline.phase("5 flood");
    say("phase 5: client 10.0.0.66 floods (6 connections, no pause), with spoofed "
        "X-Forwarded-For entries");
    polite.count_into(&phases[4].counts);
    {
        tally& flood = phases[5].counts;
        std::atomic<bool> flooding{true};
        std::vector<std::thread> flooders;
        for (int i = 0; i < 6; ++i) {
            flooders.emplace_back([&, i] {
                keel_demo::session connection{s.port};
                for (int n = 0; flooding.load(); ++n) {
                    // The attacker writes its own entries; the trusted proxy appends the
                    // real address, which is the only one the service believes.
                    auto const spoof = fmt::format("203.0.113.{}, 10.0.0.66", (i * 31 + n) % 250);
                    flood.add(connection.get("/api/work", {{"X-Forwarded-For", spoof}}));
                }
            });
        }
        s.wait(3s);
        flooding = false;
        for (auto& t : flooders) {
            t.join();
        }
        say("  flooder: {}", flood.summary());
        say("  polite clients: {}", phases[4].counts.summary());
    }

    g_timeline.phase("6 burst");
    say("phase 6: the downstream slows to 150 ms; 2000 clients send one request each at "
        "once, then SIGTERM while 4 clients keep sending");
    s.control("/control?delay_ms=150");
    polite.count_into(&phases[7].counts);
    {
        // 2000 clients (distinct addresses behind the proxy) at once, on 2000 connections
        // from this one thread; the service serves them with its 2 threads, and its
        // bulkhead (1500 downstream calls in flight) sheds the rest at once.
        keel_demo::raise_file_limit();
        auto const start = mono::now();
        auto const replies = keel_demo::concurrent_requests(
            s.port, 2000,
            [](int i) {
                return fmt::format("GET /api/work HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                   "X-Forwarded-For: 10.1.{}.{}\r\nConnection: close\r\n\r\n",
                                   i / 250, i % 250 + 1);
            },
            30s);
        auto const took = mono::now() - start;
        tally& burst = phases[6].counts;
        for (auto const& r : replies) {
            keel_demo::reply one;
            one.status = r.status;
            one.latency = r.latency;
            one.body = r.text.substr(std::min(r.text.size(), r.text.find("\r\n\r\n") + 4));
            burst.add(one, start + r.latency);
        }
        say("  {}", burst.summary());
        say("  all answered in {:.2f} s by the service's 2 threads; the bulkhead shed what "
            "exceeded 1500 downstream calls in flight",
            std::chrono::duration<double>(took).count());
    }
    s.wait(1s);
    {
        // What /metrics said just before SIGTERM.
        auto const page = keel_demo::get(s.port, "/metrics").body;
        say("/metrics: {} retries, breaker opened {} times and closed {} times, {} calls "
            "rejected by it, {} rate-limit refusals",
            keel_demo::metric(page, "keel_pipeline_retries_total{name=\"downstream\"}"),
            keel_demo::metric(
                page, "keel_circuit_breaker_transitions_total{name=\"downstream\",to=\"open\"}"),
            keel_demo::metric(
                page, "keel_circuit_breaker_transitions_total{name=\"downstream\",to=\"closed\"}"),
            keel_demo::metric(
                page, "keel_circuit_breaker_not_permitted_calls_total{name=\"downstream\"}"),
            keel_demo::metric(
                page,
                "keel_rate_limiter_decisions_total{name=\"per_client\",decision=\"refused\"}"));
    }
    int const ok_before_term = phases[7].counts.ok.load();
    auto const term_at = mono::now();
    s.service().signal(SIGTERM);
    g_timeline.phase("SIGTERM");
    say("SIGTERM sent");
    std::optional<mono::time_point> ready_failed;
    bool unrouted = false;
    std::optional<int> code;
    while (!(code = s.service().wait_exit(0s)) && mono::now() - term_at < 30s) {
        if (!ready_failed) {
            auto const r = keel_demo::get(s.port, "/health/ready", {}, 2s);
            if (r.status == 503) {
                ready_failed = mono::now();
                say("readiness answers 503");
            }
        } else if (!unrouted && mono::now() - *ready_failed > 500ms) {
            // A balancer notices a failing probe only after its probe period.
            unrouted = true;
            say("the load balancer stops routing here (0.5 s after readiness failed)");
            polite.unroute();
        }
        s.wait(20ms);
    }
    polite.stop();
    s.wait(100ms);
    say("  {}", phases[7].counts.summary());
    say("  {} of them were served after SIGTERM (sent before the balancer stopped routing); "
        "{} got no answer",
        phases[7].counts.ok.load() - ok_before_term, phases[7].counts.errors.load());
    if (code) {
        say("service exited with code {} {:.2f} s after SIGTERM", *code,
            std::chrono::duration<double>(mono::now() - term_at).count());
    } else {
        say("service did not exit within 30 s");
    }

    fmt::print("\nsummary\n");
    fmt::print("  {:<26} {:>6} {:>6} {:>8} {:>7} {:>6} {:>8} {:>8}\n", "phase", "sent", "ok",
               "retried", "failed", "shed", "limited", "p99 ms");
    for (auto& p : phases) {
        auto& c = p.counts;
        double p99 = 0;
        {
            std::lock_guard lock{c.mutex};
            p99 = keel_demo::ms(keel_demo::percentile(c.latencies, 99));
        }
        fmt::print("  {:<26} {:>6} {:>6} {:>8} {:>7} {:>6} {:>8} {:>8.1f}\n", p.name, c.sent.load(),
                   c.ok.load(), c.retried.load(), c.failed.load(), c.shed.load(), c.limited.load(),
                   p99);
    }
    if (s.opened && s.closed) {
        fmt::print("  breaker: opened {:.0f} ms after the outage began, closed {:.0f} ms after "
                   "the downstream returned\n",
                   std::chrono::duration<double, std::milli>(*s.opened - down_at).count(),
                   std::chrono::duration<double, std::milli>(*s.closed - up_at).count());
    }
    if (!opts.svg.empty()) {
        std::ofstream out{opts.svg};
        out << keel::sim::render_svg(g_timeline.chart());
        if (!out.flush()) {
            fmt::print(stderr, "keel_demo: --svg: cannot write '{}'\n", opts.svg);
            return 1;
        }
        fmt::print("  timeline chart written to {}\n", opts.svg);
    }
    return code && *code == 0 ? 0 : 1;
} catch (std::exception const& e) {
    fmt::print(stderr, "keel_demo: {}\n", e.what());
    return 1;
}
