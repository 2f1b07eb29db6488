// SPDX-License-Identifier: MIT
#include <keel/sim/report.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <string>

using namespace std::chrono_literals;

namespace {

keel::sim::result small_run() {
    keel::sim::scenario s;
    s.name = "small";
    s.duration = 4s;
    s.downstream.phases = {keel::sim::phase{.start = 1s, .down = true},
                           keel::sim::phase{.start = 2s}};
    s.clients = {keel::sim::client_group{.rate = 200}};
    s.pipeline = {
        keel::sim::breaker_stage{{.minimum_calls = 5, .reset_timeout = 500ms, .reset_jitter = 0s}},
        keel::sim::timeout_stage{100ms}};
    return keel::sim::run(s);
}

} // namespace

TEST_CASE("sim::format_summary: one figure a line, then the transitions", "[sim]") {
    auto const r = small_run();
    std::string const text = keel::sim::format_summary(r, 2);
    CHECK(text.rfind("== small ==\nduration 4.000 s, interval 1.000 s, outage 1.000 s to 2.000 s",
                     0) == 0);
    CHECK(text.find("\nrequests                  " + std::to_string(r.totals.requests) + "\n") !=
          std::string::npos);
    CHECK(text.find("closed -> open (failure_rate_exceeded)") != std::string::npos);
    REQUIRE(r.transitions.size() > 2);
    CHECK(text.find("  ... and " + std::to_string(r.transitions.size() - 2) + " more\n") !=
          std::string::npos);
}

TEST_CASE("sim::format_comparison: one column per run under its name", "[sim]") {
    auto a = small_run();
    auto b = small_run();
    b.name = "other";
    std::string const text = keel::sim::format_comparison({a, b});
    CHECK(text.rfind("                          small", 0) == 0);
    CHECK(text.find("other") != std::string::npos);
    auto const row = text.find("\nrequests");
    REQUIRE(row != std::string::npos);
    auto const line = text.substr(row + 1, text.find('\n', row + 1) - row - 1);
    auto const n = std::to_string(a.totals.requests);
    CHECK(line.find(n) != line.rfind(n)); // the same figure twice
    CHECK(keel::sim::format_comparison({}).empty());
}

TEST_CASE("sim::format_series: a header and a row per interval", "[sim]") {
    auto const r = small_run();
    std::string const text = keel::sim::format_series(r);
    std::size_t lines = 0;
    for (char c : text) {
        lines += c == '\n' ? 1 : 0;
    }
    CHECK(lines == r.series.size() + 1);
}

TEST_CASE("sim::to_chart: outcomes stacked, load and capacity as lines, the breaker as a band",
          "[sim]") {
    auto const r = small_run();
    auto const c = keel::sim::to_chart(r);
    CHECK(c.title == "small");
    REQUIRE(!c.bars.empty());
    CHECK(c.bars.front().name == "succeeded");
    CHECK(c.bars.front().values.size() == r.series.size());
    CHECK(c.lines.size() >= 2);
    REQUIRE(c.bands.size() == 1);
    CHECK(c.bands.front().spans.size() == r.transitions.size() + 1);
    CHECK(c.markers.size() == 2);
}
