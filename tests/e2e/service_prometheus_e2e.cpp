// SPDX-License-Identifier: MIT
// End-to-end test of the demo service's /metrics against a real Prometheus
// server: starts keel_downstream and keel_service, drives requests through the
// service (a client within its limit, one far over it, then calls to a failing
// downstream until the breaker opens and rejects), counting from the answers
// alone the retries (X-Attempts), the rate-limit refusals (429) and the
// breaker's state (503 "circuit open"). Then a `prometheus` process on a free
// loopback port scrapes the service every second; after two successful scrapes
// its HTTP API must return those counts, and so must the service's own /metrics.
// Usage: keel_e2e_service_prometheus <keel_service> <keel_downstream> <prometheus> <work dir>
// A plain program: prints what it checks, exits non-zero on the first failure.
#include "child_process.hpp"
#include "harness.hpp"
#include "prometheus_server.hpp"
#include "test_program.hpp"

#include <fmt/format.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

using namespace std::chrono_literals;

namespace {

using keel_test::fail;

// Checks that Prometheus stored `expected` for `series` and that the service's
// own page says the same.
void expect(keel_test::prometheus_server& prometheus, std::string const& page,
            std::string const& series, double expected) {
    prometheus.expect(series, expected);
    auto const own = keel_demo::metric(page, series);
    if (own != expected) {
        fail(series + " on the service's /metrics is " + std::to_string(own) + ", expected " +
             std::to_string(expected));
    }
    std::printf("ok: %s = %g\n", series.c_str(), expected);
}

} // namespace

int run(int argc, char** argv) {
    if (argc != 5) {
        std::fprintf(stderr, "usage: %s <keel_service> <keel_downstream> <prometheus> <work dir>\n",
                     argv[0]);
        return 2;
    }
    std::filesystem::path const work = argv[4];
    std::filesystem::remove_all(work);
    std::filesystem::create_directories(work);
    auto const started = std::chrono::steady_clock::now();

    keel_demo::child_process downstream{{argv[2]}, "downstream"};
    auto const down_ready = downstream.wait_line("listening", 30s);
    if (!down_ready) {
        fail("keel_downstream did not start");
    }
    auto const control_port = static_cast<int>(keel_demo::field(*down_ready, "control"));
    // A breaker that opens after 4 calls at 50 % failures and stays open for the
    // whole test; 3 attempts per call; 3 requests of burst per client, 1 a second.
    keel_demo::child_process service{{argv[1],
                                      "--downstream-port",
                                      std::to_string(keel_demo::field(*down_ready, "data")),
                                      "--window",
                                      "4",
                                      "--min-calls",
                                      "4",
                                      "--failure-rate",
                                      "50",
                                      "--open-ms",
                                      "600000",
                                      "--attempts",
                                      "3",
                                      "--timeout-ms",
                                      "500",
                                      "--rate",
                                      "1",
                                      "--burst",
                                      "3",
                                      "--pre-stop-ms",
                                      "0"},
                                     "service"};
    auto const listening = service.wait_line("listening", 30s);
    if (!listening) {
        fail("keel_service did not start");
    }
    auto const port = static_cast<int>(keel_demo::field(*listening, "port"));

    // The service's counts, from its answers only.
    long long retries = 0;
    long long refused = 0;
    long long circuit_open = 0;
    auto const send = [&](std::string const& client) {
        auto const r = keel_demo::get(port, "/api/work", {{"X-Forwarded-For", client}}, 10s);
        if (r.status == 0) {
            fail("no answer from the service");
        }
        auto const attempts = std::atoll(r.header("X-Attempts").c_str());
        retries += attempts > 1 ? attempts - 1 : 0;
        refused += r.status == 429 ? 1 : 0;
        circuit_open += r.status == 503 && r.body == "circuit open\n" ? 1 : 0;
        return r;
    };
    for (int i = 0; i < 2; ++i) {
        if (send("10.0.0.1").status != 200) {
            fail("a polite client is served while the downstream is healthy");
        }
    }
    for (int i = 0; i < 12; ++i) {
        (void)send("10.0.0.2"); // a flooder: 3 served, most of the rest refused
    }
    if (refused < 5) {
        fail(fmt::format("the flooder was refused {} times, expected most of 12", refused));
    }
    // The downstream fails every call: each is retried, and the breaker opens once half
    // of its last 4 calls failed (the flooder's served calls are among them).
    if (keel_demo::get(control_port, "/control?fail=1").status != 200) {
        fail("the downstream's control port refused fail=1");
    }
    for (int i = 0; i < 8; ++i) {
        (void)send(fmt::format("10.0.1.{}", i)); // each client within its limit
    }
    if (retries < 2 || circuit_open < 1) {
        fail(fmt::format("{} retries and {} calls rejected by the breaker: expected the "
                         "failing calls retried and the breaker open",
                         retries, circuit_open));
    }
    std::printf("driven: %lld retries, %lld refusals, %lld rejected by the open breaker\n", retries,
                refused, circuit_open);

    keel_test::prometheus_server prometheus{argv[3], work, "keel_demo", port};
    // Two scrapes, both parsed (Prometheus asks for OpenMetrics first: `up` is 1 only
    // when its parser took the page, `# EOF` included).
    prometheus.wait_for_two_scrapes();
    std::printf("ok: two successful scrapes\n");

    auto const page = keel_demo::get(port, "/metrics").body;
    expect(prometheus, page, R"(keel_circuit_breaker_state{name="downstream",state="open"})", 1);
    expect(prometheus, page, R"(keel_circuit_breaker_state{name="downstream",state="closed"})", 0);
    expect(prometheus, page, R"(keel_pipeline_retries_total{name="downstream"})",
           static_cast<double>(retries));
    expect(prometheus, page,
           R"(keel_rate_limiter_decisions_total{name="per_client",decision="refused"})",
           static_cast<double>(refused));
    expect(prometheus, page,
           R"(keel_pipeline_calls_total{name="downstream",outcome="circuit_open"})",
           static_cast<double>(circuit_open));
    expect(prometheus, page, R"(keel_demo_requests_total{outcome="rate_limited"})",
           static_cast<double>(refused));

    prometheus.signal(SIGTERM);
    service.signal(SIGTERM);
    auto const service_exit = service.wait_exit(10s);
    if (!service_exit || *service_exit != 0) {
        fail("keel_service did not drain and exit 0");
    }
    downstream.signal(SIGTERM);
    (void)downstream.wait_exit(10s);
    (void)prometheus.wait_exit(10s);
    std::printf("ok: %.1f s in all\n",
                std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
    return 0;
}

int main(int argc, char** argv) {
    return keel_test::run_test_program(run, argc, argv);
}
