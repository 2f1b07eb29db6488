// SPDX-License-Identifier: MIT
#include <keel/sim/scenario.hpp>

#include <catch2/catch.hpp>

#include <chrono>

using namespace std::chrono_literals;

TEST_CASE("sim::validate: the default scenario is valid", "[sim]") {
    CHECK_NOTHROW(keel::sim::validate(keel::sim::scenario{}));
}

TEST_CASE("sim::validate: names the field out of range", "[sim]") {
    keel::sim::scenario s;
    s.duration = 0s;
    CHECK_THROWS_WITH(keel::sim::validate(s), "keel::sim::scenario: duration must be > 0, got 0s");
    s = {};
    s.downstream.servers = 0;
    CHECK_THROWS_WITH(keel::sim::validate(s),
                      "keel::sim::scenario: downstream.servers must be >= 1, got 0");
    s = {};
    s.downstream.phases = {keel::sim::phase{.failure_probability = 1.5}};
    CHECK_THROWS_WITH(keel::sim::validate(s),
                      Catch::Contains("failure_probability must be in [0, 1]"));
    s = {};
    s.downstream.phases = {keel::sim::phase{.instances = {3}}};
    CHECK_THROWS_WITH(keel::sim::validate(s),
                      Catch::Contains("instances[] must be an instance index"));
    s = {};
    s.clients.clear();
    CHECK_THROWS_WITH(keel::sim::validate(s), Catch::Contains("at least one group"));
    s = {};
    s.clients[0].rate = -1;
    CHECK_THROWS_WITH(keel::sim::validate(s),
                      Catch::Contains("clients[].rate must be in [0, 1e9]"));
    s = {};
    s.probes = keel::sim::probe_model{};
    s.probes->probe.period = 0s;
    CHECK_THROWS_WITH(keel::sim::validate(s), Catch::Contains("keel::ops::probe_config: period"));
    s = {};
    s.interval = 1ns;
    CHECK_THROWS_WITH(keel::sim::validate(s), Catch::Contains("interval must be at least"));
}
