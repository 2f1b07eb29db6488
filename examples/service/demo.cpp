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
// Usage: keel_demo [--service <path>] [--downstream <path>]
// (by default both are looked for next to keel_demo).
#include "harness.hpp"
#include "sanitizers.hpp"

#include <fmt/format.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <mutex>
#include <optional>
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

    void add(keel_demo::reply const& r) {
        ++sent;
        if (r.status == 200) {
            ++ok;
            retried += std::atoi(r.header("X-Attempts").c_str()) > 1 ? 1 : 0;
        } else if (r.status == 429) {
            ++limited;
        } else if (r.status == 503 && r.body.find("shutting down") != std::string::npos) {
            ++refused;
        } else if (r.status == 503) {
            ++shed;
        } else if (r.status == 0) {
            ++errors;
        } else {
            ++failed;
        }
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

int main(int argc, char** argv) try {
    std::string service = keel_demo::program_directory() + "/keel_service";
    std::string downstream = keel_demo::program_directory() + "/keel_downstream";
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string_view const key = argv[i];
        if (key == "--service") {
            service = argv[i + 1];
        } else if (key == "--downstream") {
            downstream = argv[i + 1];
        }
    }

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
    polite.count_into(&phases[0].counts);
    s.wait(3s);
    say("  {}", phases[0].counts.summary());

    say("phase 2: the downstream fails 30 % of calls");
    s.control("/control?fail=0.3");
    polite.count_into(&phases[1].counts);
    s.wait(3s);
    say("  {}", phases[1].counts.summary());

    say("phase 3: the downstream goes down (stops listening)");
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
            burst.add(one);
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
    return code && *code == 0 ? 0 : 1;
} catch (std::exception const& e) {
    fmt::print(stderr, "keel_demo: {}\n", e.what());
    return 1;
}
