// SPDX-License-Identifier: MIT
// End-to-end tests of the demo service (examples/service): each scenario starts
// keel_downstream and keel_service as real processes and drives them over HTTP
// on loopback, with bounded loops of a few seconds. Timing assertions compare
// orders of magnitude (a fail-fast answer against a one-second timeout), never
// tight figures, because they run on loaded machines and under sanitizers.
//
// Usage: keel_e2e_service <scenario> --service <path> --downstream <path>
// Prints what it checks and exits non-zero if any check failed.
#include "harness.hpp"
#include "prometheus.hpp"
#include "sanitizers.hpp"

#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using keel_demo::child_process;
using keel_demo::mono;

namespace {

int g_failures = 0;

void check(bool ok, std::string const& what) {
    fmt::print("{} {}\n", ok ? "  ok  " : "  FAIL", what);
    std::fflush(stdout);
    if (!ok) {
        ++g_failures;
    }
}

struct paths {
    std::string service;
    std::string downstream;
};

// The two servers of one scenario; both are killed if the scenario ends early.
class servers {
public:
    servers(paths const& p, std::vector<std::string> service_args) {
        m_downstream =
            std::make_unique<child_process>(std::vector<std::string>{p.downstream}, "downstream");
        auto const ready = m_downstream->wait_line("listening", 30s);
        if (!ready) {
            throw std::runtime_error("keel_downstream did not start");
        }
        data_port = static_cast<int>(keel_demo::field(*ready, "data"));
        control_port = static_cast<int>(keel_demo::field(*ready, "control"));

        // Defaults: a short pre-stop delay, so each scenario can end with a clean
        // drain, and a per-client limit no scenario reaches (every request comes
        // from 127.0.0.1). Scenarios testing either pass their own (the last wins).
        std::vector<std::string> args{p.service,
                                      "--downstream-port",
                                      std::to_string(data_port),
                                      "--pre-stop-ms",
                                      "100",
                                      "--rate",
                                      "100000",
                                      "--burst",
                                      "100000"};
        args.insert(args.end(), service_args.begin(), service_args.end());
        m_service = std::make_unique<child_process>(args, "service");
        auto const listening = m_service->wait_line("listening", 30s);
        if (!listening) {
            throw std::runtime_error("keel_service did not start");
        }
        port = static_cast<int>(keel_demo::field(*listening, "port"));
    }

    // Sends a control request to the downstream (e.g. "/down", "/control?hang=1").
    void control(std::string const& path) const {
        auto const r = keel_demo::get(control_port, path);
        if (r.status != 200) {
            throw std::runtime_error(fmt::format("downstream control {} failed", path));
        }
    }

    keel_demo::reply work(httplib::Headers const& headers = {}, mono::duration limit = 30s) const {
        return keel_demo::get(port, "/api/work", headers, limit);
    }

    double metric(std::string_view name) const {
        return keel_demo::metric(keel_demo::get(port, "/metrics").body, name);
    }

    child_process& service() { return *m_service; }

    // Stops both servers with SIGTERM and checks that they exit 0 (under the
    // sanitizers, a report at exit makes the exit code non-zero).
    void stop_cleanly() {
        m_service->signal(SIGTERM);
        auto const service_code = m_service->wait_exit(30s);
        check(service_code == 0,
              fmt::format("keel_service exits 0 on SIGTERM (got {})",
                          service_code ? std::to_string(*service_code) : "none"));
        m_downstream->signal(SIGTERM);
        auto const downstream_code = m_downstream->wait_exit(30s);
        check(downstream_code == 0, "keel_downstream exits 0 on SIGTERM");
    }

    int port = 0;
    int data_port = 0;
    int control_port = 0;

private:
    std::unique_ptr<child_process> m_downstream;
    std::unique_ptr<child_process> m_service;
};

constexpr std::string_view breaker_open = "keel_demo_breaker_state{state=\"open\"}";
constexpr std::string_view breaker_closed = "keel_demo_breaker_state{state=\"closed\"}";

// Sends requests one by one until `done(reply)` or `limit` passes; returns whether done.
bool until(servers const& s, mono::duration limit,
           std::function<bool(keel_demo::reply const&)> const& done) {
    auto const deadline = mono::now() + limit;
    while (mono::now() < deadline) {
        if (done(s.work())) {
            return true;
        }
        std::this_thread::sleep_for(20ms);
    }
    return false;
}

// During an outage that makes every attempt wait for its 1 s timeout, the breaker
// opens and then answers in milliseconds instead of seconds.
void breaker_fail_fast(paths const& p) {
    servers s{p,
              {"--timeout-ms", "1000", "--attempts", "2", "--min-calls", "4", "--window", "10",
               "--open-ms", "60000"}};
    for (int i = 0; i < 3; ++i) {
        check(s.work().status == 200, "healthy downstream: request served");
    }
    s.control("/control?hang=1");

    // Enough concurrent calls to reach the breaker's volume threshold; each one
    // waits for its attempts' timeouts.
    std::vector<std::thread> callers;
    std::atomic<int> timed_out{0};
    for (int i = 0; i < 6; ++i) {
        callers.emplace_back([&] {
            if (s.work().status == 504) {
                ++timed_out;
            }
        });
    }
    for (auto& t : callers) {
        t.join();
    }
    check(timed_out.load() > 0,
          fmt::format("hanging downstream: {} of 6 calls timed out (504)", timed_out.load()));
    bool const opened = until(s, 20s, [](auto const& r) { return r.status == 503; });
    check(opened, "the breaker opens during the outage (503 circuit open)");
    check(s.metric(breaker_open) == 1, "/metrics reports the breaker open");

    std::vector<mono::duration> latencies;
    int shed = 0;
    bool retry_after = true;
    for (int i = 0; i < 50; ++i) {
        auto const r = s.work();
        latencies.push_back(r.latency);
        shed += r.status == 503 ? 1 : 0;
        retry_after = retry_after && !r.header("Retry-After").empty();
    }
    check(shed == 50, fmt::format("while open, {} of 50 calls rejected at once", shed));
    check(retry_after, "every rejection carries Retry-After");
    auto const p99 = keel_demo::percentile(latencies, 99);
    auto const worst = latencies.back();
    check(p99 < 100ms, fmt::format("fail-fast p99 {:.1f} ms < 100 ms (the timeout is 1000 ms)",
                                   keel_demo::ms(p99)));
    check(worst < 1000ms, fmt::format("no wait as long as one attempt's timeout: max {:.1f} ms",
                                      keel_demo::ms(worst)));
    s.control("/control?hang=0");
    s.stop_cleanly();
}

// After the downstream comes back, half-open probes succeed and the breaker closes.
void breaker_recovery(paths const& p) {
    servers s{p,
              {"--timeout-ms", "1000", "--attempts", "2", "--min-calls", "4", "--window", "10",
               "--open-ms", "1000"}};
    check(s.work().status == 200, "healthy downstream: request served");
    s.control("/down");
    bool const opened = until(s, 20s, [](auto const& r) { return r.status == 503; });
    check(opened, "downstream down: the breaker opens");
    auto const back = mono::now();
    s.control("/up");
    bool const recovered = until(s, 30s, [](auto const& r) { return r.status == 200; });
    check(recovered, fmt::format("downstream back: served again after {:.2f} s",
                                 std::chrono::duration<double>(mono::now() - back).count()));
    bool closed = false;
    for (int i = 0; i < 100 && !closed; ++i) {
        closed = s.metric(breaker_closed) == 1;
        if (!closed) {
            s.work();
            std::this_thread::sleep_for(50ms);
        }
    }
    check(closed, "/metrics reports the breaker closed");
    int served = 0;
    for (int i = 0; i < 10; ++i) {
        served += s.work().status == 200 ? 1 : 0;
    }
    check(served == 10, fmt::format("after recovery {} of 10 requests served", served));
    s.stop_cleanly();
}

// A client behind the trusted proxy cannot escape its limit by writing its own
// X-Forwarded-For entries: the proxy appends the real address, and only that counts.
void spoofed_forwarded_for(paths const& p) {
    servers s{p, {"--rate", "5", "--burst", "5"}};
    int allowed = 0;
    int limited = 0;
    bool same_client = true;
    auto const start = mono::now();
    for (int i = 0; i < 30; ++i) {
        // What the attacker wrote, then what the trusted proxy appended.
        auto const spoof = i % 3 == 0   ? fmt::format("203.0.113.{}", i)
                           : i % 3 == 1 ? std::string{"not-an-address"}
                                        : fmt::format("198.51.100.{}, 192.0.2.{}", i, i);
        auto const r = s.work({{"X-Forwarded-For", spoof + ", 10.0.0.7"}});
        allowed += r.status == 200 ? 1 : 0;
        limited += r.status == 429 ? 1 : 0;
        same_client = same_client && r.header("X-Client-Address") == "10.0.0.7";
    }
    auto const elapsed = std::chrono::duration<double>(mono::now() - start).count();
    check(same_client, "every request is attributed to 10.0.0.7, whatever the client wrote");
    // burst 5 plus 5 per second of the test, plus one for a refill in flight.
    auto const most = 5 + static_cast<int>(5 * elapsed) + 1;
    check(allowed <= most,
          fmt::format("{} allowed in {:.2f} s, at most {} for one client", allowed, elapsed, most));
    check(limited > 0, fmt::format("{} rate-limited (429)", limited));
    auto const other = s.work({{"X-Forwarded-For", "10.0.0.8"}});
    check(other.status == 200, "another client behind the same proxy is still served");
    s.stop_cleanly();
}

// A flooding client gets 429 (with Retry-After and RateLimit headers) while a
// polite client on the same proxy is served every time.
void flood_vs_polite(paths const& p) {
    servers s{p, {"--rate", "10", "--burst", "10"}};
    std::atomic<bool> stop{false};
    std::atomic<int> flood_ok{0};
    std::atomic<int> flood_limited{0};
    std::atomic<int> flood_headers{0};
    std::vector<std::thread> flooders;
    for (int i = 0; i < 4; ++i) {
        flooders.emplace_back([&] {
            keel_demo::session connection{s.port};
            while (!stop.load()) {
                auto const r = connection.get("/api/work", {{"X-Forwarded-For", "10.0.0.66"}});
                if (r.status == 200) {
                    ++flood_ok;
                } else if (r.status == 429) {
                    ++flood_limited;
                    bool const headers = std::atoi(r.header("Retry-After").c_str()) >= 1 &&
                                         !r.header("RateLimit").empty() &&
                                         !r.header("RateLimit-Policy").empty();
                    flood_headers += headers ? 1 : 0;
                }
            }
        });
    }
    int polite_ok = 0;
    int polite_sent = 0;
    auto const end = mono::now() + 3s;
    while (mono::now() < end) {
        ++polite_sent;
        polite_ok += s.work({{"X-Forwarded-For", "10.0.0.8"}}).status == 200 ? 1 : 0;
        std::this_thread::sleep_for(250ms);
    }
    stop = true;
    for (auto& t : flooders) {
        t.join();
    }
    check(
        flood_limited.load() > flood_ok.load(),
        fmt::format("flooder: {} served, {} rate-limited", flood_ok.load(), flood_limited.load()));
    check(flood_headers.load() == flood_limited.load(),
          "every 429 carries Retry-After >= 1 s, RateLimit and RateLimit-Policy");
    check(polite_ok == polite_sent,
          fmt::format("polite client: {} of {} served", polite_ok, polite_sent));
    check(s.metric("keel_demo_rate_limit_decisions_total{decision=\"limited\"}") ==
              flood_limited.load(),
          "/metrics counts every limited decision");
    s.stop_cleanly();
}

// SIGTERM under steady load: readiness turns 503, requests already accepted all
// finish, nothing accepted is dropped, and the process exits 0 within its budget.
void drain_under_load(paths const& p) {
    servers s{
        p, {"--pre-stop-ms", "2000", "--drain-ms", "10000", "--rate", "1000", "--burst", "1000"}};
    s.control("/control?delay_ms=300");

    // Like a load balancer: stop sending once readiness fails or the service refuses.
    std::atomic<bool> routed{true};
    std::atomic<int> served{0};
    std::atomic<int> refused{0};
    std::atomic<int> dropped{0};
    std::atomic<int> other{0};
    std::vector<std::thread> clients;
    for (int i = 0; i < 8; ++i) {
        clients.emplace_back([&] {
            while (routed.load()) {
                auto const r = s.work({}, 30s);
                if (r.status == 200) {
                    ++served;
                } else if (r.status == 503 && r.body.find("shutting down") != std::string::npos) {
                    ++refused;
                    return;
                } else if (r.status == 0 && r.error == "Connection") {
                    return; // never accepted: the listener is closed
                } else if (r.status == 0) {
                    ++dropped; // connected and sent, but no answer
                } else {
                    ++other;
                }
            }
        });
    }
    // Every probe answer, 200 or 503, forbids caching (docs/health.md).
    for (std::string const path : {"/health/live", "/health/ready", "/health/startup"}) {
        auto const r = keel_demo::get(s.port, path, {}, 5s);
        check(r.status == 200 && r.header("Cache-Control") == "no-store",
              fmt::format("{} answers 200 with Cache-Control: no-store (got {}, '{}')", path,
                          r.status, r.header("Cache-Control")));
    }
    std::atomic<bool> ready_503{false};
    std::atomic<bool> ready_503_cacheable{false};
    std::atomic<bool> polling{true};
    std::thread prober{[&] {
        while (polling.load()) {
            auto const r = keel_demo::get(s.port, "/health/ready", {}, 5s);
            if (r.status == 503) {
                ready_503 = true;
                routed = false;
                if (r.header("Cache-Control") != "no-store") {
                    ready_503_cacheable = true;
                }
            }
            if (r.status == 0 && r.error == "Connection") {
                routed = false;
                return;
            }
            std::this_thread::sleep_for(50ms);
        }
    }};
    std::this_thread::sleep_for(1500ms);
    int const before = served.load();
    auto const sent = mono::now();
    s.service().signal(SIGTERM);
    auto const code = s.service().wait_exit(30s);
    auto const took = mono::now() - sent;
    routed = false;
    polling = false;
    for (auto& t : clients) {
        t.join();
    }
    prober.join();

    check(before > 0, fmt::format("{} requests served before SIGTERM", before));
    check(ready_503.load(), "readiness answered 503 while draining");
    check(!ready_503_cacheable.load(), "readiness 503 answers carry Cache-Control: no-store");
    check(dropped.load() == 0, fmt::format("{} accepted requests dropped", dropped.load()));
    check(other.load() == 0, fmt::format("{} unexpected answers", other.load()));
    check(served.load() > before,
          fmt::format("requests in flight at SIGTERM finished: {} served in all", served.load()));
    check(code.has_value() && *code == 0,
          fmt::format("exit code {}", code ? std::to_string(*code) : "none (still running)"));
    check(took < 2000ms + 10000ms,
          fmt::format("exited {:.2f} s after SIGTERM, within the 12 s budget",
                      std::chrono::duration<double>(took).count()));
    auto const report = s.service().wait_line("event at_ns", 1s);
    bool left_over_zero = false;
    std::string line;
    while (auto const l = s.service().wait_line("event", 100ms)) {
        if (l->find("kind=drain_report") != std::string::npos) {
            line = *l;
            left_over_zero = keel_demo::field(*l, "left") == 0;
        }
    }
    (void)report;
    check(left_over_zero,
          fmt::format("the drain report says nothing was left in flight: {}", line));
}

// The /metrics writer follows the text exposition format: HELP and TYPE lines,
// escaped help text and label values, integers without exponents, special values.
void prometheus_text(paths const&) {
    keel_demo::prometheus_text page;
    page.family("demo_total", "counter", "Counts \\ things\non two lines.");
    page.sample("demo_total", {{"path", "/a\"b\\c\nd"}, {"code", "200"}}, 3);
    page.family("demo_ratio", "gauge", "A ratio.");
    page.sample("demo_ratio", 0.25);
    page.sample("demo_ratio", {{"kind", "big"}}, 1e20);
    page.sample("demo_ratio", {{"kind", "inf"}}, std::numeric_limits<double>::infinity());
    std::string const expected = "# HELP demo_total Counts \\\\ things\\non two lines.\n"
                                 "# TYPE demo_total counter\n"
                                 "demo_total{path=\"/a\\\"b\\\\c\\nd\",code=\"200\"} 3\n"
                                 "# HELP demo_ratio A ratio.\n"
                                 "# TYPE demo_ratio gauge\n"
                                 "demo_ratio 0.25\n"
                                 "demo_ratio{kind=\"big\"} 1e+20\n"
                                 "demo_ratio{kind=\"inf\"} +Inf\n";
    check(page.text() == expected, "exposition text:\n" + page.text());
}

} // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        fmt::print(stderr, "usage: keel_e2e_service <scenario> --service P --downstream P\n");
        return 2;
    }
    std::string scenario = argv[1];
    if (scenario.size() > 2 && scenario.front() == '[') {
        scenario = scenario.substr(1, scenario.size() - 2);
    }
    paths p{keel_demo::program_directory() + "/keel_service",
            keel_demo::program_directory() + "/keel_downstream"};
    for (int i = 2; i + 1 < argc; i += 2) {
        std::string_view const key = argv[i];
        if (key == "--service") {
            p.service = argv[i + 1];
        } else if (key == "--downstream") {
            p.downstream = argv[i + 1];
        }
    }
    std::map<std::string, void (*)(paths const&)> const scenarios{
        {"breaker_fail_fast", breaker_fail_fast},         {"breaker_recovery", breaker_recovery},
        {"spoofed_forwarded_for", spoofed_forwarded_for}, {"flood_vs_polite", flood_vs_polite},
        {"drain_under_load", drain_under_load},           {"prometheus_text", prometheus_text},
    };
    auto const it = scenarios.find(scenario);
    if (it == scenarios.end()) {
        fmt::print(stderr, "unknown scenario {}\n", scenario);
        return 2;
    }
    fmt::print("scenario {}\n", scenario);
    try {
        it->second(p);
    } catch (std::exception const& e) {
        check(false, fmt::format("scenario aborted: {}", e.what()));
    }
    fmt::print("{}\n", g_failures == 0 ? "PASSED" : fmt::format("FAILED ({} checks)", g_failures));
    return g_failures == 0 ? 0 : 1;
}
