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
#include "sanitizers.hpp"

#include <fmt/format.h>

#include <algorithm>
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

constexpr std::string_view breaker_open =
    "keel_circuit_breaker_state{name=\"downstream\",state=\"open\"}";
constexpr std::string_view breaker_closed =
    "keel_circuit_breaker_state{name=\"downstream\",state=\"closed\"}";

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
    check(s.metric("keel_rate_limiter_decisions_total{name=\"per_client\",decision=\"refused\"}") ==
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

// Under a sanitizer every process starts with a larger resident set; memory bounds
// then apply to growth.
#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define KEEL_E2E_SANITIZED 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define KEEL_E2E_SANITIZED 1
#endif
// ThreadSanitizer's runtime runs a background thread of its own in every process.
#if defined(KEEL_DEMO_TSAN)
constexpr int sanitizer_threads = 1;
#else
constexpr int sanitizer_threads = 0;
#endif

// Slow clients send a request head one byte every 2 s. Each holds only a coroutine,
// so the service keeps answering; at SIGTERM their connections are closed (none was
// admitted) and the process exits 0 within its budget.
void slow_clients(paths const& p, int n) {
    keel_demo::raise_file_limit();
    // The default head deadline (10 s from the accept) outlasts the test's 5 s of dribbling.
    servers s{p, {"--pre-stop-ms", "200", "--drain-ms", "3000"}};
    std::vector<std::unique_ptr<keel_demo::raw_connection>> clients;
    for (int i = 0; i < n; ++i) {
        clients.push_back(std::make_unique<keel_demo::raw_connection>(s.port));
    }
    check(std::all_of(clients.begin(), clients.end(), [](auto const& c) { return c->fd() >= 0; }),
          fmt::format("{} slow clients connected", n));
    std::string const head = "GET /api/work HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";
    std::atomic<bool> sending{true};
    std::thread dribble{[&] {
        for (std::size_t at = 0; sending.load(); ++at) {
            for (auto const& c : clients) {
                c->send(std::string_view{head}.substr(at % head.size(), 1));
            }
            for (int i = 0; i < 100 && sending.load(); ++i) {
                std::this_thread::sleep_for(20ms); // one byte every 2 s
            }
        }
    }};
    mono::duration worst{};
    int live = 0;
    auto const until_time = mono::now() + 4500ms; // two or three bytes from each client
    while (mono::now() < until_time) {
        auto const r = keel_demo::get(s.port, "/health/live", {}, 5s);
        live += r.status == 200 ? 1 : 0;
        worst = std::max(worst, r.latency);
        std::this_thread::sleep_for(200ms);
    }
    check(live > 10 && worst < 100ms,
          fmt::format("with {} slow clients /health/live answered {} times, slowest {:.1f} ms "
                      "(< 100 ms)",
                      n, live, keel_demo::ms(worst)));
    check(s.work().status == 200, "a normal request is served beside them");

    auto const sent = mono::now();
    s.service().signal(SIGTERM);
    auto const code = s.service().wait_exit(30s);
    auto const took = mono::now() - sent;
    sending = false;
    dribble.join();
    check(code == 0, fmt::format("SIGTERM: exit code {}", code ? std::to_string(*code) : "none"));
    check(took < 200ms + 3000ms,
          fmt::format("exited {:.2f} s after SIGTERM, within the 3.2 s budget",
                      std::chrono::duration<double>(took).count()));
    bool closed_all = false;
    while (auto const l = s.service().wait_line("event", 1s)) {
        if (l->find("phase=listener_closed") != std::string::npos) {
            closed_all = keel_demo::field(*l, "idle_closed") >= n;
            check(closed_all, fmt::format("the drain closed the slow connections: {}", *l));
            break;
        }
    }
    check(closed_all, "the drain reported closing the slow clients' connections");
}

void slow_client(paths const& p) {
    slow_clients(p, 1);
}
void slow_clients_40(paths const& p) {
    slow_clients(p, 40);
}

// A proxy that adds its own X-Forwarded-For line (HAProxy's option forwardfor) leaves
// the client's own line first: the service reads every line, so the client's choice
// of address does not get it a fresh bucket.
void duplicate_forwarded_for(paths const& p) {
    servers s{p, {"--rate", "1", "--burst", "2"}};
    int allowed = 0;
    int limited = 0;
    bool attributed = true;
    auto const start = mono::now();
    for (int i = 0; i < 20; ++i) {
        // The client's own line, then the trusted proxy's.
        httplib::Headers const headers{{"X-Forwarded-For", fmt::format("198.51.100.{}", i + 1)},
                                       {"X-Forwarded-For", "10.0.0.9"}};
        auto const r = s.work(headers);
        allowed += r.status == 200 ? 1 : 0;
        limited += r.status == 429 ? 1 : 0;
        attributed = attributed && r.header("X-Client-Address") == "10.0.0.9";
    }
    auto const elapsed = std::chrono::duration<double>(mono::now() - start).count();
    check(attributed, "every request is attributed to 10.0.0.9, the proxy's line");
    auto const most = 2 + static_cast<int>(elapsed) + 1;
    check(allowed <= most, fmt::format("{} of 20 allowed in {:.2f} s, at most {} (burst 2, 1/s)",
                                       allowed, elapsed, most));
    check(limited >= 20 - most, fmt::format("{} rate-limited (429)", limited));
    s.stop_cleanly();
}

// 90 MB of header lines in one request: refused with 431 after the first 8 KiB, and the
// service's memory stays small; so is a head with too many (small) header lines.
void header_flood(paths const& p) {
    servers s{p, {}};
    auto const rss_before = keel_demo::proc_status_kb(s.service().pid(), "VmRSS");
    int status = 0;
    std::size_t sent = 0;
    {
        keel_demo::raw_connection c{s.port};
        c.send("GET /api/work HTTP/1.1\r\nHost: 127.0.0.1\r\n");
        std::string line = "X-Padding: " + std::string(1000, 'a') + "\r\n";
        std::string chunk;
        for (int i = 0; i < 64; ++i) {
            chunk += line;
        }
        // Sends all of it, as an attacker would, reading whatever comes back in between
        // and ignoring the end of the answer; stops early only when the connection fails
        // (the service closes it a second after its answer).
        std::string in;
        char buffer[4096];
        bool answered = false;
        while (sent < 90u * 1000 * 1000) {
            pollfd fd{c.fd(), POLLIN, 0};
            if (!answered && ::poll(&fd, 1, 0) > 0) {
                auto const n = ::recv(c.fd(), buffer, sizeof buffer, 0);
                if (n > 0) {
                    in.append(buffer, static_cast<std::size_t>(n));
                } else {
                    answered = true; // the service's end of the answer: keep sending
                }
            }
            if (!c.send(chunk)) {
                break;
            }
            sent += chunk.size();
        }
        in += c.read_all(2s);
        status = keel_demo::status_of(in);
    }
    auto const hwm = keel_demo::proc_status_kb(s.service().pid(), "VmHWM");
    check(status == 431, fmt::format("a head of header lines is refused with 431 (got {}); "
                                     "{} kB sent in all",
                                     status, sent / 1000));
#if defined(KEEL_E2E_SANITIZED)
    check(hwm - rss_before < 64 * 1024,
          fmt::format("peak RSS grew {} kB (< 64 MB; sanitized build)", hwm - rss_before));
#else
    check(hwm > 0 && hwm < 64 * 1024,
          fmt::format("peak RSS {} kB < 64 MB (it was {} kB before)", hwm, rss_before));
#endif
    {
        keel_demo::raw_connection c{s.port};
        std::string head = "GET /api/work HTTP/1.1\r\nHost: 127.0.0.1\r\n";
        for (int i = 0; i < 150; ++i) {
            head += fmt::format("X-H{}: 1\r\n", i);
        }
        c.send(head + "\r\n");
        auto const answer = keel_demo::status_of(c.read_all(5s));
        check(answer == 431,
              fmt::format("151 header lines in {} bytes are refused with 431 (got {})", head.size(),
                          answer));
    }
    check(s.work().status == 200, "the next normal request is served");
    check(s.metric("keel_demo_http_refused_total{reason=\"header_bytes\"}") == 1 &&
              s.metric("keel_demo_http_refused_total{reason=\"header_count\"}") == 1,
          "/metrics counts one refusal for each bound");
    s.stop_cleanly();
}

// Keep-alive clients during the drain: from SIGTERM every answer carries
// Connection: close, so each client reconnects for its next request (until the
// listener closes) and none sends on a connection the server is closing: no reset.
void keep_alive_drain(paths const& p) {
    servers s{p, {"--pre-stop-ms", "1500", "--drain-ms", "5000"}};
    s.control("/control?delay_ms=50");
    std::atomic<bool> running{true};
    std::atomic<mono::rep> not_ready_at{0}; // when the test saw the drain begin
    std::atomic<int> served{0};
    std::atomic<int> served_after{0};
    std::atomic<int> kept_open_after{0};
    std::atomic<int> resets{0};
    std::vector<std::thread> clients;
    for (int i = 0; i < 8; ++i) {
        clients.emplace_back([&] {
            keel_demo::session connection{s.port};
            while (running.load()) {
                auto const started = mono::now().time_since_epoch().count();
                auto const r = connection.get("/api/work");
                auto const drain_began = not_ready_at.load();
                bool const after = drain_began != 0 && started > drain_began;
                if (r.status == 200) {
                    ++served;
                    if (after) {
                        ++served_after;
                        kept_open_after += r.header("Connection") != "close" ? 1 : 0;
                    }
                } else if (r.status == 503) {
                    return; // refused: the balancer would stop routing here
                } else if (r.status == 0 && r.error == "Connection") {
                    return; // never accepted: the listener is closed
                } else if (r.status == 0) {
                    ++resets; // sent, then the connection failed
                }
            }
        });
    }
    std::this_thread::sleep_for(1s);
    s.service().signal(SIGTERM);
    bool began = false;
    while (auto const l = s.service().wait_line("event", 5s)) {
        if (l->find("phase=not_ready") != std::string::npos) {
            began = true;
            break;
        }
    }
    not_ready_at = mono::now().time_since_epoch().count();
    check(began, "the service reported the drain's start");
    auto const code = s.service().wait_exit(30s);
    running = false;
    for (auto& t : clients) {
        t.join();
    }
    check(served_after.load() > 0,
          fmt::format("{} served in all, {} of them sent after the drain began", served.load(),
                      served_after.load()));
    check(kept_open_after.load() == 0,
          fmt::format("{} answers during the drain lacked Connection: close",
                      kept_open_after.load()));
    check(resets.load() == 0, fmt::format("{} requests got a reset", resets.load()));
    check(code == 0, fmt::format("exit code {}", code ? std::to_string(*code) : "none"));
}

// 2,000 requests at once against a downstream answering in 150 ms: the service, on
// two threads, has all of them in flight together and serves every one.
void concurrent_2000(paths const& p) {
    keel_demo::raise_file_limit();
    servers s{p,
              {"--threads", "2", "--max-in-flight", "4000", "--timeout-ms", "30000",
               "--request-timeout-ms", "120000"}};
    s.control("/control?delay_ms=150");
    auto const request = [](int) {
        return std::string{
            "GET /api/work HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"};
    };
    auto const start = mono::now();
    auto replies = keel_demo::concurrent_requests(s.port, 2000, request, 90s);
    auto const took = mono::now() - start;
    int ok = 0;
    std::vector<mono::duration> latencies;
    for (auto const& r : replies) {
        ok += r.status == 200 ? 1 : 0;
        latencies.push_back(r.latency);
    }
    auto const threads = keel_demo::thread_names(s.service().pid());
    int total = 0;
    for (auto const& [name, count] : threads) {
        total += count;
    }
    int const io = threads.contains("keel-io") ? threads.at("keel-io") : 0;
    auto const p50 = keel_demo::percentile(latencies, 50);
    auto const p99 = keel_demo::percentile(latencies, 99);
    fmt::print("  2000 concurrent requests in {:.2f} s: p50 {:.1f} ms, p99 {:.1f} ms, max {:.1f} "
               "ms\n",
               std::chrono::duration<double>(took).count(), keel_demo::ms(p50), keel_demo::ms(p99),
               keel_demo::ms(latencies.back()));
    check(ok == 2000, fmt::format("{} of 2000 served", ok));
    check(io == 2 && total <= io + 2 + sanitizer_threads,
          fmt::format("served by {} io threads ({} threads in the process: the io threads, main "
                      "waiting for SIGTERM, keel's signal waiter)",
                      io, total));
    // One request per thread at a time would need 2000 x 150 ms / 2 = 150 s; the bound
    // leaves room for sanitizers on a loaded machine.
    check(took < 60s, fmt::format("all answered within {:.2f} s (< 60 s; 150 s one at a time "
                                  "per thread)",
                                  std::chrono::duration<double>(took).count()));
    s.stop_cleanly();
}

// A downstream slower than the traffic (2 s a call): the bulkhead caps the calls in
// flight and the rest are shed at once (503 with Retry-After) instead of queueing.
void bulkhead_sheds(paths const& p) {
    keel_demo::raise_file_limit();
    servers s{p, {"--max-in-flight", "100", "--timeout-ms", "5000"}};
    s.control("/control?delay_ms=2000");
    auto const request = [](int) {
        return std::string{
            "GET /api/work HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"};
    };
    auto const replies = keel_demo::concurrent_requests(s.port, 400, request, 30s);
    int ok = 0;
    int shed = 0;
    mono::duration slowest_shed{};
    for (auto const& r : replies) {
        ok += r.status == 200 ? 1 : 0;
        if (r.status == 503 && r.text.find("downstream busy") != std::string::npos &&
            r.text.find("Retry-After") != std::string::npos) {
            ++shed;
            slowest_shed = std::max(slowest_shed, r.latency);
        }
    }
    check(ok >= 100 && ok + shed == 400,
          fmt::format("{} served, {} shed by the bulkhead (of 400, 100 slots)", ok, shed));
    check(shed > 0 && slowest_shed < 2000ms,
          fmt::format("shed answers came before one downstream call could end: slowest {:.1f} ms",
                      keel_demo::ms(slowest_shed)));
    check(s.metric("keel_demo_requests_total{outcome=\"bulkhead_full\"}") == shed,
          "/metrics counts every shed request");
    s.stop_cleanly();
}

// /metrics answers in the format the scrape's Accept header asks for: Prometheus
// text by default, OpenMetrics for Prometheus' own Accept header, which ends with
// exactly one `# EOF` after the service's families and the registry's.
void metrics_formats(paths const& p) {
    servers s{p, {}};
    check(s.work().status == 200, "one request served");
    auto const text = keel_demo::get(s.port, "/metrics");
    check(text.header("Content-Type") == "text/plain; version=0.0.4; charset=utf-8",
          "no Accept header: Prometheus text 0.0.4, got " + text.header("Content-Type"));
    check(text.body.find("# EOF") == std::string::npos, "Prometheus text has no # EOF");
    check(keel_demo::metric(text.body, "keel_demo_requests_total{outcome=\"ok\"}") == 1 &&
              keel_demo::metric(text.body, "keel_pipeline_attempts_total{name=\"downstream\"}") ==
                  1,
          "the service's own families and the registry's on one page");
    auto const om = keel_demo::get(
        s.port, "/metrics",
        {{"Accept", "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"}});
    check(om.header("Content-Type") == "application/openmetrics-text; version=1.0.0; charset=utf-8",
          "OpenMetrics asked for: OpenMetrics 1.0, got " + om.header("Content-Type"));
    auto const eof = om.body.find("# EOF");
    check(eof != std::string::npos && eof == om.body.rfind("# EOF") && om.body.ends_with("# EOF\n"),
          "an OpenMetrics page ends with one # EOF");
    check(om.body.find("keel_demo_requests_total{outcome=\"ok\"} 1\n") != std::string::npos &&
              om.body.find("# TYPE keel_demo_requests counter") != std::string::npos,
          "the service's counters in OpenMetrics: family without _total, samples with it");
    s.stop_cleanly();
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
        {"breaker_fail_fast", breaker_fail_fast},
        {"breaker_recovery", breaker_recovery},
        {"spoofed_forwarded_for", spoofed_forwarded_for},
        {"flood_vs_polite", flood_vs_polite},
        {"drain_under_load", drain_under_load},
        {"metrics_formats", metrics_formats},
        {"slow_client", slow_client},
        {"slow_clients_40", slow_clients_40},
        {"duplicate_forwarded_for", duplicate_forwarded_for},
        {"header_flood", header_flood},
        {"keep_alive_drain", keep_alive_drain},
        {"concurrent_2000", concurrent_2000},
        {"bulkhead_sheds", bulkhead_sheds},
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
