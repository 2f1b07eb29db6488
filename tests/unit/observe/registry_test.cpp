// SPDX-License-Identifier: MIT
#include <keel/observe/registry.hpp>

#include <keel/limiter/fixed_window.hpp>
#include <keel/limiter/gcra.hpp>
#include <keel/limiter/keyed.hpp>
#include <keel/limiter/sliding_counter.hpp>
#include <keel/limiter/sliding_log.hpp>
#include <keel/limiter/token_bucket.hpp>
#include <keel/ops/drain.hpp>
#include <keel/ops/health.hpp>
#include <keel/policy/bulkhead.hpp>
#include <keel/policy/circuit_breaker.hpp>
#include <keel/policy/retry_budget.hpp>
#include <keel/testing/manual_clock.hpp>
#include <keel/testing/virtual_sleeper.hpp>

#include "golden.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using keel::observe::component_kind;
using keel::observe::exposition_format;

namespace {

using breaker_type = keel::basic_circuit_breaker<keel::manual_clock>;

// 2025-12-01T00:00:00Z: every registration is stamped with it, so pages are reproducible.
keel::observe::registry_options fixed_time() {
    return {.wall_clock = [] { return std::chrono::system_clock::time_point{1764547200s}; }};
}

keel::circuit_breaker_options small_breaker() {
    return {.failure_rate_threshold = 50,
            .window_size = 4,
            .minimum_calls = 4,
            .reset_timeout = 10s,
            .max_reset_timeout = 40s,
            .reset_jitter = 0s,
            .permitted_calls_in_half_open = 2};
}

void record(breaker_type& b, int successes, int failures) {
    for (int i = 0; i < successes; ++i) {
        if (auto p = b.try_acquire()) {
            p.success();
        }
    }
    for (int i = 0; i < failures; ++i) {
        if (auto p = b.try_acquire()) {
            p.failure();
        }
    }
}

void check_both(std::string const& name, keel::observe::registry const& r) {
    keel_test::check_golden(name, exposition_format::prometheus,
                            r.render(exposition_format::prometheus));
    keel_test::check_golden(name, exposition_format::openmetrics,
                            r.render(exposition_format::openmetrics));
}

} // namespace

TEST_CASE("registry: renders a circuit breaker in each state", "[registry]") {
    keel::manual_clock clock;
    breaker_type breaker{small_breaker(), clock};
    keel::observe::registry r{fixed_time()};
    r.add("users", breaker, {{"dependency", "users"}});

    SECTION("closed, with an empty window") {
        check_both("breaker_closed", r);
    }
    SECTION("closed, with calls in the window") {
        record(breaker, 2, 1);
        check_both("breaker_closed_calls", r);
    }
    SECTION("open, rejecting, 4 s into a 10 s reset timeout") {
        record(breaker, 2, 2);
        REQUIRE(breaker.state() == keel::circuit_state::open);
        clock.advance(6s);
        CHECK_FALSE(breaker.try_acquire());
        check_both("breaker_open", r);
    }
    SECTION("half-open, after the reset timeout") {
        record(breaker, 2, 2);
        clock.advance(10s);
        auto probe = breaker.try_acquire();
        REQUIRE(breaker.state() == keel::circuit_state::half_open);
        probe.success();
        check_both("breaker_half_open", r);
    }
    SECTION("forced open") {
        breaker.force_open();
        CHECK_FALSE(breaker.try_acquire());
        check_both("breaker_forced_open", r);
    }
    SECTION("disabled") {
        breaker.disable();
        record(breaker, 1, 3);
        check_both("breaker_disabled", r);
    }
}

TEST_CASE("registry: renders local limiters and a keyed table with their decisions", "[registry]") {
    keel::manual_clock clock;
    keel::basic_token_bucket<keel::manual_clock> bucket{{.rate = 10, .period = 1s, .burst = 3},
                                                        clock};
    keel::basic_sliding_log<keel::manual_clock> log{{.limit = 2, .window = 1s}, clock};
    keel::keyed<keel::basic_fixed_window<keel::manual_clock>, std::string> per_client{
        {.limit = 2, .window = 1s}, {.max_keys = 64, .shards = 4}, clock};
    keel::observe::registry r{fixed_time()};
    r.add("api", bucket);
    r.add("strict", log);
    r.add("per_client", per_client, {{"route", "/api/work"}});

    SECTION("fresh") {
        check_both("limiters_fresh", r);
    }
    SECTION("after allowed, refused and unsatisfiable requests") {
        for (int i = 0; i < 4; ++i) {
            (void)bucket.try_acquire();
            (void)log.try_acquire();
            (void)per_client.try_acquire("10.0.0.1");
        }
        (void)bucket.try_acquire(5);
        (void)log.try_acquire(3);
        (void)per_client.try_acquire("10.0.0.2", 3);
        (void)per_client.try_acquire("10.0.0.3");
        (void)bucket.try_acquire(0); // a peek: not counted
        check_both("limiters_used", r);
    }
}

TEST_CASE("registry: renders bulkheads, retry budgets and pipelines", "[registry]") {
    keel::manual_clock clock;
    keel::bulkhead pool{{.max_concurrent_calls = 3}};
    keel::basic_retry_budget<keel::manual_clock> budget{
        {.retry_ratio = 0.5, .min_retries_per_second = 0, .ttl = 10s}, clock};
    keel::observe::pipeline_counters calls;
    keel::observe::registry r{fixed_time()};
    r.add("db", pool);
    r.add("users", budget);
    r.add("users", calls, {{"dependency", "users"}});

    SECTION("idle") {
        check_both("bulkhead_budget_pipeline_idle", r);
    }
    SECTION("busy") {
        REQUIRE(pool.try_acquire());
        REQUIRE(pool.try_acquire());
        REQUIRE(pool.try_acquire());
        CHECK_FALSE(pool.try_acquire()); // full: counted as rejected
        CHECK(pool.acquire() == keel::errc::bulkhead_full);
        pool.release();
        budget.deposit();
        budget.deposit();
        CHECK(budget.try_withdraw());
        CHECK_FALSE(budget.try_withdraw());
        for (int i = 0; i < 3; ++i) {
            calls.record_attempt();
        }
        calls.record_retry(150ms);
        calls.record_retry(250ms);
        calls.record(keel::observe::call_outcome::success);
        calls.record(keel::make_error_code(keel::errc::circuit_open));
        calls.record(std::make_error_code(std::errc::connection_refused));
        check_both("bulkhead_budget_pipeline_busy", r);
        pool.release();
        pool.release();
    }
}

TEST_CASE("registry: renders the drain coordinator and the health registry", "[registry]") {
    keel::manual_clock clock;
    keel::virtual_sleeper sleeper{clock};
    keel::ops::basic_drain_coordinator<keel::manual_clock, keel::virtual_sleeper> drain{
        {.pre_stop_delay = 1s}, clock, sleeper};
    keel::ops::basic_health_registry<keel::manual_clock> health{{}, clock};
    health.add_check({.name = "db"}, [] { return keel::ops::check_result::pass(); });
    keel::observe::registry r{fixed_time()};
    r.add("service", drain);
    r.add("service", health);

    SECTION("starting") {
        check_both("ops_starting", r);
    }
    SECTION("serving") {
        health.mark_started();
        auto a = drain.try_enter();
        auto b = drain.try_enter();
        b.release();
        check_both("ops_serving", r);
    }
    SECTION("drained") {
        health.mark_started();
        drain.attach(health, "draining");
        (void)drain.try_enter();
        (void)drain.shutdown();
        health.mark_broken("stalled");
        check_both("ops_drained", r);
    }
}

TEST_CASE("registry: escapes label values and help text in both formats", "[registry]") {
    keel::manual_clock clock;
    keel::observe::pipeline_counters calls;
    keel::observe::registry r{fixed_time()};
    r.add("quote\" backslash\\ newline\n end", calls, {{"path", "C:\\tmp\n\"x\""}});
    auto const page = r.render(exposition_format::prometheus);
    CHECK(page.find(R"(name="quote\" backslash\\ newline\n end",path="C:\\tmp\n\"x\"")") !=
          std::string::npos);
    check_both("escaping", r);
}

TEST_CASE("registry: an empty registry renders an empty page, with # EOF in OpenMetrics",
          "[registry]") {
    keel::observe::registry r;
    CHECK(r.render(exposition_format::prometheus).empty());
    CHECK(r.render(exposition_format::openmetrics) == "# EOF\n");
    CHECK(r.size() == 0);
}

TEST_CASE("registry::add rejects a name already registered for the same kind", "[registry]") {
    keel::circuit_breaker a;
    keel::circuit_breaker b;
    keel::token_bucket limiter{{.rate = 10}};
    keel::observe::registry r;
    r.add("users", a);
    CHECK_THROWS_WITH(r.add("users", b), "keel::observe::registry: a circuit_breaker is already "
                                         "registered as \"users\"");
    // Another kind may use the name: its series are other families.
    r.add("users", limiter);
    CHECK(r.size() == 2);
    CHECK(r.contains(component_kind::circuit_breaker, "users"));
    CHECK(r.contains(component_kind::rate_limiter, "users"));
    // The rejected registration left the page as it was: one breaker.
    auto const page = r.render(exposition_format::prometheus);
    CHECK(page.find("keel_circuit_breaker_state{name=\"users\",state=\"closed\"} 1\n") !=
          std::string::npos);
}

TEST_CASE("registry::add rejects invalid, reserved and repeated label names", "[registry]") {
    keel::observe::pipeline_counters calls;
    keel::observe::registry r;
    CHECK_THROWS_WITH(r.add("x", calls, {{"1abc", "v"}}),
                      "keel::observe::registry: label name must be [a-zA-Z_][a-zA-Z0-9_]* not "
                      "starting with __, got \"1abc\"");
    CHECK_THROWS_AS(r.add("x", calls, {{"__meta", "v"}}), std::invalid_argument);
    CHECK_THROWS_AS(r.add("x", calls, {{"a-b", "v"}}), std::invalid_argument);
    CHECK_THROWS_AS(r.add("x", calls, {{"", "v"}}), std::invalid_argument);
    CHECK_THROWS_AS(r.add("x", calls, {{"name", "v"}}), std::invalid_argument);
    CHECK_THROWS_AS(r.add("x", calls, {{"outcome", "v"}}), std::invalid_argument);
    CHECK_THROWS_WITH(r.add("x", calls, {{"zone", "a"}, {"zone", "b"}}),
                      "keel::observe::registry: label \"zone\" is given twice for \"x\"");
    CHECK(r.size() == 0);
    r.add("x", calls, {{"zone", "a"}, {"_private", "b"}, {"Zone2", "c"}});
    CHECK(r.size() == 1);
}

TEST_CASE("registry::remove drops a registration and frees its name", "[registry]") {
    keel::observe::pipeline_counters first;
    keel::observe::pipeline_counters second;
    keel::observe::registry r;
    r.add("users", first);
    CHECK_FALSE(r.remove(component_kind::pipeline, "orders"));
    CHECK_FALSE(r.remove(component_kind::circuit_breaker, "users"));
    CHECK(r.remove(component_kind::pipeline, "users"));
    CHECK_FALSE(r.contains(component_kind::pipeline, "users"));
    CHECK(r.render(exposition_format::prometheus).empty());
    second.record_attempt();
    r.add("users", second);
    CHECK(r.render(exposition_format::prometheus)
              .find("keel_pipeline_attempts_total{name=\"users\"} 1") != std::string::npos);
}

TEST_CASE("registry: a breaker re-registered counts transitions from its new registration",
          "[registry]") {
    keel::manual_clock clock;
    breaker_type breaker{small_breaker(), clock};
    keel::observe::registry r{fixed_time()};
    r.add("users", breaker);
    breaker.force_open();
    CHECK(r.remove(component_kind::circuit_breaker, "users"));
    r.add("users", breaker);
    breaker.reset();
    auto const page = r.render(exposition_format::prometheus);
    CHECK(page.find(
              "keel_circuit_breaker_transitions_total{name=\"users\",to=\"forced_open\"} 0\n") !=
          std::string::npos);
    CHECK(page.find("keel_circuit_breaker_transitions_total{name=\"users\",to=\"closed\"} 1\n") !=
          std::string::npos);
}

TEST_CASE("registry::render_to appends to the caller's string", "[registry]") {
    keel::observe::pipeline_counters calls;
    keel::observe::registry r;
    r.add("users", calls);
    std::string out = "# a service's own families\n";
    r.render_to(out, exposition_format::prometheus);
    CHECK(out.starts_with("# a service's own families\n# HELP keel_pipeline_calls_total "));
}

TEST_CASE("registry: renders while components are used and registrations change",
          "[registry][concurrency]") {
    keel::circuit_breaker breaker{{.minimum_calls = 1000}};
    keel::token_bucket bucket{{.rate = 1000000, .burst = 1000000}};
    keel::observe::registry r;
    r.add("users", breaker);
    r.add("api", bucket);
    std::atomic<bool> stop{false};
    std::vector<std::thread> threads;
    threads.emplace_back([&] {
        for (int i = 0; i < 1000 || !stop.load(); ++i) {
            if (auto p = breaker.try_acquire()) {
                p.success();
            }
            (void)bucket.try_acquire();
        }
    });
    threads.emplace_back([&] {
        for (int i = 0; i < 200; ++i) {
            keel::observe::pipeline_counters local;
            r.add("short_lived", local);
            local.record_attempt();
            CHECK(r.remove(component_kind::pipeline, "short_lived"));
        }
    });
    std::size_t pages = 0;
    for (int i = 0; i < 300; ++i) {
        auto const page =
            r.render(i % 2 == 0 ? exposition_format::prometheus : exposition_format::openmetrics);
        pages += page.empty() ? 0U : 1U;
    }
    threads[1].join();
    stop = true;
    threads[0].join();
    CHECK(pages == 300);
    CHECK(bucket.decisions().allowed >= 1000);
}
