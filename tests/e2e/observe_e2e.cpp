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

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <thread>

using namespace std::chrono_literals;

namespace {

[[noreturn]] void fail(std::string const& what) {
    std::fprintf(stderr, "FAILED: %s\n", what.c_str());
    std::exit(1);
}

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

// Runs an instant query; returns the value of its single sample, or nullopt when
// the result is empty.
std::optional<double> query(httplib::Client& prometheus, std::string const& promql) {
    auto const r =
        prometheus.Get("/api/v1/query", httplib::Params{{"query", promql}}, httplib::Headers{});
    if (!r || r->status != 200) {
        fail("query " + promql + ": HTTP " + (r ? std::to_string(r->status) : "error"));
    }
    auto const body = nlohmann::json::parse(r->body);
    if (body.at("status") != "success") {
        fail("query " + promql + ": " + r->body);
    }
    auto const& result = body.at("data").at("result");
    if (result.empty()) {
        return std::nullopt;
    }
    if (result.size() != 1) {
        fail("query " + promql + " has " + std::to_string(result.size()) + " series: " + r->body);
    }
    return std::stod(result[0].at("value")[1].get<std::string>());
}

void expect(httplib::Client& prometheus, std::string const& promql, double expected) {
    auto const value = query(prometheus, promql);
    if (!value || *value != expected) {
        fail(promql + " is " + (value ? std::to_string(*value) : "absent") + ", expected " +
             std::to_string(expected));
    }
    std::printf("ok: %s = %g\n", promql.c_str(), expected);
}

} // namespace

int main(int argc, char** argv) {
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

    int const prometheus_port = keel_test::free_loopback_port();
    {
        std::ofstream config{work / "prometheus.yml"};
        config << "global:\n"
                  "  scrape_interval: 1s\n"
                  "  scrape_timeout: 1s\n"
                  "scrape_configs:\n"
                  "  - job_name: keel\n"
                  "    static_configs:\n"
                  "      - targets: ['127.0.0.1:"
               << example_port << "']\n";
    }
    keel_test::child_process prometheus{
        {argv[2], "--config.file=" + (work / "prometheus.yml").string(),
         "--storage.tsdb.path=" + (work / "data").string(),
         "--web.listen-address=127.0.0.1:" + std::to_string(prometheus_port), "--log.level=warn"},
        (work / "prometheus.log").string()};

    httplib::Client api{"127.0.0.1", prometheus_port};
    api.set_connection_timeout(1s);
    api.set_read_timeout(5s);
    bool up = false;
    for (int i = 0; i < 200 && !up; ++i) {
        auto const r = api.Get("/-/ready");
        up = r && r->status == 200;
        if (!up) {
            std::this_thread::sleep_for(50ms);
        }
    }
    if (!up) {
        fail("prometheus did not get ready (see " + (work / "prometheus.log").string() + ")");
    }

    // Two scrapes of the target, both successful: up is 1 only when a scrape parsed.
    bool scraped = false;
    for (int i = 0; i < 150 && !scraped; ++i) {
        auto const n = query(api, "count_over_time(up{job=\"keel\"}[1m])");
        auto const ok = query(api, "min_over_time(up{job=\"keel\"}[1m])");
        scraped = n && *n >= 2 && ok && *ok == 1;
        if (!scraped) {
            std::this_thread::sleep_for(100ms);
        }
    }
    if (!scraped) {
        fail("prometheus did not scrape the example twice successfully (see " +
             (work / "prometheus.log").string() + ")");
    }
    std::printf("ok: two successful scrapes\n");

    // The values Prometheus stored, against what the example counted itself.
    if (own.at("breaker") != "open") {
        fail("the example's breaker is " + own.at("breaker") + ", expected open");
    }
    expect(api, R"(keel_circuit_breaker_state{name="inventory",state="open"})", 1);
    expect(api, R"(keel_circuit_breaker_state{name="inventory",state="closed"})", 0);
    expect(api, R"(keel_pipeline_retries_total{name="inventory"})", std::stod(own.at("retries")));
    expect(api, R"(keel_rate_limiter_decisions_total{name="per_client",decision="refused"})",
           std::stod(own.at("refused")));
    expect(api, R"(keel_pipeline_calls_total{name="inventory",outcome="circuit_open"})",
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
