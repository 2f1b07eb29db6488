// SPDX-License-Identifier: MIT
// End-to-end test of keel::observe against a real Prometheus server: starts
// keel_example_observe --serve (which runs its scenario and prints its own
// counts), then a `prometheus` process on a free loopback port scraping it every
// second, waits for two scrapes, and asks Prometheus' HTTP API for the breaker
// state, the retries and the rate-limit refusals, checking them against the
// counts the example printed and serves at /counts. Prometheus 2.x asks for
// OpenMetrics first, so this also proves a real OpenMetrics parser takes the
// page (`up` is 1 only when the scrape parsed); /counts says which format it got.
// Usage: keel_e2e_observe <keel_example_observe> <prometheus> <work dir>
// A plain program: prints what it checks, exits non-zero on the first failure.
#include "child_process.hpp"
#include "prometheus_server.hpp"
#include "test_program.hpp"

#include <httplib.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <map>
#include <sstream>
#include <string>

using namespace std::chrono_literals;

namespace {

using keel_test::fail;

// Parses "key=value key=value ..." (the example's counts line).
std::map<std::string, std::string> fields(std::string const& line) {
    std::map<std::string, std::string> out;
    std::istringstream in{line};
    std::string word;
    while (in >> word) {
        auto const eq = word.find('=');
        if (eq != std::string::npos) {
            out[word.substr(0, eq)] = word.substr(eq + 1);
        }
    }
    return out;
}

// Checks that Prometheus stored `expected` for `series`.
void expect(keel_test::prometheus_server& prometheus, std::string const& series, double expected) {
    prometheus.expect(series, expected);
    std::printf("ok: %s = %g\n", series.c_str(), expected);
}

} // namespace

int run(int argc, char** argv) {
    if (argc != 4) {
        std::fprintf(stderr, "usage: %s <keel_example_observe> <prometheus> <work dir>\n", argv[0]);
        return 2;
    }
    std::filesystem::path const work = argv[3];
    std::filesystem::remove_all(work);
    std::filesystem::create_directories(work);
    auto const started = std::chrono::steady_clock::now();

    keel_test::child_process example{{argv[1], "--serve"}, (work / "example.err").string()};
    auto const ready = example.wait_line("ready ", 20s);
    if (!ready) {
        fail("keel_example_observe did not get ready (see " + (work / "example.err").string() +
             ")");
    }
    auto const own = fields(*ready);
    std::printf("example: %s\n", ready->c_str());
    int const example_port = std::stoi(own.at("port"));

    keel_test::prometheus_server prometheus{argv[2], work, "keel", example_port};
    // Two scrapes of the target, both successful: up is 1 only when a scrape parsed.
    prometheus.wait_for_two_scrapes();
    std::printf("ok: two successful scrapes\n");

    // The values Prometheus stored, against what the example counted itself.
    if (own.at("breaker") != "open") {
        fail("the example's breaker is " + own.at("breaker") + ", expected open");
    }
    expect(prometheus, R"(keel_circuit_breaker_state{name="inventory",state="open"})", 1);
    expect(prometheus, R"(keel_circuit_breaker_state{name="inventory",state="closed"})", 0);
    expect(prometheus, R"(keel_pipeline_retries_total{name="inventory"})",
           std::stod(own.at("retries")));
    expect(prometheus, R"(keel_rate_limiter_decisions_total{name="per_client",decision="refused"})",
           std::stod(own.at("refused")));
    expect(prometheus, R"(keel_pipeline_calls_total{name="inventory",outcome="circuit_open"})",
           std::stod(own.at("circuit_open")));

    // The example's counts now: unchanged by the scrapes, and the scrapes were OpenMetrics.
    httplib::Client service{"127.0.0.1", example_port};
    auto const counts = service.Get("/counts");
    if (!counts || counts->status != 200) {
        fail("GET /counts failed");
    }
    auto const now = fields(counts->body);
    for (char const* key : {"retries", "refused", "circuit_open", "breaker"}) {
        if (now.at(key) != own.at(key)) {
            fail(std::string{"/counts "} + key + " is " + now.at(key) + ", was " + own.at(key));
        }
    }
    if (std::stoi(now.at("openmetrics_scrapes")) < 2) {
        fail("Prometheus' scrapes were not answered in OpenMetrics: " + counts->body);
    }
    std::printf("ok: %s scrapes answered in OpenMetrics\n", now.at("openmetrics_scrapes").c_str());

    prometheus.signal(SIGTERM);
    example.signal(SIGTERM);
    auto const example_exit = example.wait_exit(10s);
    if (!example_exit || *example_exit != 0) {
        fail("keel_example_observe did not drain and exit 0");
    }
    if (!example.wait_line("event=drain_phase name=service phase=flush", 1s)) {
        fail("the example logged no drain_phase event for flush");
    }
    (void)prometheus.wait_exit(10s);
    std::printf("ok: drained; %.1f s in all\n",
                std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
    return 0;
}

int main(int argc, char** argv) {
    return keel_test::run_test_program(run, argc, argv);
}
