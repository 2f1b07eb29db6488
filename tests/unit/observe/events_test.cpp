// SPDX-License-Identifier: MIT
#include <keel/observe/events.hpp>

#include <keel/core/context.hpp>
#include <keel/ops/drain.hpp>
#include <keel/ops/health.hpp>
#include <keel/policy/circuit_breaker.hpp>
#include <keel/policy/retry.hpp>
#include <keel/resilient.hpp>
#include <keel/testing/manual_clock.hpp>
#include <keel/testing/scripted_random.hpp>
#include <keel/testing/virtual_sleeper.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using keel::observe::component_kind;

namespace {

// Records every event as one line of text.
struct recorder final : keel::observe::event_listener {
    std::mutex mutex;
    std::vector<std::string> lines;

    void add(std::string line) {
        std::lock_guard lock{mutex};
        lines.push_back(std::move(line));
    }
    void on_state_change(keel::observe::state_change_event const& e) override {
        add("state " + std::string{keel::observe::to_string(e.kind)} + " " +
            std::string{e.component} + " " + std::string{e.from} + "->" + std::string{e.to} + " " +
            std::string{e.reason});
    }
    void on_retry(keel::observe::retry_attempt_event const& e) override {
        add("retry " + std::string{e.component} + " attempt=" + std::to_string(e.attempt) +
            " delay_ms=" + std::to_string(e.delay / 1ms) + " what=" + std::string{e.what});
    }
    void on_rejection(keel::observe::rejection_event const& e) override {
        add("reject " + std::string{keel::observe::to_string(e.kind)} + " " +
            std::string{e.component} + " " + e.why.message() +
            (e.retry_after ? " retry_after_ms=" + std::to_string(*e.retry_after / 1ms) : ""));
    }
    void on_drain_phase(keel::observe::drain_phase_event const& e) override {
        add("drain " + std::string{e.component} + " " + std::string{e.phase} +
            (e.timed_out ? " timed_out" : ""));
    }
};

struct thrower final : keel::observe::event_listener {
    void on_state_change(keel::observe::state_change_event const&) override {
        throw std::runtime_error("listener failed");
    }
};

struct upstream_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

} // namespace

TEST_CASE("event_hub::watch publishes a breaker's transitions", "[events]") {
    keel::manual_clock clock;
    keel::basic_circuit_breaker<keel::manual_clock> breaker{{.window_size = 2,
                                                             .minimum_calls = 2,
                                                             .reset_timeout = 5s,
                                                             .reset_jitter = 0s,
                                                             .permitted_calls_in_half_open = 1},
                                                            clock};
    auto log = std::make_shared<recorder>();
    keel::observe::event_hub hub;
    hub.subscribe(std::make_shared<thrower>()); // its exception is ignored
    hub.subscribe(log);
    hub.watch("users", breaker);
    for (int i = 0; i < 2; ++i) {
        breaker.try_acquire().failure();
    }
    clock.advance(5s);
    breaker.try_acquire().success();
    CHECK(log->lines == std::vector<std::string>{
                            "state circuit_breaker users closed->open failure_rate_exceeded",
                            "state circuit_breaker users open->half_open reset_timeout_elapsed",
                            "state circuit_breaker users half_open->closed probes_succeeded"});
}

TEST_CASE("event_hub: hooks it installed stay safe after the hub is gone", "[events]") {
    keel::circuit_breaker breaker;
    auto log = std::make_shared<recorder>();
    {
        keel::observe::event_hub hub;
        hub.subscribe(log);
        hub.watch("users", breaker);
    }
    breaker.force_open();
    CHECK(log->lines ==
          std::vector<std::string>{"state circuit_breaker users closed->forced_open manual"});
}

TEST_CASE("event_hub::retry_listener publishes each retry with its attempt, delay and cause",
          "[events]") {
    keel::manual_clock clock;
    keel::virtual_sleeper sleeper{clock};
    auto log = std::make_shared<recorder>();
    keel::observe::event_hub hub;
    hub.subscribe(log);
    int calls = 0;
    auto guarded = keel::resilient{
        [&](keel::basic_context<keel::manual_clock> const&) -> int {
            if (++calls < 3) {
                throw upstream_error("HTTP 503");
            }
            return calls;
        },
        keel::retry{
            keel::basic_retry_options<keel::manual_clock>{.max_attempts = 3,
                                                          .backoff = keel::constant{100ms},
                                                          .jitter = keel::jitter::none,
                                                          .on_retry = hub.retry_listener("users")},
            keel::on_failure{}, clock, sleeper, keel::scripted_random::from_units({0.5})}};
    auto const result = guarded.try_call();
    REQUIRE(result.has_value());
    CHECK(log->lines ==
          std::vector<std::string>{"retry users attempt=1 delay_ms=100 what=HTTP 503",
                                   "retry users attempt=2 delay_ms=100 what=HTTP 503"});
}

TEST_CASE("event_hub::report publishes keel's rejections and nothing else", "[events]") {
    auto log = std::make_shared<recorder>();
    keel::observe::event_hub hub;
    hub.subscribe(log);
    CHECK(
        hub.report("users", keel::outcome<int>{keel::failure::from(keel::errc::circuit_open, 2s)}));
    CHECK(hub.report("api", keel::make_error_code(keel::errc::rate_limited)));
    CHECK(hub.report("db", keel::outcome<void>{keel::failure::from(keel::errc::bulkhead_full)}));
    CHECK_FALSE(hub.report("users", keel::outcome<int>{7}));
    CHECK_FALSE(hub.report("users", keel::make_error_code(keel::errc::timeout)));
    CHECK_FALSE(hub.report("users", std::make_error_code(std::errc::connection_refused)));
    CHECK(log->lines ==
          std::vector<std::string>{
              "reject circuit_breaker users circuit breaker is open retry_after_ms=2000",
              "reject rate_limiter api rate limit exceeded",
              "reject bulkhead db bulkhead is full"});
}

TEST_CASE("event_hub::watch_drain publishes each drain phase as it ends", "[events]") {
    keel::manual_clock clock;
    keel::virtual_sleeper sleeper{clock};
    keel::ops::basic_drain_coordinator<keel::manual_clock, keel::virtual_sleeper> drain{
        {.pre_stop_delay = 1s}, clock, sleeper};
    auto log = std::make_shared<recorder>();
    keel::observe::event_hub hub;
    hub.subscribe(log);
    hub.watch_drain("service", drain);
    auto const report = drain.shutdown();
    CHECK(report.clean());
    CHECK(log->lines ==
          std::vector<std::string>{"drain service mark_not_ready", "drain service stop_accepting",
                                   "drain service drain_in_flight", "drain service close_resources",
                                   "drain service flush"});
}

TEST_CASE("event_hub::watch_health publishes the health registry's flag changes", "[events]") {
    keel::manual_clock clock;
    keel::ops::basic_health_registry<keel::manual_clock> health{{}, clock};
    auto log = std::make_shared<recorder>();
    keel::observe::event_hub hub;
    hub.subscribe(log);
    hub.watch_health("service", health);
    health.mark_started();
    health.mark_started(); // no change: no event
    health.set_not_ready("draining");
    health.mark_broken("stalled");
    health.clear_broken();
    health.clear_not_ready();
    health.clear_not_ready(); // no change
    CHECK(log->lines == std::vector<std::string>{"state health service starting->started ",
                                                 "state health service ready->not_ready draining",
                                                 "state health service live->broken stalled",
                                                 "state health service broken->live ",
                                                 "state health service not_ready->ready "});
}
