// SPDX-License-Identifier: MIT
#include <keel/ops/health.hpp>
#include <keel/testing/manual_clock.hpp>
#include <keel/testing/virtual_sleeper.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <latch>
#include <memory>
#include <semaphore>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using keel::ops::check_kind;
using keel::ops::check_result;
using keel::ops::health_status;

namespace {

using registry = keel::ops::basic_health_registry<keel::manual_clock>;
using virtual_registry =
    keel::ops::basic_health_registry<keel::manual_clock, keel::virtual_sleeper>;

// Maps manual time to wall time since the Unix epoch, so report times are exact.
keel::ops::health_registry_options<keel::manual_clock> manual_options() {
    return {.wall_time = [](keel::manual_clock::time_point t) {
        return std::chrono::system_clock::time_point{
            std::chrono::duration_cast<std::chrono::system_clock::duration>(t.time_since_epoch())};
    }};
}

// Waits (really, 1 ms at a time, at most 5 s) for another thread to make `done` true.
template <class Predicate>
bool eventually(Predicate done) {
    for (int i = 0; i < 5000; ++i) {
        if (done()) {
            return true;
        }
        std::this_thread::sleep_for(1ms);
    }
    return done();
}

std::chrono::system_clock::duration since_epoch(std::chrono::system_clock::time_point t) {
    return t.time_since_epoch();
}

// A check that blocks until the test releases it; shared so a thread left running past
// the test still owns what it waits on.
struct gate {
    std::latch open{1};
    std::atomic<int> calls{0};
    std::atomic<bool> saw_stop{false};
};

} // namespace

TEST_CASE("health_registry liveness passes until marked broken and ignores checks", "[health]") {
    keel::manual_clock clock;
    registry health{manual_options(), clock};
    std::atomic<int> calls{0};
    health.add_check({.name = "db"}, [&] {
        ++calls;
        return false;
    });

    auto live = health.liveness();
    CHECK(live.probe == keel::ops::probe_kind::liveness);
    CHECK(live.status == health_status::pass);
    CHECK(live.http_status() == 200);
    CHECK(live.checks.empty());
    CHECK(live.output.empty());

    health.mark_broken("event loop stalled for 12s");
    live = health.liveness();
    CHECK(live.status == health_status::fail);
    CHECK(live.http_status() == 503);
    CHECK(live.output == "broken: event loop stalled for 12s");
    CHECK(health.broken_reason() == "event loop stalled for 12s");

    health.clear_broken();
    CHECK(health.liveness().status == health_status::pass);
    CHECK_FALSE(health.broken_reason());
    CHECK(calls == 0);
}

TEST_CASE("health_registry startup fails until mark_started", "[health]") {
    keel::manual_clock clock;
    registry health{manual_options(), clock};
    CHECK_FALSE(health.started());
    auto report = health.startup();
    CHECK(report.probe == keel::ops::probe_kind::startup);
    CHECK(report.status == health_status::fail);
    CHECK(report.output == "starting");
    CHECK(report.http_status() == 503);
    health.mark_started();
    CHECK(health.started());
    CHECK(health.startup().status == health_status::pass);
    CHECK(health.startup().http_status() == 200);
}

TEST_CASE("health_registry readiness fails before start and while not ready", "[health]") {
    keel::manual_clock clock;
    registry health{manual_options(), clock};
    auto report = health.readiness();
    CHECK(report.status == health_status::fail);
    CHECK(report.output == "starting");

    health.mark_started();
    CHECK(health.readiness().status == health_status::pass);
    CHECK(health.readiness().http_status() == 200);

    health.set_not_ready("warming up");
    CHECK(health.not_ready_reason() == "warming up");
    report = health.readiness();
    CHECK(report.status == health_status::fail);
    CHECK(report.output == "warming up");
    CHECK(report.http_status() == 503);
    CHECK(health.liveness().status == health_status::pass); // liveness is not readiness

    health.set_not_ready("draining");
    CHECK(health.readiness().output == "draining");
    health.clear_not_ready();
    CHECK_FALSE(health.not_ready_reason());
    CHECK(health.readiness().status == health_status::pass);
    health.clear_not_ready(); // no-op
    CHECK(health.readiness().status == health_status::pass);

    health.mark_broken("deadlock");
    health.set_not_ready("draining");
    CHECK(health.readiness().output == "broken: deadlock; draining");
}

TEST_CASE("health_registry readiness reports check results with key and componentType",
          "[health]") {
    keel::manual_clock clock{keel::manual_clock::time_point{100s}};
    registry health{manual_options(), clock};
    health.add_check(
        {.name = "postgres", .measurement = "responseTime", .kind = check_kind::database},
        [] { return check_result::pass(12.5, "ms"); });
    health.add_check({.name = "billing",
                      .kind = check_kind::downstream,
                      .component_type = "https://example.com/billing"},
                     [] { return true; });
    health.mark_started();
    CHECK(health.check_count() == 2);

    auto const report = health.readiness();
    CHECK(report.status == health_status::pass);
    CHECK(report.output.empty());
    REQUIRE(report.checks.size() == 2);
    auto const& pg = report.checks[0];
    CHECK(pg.key == "postgres:responseTime");
    CHECK(pg.name == "postgres");
    CHECK(pg.measurement == "responseTime");
    CHECK(pg.component_type == "datastore");
    CHECK(pg.critical);
    CHECK(pg.status == health_status::pass);
    CHECK(pg.observed_value == 12.5);
    CHECK(pg.observed_unit == "ms");
    CHECK(since_epoch(pg.time) == 100s);
    CHECK(since_epoch(pg.last_change) == 100s);
    CHECK(pg.consecutive_failures == 0);
    CHECK_FALSE(pg.cached);
    CHECK(report.checks[1].key == "billing");
    CHECK(report.checks[1].component_type == "https://example.com/billing");
}

TEST_CASE("component_type maps check kinds to the draft's names", "[health]") {
    STATIC_REQUIRE(keel::ops::component_type(check_kind::component) == "component");
    STATIC_REQUIRE(keel::ops::component_type(check_kind::datastore) == "datastore");
    STATIC_REQUIRE(keel::ops::component_type(check_kind::system) == "system");
    STATIC_REQUIRE(keel::ops::component_type(check_kind::database) == "datastore");
    STATIC_REQUIRE(keel::ops::component_type(check_kind::cache) == "datastore");
    STATIC_REQUIRE(keel::ops::component_type(check_kind::downstream) == "component");
}

TEST_CASE("health_registry caches results for the ttl so bursts run a check once", "[health]") {
    keel::manual_clock clock;
    registry health{manual_options(), clock};
    std::atomic<int> calls{0};
    health.add_check({.name = "redis", .kind = check_kind::cache, .ttl = 2s}, [&] {
        ++calls;
        return check_result::pass(calls.load(), "calls");
    });
    health.mark_started();

    auto first = health.readiness();
    CHECK(calls == 1);
    CHECK_FALSE(first.checks[0].cached);
    for (int i = 0; i < 5; ++i) {
        auto const again = health.readiness();
        CHECK(again.checks[0].cached);
        CHECK(again.checks[0].observed_value == 1.0);
    }
    clock.advance(1999ms);
    CHECK(health.readiness().checks[0].cached);
    CHECK(calls == 1);

    clock.advance(1ms); // exactly ttl after the read: stale
    auto const later = health.readiness();
    CHECK(calls == 2);
    CHECK_FALSE(later.checks[0].cached);
    CHECK(later.checks[0].observed_value == 2.0);
    CHECK(since_epoch(later.checks[0].time) == 2s);
    CHECK(since_epoch(later.checks[0].last_change) == 0s); // still pass: no change
}

TEST_CASE("health_registry with ttl 0 runs the check on every probe", "[health]") {
    keel::manual_clock clock;
    registry health{manual_options(), clock};
    std::atomic<int> calls{0};
    health.add_check({.name = "disk", .ttl = 0s}, [&] {
        ++calls;
        return true;
    });
    health.mark_started();
    for (int i = 0; i < 3; ++i) {
        CHECK_FALSE(health.readiness().checks[0].cached);
    }
    CHECK(calls == 3);
}

TEST_CASE("health_registry fails readiness on a failing critical check and warns on a "
          "non-critical one",
          "[health]") {
    keel::manual_clock clock;
    registry health{manual_options(), clock};
    std::atomic<bool> db_up{true};
    std::atomic<bool> cache_up{true};
    health.add_check({.name = "db", .ttl = 0s}, [&] {
        return db_up ? check_result::pass() : check_result::fail("connection refused");
    });
    health.add_check({.name = "cache", .ttl = 0s, .critical = false}, [&] {
        return cache_up ? check_result::pass() : check_result::fail("timeout talking to redis");
    });
    health.mark_started();

    CHECK(health.readiness().status == health_status::pass);

    cache_up = false;
    auto report = health.readiness();
    CHECK(report.status == health_status::warn);
    CHECK(report.http_status() == 200);
    CHECK(report.ok());
    CHECK(report.output == "cache: timeout talking to redis");
    CHECK(report.checks[1].status == health_status::fail);
    CHECK_FALSE(report.checks[1].critical);

    db_up = false;
    report = health.readiness();
    CHECK(report.status == health_status::fail);
    CHECK(report.http_status() == 503);
    CHECK_FALSE(report.ok());
    CHECK(report.output == "db: connection refused"); // warnings are not listed under fail

    cache_up = true;
    db_up = true;
    CHECK(health.readiness().status == health_status::pass);
}

TEST_CASE("health_registry treats a warning check as warn whatever its criticality", "[health]") {
    keel::manual_clock clock;
    registry health{manual_options(), clock};
    health.add_check({.name = "pool", .measurement = "utilization"}, [] {
        auto r = check_result::warn("pool 92% used");
        r.observed_value = 92;
        r.observed_unit = "percent";
        return r;
    });
    health.mark_started();
    auto const report = health.readiness();
    CHECK(report.status == health_status::warn);
    CHECK(report.output == "pool:utilization: pool 92% used");
    CHECK(report.checks[0].consecutive_failures == 0);
}

TEST_CASE("health_registry counts a throwing check as failed and keeps the message", "[health]") {
    keel::manual_clock clock;
    registry health{manual_options(), clock};
    health.add_check({.name = "db", .ttl = 0s},
                     []() -> check_result { throw std::runtime_error("auth failed for \"svc\""); });
    health.add_check({.name = "odd", .ttl = 0s, .critical = false},
                     []() -> check_result { throw 42; });
    health.mark_started();
    auto const report = health.readiness();
    CHECK(report.status == health_status::fail);
    CHECK(report.checks[0].status == health_status::fail);
    CHECK(report.checks[0].output == "auth failed for \"svc\"");
    CHECK(report.checks[1].output == "check threw an exception of unknown type");
    CHECK(report.output == "db: auth failed for \"svc\"");
}

TEST_CASE("health_registry tracks transitions and consecutive failures", "[health]") {
    keel::manual_clock clock;
    registry health{manual_options(), clock};
    std::atomic<int> mode{0}; // 0 pass, 1 fail, 2 warn
    health.add_check({.name = "db", .ttl = 1s}, [&] {
        switch (mode.load()) {
        case 1: return check_result::fail("down");
        case 2: return check_result::warn("slow");
        default: return check_result::pass();
        }
    });
    health.mark_started();

    auto check = [&] { return health.readiness().checks.at(0); };
    auto c = check(); // t = 0
    CHECK(c.status == health_status::pass);
    CHECK(since_epoch(c.last_change) == 0s);

    mode = 1;
    clock.advance(5s);
    c = check();
    CHECK(c.status == health_status::fail);
    CHECK(c.consecutive_failures == 1);
    CHECK(since_epoch(c.last_change) == 5s);
    CHECK(since_epoch(c.time) == 5s);

    clock.advance(500ms); // cached: no new result, count unchanged
    c = check();
    CHECK(c.cached);
    CHECK(c.consecutive_failures == 1);

    clock.advance(500ms);
    c = check();
    CHECK(c.consecutive_failures == 2);
    CHECK(since_epoch(c.last_change) == 5s); // still failing since 5s
    CHECK(since_epoch(c.time) == 6s);

    clock.advance(1s);
    c = check();
    CHECK(c.consecutive_failures == 3);

    mode = 2;
    clock.advance(1s);
    c = check();
    CHECK(c.status == health_status::warn);
    CHECK(c.consecutive_failures == 0); // warn is not a failure
    CHECK(since_epoch(c.last_change) == 8s);

    mode = 0;
    clock.advance(1s);
    c = check();
    CHECK(c.status == health_status::pass);
    CHECK(since_epoch(c.last_change) == 9s);
}

TEST_CASE("health_registry gives a check's stop token and a bool result", "[health]") {
    keel::manual_clock clock;
    registry health{manual_options(), clock};
    health.add_check({.name = "token"},
                     [](std::stop_token token) { return !token.stop_requested(); });
    health.add_check({.name = "no"}, [] { return false; });
    health.mark_started();
    auto const report = health.readiness();
    CHECK(report.checks[0].status == health_status::pass);
    CHECK(report.checks[1].status == health_status::fail);
    CHECK(report.checks[1].output == "check returned false");
}

TEST_CASE("health_registry times out a hanging check in virtual time and does not restart it",
          "[health]") {
    keel::manual_clock clock;
    virtual_registry health{manual_options(), clock, keel::virtual_sleeper{clock}};
    auto g = std::make_shared<gate>();
    health.add_check({.name = "db", .timeout = 250ms, .ttl = 1s}, [g](std::stop_token token) {
        ++g->calls;
        g->open.wait();
        if (token.stop_requested()) {
            g->saw_stop = true;
        }
        return check_result::pass();
    });
    health.mark_started();

    // No real waiting: the virtual sleeper advances the manual clock to the deadline.
    auto report = health.readiness();
    CHECK(clock.now().time_since_epoch() == 250ms);
    CHECK(report.status == health_status::fail);
    CHECK(report.output == "db: timed out after 250ms");
    CHECK(report.checks[0].consecutive_failures == 1);
    CHECK(since_epoch(report.checks[0].time) == 250ms);

    // Within the ttl the timeout is served from the cache.
    report = health.readiness();
    CHECK(report.checks[0].cached);
    CHECK(clock.now().time_since_epoch() == 250ms);

    // Past the ttl the run still hangs: it is not started again.
    clock.advance(1s);
    report = health.readiness();
    CHECK(report.status == health_status::fail);
    CHECK(report.checks[0].output == "previous run still running after timing out; not restarted");
    CHECK(report.checks[0].consecutive_failures == 2);
    CHECK(eventually([&] { return g->calls == 1; })); // its thread may start late
    CHECK(g->calls == 1);

    // Released, the late result is discarded, and a probe past the ttl after the worker
    // has finished runs the check again.
    g->open.count_down();
    for (int spin = 0; spin < 5000 && g->calls < 2; ++spin) {
        clock.advance(1s);
        report = health.readiness();
        if (g->calls < 2) {
            std::this_thread::sleep_for(1ms); // the worker had not yet cleared its run
        }
    }
    CHECK(g->calls == 2);
    CHECK(g->saw_stop); // the hanging run's token had fired at its timeout
}

TEST_CASE("health_registry does not let a hanging check block the probe or other checks",
          "[health]") {
    keel::manual_clock clock;
    registry health{manual_options(), clock}; // real sleeper: waits a few real ms
    auto g = std::make_shared<gate>();
    health.add_check({.name = "stuck", .timeout = 3ms}, [g] {
        ++g->calls;
        g->open.wait();
        return true;
    });
    health.add_check({.name = "fine"}, [] { return check_result::pass(1, "ms"); });
    health.mark_started();

    auto const started = std::chrono::steady_clock::now();
    auto const report = health.readiness();
    auto const took = std::chrono::steady_clock::now() - started;
    g->open.count_down();

    CHECK(took >= 3ms);
    CHECK(took < 5s);
    CHECK(report.status == health_status::fail);
    CHECK(report.checks[0].status == health_status::fail);
    CHECK(report.checks[0].output == "timed out after 3ms");
    CHECK(report.checks[1].status == health_status::pass);
    CHECK(report.output == "stuck: timed out after 3ms");
}

TEST_CASE("health_registry bounds a probe by its budget", "[health]") {
    keel::manual_clock clock;
    auto options = manual_options();
    options.budget = 100ms;
    virtual_registry health{options, clock, keel::virtual_sleeper{clock}};
    auto g = std::make_shared<gate>();
    health.add_check({.name = "slow", .timeout = 800ms}, [g] {
        g->open.wait();
        return true;
    });
    health.mark_started();
    auto const report = health.readiness();
    g->open.count_down();
    CHECK(clock.now().time_since_epoch() == 100ms);
    CHECK(report.checks[0].output == "did not finish within the probe budget of 100ms");
}

TEST_CASE("health_registry can be destroyed while a check hangs", "[health]") {
    auto g = std::make_shared<gate>();
    {
        keel::manual_clock clock;
        registry health{manual_options(), clock};
        health.add_check({.name = "stuck", .timeout = 2ms}, [g](std::stop_token token) {
            ++g->calls;
            g->open.wait();
            if (token.stop_requested()) {
                g->saw_stop = true;
            }
            return true;
        });
        health.mark_started();
        CHECK(health.readiness().status == health_status::fail);
    }
    // The registry is gone; the worker still owns its state and finishes cleanly.
    g->open.count_down();
    CHECK(eventually([&] { return g->saw_stop.load(); }));
}

TEST_CASE("health_registry rejects bad options with the field and range", "[health]") {
    keel::manual_clock clock;
    auto bad = manual_options();
    bad.budget = 0ms;
    CHECK_THROWS_WITH(registry(bad, clock),
                      "keel::ops::health_registry: budget must be > 0, got 0s");

    registry health{manual_options(), clock};
    auto ok = [] { return true; };
    CHECK_THROWS_WITH(health.add_check({.name = ""}, ok),
                      "keel::ops::health_registry: name must be non-empty and free of ':', "
                      "got \"\"");
    CHECK_THROWS_WITH(health.add_check({.name = "a:b"}, ok),
                      "keel::ops::health_registry: name must be non-empty and free of ':', "
                      "got \"a:b\"");
    CHECK_THROWS_WITH(health.add_check({.name = "a", .measurement = "x:y"}, ok),
                      "keel::ops::health_registry: measurement must be free of ':', got \"x:y\"");
    CHECK_THROWS_WITH(health.add_check({.name = "a", .timeout = 0ms}, ok),
                      "keel::ops::health_registry: timeout must be > 0, got 0s");
    CHECK_THROWS_WITH(health.add_check({.name = "a", .ttl = -1ms}, ok),
                      "keel::ops::health_registry: ttl must be >= 0, got -1ms");
    health.add_check({.name = "a", .measurement = "m"}, ok);
    health.add_check({.name = "a"}, ok); // a different key
    CHECK_THROWS_WITH(health.add_check({.name = "a", .measurement = "m"}, ok),
                      "keel::ops::health_registry: check key must be unique, \"a:m\" is already "
                      "registered");
    CHECK(health.check_count() == 2);
}

TEST_CASE("health_registry on steady_clock maps report times to wall time", "[health]") {
    keel::ops::health_registry health;
    health.add_check({.name = "x"}, [] { return true; });
    health.mark_started();
    auto const before = std::chrono::system_clock::now();
    auto const report = health.readiness();
    auto const after = std::chrono::system_clock::now();
    REQUIRE(report.checks.size() == 1);
    // The offset is measured once at construction; allow for clock drift since then.
    CHECK(report.checks[0].time >= before - 1s);
    CHECK(report.checks[0].time <= after + 1s);
}

TEST_CASE("health_registry serves concurrent probes with one run of each check",
          "[health][concurrency]") {
    keel::manual_clock clock;
    registry health{manual_options(), clock};
    std::atomic<int> calls{0};
    auto g = std::make_shared<gate>();
    health.add_check({.name = "db", .timeout = 5s, .ttl = 10s}, [&calls, g] {
        ++calls;
        g->open.wait(); // hold the run so every probe joins it
        return check_result::pass(7, "ms");
    });
    health.mark_started();

    constexpr int threads = 8;
    std::atomic<int> passed{0};
    std::latch ready{threads + 1};
    std::vector<std::thread> probes;
    for (int i = 0; i < threads; ++i) {
        probes.emplace_back([&] {
            ready.arrive_and_wait();
            for (int round = 0; round < 20; ++round) {
                auto const report = health.readiness();
                if (report.status == health_status::pass &&
                    report.checks[0].observed_value == 7.0) {
                    ++passed;
                }
                health.set_not_ready("flip");
                health.clear_not_ready();
            }
        });
    }
    ready.arrive_and_wait();
    std::this_thread::sleep_for(2ms); // let probes block on the shared run
    g->open.count_down();
    for (auto& t : probes) {
        t.join();
    }
    CHECK(calls == 1);
    // A probe may land between set_not_ready and clear_not_ready of another thread, so
    // not every report passes; every one saw the single run's value though.
    CHECK(passed > 0);
    auto const report = health.readiness();
    CHECK(report.status == health_status::pass);
    CHECK(report.checks[0].observed_value == 7.0);
    CHECK(calls == 1);
}

// "Forever" is nanoseconds::max(): deadlines saturate instead of wrapping into the past. The
// clock starts at 100 s so that start + max() would overflow.

TEST_CASE("health_registry with a check timeout of nanoseconds::max() waits for a healthy check",
          "[health]") {
    keel::manual_clock clock{keel::manual_clock::time_point{100s}};
    registry health{manual_options(), clock}; // real sleeper: waits the check's few real ms
    health.add_check({.name = "db", .timeout = std::chrono::nanoseconds::max(), .ttl = 0s},
                     [clock]() mutable {
                         std::this_thread::sleep_for(3ms);
                         clock.advance(20ms); // the check took 20 ms
                         return check_result::pass(20, "ms");
                     });
    health.mark_started();
    auto const report = health.readiness();
    CHECK(report.status == health_status::pass);
    CHECK(report.output.empty());
    CHECK(report.checks[0].observed_value == 20.0);
    CHECK(since_epoch(report.checks[0].time) == 100s + 20ms);

    // The budget still bounds a check that has no timeout of its own.
    auto options = manual_options();
    options.budget = 100ms;
    virtual_registry hanging{options, clock, keel::virtual_sleeper{clock}};
    auto g = std::make_shared<gate>();
    hanging.add_check({.name = "stuck", .timeout = std::chrono::nanoseconds::max()}, [g] {
        g->open.wait();
        return true;
    });
    hanging.mark_started();
    auto const bounded = hanging.readiness();
    g->open.count_down();
    CHECK(bounded.checks[0].output == "did not finish within the probe budget of 100ms");
    CHECK(since_epoch(bounded.checks[0].time) == 100s + 20ms + 100ms);
}

TEST_CASE("health_registry with a budget of nanoseconds::max() leaves each check to its own "
          "timeout",
          "[health]") {
    keel::manual_clock clock{keel::manual_clock::time_point{100s}};
    auto options = manual_options();
    options.budget = std::chrono::nanoseconds::max();
    registry health{options, clock};
    health.add_check({.name = "db", .ttl = 0s}, [clock]() mutable {
        std::this_thread::sleep_for(3ms);
        clock.advance(20ms);
        return check_result::pass(20, "ms");
    });
    health.mark_started();
    CHECK(health.readiness().status == health_status::pass);

    // A hanging check still times out, at its own timeout and not at a wrapped budget.
    virtual_registry hanging{options, clock, keel::virtual_sleeper{clock}};
    auto g = std::make_shared<gate>();
    hanging.add_check({.name = "stuck", .timeout = 250ms}, [g] {
        g->open.wait();
        return true;
    });
    hanging.mark_started();
    auto const report = hanging.readiness();
    g->open.count_down();
    CHECK(report.checks[0].output == "timed out after 250ms");
    CHECK(since_epoch(report.checks[0].time) == 100s + 20ms + 250ms);
}

TEST_CASE("health_registry with a ttl of nanoseconds::max() keeps the first result forever",
          "[health]") {
    keel::manual_clock clock{keel::manual_clock::time_point{100s}};
    registry health{manual_options(), clock};
    std::atomic<int> calls{0};
    health.add_check({.name = "config", .ttl = std::chrono::nanoseconds::max()}, [&] {
        ++calls;
        return true;
    });
    health.mark_started();
    CHECK_FALSE(health.readiness().checks[0].cached);
    clock.advance(std::chrono::hours{24 * 365 * 200});
    CHECK(health.readiness().checks[0].cached);
    CHECK(calls == 1);
}

TEST_CASE("health_registry::on_flag_change tells each change of the manual flags, unlocked",
          "[health]") {
    registry health{manual_options(), keel::manual_clock{}};
    std::vector<std::string> seen;
    health.on_flag_change([&](registry::flag_change const& c) {
        // The registry's lock is not held: reading it from the listener does not deadlock.
        seen.push_back(std::string{c.flag} + (c.set ? " set " : " cleared ") +
                       std::string{c.reason} + (health.started() ? " (started)" : ""));
    });
    health.on_flag_change([](registry::flag_change const&) { throw std::runtime_error("x"); });
    health.set_not_ready("warming up");
    health.set_not_ready("warming up"); // the same reason: no change
    health.set_not_ready("draining");   // a new reason: told
    health.mark_started();
    health.mark_broken("stalled");
    health.clear_broken();
    health.clear_broken(); // not set: no change
    health.clear_not_ready();
    CHECK(seen == std::vector<std::string>{"not_ready set warming up", "not_ready set draining",
                                           "started set  (started)", "broken set stalled (started)",
                                           "broken cleared  (started)",
                                           "not_ready cleared  (started)"});
    CHECK(health.readiness().status == keel::ops::health_status::pass);
}
