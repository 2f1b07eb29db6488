// SPDX-License-Identifier: MIT
// The shipped scenarios (tools/keel-sim/scenarios) against their golden summaries,
// and the scenario file reader. KEEL_SIM_UPDATE_GOLDEN=1 rewrites the golden files
// (review the diff: a changed figure is a changed behaviour).
#include "scenario_file.hpp"

#include <keel/sim/report.hpp>

#include <catch2/catch.hpp>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>

namespace {

std::string read(std::string const& path) {
    std::ifstream in{path, std::ios::binary};
    return {std::istreambuf_iterator<char>{in}, {}};
}

// Runs variant `index` of scenario `name` and compares its summary with the golden file.
keel::sim::result check_golden(std::string const& name, std::size_t index) {
    auto const file =
        keel_sim::load_scenario(std::string{KEEL_SIM_SCENARIOS} + "/" + name + ".json");
    REQUIRE(index < file.variants.size());
    auto const result = keel::sim::run(file.variants[index]);
    std::string const summary = keel::sim::format_summary(result);
    std::string const path =
        std::string{KEEL_SIM_GOLDEN} + "/" + name + "." + std::to_string(index + 1) + ".txt";
    if (char const* update = std::getenv("KEEL_SIM_UPDATE_GOLDEN"); update && *update == '1') {
        std::ofstream{path, std::ios::binary} << summary;
    }
    INFO("golden file " << path);
    CHECK(summary == read(path));
    return result;
}

} // namespace

TEST_CASE("scenario article_probe, worst case: about 300,000 calls fail in the 30 s before the "
          "probe removes the pod",
          "[sim][golden]") {
    auto const r = check_golden("article_probe", 0);
    REQUIRE(r.totals.removal);
    CHECK(*r.totals.removal == std::chrono::seconds{30});
    CHECK(r.totals.failed_before_removal > 295'000);
    CHECK(r.totals.failed_before_removal < 305'000);
}

TEST_CASE("scenario article_probe, best case: 20 s and about 200,000", "[sim][golden]") {
    auto const r = check_golden("article_probe", 1);
    REQUIRE(r.totals.removal);
    CHECK(*r.totals.removal == std::chrono::seconds{20});
    CHECK(r.totals.failed_before_removal > 195'000);
    CHECK(r.totals.failed_before_removal < 205'000);
}

TEST_CASE("scenario article_probe, hung pod: 31 s, the last probe waiting out its timeout",
          "[sim][golden]") {
    auto const r = check_golden("article_probe", 2);
    REQUIRE(r.totals.removal);
    CHECK(*r.totals.removal == std::chrono::seconds{31});
}

TEST_CASE("scenario article_probe, keel breaker: opens after a few dozen failures",
          "[sim][golden]") {
    auto const r = check_golden("article_probe", 3);
    REQUIRE(r.totals.detection);
    CHECK(*r.totals.detection < std::chrono::milliseconds{10});
    CHECK(r.totals.failed_before_open < 100);
}

TEST_CASE("scenario retry_amplification: 1 + N with N retries, N^L with L layers, 1.2x with a "
          "20 % budget",
          "[sim][golden]") {
    CHECK(check_golden("retry_amplification", 0).totals.amplification == 1.0);
    CHECK(check_golden("retry_amplification", 1).totals.amplification == Approx(4.0).margin(0.01));
    CHECK(check_golden("retry_amplification", 2).totals.amplification <= 1.2 + 1e-3);
    CHECK(check_golden("retry_amplification", 3).totals.amplification == Approx(9.0).margin(0.01));
    CHECK(check_golden("retry_amplification", 4).totals.amplification <= 1.2 * 1.2 + 1e-3);
}

TEST_CASE("scenario retry_storm, without and with naive retries: the failure outlives the spike",
          "[sim][golden]") {
    auto const none = check_golden("retry_storm", 0);
    auto const naive = check_golden("retry_storm", 1);
    REQUIRE(none.totals.recovery);
    CHECK(naive.totals.goodput_after < 0.05 * none.totals.goodput_after);
    CHECK(!naive.totals.recovery);
}

TEST_CASE("scenario retry_storm, with the budget and the breaker: recovers within 5 s",
          "[sim][golden]") {
    auto const budget = check_golden("retry_storm", 2);
    auto const both = check_golden("retry_storm", 3);
    REQUIRE(budget.totals.recovery);
    REQUIRE(both.totals.recovery);
    CHECK(*both.totals.recovery <= std::chrono::seconds{5});
    CHECK(both.totals.amplification < 1.0);
}

TEST_CASE("scenario thundering_herd: reset jitter spreads the probes", "[sim][golden]") {
    auto const none = check_golden("thundering_herd", 0);
    auto const some = check_golden("thundering_herd", 1);
    auto const wide = check_golden("thundering_herd", 2);
    CHECK(none.totals.peak_probe_rate > 1.5 * some.totals.peak_probe_rate);
    CHECK(some.totals.peak_probe_rate > 2 * wide.totals.peak_probe_rate);
}

TEST_CASE("keel_sim::parse_scenario: names the key at fault", "[sim]") {
    CHECK_THROWS_WITH(keel_sim::parse_scenario("{"), Catch::StartsWith("keel-sim: JSON: "));
    CHECK_THROWS_WITH(keel_sim::parse_scenario(R"({"name": "x", "duraton": "1s"})"),
                      "keel-sim: scenario: unknown key \"duraton\"");
    CHECK_THROWS_WITH(keel_sim::parse_scenario(R"({"name": "x", "duration": "1 fortnight"})"),
                      Catch::Contains("unknown unit"));
    CHECK_THROWS_WITH(
        keel_sim::parse_scenario(
            R"({"name": "x", "variants": [{"name": "a", "pipeline": [{"retry": {"max_attempts": 1.5}}]}]})"),
        "keel-sim: variants[0].pipeline[0].retry.max_attempts: must be an integer");
    CHECK_THROWS_WITH(keel_sim::parse_scenario(R"({"name": "x", "pipeline": [{"hedge": {}}]})"),
                      Catch::Contains("unknown policy \"hedge\""));
    CHECK_THROWS_WITH(keel_sim::parse_scenario(R"({"name": "x", "probes": {"period": "1.5s"}})"),
                      Catch::Contains("whole seconds"));
    CHECK_THROWS_WITH(keel_sim::parse_scenario(R"({"name": "x", "duration": -1})"),
                      "keel::sim::scenario: duration must be > 0, got -1s");
}

TEST_CASE("keel_sim::parse_scenario: reads durations, policies and variants", "[sim]") {
    auto const file = keel_sim::parse_scenario(R"({
        "name": "t", "duration": "1.5s", "interval": 0.25,
        "downstream": {"instances": 2, "balancing": "round_robin",
                       "phases": [{"start": "250ms", "down": true, "mode": "hung"}]},
        "pipeline": [{"breaker": {"minimum_calls": 5, "reset_jitter": "0s"}},
                     {"retry": {"max_attempts": 4, "jitter": {"proportional": 0.2},
                                "backoff": {"kind": "linear", "base": "10ms", "step": "5ms"},
                                "budget": {"retry_ratio": 0.1}}},
                     {"timeout": "90ms"},
                     {"rate_limit": {"rate": 50, "burst": 5, "max_wait": "20ms"}},
                     {"bulkhead": {"max_concurrent_calls": 4, "max_queued_calls": 8,
                                   "max_wait": "3ms"}}],
        "variants": [{"name": "a"}, {"name": "b", "pipeline": [], "seed": 9}]})");
    REQUIRE(file.variants.size() == 2);
    auto const& a = file.variants[0];
    CHECK(a.name == "t: a");
    CHECK(a.duration == std::chrono::milliseconds{1500});
    CHECK(a.interval == std::chrono::milliseconds{250});
    CHECK(a.downstream.balancing == keel::sim::routing::round_robin);
    CHECK(a.downstream.phases.at(0).mode == keel::sim::down_mode::hung);
    REQUIRE(a.pipeline.size() == 5);
    CHECK(std::get<keel::sim::breaker_stage>(a.pipeline[0]).options.minimum_calls == 5);
    auto const& r = std::get<keel::sim::retry_stage>(a.pipeline[1]);
    CHECK(r.max_attempts == 4);
    CHECK(r.jitter == keel::jitter::proportional(0.2));
    CHECK(std::get<keel::linear>(r.backoff).step == std::chrono::milliseconds{5});
    CHECK(r.budget->retry_ratio == 0.1);
    CHECK(std::get<keel::sim::timeout_stage>(a.pipeline[2]).duration ==
          std::chrono::milliseconds{90});
    auto const& l = std::get<keel::sim::rate_limit_stage>(a.pipeline[3]);
    CHECK(l.bucket.rate == 50);
    CHECK(l.bucket.burst == 5);
    CHECK(l.max_wait == std::chrono::milliseconds{20});
    auto const& h = std::get<keel::sim::bulkhead_stage>(a.pipeline[4]);
    CHECK(h.max_concurrent_calls == 4);
    CHECK(h.max_queued_calls == 8);
    CHECK(h.max_wait == std::chrono::milliseconds{3});
    CHECK(file.variants[1].pipeline.empty());
    CHECK(file.variants[1].seed == 9);
}
