// SPDX-License-Identifier: MIT
#include <keel/policy/circuit_breaker.hpp>
#include <keel/policy/policy.hpp>
#include <keel/policy/retry.hpp>
#include <keel/policy/timeout.hpp>
#include <keel/resilient.hpp>
#include <keel/testing/manual_clock.hpp>
#include <keel/testing/scripted_random.hpp>
#include <keel/testing/virtual_sleeper.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

using namespace std::chrono_literals;

namespace {

using breaker_t = keel::basic_circuit_breaker<keel::manual_clock, keel::scripted_random>;
using keel::circuit_reason;
using keel::circuit_result;
using keel::circuit_state;

// Options with small numbers for tests; jitter off unless a test turns it on.
keel::circuit_breaker_options small_options() {
    return {.failure_rate_threshold = 50,
            .slow_call_rate_threshold = 100,
            .slow_call_duration = 1s,
            .window = keel::circuit_window::count_based,
            .window_size = 10,
            .minimum_calls = 10,
            .reset_timeout = 10s,
            .max_reset_timeout = 100s,
            .reset_jitter = 0s,
            .permitted_calls_in_half_open = 2,
            .max_wait_in_half_open = 5s};
}

struct fixture {
    explicit fixture(keel::circuit_breaker_options options = small_options(),
                     keel::scripted_random random = keel::scripted_random{0})
        : breaker(options, clock, std::move(random)) {
        breaker.on_transition([this](breaker_t::transition const& t) { log.push_back(t); });
    }
    // Acquires and completes one call of duration `took` (the clock advances by it).
    bool call(circuit_result result, std::chrono::nanoseconds took = 0ns) {
        auto permit = breaker.try_acquire();
        if (!permit) {
            return false;
        }
        clock.advance(took);
        permit.record(result);
        return true;
    }
    void calls(int n, circuit_result result) {
        for (int i = 0; i < n; ++i) {
            REQUIRE(call(result));
        }
    }
    keel::manual_clock clock;
    breaker_t breaker;
    std::vector<breaker_t::transition> log;
};

std::string invalid_message(keel::circuit_breaker_options const& options) {
    try {
        keel::basic_circuit_breaker<keel::manual_clock> b{options, keel::manual_clock{}};
    } catch (std::invalid_argument const& e) {
        return e.what();
    }
    return "no exception";
}

} // namespace

TEST_CASE("circuit_breaker deduces steady_clock and thread_random from an options aggregate",
          "[circuit_breaker]") {
    keel::circuit_breaker users_breaker{
        {.failure_rate_threshold = 50, .minimum_calls = 10, .reset_timeout = 30s}};
    STATIC_REQUIRE(std::is_same_v<decltype(users_breaker), keel::circuit_breaker>);
    CHECK(users_breaker.options().minimum_calls == 10);
    CHECK(users_breaker.options().reset_timeout == 30s);
    CHECK(users_breaker.state() == circuit_state::closed);
}

TEST_CASE("circuit_breaker_options defaults are the documented ones", "[circuit_breaker]") {
    keel::circuit_breaker_options const o;
    CHECK(o.failure_rate_threshold == 50.0);
    CHECK(o.slow_call_rate_threshold == 100.0);
    CHECK(o.slow_call_duration == 60s);
    CHECK(o.window == keel::circuit_window::count_based);
    CHECK(o.window_size == 100);
    CHECK(o.minimum_calls == 20);
    CHECK(o.reset_timeout == 30s);
    CHECK(o.max_reset_timeout == 300s);
    CHECK(o.reset_jitter == 1s);
    CHECK(o.permitted_calls_in_half_open == 10);
    CHECK(o.max_wait_in_half_open == 60s);
}

TEST_CASE("circuit_breaker rejects invalid options naming the field and its range",
          "[circuit_breaker]") {
    auto with = [](auto change) {
        keel::circuit_breaker_options o;
        change(o);
        return invalid_message(o);
    };
    CHECK(with([](auto& o) { o.failure_rate_threshold = 150; }) ==
          "keel::circuit_breaker: failure_rate_threshold must be in (0, 100], got 150.0");
    CHECK(with([](auto& o) { o.failure_rate_threshold = 0; }) ==
          "keel::circuit_breaker: failure_rate_threshold must be in (0, 100], got 0.0");
    CHECK(with([](auto& o) { o.slow_call_rate_threshold = -1; }) ==
          "keel::circuit_breaker: slow_call_rate_threshold must be in (0, 100], got -1.0");
    CHECK(with([](auto& o) { o.slow_call_duration = 0s; }) ==
          "keel::circuit_breaker: slow_call_duration must be > 0, got 0s");
    CHECK(with([](auto& o) { o.window_size = 0; }) ==
          "keel::circuit_breaker: window_size must be in [1, 32768] calls for a count_based "
          "window, got 0");
    CHECK(with([](auto& o) { o.window_size = 40000; }) ==
          "keel::circuit_breaker: window_size must be in [1, 32768] calls for a count_based "
          "window, got 40000");
    CHECK(with([](auto& o) {
              o.window = keel::circuit_window::time_based;
              o.window_size = 3601;
          }) == "keel::circuit_breaker: window_size must be in [1, 3600] seconds for a "
                "time_based window, got 3601");
    CHECK(with([](auto& o) { o.minimum_calls = 0; }) ==
          "keel::circuit_breaker: minimum_calls must be >= 1, got 0");
    CHECK(with([](auto& o) { o.reset_timeout = 0s; }) ==
          "keel::circuit_breaker: reset_timeout must be > 0, got 0s");
    CHECK(with([](auto& o) { o.max_reset_timeout = 1s; }) ==
          "keel::circuit_breaker: max_reset_timeout must be >= reset_timeout (30s), got 1s");
    CHECK(with([](auto& o) { o.reset_jitter = -1ns; }) ==
          "keel::circuit_breaker: reset_jitter must be >= 0, got -1ns");
    CHECK(with([](auto& o) { o.permitted_calls_in_half_open = 0; }) ==
          "keel::circuit_breaker: permitted_calls_in_half_open must be in [1, 1000], got 0");
    CHECK(with([](auto& o) { o.permitted_calls_in_half_open = 1001; }) ==
          "keel::circuit_breaker: permitted_calls_in_half_open must be in [1, 1000], got 1001");
    CHECK(with([](auto& o) { o.max_wait_in_half_open = -1s; }) ==
          "keel::circuit_breaker: max_wait_in_half_open must be >= 0 (0: wait forever), got -1s");
    CHECK(with([](auto&) {}) == "no exception");
}

TEST_CASE("circuit_breaker volume threshold keeps 2 requests with 1 failure closed",
          "[circuit_breaker]") {
    auto o = small_options();
    o.window_size = 100;
    fixture f{o};
    f.calls(1, circuit_result::failure);
    f.calls(1, circuit_result::success);
    auto m = f.breaker.metrics();
    CHECK(m.failure_rate == 50.0); // the article's scenario A: 50 %, yet not significant
    CHECK(m.calls == 2);
    CHECK(f.breaker.state() == circuit_state::closed);
    // 9 calls, 5 failures: still below the 10-call minimum.
    f.calls(3, circuit_result::success);
    f.calls(4, circuit_result::failure);
    CHECK(f.breaker.metrics().calls == 9);
    CHECK(f.breaker.state() == circuit_state::closed);
    // The 10th call is a failure: 6 of 10 >= 50 % with the volume reached.
    f.calls(1, circuit_result::failure);
    CHECK(f.breaker.state() == circuit_state::open);
    REQUIRE(f.log.size() == 1);
    CHECK(f.log[0].from == circuit_state::closed);
    CHECK(f.log[0].to == circuit_state::open);
    CHECK(f.log[0].why == circuit_reason::failure_rate_exceeded);
    CHECK(f.log[0].when == f.clock.now());
}

TEST_CASE("circuit_breaker opens at exactly the failure rate threshold, not below",
          "[circuit_breaker]") {
    auto o = small_options();
    o.window_size = 100;
    fixture f{o};
    f.calls(6, circuit_result::success);
    f.calls(4, circuit_result::failure); // 40 %
    CHECK(f.breaker.state() == circuit_state::closed);
    f.calls(1, circuit_result::failure); // 5 of 11 = 45 %
    CHECK(f.breaker.state() == circuit_state::closed);
    f.calls(1, circuit_result::failure); // 6 of 12 = 50 %
    CHECK(f.breaker.state() == circuit_state::open);
}

TEST_CASE("circuit_breaker does not trip on a success even when the rate is above threshold",
          "[circuit_breaker]") {
    fixture f;
    f.calls(9, circuit_result::failure);
    f.calls(1, circuit_result::success); // 90 % of 10, but successes never trip
    CHECK(f.breaker.state() == circuit_state::closed);
    f.calls(1, circuit_result::failure);
    CHECK(f.breaker.state() == circuit_state::open);
}

TEST_CASE("circuit_breaker count window evicts the oldest outcome", "[circuit_breaker]") {
    auto o = small_options();
    o.window_size = 4;
    o.minimum_calls = 100; // effective minimum is min(100, 4) = 4
    fixture f{o};
    f.calls(2, circuit_result::failure);
    f.calls(4, circuit_result::success); // both failures evicted
    auto m = f.breaker.metrics();
    CHECK(m.calls == 4);
    CHECK(m.failed_calls == 0);
    f.calls(1, circuit_result::failure); // S S S F: 25 %
    CHECK(f.breaker.state() == circuit_state::closed);
    CHECK(f.breaker.metrics().failed_calls == 1);
    f.calls(1, circuit_result::failure); // S S F F: 50 %
    CHECK(f.breaker.state() == circuit_state::open);
}

TEST_CASE("circuit_breaker ignored calls count for nothing", "[circuit_breaker]") {
    fixture f;
    f.calls(20, circuit_result::ignored);
    CHECK(f.breaker.metrics().calls == 0);
    f.calls(9, circuit_result::failure);
    f.calls(5, circuit_result::ignored);
    CHECK(f.breaker.metrics().calls == 9);
    CHECK(f.breaker.state() == circuit_state::closed);
}

TEST_CASE("circuit_breaker counts calls strictly longer than slow_call_duration as slow",
          "[circuit_breaker]") {
    auto o = small_options();
    o.slow_call_rate_threshold = 50;
    o.minimum_calls = 4;
    fixture f{o};
    REQUIRE(f.call(circuit_result::success, 1s)); // exactly the threshold: not slow
    REQUIRE(f.call(circuit_result::success, 500ms));
    REQUIRE(f.call(circuit_result::success, 1001ms)); // slow
    CHECK(f.breaker.metrics().slow_calls == 1);
    CHECK(f.breaker.state() == circuit_state::closed);
    REQUIRE(f.call(circuit_result::success, 2s)); // 2 of 4 slow: 50 %
    CHECK(f.breaker.state() == circuit_state::open);
    REQUIRE(f.log.size() == 1);
    CHECK(f.log[0].why == circuit_reason::slow_call_rate_exceeded);
}

TEST_CASE("circuit_breaker takes a caller-measured duration for the slow-call check",
          "[circuit_breaker]") {
    auto o = small_options();
    o.slow_call_rate_threshold = 100;
    o.minimum_calls = 2;
    fixture f{o};
    f.breaker.try_acquire().success(5s);
    CHECK(f.breaker.metrics().slow_calls == 1);
    f.breaker.try_acquire().success(1s);
    CHECK(f.breaker.metrics().slow_calls == 1);
    CHECK(f.breaker.state() == circuit_state::closed);
    f.breaker.try_acquire().failure(3s); // 2 of 3 slow, 1 of 3 failed
    CHECK(f.breaker.state() == circuit_state::closed);
}

namespace {
// A manual clock that counts its readings.
struct counting_clock {
    using duration = keel::manual_clock::duration;
    using time_point = keel::manual_clock::time_point;
    keel::manual_clock clock;
    std::shared_ptr<std::atomic<int>> reads = std::make_shared<std::atomic<int>>(0);
    time_point now() const noexcept {
        reads->fetch_add(1);
        return clock.now();
    }
};
} // namespace

TEST_CASE("circuit_breaker closed admission reads no clock when the caller times the call",
          "[circuit_breaker]") {
    auto o = small_options();
    o.slow_call_rate_threshold = 50;
    o.minimum_calls = 2;
    counting_clock clock;
    SECTION("count window") {
        keel::basic_circuit_breaker<counting_clock, keel::scripted_random> b{
            o, clock, keel::scripted_random{0}};
        b.try_acquire(keel::call_timing::by_caller).success(2s);
        CHECK(clock.reads->load() == 0);
        CHECK(b.metrics().slow_calls == 1);
        *clock.reads = 0;
        b.try_acquire().success(1ms); // timed by the breaker: the admission reads it
        CHECK(clock.reads->load() == 1);
        *clock.reads = 0;
        auto timed = b.try_acquire();
        clock.clock.advance(3s);
        timed.success(); // measured from admission: slow, 2 of 3, which opens the breaker
        CHECK(b.state() == circuit_state::open);
        CHECK(clock.reads->load() == 3); // admission, completion, and the opening's timer
    }
    SECTION("time window: only the placement reads the clock") {
        o.window = keel::circuit_window::time_based;
        o.window_size = 5;
        keel::basic_circuit_breaker<counting_clock, keel::scripted_random> b{
            o, clock, keel::scripted_random{0}};
        auto p = b.try_acquire(keel::call_timing::by_caller);
        CHECK(clock.reads->load() == 0);
        clock.clock.advance(3s);
        p.success(); // no duration given: counts as not slow
        CHECK(clock.reads->load() == 1);
        auto const m = b.metrics();
        CHECK(m.calls == 1);
        CHECK(m.slow_calls == 0);
    }
    SECTION("open and half-open read the clock to decide") {
        keel::basic_circuit_breaker<counting_clock, keel::scripted_random> b{
            o, clock, keel::scripted_random{0}};
        b.try_acquire(keel::call_timing::by_caller).failure(1ms);
        b.try_acquire(keel::call_timing::by_caller).failure(1ms);
        REQUIRE(b.state() == circuit_state::open);
        *clock.reads = 0;
        CHECK_FALSE(b.try_acquire(keel::call_timing::by_caller));
        CHECK(clock.reads->load() == 1);
        clock.clock.advance(10s);
        auto probe = b.try_acquire(keel::call_timing::by_caller);
        CHECK(probe.admitted_in() == circuit_state::half_open);
    }
}

TEST_CASE("circuit_breaker times calls on a clock reading before its epoch", "[circuit_breaker]") {
    keel::manual_clock clock{keel::manual_clock::time_point{-100s}};
    breaker_t b{small_options(), clock, keel::scripted_random{0}};
    auto p = b.try_acquire();
    clock.advance(2s);
    p.success();
    CHECK(b.metrics().slow_calls == 1);
}

TEST_CASE("circuit_breaker rejects while open with the time until half-open", "[circuit_breaker]") {
    fixture f;
    f.calls(10, circuit_result::failure);
    REQUIRE(f.breaker.state() == circuit_state::open);
    auto m = f.breaker.metrics();
    REQUIRE(m.time_until_half_open.has_value());
    CHECK(*m.time_until_half_open == 10s);
    f.clock.advance(4s);
    auto rejected = f.breaker.try_acquire();
    CHECK_FALSE(rejected);
    CHECK_FALSE(rejected.pending());
    REQUIRE(rejected.retry_after().has_value());
    CHECK(*rejected.retry_after() == 6s);
    f.clock.advance(6s - 1ns);
    CHECK_FALSE(f.breaker.try_acquire());
    CHECK(f.breaker.metrics().rejected_calls == 2);
    CHECK(f.breaker.state() == circuit_state::open); // lazily: nobody asked yet
    f.clock.advance(1ns);
    auto probe = f.breaker.try_acquire();
    CHECK(probe);
    CHECK(probe.admitted_in() == circuit_state::half_open);
    CHECK(f.breaker.state() == circuit_state::half_open);
    REQUIRE(f.log.size() == 2);
    CHECK(f.log[1].from == circuit_state::open);
    CHECK(f.log[1].to == circuit_state::half_open);
    CHECK(f.log[1].why == circuit_reason::reset_timeout_elapsed);
    CHECK(f.log[1].when == f.clock.now());
}

TEST_CASE("circuit_breaker half-open admits the permitted probes and closes on their success",
          "[circuit_breaker]") {
    fixture f;
    f.calls(10, circuit_result::failure);
    f.clock.advance(10s);
    auto p1 = f.breaker.try_acquire();
    auto p2 = f.breaker.try_acquire();
    auto p3 = f.breaker.try_acquire();
    REQUIRE(p1);
    REQUIRE(p2);
    CHECK_FALSE(p3);
    REQUIRE(p3.retry_after().has_value());
    CHECK(*p3.retry_after() == 20s); // the second opening's period, should the probes fail
    p1.success();
    CHECK(f.breaker.state() == circuit_state::half_open);
    CHECK_FALSE(f.breaker.try_acquire()); // the slot stays used: p1 reported
    p2.success();
    CHECK(f.breaker.state() == circuit_state::closed);
    REQUIRE(f.log.size() == 3);
    CHECK(f.log[2].why == circuit_reason::probes_succeeded);
    auto m = f.breaker.metrics();
    CHECK(m.calls == 0); // a fresh window
    CHECK(m.consecutive_openings == 0);
}

TEST_CASE("circuit_breaker rejects in half-open with the open period the probes failing would "
          "start",
          "[circuit_breaker]") {
    fixture f;
    f.calls(10, circuit_result::failure); // first opening: 10 s
    f.clock.advance(10s);
    auto p1 = f.breaker.try_acquire();
    auto p2 = f.breaker.try_acquire();
    REQUIRE(p1);
    REQUIRE(p2);
    auto rejected = f.breaker.try_acquire();
    REQUIRE_FALSE(rejected);
    REQUIRE(rejected.retry_after().has_value());
    CHECK(*rejected.retry_after() == 20s); // the second opening would last 10 s * 2
    p1.failure();
    p2.failure();
    REQUIRE(f.breaker.state() == circuit_state::open);
    f.clock.advance(20s);
    auto p3 = f.breaker.try_acquire();
    auto p4 = f.breaker.try_acquire();
    REQUIRE(p3);
    REQUIRE(p4);
    CHECK(*f.breaker.try_acquire().retry_after() == 40s);
    p3.failure();
    p4.failure();
    f.clock.advance(40s);
    auto p5 = f.breaker.try_acquire();
    auto p6 = f.breaker.try_acquire();
    CHECK(*f.breaker.try_acquire().retry_after() == 80s);
    p5.failure();
    p6.failure();
    f.clock.advance(80s);
    auto p7 = f.breaker.try_acquire();
    auto p8 = f.breaker.try_acquire();
    CHECK(*f.breaker.try_acquire().retry_after() == 100s); // max_reset_timeout caps it
    f.breaker.force_open();
    CHECK_FALSE(f.breaker.try_acquire().retry_after().has_value()); // manual: unknown
}

TEST_CASE("circuit_breaker half-open re-opens when the probes reach the threshold",
          "[circuit_breaker]") {
    fixture f;
    f.calls(10, circuit_result::failure);
    f.clock.advance(10s);
    auto p1 = f.breaker.try_acquire();
    auto p2 = f.breaker.try_acquire();
    p1.success();
    p2.failure(); // 1 of 2 = 50 %
    CHECK(f.breaker.state() == circuit_state::open);
    CHECK(f.log.back().why == circuit_reason::probes_failed);
    CHECK(*f.breaker.metrics().time_until_half_open == 20s); // backed off: 10 s * 2^1
}

TEST_CASE("circuit_breaker frees a half-open slot when a probe is ignored or dropped",
          "[circuit_breaker]") {
    fixture f;
    f.calls(10, circuit_result::failure);
    f.clock.advance(10s);
    auto p1 = f.breaker.try_acquire();
    {
        auto p2 = f.breaker.try_acquire();
        REQUIRE(p2);
        CHECK_FALSE(f.breaker.try_acquire());
    } // p2 dropped without an outcome
    auto p3 = f.breaker.try_acquire();
    REQUIRE(p3);
    p3.ignore();
    auto p4 = f.breaker.try_acquire();
    REQUIRE(p4);
    p1.success();
    p4.success();
    CHECK(f.breaker.state() == circuit_state::closed);
}

TEST_CASE("circuit_breaker re-opens a half-open breaker whose probes do not report back",
          "[circuit_breaker]") {
    fixture f;
    f.calls(10, circuit_result::failure);
    f.clock.advance(10s);
    auto hung1 = f.breaker.try_acquire();
    auto hung2 = f.breaker.try_acquire();
    REQUIRE(hung1);
    REQUIRE(hung2);
    f.clock.advance(5s - 1ns);
    CHECK_FALSE(f.breaker.try_acquire());
    CHECK(f.breaker.state() == circuit_state::half_open);
    f.clock.advance(1ns); // max_wait_in_half_open reached with 2 probes outstanding
    auto rejected = f.breaker.try_acquire();
    CHECK_FALSE(rejected);
    CHECK(f.breaker.state() == circuit_state::open);
    CHECK(f.log.back().why == circuit_reason::half_open_timeout);
    REQUIRE(rejected.retry_after().has_value());
    CHECK(*rejected.retry_after() == 20s);
    // The hung probes belong to an earlier generation: their outcomes are dropped.
    hung1.success();
    hung2.success();
    CHECK(f.breaker.state() == circuit_state::open);
}

TEST_CASE("circuit_breaker half-open without outstanding probes waits past max wait",
          "[circuit_breaker]") {
    fixture f;
    f.calls(10, circuit_result::failure);
    f.clock.advance(10s);
    f.breaker.try_acquire().success();
    f.clock.advance(1h); // low traffic: one probe reported, none outstanding
    auto p = f.breaker.try_acquire();
    REQUIRE(p);
    p.success();
    CHECK(f.breaker.state() == circuit_state::closed);
}

TEST_CASE("circuit_breaker half-open with max wait zero waits forever for its probes",
          "[circuit_breaker]") {
    auto o = small_options();
    o.max_wait_in_half_open = 0s;
    fixture f{o};
    f.calls(10, circuit_result::failure);
    f.clock.advance(10s);
    auto hung1 = f.breaker.try_acquire();
    auto hung2 = f.breaker.try_acquire();
    f.clock.advance(1000h);
    CHECK_FALSE(f.breaker.try_acquire());
    CHECK(f.breaker.state() == circuit_state::half_open);
    hung1.success(10ms); // caller-measured, so not slow
    hung2.success(10ms);
    CHECK(f.breaker.state() == circuit_state::closed);
}

TEST_CASE("circuit_breaker drops outcomes of calls admitted before the state changed",
          "[circuit_breaker]") {
    fixture f;
    auto late = f.breaker.try_acquire(); // admitted while CLOSED, generation 0
    REQUIRE(late);
    f.calls(10, circuit_result::failure);
    REQUIRE(f.breaker.state() == circuit_state::open);
    auto const rejected_before = f.breaker.metrics();
    late.failure();
    CHECK(f.breaker.metrics().failed_calls == rejected_before.failed_calls);
    // Admitted in CLOSED, completed after the breaker closed again: not in the new window.
    f.clock.advance(10s);
    auto late2 = f.breaker.try_acquire(); // a probe
    auto p = f.breaker.try_acquire();
    late2.success();
    p.success();
    REQUIRE(f.breaker.state() == circuit_state::closed);
    auto closed_late = f.breaker.try_acquire();
    f.breaker.force_open();
    f.breaker.reset();
    closed_late.failure();
    CHECK(f.breaker.metrics().calls == 0);
    CHECK(f.breaker.generation() == 5);
}

TEST_CASE("circuit_breaker metrics count rejections since construction, and completed calls by "
          "result once count_totals() was called",
          "[circuit_breaker]") {
    fixture f;
    REQUIRE(f.call(circuit_result::failure)); // before count_totals(): not in the totals
    f.breaker.count_totals();
    f.breaker.count_totals(); // idempotent
    f.breaker.reset();        // an empty window again; the totals are unaffected
    f.calls(4, circuit_result::success);
    REQUIRE(f.call(circuit_result::success, 2s)); // slow
    REQUIRE(f.call(circuit_result::ignored));
    { auto dropped = f.breaker.try_acquire(); } // destroyed without an outcome: ignored
    auto late = f.breaker.try_acquire();        // completed after the breaker opens
    REQUIRE(late);
    f.calls(5, circuit_result::failure);
    REQUIRE(f.breaker.state() == circuit_state::open);
    late.success(); // dropped from the window, still a completed success
    for (int i = 0; i < 3; ++i) {
        CHECK_FALSE(f.call(circuit_result::success));
    }
    f.clock.advance(10s);
    REQUIRE(f.call(circuit_result::ignored)); // a probe; frees its slot
    REQUIRE(f.breaker.state() == circuit_state::half_open);
    REQUIRE(f.call(circuit_result::success));
    REQUIRE(f.call(circuit_result::failure, 2s)); // slow; 1 of 2 failed: re-opens
    REQUIRE(f.breaker.state() == circuit_state::open);
    CHECK_FALSE(f.call(circuit_result::success));

    auto const m = f.breaker.metrics();
    CHECK(m.total_successful_calls == 4 + 1 + 1 + 1);
    CHECK(m.total_failed_calls == 5 + 1);
    CHECK(m.total_ignored_calls == 1 + 1 + 1);
    CHECK(m.total_slow_calls == 2);
    CHECK(m.rejected_calls == 4);
    // The window holds what the last CLOSED period recorded, without the late success.
    CHECK(m.calls == 10);
    CHECK(m.failed_calls == 5);

    // Totals survive manual changes, which empty the window.
    f.breaker.reset();
    f.breaker.disable();
    REQUIRE(f.call(circuit_result::failure));
    auto const after = f.breaker.metrics();
    CHECK(after.calls == 1);
    CHECK(after.total_failed_calls == 7);
    CHECK(after.total_successful_calls == 7);
}

TEST_CASE("circuit_breaker keeps its completion totals at zero until count_totals(), so an "
          "unobserved breaker pays no add",
          "[circuit_breaker]") {
    fixture f;
    f.calls(3, circuit_result::success);
    REQUIRE(f.call(circuit_result::failure));
    auto const m = f.breaker.metrics();
    CHECK(m.calls == 4); // the window counts as always
    CHECK(m.total_successful_calls == 0);
    CHECK(m.total_failed_calls == 0);
    CHECK(m.total_ignored_calls == 0);
    CHECK(m.total_slow_calls == 0);
}

TEST_CASE("circuit_breaker counts a caller-timed call without a duration as not slow in its "
          "totals",
          "[circuit_breaker]") {
    fixture f;
    f.breaker.count_totals();
    auto p = f.breaker.try_acquire(keel::call_timing::by_caller);
    f.clock.advance(5s);
    p.success();
    auto q = f.breaker.try_acquire(keel::call_timing::by_caller);
    q.failure(5s);
    auto const m = f.breaker.metrics();
    CHECK(m.total_successful_calls == 1);
    CHECK(m.total_failed_calls == 1);
    CHECK(m.total_slow_calls == 1);
}

TEST_CASE("circuit_breaker backs off the reset timeout on consecutive re-openings",
          "[circuit_breaker]") {
    auto o = small_options();
    o.reset_jitter = 1s;
    o.permitted_calls_in_half_open = 1;
    fixture f{o, keel::scripted_random::from_units({0.5, 0.25, 0.0, 0.75, 0.5, 0.5, 0.125})};
    std::vector<std::chrono::nanoseconds> periods;
    f.calls(10, circuit_result::failure);
    for (int i = 0; i < 5; ++i) {
        REQUIRE(f.breaker.state() == circuit_state::open);
        periods.push_back(*f.breaker.metrics().time_until_half_open);
        f.clock.advance(periods.back());
        auto probe = f.breaker.try_acquire();
        REQUIRE(probe);
        probe.failure();
    }
    // min(10 s * 2^k + jitter, 100 s), jitter = unit * 1 s.
    CHECK(periods == std::vector<std::chrono::nanoseconds>{10500ms, 20250ms, 40s, 80750ms, 100s});
    CHECK(f.breaker.metrics().consecutive_openings == 6);
    // A successful close resets the backoff.
    f.clock.advance(*f.breaker.metrics().time_until_half_open);
    f.breaker.try_acquire().success();
    REQUIRE(f.breaker.state() == circuit_state::closed);
    f.calls(10, circuit_result::failure);
    CHECK(*f.breaker.metrics().time_until_half_open == 10125ms);
}

TEST_CASE("circuit_breaker backoff jitter follows a seeded xoshiro256ss", "[circuit_breaker]") {
    keel::manual_clock clock;
    auto o = small_options();
    o.permitted_calls_in_half_open = 1;
    o.reset_jitter = 3s;
    o.max_reset_timeout = 1000s;
    keel::basic_circuit_breaker<keel::manual_clock, keel::xoshiro256ss> b{o, clock,
                                                                          keel::xoshiro256ss{42}};
    keel::xoshiro256ss expected_random{42};
    for (int i = 0; i < 10; ++i) {
        b.try_acquire().failure();
    }
    for (int k = 0; k < 8; ++k) {
        REQUIRE(b.state() == circuit_state::open);
        auto const jitter = static_cast<std::int64_t>(keel::uniform_unit(expected_random) * 3e9);
        auto const expected = std::min<std::int64_t>((10'000'000'000LL << k) + jitter, 1000e9);
        auto const period = *b.metrics().time_until_half_open;
        CHECK(period.count() == expected);
        clock.advance(period);
        b.try_acquire().failure();
    }
}

TEST_CASE("circuit_breaker time window counts the last N seconds and rolls buckets over",
          "[circuit_breaker]") {
    auto o = small_options();
    o.window = keel::circuit_window::time_based;
    o.window_size = 3;
    o.minimum_calls = 4;
    fixture f{o};
    f.clock.advance(500ms);
    f.calls(2, circuit_result::failure); // second 0
    CHECK(f.breaker.metrics().calls == 2);
    f.clock.advance(1s); // second 1
    f.calls(1, circuit_result::success);
    CHECK(f.breaker.metrics().calls == 3);
    f.clock.advance(2s); // second 3: second 0 has left the window, its bucket is reused
    CHECK(f.breaker.metrics().calls == 1);
    f.calls(2, circuit_result::success);
    f.calls(1, circuit_result::failure); // 1 S (s1) + 2 S + 1 F: 25 %
    CHECK(f.breaker.state() == circuit_state::closed);
    auto m = f.breaker.metrics();
    CHECK(m.calls == 4);
    CHECK(m.failed_calls == 1);
    f.clock.advance(1s);                 // second 4: second 1 leaves
    f.calls(1, circuit_result::failure); // 2 S + 2 F of 4: 50 %
    CHECK(f.breaker.state() == circuit_state::open);
    CHECK(f.breaker.metrics().calls == 4);
    f.clock.advance(10s); // long idle: every bucket is stale
    CHECK(f.breaker.metrics().calls == 0);
}

TEST_CASE("circuit_breaker time window still trips after its clock moves back by more than "
          "the window, and follows the clock again after reset",
          "[circuit_breaker]") {
    auto o = small_options();
    o.window = keel::circuit_window::time_based;
    o.window_size = 3;
    o.minimum_calls = 4;
    fixture f{o};
    f.clock.set(keel::manual_clock::time_point{100s});
    f.calls(1, circuit_result::success);
    f.clock.set(keel::manual_clock::time_point{10s}); // 90 s back: more than the window
    f.calls(3, circuit_result::failure);              // counted at second 100
    CHECK(f.breaker.metrics().calls == 4);
    CHECK(f.breaker.state() == circuit_state::open);
    f.breaker.reset();
    f.calls(1, circuit_result::failure); // second 10: the fresh window follows the clock
    CHECK(f.breaker.metrics().calls == 1);
    f.clock.advance(3s);
    CHECK(f.breaker.metrics().calls == 0);
}

TEST_CASE("circuit_breaker time window uses minimum_calls as configured, beyond its size",
          "[circuit_breaker]") {
    auto o = small_options();
    o.window = keel::circuit_window::time_based;
    o.window_size = 2;
    o.minimum_calls = 30;
    fixture f{o};
    f.calls(29, circuit_result::failure);
    CHECK(f.breaker.state() == circuit_state::closed);
    f.calls(1, circuit_result::failure);
    CHECK(f.breaker.state() == circuit_state::open);
}

TEST_CASE("circuit_breaker manual states: forced open rejects, disabled admits and records",
          "[circuit_breaker]") {
    fixture f;
    f.breaker.force_open();
    CHECK(f.breaker.state() == circuit_state::forced_open);
    auto rejected = f.breaker.try_acquire();
    CHECK_FALSE(rejected);
    CHECK_FALSE(rejected.retry_after().has_value());
    f.clock.advance(1000h);
    CHECK_FALSE(f.breaker.try_acquire());
    CHECK(f.breaker.metrics().rejected_calls == 2);

    f.breaker.disable();
    CHECK(f.breaker.state() == circuit_state::disabled);
    f.calls(50, circuit_result::failure);
    CHECK(f.breaker.state() == circuit_state::disabled);
    CHECK(f.breaker.metrics().failed_calls == 10); // the window still records
    CHECK(f.breaker.metrics().failure_rate == 100.0);

    f.breaker.reset();
    CHECK(f.breaker.state() == circuit_state::closed);
    CHECK(f.breaker.metrics().calls == 0);
    REQUIRE(f.log.size() == 3);
    for (auto const& t : f.log) {
        CHECK(t.why == circuit_reason::manual);
    }
    CHECK(f.log[0].from == circuit_state::closed);
    CHECK(f.log[0].to == circuit_state::forced_open);
    CHECK(f.log[1].to == circuit_state::disabled);
    CHECK(f.log[2].from == circuit_state::disabled);
    CHECK(f.log[2].to == circuit_state::closed);
}

TEST_CASE("circuit_breaker reset from open clears the backoff and the window",
          "[circuit_breaker]") {
    fixture f;
    f.calls(10, circuit_result::failure);
    f.breaker.reset();
    CHECK(f.breaker.state() == circuit_state::closed);
    CHECK(f.breaker.metrics().consecutive_openings == 0);
    CHECK(f.breaker.metrics().calls == 0);
    f.calls(10, circuit_result::failure);
    CHECK(*f.breaker.metrics().time_until_half_open == 10s);
}

TEST_CASE("circuit_breaker listeners run without the lock and may use the breaker",
          "[circuit_breaker]") {
    fixture f;
    std::vector<circuit_state> seen;
    f.breaker.on_transition([&](breaker_t::transition const& t) {
        seen.push_back(f.breaker.state()); // would deadlock if the lock were held
        CHECK(f.breaker.metrics().state == t.to);
        if (t.to == circuit_state::open) {
            CHECK_FALSE(f.breaker.try_acquire());
        }
    });
    f.breaker.on_transition([](breaker_t::transition const&) { throw std::runtime_error{"x"}; });
    f.calls(10, circuit_result::failure);
    f.clock.advance(10s);
    f.calls(2, circuit_result::success);
    CHECK(seen == std::vector<circuit_state>{circuit_state::open, circuit_state::half_open,
                                             circuit_state::closed});
}

TEST_CASE("circuit_breaker permit is move-only and completes once", "[circuit_breaker]") {
    STATIC_REQUIRE_FALSE(std::is_copy_constructible_v<breaker_t::permit>);
    STATIC_REQUIRE(std::is_nothrow_move_constructible_v<breaker_t::permit>);
    fixture f;
    auto a = f.breaker.try_acquire();
    auto b = std::move(a);
    CHECK(b.pending());
    CHECK_FALSE(a.pending()); // NOLINT(bugprone-use-after-move): moved-from state is specified
    b.failure();
    b.failure();
    CHECK(f.breaker.metrics().failed_calls == 1);
    breaker_t::permit c;
    CHECK_FALSE(c);
    c = f.breaker.try_acquire();
    c.failure();
    CHECK(f.breaker.metrics().failed_calls == 2);
}

// ---------------------------------------------------------------------------------
// keel::guard(breaker): the policy for keel::resilient, driven through execute().

namespace {
struct http_response {
    int status;
};
using guard_context = keel::basic_context<keel::manual_clock>;
} // namespace

TEST_CASE("guard(circuit_breaker) meets policy_for and names the breaker's clock",
          "[circuit_breaker]") {
    fixture f;
    using policy = decltype(keel::guard(f.breaker));
    STATIC_REQUIRE(keel::policy_for<policy, int, guard_context>);
    STATIC_REQUIRE(keel::policy_for<policy, void, guard_context>);
    STATIC_REQUIRE(std::is_same_v<keel::policy_clock_t<policy>, keel::manual_clock>);
    auto classify = [](keel::outcome<http_response> const&) { return circuit_result::success; };
    STATIC_REQUIRE(
        keel::policy_for<decltype(keel::guard(f.breaker, classify)), http_response, guard_context>);
}

TEST_CASE("guard(circuit_breaker) records outcomes and rejects with circuit_open",
          "[circuit_breaker]") {
    fixture f;
    auto const policy = keel::guard(f.breaker);
    int calls = 0;
    auto failing = [&](guard_context const&) -> keel::outcome<int> {
        ++calls;
        f.clock.advance(2s); // slow, and timed by the breaker
        return keel::failure::from(keel::errc::timeout);
    };
    for (int i = 0; i < 10; ++i) {
        auto r = policy.execute(failing, guard_context{});
        CHECK(r.error() == keel::errc::timeout);
    }
    CHECK(f.breaker.state() == circuit_state::open);
    CHECK(f.breaker.metrics().slow_calls == 10);
    auto rejected = policy.execute(failing, guard_context{});
    CHECK(calls == 10);
    CHECK(rejected.failure().is(keel::errc::circuit_open));
    REQUIRE(rejected.retry_after().has_value());
    CHECK(*rejected.retry_after() == 10s);
    CHECK_THROWS_AS(rejected.value(), keel::circuit_open);

    f.clock.advance(10s);
    auto ok = [&](guard_context const&) -> keel::outcome<int> { return 7; };
    CHECK(*policy.execute(ok, guard_context{}) == 7);
    CHECK(*policy.execute(ok, guard_context{}) == 7);
    CHECK(f.breaker.state() == circuit_state::closed);
}

TEST_CASE("guard(circuit_breaker) classifier treats client errors as ignored",
          "[circuit_breaker]") {
    fixture f;
    auto const policy = keel::guard(f.breaker, [](keel::outcome<http_response> const& r) {
        if (!r) {
            return circuit_result::failure;
        }
        if (r->status >= 500) {
            return circuit_result::failure;
        }
        return r->status >= 400 ? circuit_result::ignored : circuit_result::success;
    });
    auto respond = [](int status) {
        return [status](guard_context const&) -> keel::outcome<http_response> {
            return http_response{status};
        };
    };
    for (int i = 0; i < 30; ++i) {
        CHECK(policy.execute(respond(404), guard_context{})->status == 404);
    }
    CHECK(f.breaker.metrics().calls == 0);
    for (int i = 0; i < 5; ++i) {
        policy.execute(respond(200), guard_context{});
    }
    for (int i = 0; i < 4; ++i) {
        policy.execute(respond(503), guard_context{});
    }
    CHECK(f.breaker.state() == circuit_state::closed);
    policy.execute(respond(503), guard_context{}); // 5 of 10
    CHECK(f.breaker.state() == circuit_state::open);
}

TEST_CASE("guard(circuit_breaker) lets no exception escape", "[circuit_breaker]") {
    fixture f;
    auto const policy = keel::guard(f.breaker, [](keel::outcome<void> const&) -> circuit_result {
        throw std::runtime_error{"classifier"};
    });
    auto ok = [](guard_context const&) { return keel::outcome<void>{}; };
    auto r = policy.execute(ok, guard_context{});
    CHECK(r.has_value());
    CHECK(f.breaker.metrics().failed_calls == 1); // a throwing classifier counts a failure
    auto throwing = [](guard_context const&) -> keel::outcome<void> {
        throw std::runtime_error{"next"};
    };
    auto r2 = policy.execute(throwing, guard_context{});
    REQUIRE_FALSE(r2.has_value());
    CHECK_THROWS_WITH(r2.value(), "next");
    CHECK(f.breaker.metrics().failed_calls == 2);
}

TEST_CASE("resilient{call, guard(breaker), retry} records one outcome per logical call",
          "[circuit_breaker]") {
    keel::manual_clock clock;
    keel::virtual_sleeper sleeper{clock};
    keel::basic_circuit_breaker<keel::manual_clock> breaker{
        {.window_size = 10, .minimum_calls = 10, .reset_timeout = 10s, .reset_jitter = 0s}, clock};
    int attempts = 0;
    bool healthy = false;
    auto get = keel::resilient{
        [&](guard_context const&) -> keel::outcome<int> {
            ++attempts;
            if (healthy) {
                return 42;
            }
            return keel::failure::from(keel::errc::unavailable);
        },
        keel::guard(breaker), // outermost: sees the logical call, retries included
        keel::retry<keel::on_failure, keel::manual_clock, keel::virtual_sleeper>{
            {.max_attempts = 3, .backoff = keel::exponential{10ms, 2.0, 1s}},
            keel::on_failure{},
            clock,
            sleeper},
    };
    for (int i = 0; i < 9; ++i) {
        CHECK(get.try_call().error() == keel::errc::unavailable);
    }
    CHECK(attempts == 27);
    auto const m = breaker.metrics();
    CHECK(m.calls == 9);
    CHECK(m.failed_calls == 9); // three attempts each, one outcome each
    CHECK(m.slow_calls == 0);   // 30 ms of backoff per call is not slow
    CHECK(breaker.state() == circuit_state::closed);
    CHECK_THROWS_AS(get(), keel::unavailable);
    CHECK(breaker.state() == circuit_state::open);
    CHECK(attempts == 30);

    // Open: rejected before the retry or the call run; call() throws circuit_open.
    CHECK_THROWS_AS(get(), keel::circuit_open);
    auto const rejected = get.try_call();
    CHECK(rejected.error() == keel::errc::circuit_open);
    REQUIRE(rejected.retry_after().has_value());
    CHECK(*rejected.retry_after() == 10s);
    CHECK(attempts == 30);

    // After the reset timeout, healthy probes close it again.
    healthy = true;
    clock.advance(10s);
    for (int i = 0; i < 10; ++i) {
        CHECK(get() == 42);
    }
    CHECK(breaker.state() == circuit_state::closed);
    CHECK(attempts == 40);
}

TEST_CASE("circuit_breaker: the DESIGN example pipeline compiles and runs on the real clock",
          "[circuit_breaker]") {
    keel::circuit_breaker users_breaker{
        {.failure_rate_threshold = 50, .minimum_calls = 10, .reset_timeout = 30s}};
    int requests = 0;
    auto get_user = keel::resilient{
        [&](keel::context const& ctx) {
            ++requests;
            if (ctx.attempt() == 1) {
                throw std::runtime_error{"503"};
            }
            return 42;
        },
        keel::guard(users_breaker), // outermost: one outcome per logical call
        keel::retry{{.max_attempts = 3,
                     .backoff = keel::exponential{1ms, 2.0, 5ms},
                     .jitter = keel::jitter::full}},
        keel::timeout{5s}, // innermost: each attempt has its own deadline
    };
    int const u = get_user();
    keel::outcome<int> const r = get_user.try_call();
    CHECK(u == 42);
    CHECK(*r == 42);
    CHECK(requests == 4);
    auto const m = users_breaker.metrics();
    CHECK(m.calls == 2);
    CHECK(m.failed_calls == 0);
}

// ---------------------------------------------------------------------------------
// Model-based test: the breaker and a small, obviously-correct reference model (a
// deque or a map of seconds, plain integers, no atomics) see the same random
// sequence of acquisitions, outcomes, drops, time steps and manual operations,
// and must agree on the state, the window, the open period and every transition.

namespace {

class reference_model {
public:
    struct ticket {
        std::uint64_t generation;
        circuit_state admitted_in;
        std::int64_t start;
    };
    struct event {
        circuit_state from;
        circuit_state to;
        std::int64_t when;
        circuit_reason why;
        friend bool operator==(event const&, event const&) = default;
    };
    struct counts {
        std::uint64_t calls = 0;
        std::uint64_t failures = 0;
        std::uint64_t slow = 0;
    };

    reference_model(keel::circuit_breaker_options o, std::uint64_t seed) : m_o(o), m_random(seed) {}

    // Returns a ticket, or the rejection's retry-after (nullopt inside: none known).
    std::variant<ticket, std::optional<std::int64_t>> acquire(std::int64_t now) {
        for (;;) {
            switch (m_state) {
            case circuit_state::closed:
            case circuit_state::disabled: return ticket{m_generation, m_state, now};
            case circuit_state::forced_open: ++rejected; return std::optional<std::int64_t>{};
            case circuit_state::open:
                if (now < m_open_until) {
                    ++rejected;
                    return std::optional<std::int64_t>{m_open_until - now};
                }
                move(circuit_state::half_open, circuit_reason::reset_timeout_elapsed, now);
                continue;
            case circuit_state::half_open:
                if (m_o.max_wait_in_half_open > 0ns && now >= m_half_open_deadline &&
                    m_admitted > m_probe.calls) {
                    move(circuit_state::open, circuit_reason::half_open_timeout, now);
                    continue;
                }
                if (m_admitted >= m_o.permitted_calls_in_half_open) {
                    ++rejected;
                    return std::optional<std::int64_t>{base_period()};
                }
                ++m_admitted;
                return ticket{m_generation, m_state, now};
            }
        }
    }

    void complete(ticket const& t, circuit_result r, std::int64_t now) {
        bool const current = t.generation == m_generation;
        bool const failed = r == circuit_result::failure;
        bool const slow = now - t.start > m_o.slow_call_duration.count();
        if (t.admitted_in == circuit_state::half_open) {
            if (!current) {
                return;
            }
            if (r == circuit_result::ignored) {
                --m_admitted;
                return;
            }
            m_probe.calls += 1;
            m_probe.failures += failed ? 1 : 0;
            m_probe.slow += slow ? 1 : 0;
            if (m_probe.calls == m_o.permitted_calls_in_half_open) {
                bool const reopen = trips(m_probe, 1).has_value();
                move(reopen ? circuit_state::open : circuit_state::closed,
                     reopen ? circuit_reason::probes_failed : circuit_reason::probes_succeeded,
                     now);
            }
            return;
        }
        if (r == circuit_result::ignored || !current) {
            return;
        }
        if (m_o.window == keel::circuit_window::count_based) {
            m_ring.push_back({failed, slow});
            if (m_ring.size() > m_o.window_size) {
                m_ring.pop_front();
            }
        } else {
            auto& c = m_seconds[now / 1'000'000'000];
            c.calls += 1;
            c.failures += failed ? 1 : 0;
            c.slow += slow ? 1 : 0;
        }
        if (t.admitted_in == circuit_state::closed && (failed || slow)) {
            std::uint64_t const minimum = m_o.window == keel::circuit_window::count_based
                                              ? std::min(m_o.minimum_calls, m_o.window_size)
                                              : m_o.minimum_calls;
            if (auto why = trips(window(now), minimum)) {
                move(circuit_state::open, *why, now);
            }
        }
    }

    void manual(circuit_state to, std::int64_t now) { move(to, circuit_reason::manual, now); }

    counts window(std::int64_t now) const {
        counts c;
        if (m_o.window == keel::circuit_window::count_based) {
            for (auto [failed, slow] : m_ring) {
                c.calls += 1;
                c.failures += failed ? 1 : 0;
                c.slow += slow ? 1 : 0;
            }
        } else {
            std::int64_t const second = now / 1'000'000'000;
            for (auto const& [s, n] : m_seconds) {
                if (s > second - static_cast<std::int64_t>(m_o.window_size) && s <= second) {
                    c.calls += n.calls;
                    c.failures += n.failures;
                    c.slow += n.slow;
                }
            }
        }
        return c;
    }

    circuit_state state() const { return m_state; }
    std::int64_t open_until() const { return m_open_until; }
    std::uint32_t openings() const { return m_openings; }

    std::vector<event> events;
    std::uint64_t rejected = 0;

private:
    std::optional<circuit_reason> trips(counts const& c, std::uint64_t minimum) const {
        if (c.calls < minimum) {
            return std::nullopt;
        }
        if (static_cast<double>(c.failures) * 100.0 >=
            m_o.failure_rate_threshold * static_cast<double>(c.calls)) {
            return circuit_reason::failure_rate_exceeded;
        }
        if (static_cast<double>(c.slow) * 100.0 >=
            m_o.slow_call_rate_threshold * static_cast<double>(c.calls)) {
            return circuit_reason::slow_call_rate_exceeded;
        }
        return std::nullopt;
    }

    // The open period of the next opening, before jitter.
    std::int64_t base_period() const {
        std::int64_t const cap = m_o.max_reset_timeout.count();
        std::int64_t period = m_o.reset_timeout.count();
        for (std::uint32_t i = 0; i < m_openings; ++i) {
            period = std::min(period * 2, cap);
        }
        return period;
    }

    void move(circuit_state to, circuit_reason why, std::int64_t now) {
        if (to != m_state) {
            events.push_back({m_state, to, now, why});
        }
        m_state = to;
        ++m_generation;
        if (to == circuit_state::open) {
            std::int64_t const cap = m_o.max_reset_timeout.count();
            std::int64_t period = m_o.reset_timeout.count();
            for (std::uint32_t i = 0; i < m_openings; ++i) {
                period = std::min(period * 2, cap);
            }
            if (m_o.reset_jitter > 0ns) {
                period += static_cast<std::int64_t>(keel::uniform_unit(m_random) *
                                                    static_cast<double>(m_o.reset_jitter.count()));
            }
            m_open_until = now + std::min(period, cap);
            ++m_openings;
        } else if (to == circuit_state::half_open) {
            m_admitted = 0;
            m_probe = {};
            m_half_open_deadline = now + m_o.max_wait_in_half_open.count();
        } else if (to == circuit_state::closed || to == circuit_state::disabled) {
            m_ring.clear();
            m_seconds.clear();
            if (to == circuit_state::closed) {
                m_openings = 0;
            }
        }
    }

    keel::circuit_breaker_options m_o;
    keel::xoshiro256ss m_random;
    circuit_state m_state = circuit_state::closed;
    std::uint64_t m_generation = 0;
    std::deque<std::pair<bool, bool>> m_ring;
    std::map<std::int64_t, counts> m_seconds;
    std::int64_t m_open_until = 0;
    std::int64_t m_half_open_deadline = 0;
    std::uint32_t m_openings = 0;
    std::uint32_t m_admitted = 0;
    counts m_probe;
};

using model_breaker = keel::basic_circuit_breaker<keel::manual_clock, keel::xoshiro256ss>;

std::int64_t ns(keel::manual_clock const& clock) {
    return clock.now().time_since_epoch().count();
}

void run_model(keel::circuit_breaker_options const& o, std::uint64_t seed, int steps) {
    keel::manual_clock clock;
    model_breaker breaker{o, clock, keel::xoshiro256ss{seed ^ 0x5eed}};
    reference_model model{o, seed ^ 0x5eed};
    std::vector<reference_model::event> seen;
    breaker.on_transition([&](model_breaker::transition const& t) {
        seen.push_back({t.from, t.to, t.when.time_since_epoch().count(), t.why});
    });
    keel::xoshiro256ss drive{seed};
    auto pick = [&](std::uint64_t n) { return drive() % n; };
    auto result = [&] {
        auto const r = pick(10);
        return r < 6 ? circuit_result::success
                     : (r < 9 ? circuit_result::failure : circuit_result::ignored);
    };
    std::vector<std::pair<model_breaker::permit, reference_model::ticket>> held;

    for (int step = 0; step < steps; ++step) {
        INFO("seed " << seed << " step " << step);
        auto const action = pick(100);
        if (action < 45) {
            auto permit = breaker.try_acquire();
            auto expected = model.acquire(ns(clock));
            REQUIRE(permit.admitted() == std::holds_alternative<reference_model::ticket>(expected));
            if (!permit) {
                auto const& hint = std::get<std::optional<std::int64_t>>(expected);
                REQUIRE(permit.retry_after().has_value() == hint.has_value());
                if (hint) {
                    REQUIRE(permit.retry_after()->count() == *hint);
                }
            } else if (pick(4) == 0) {
                held.emplace_back(std::move(permit), std::get<reference_model::ticket>(expected));
            } else {
                static constexpr std::chrono::nanoseconds took[] = {0ns, 10ms, 150ms, 400ms};
                clock.advance(took[pick(4)]);
                auto const r = result();
                permit.record(r);
                model.complete(std::get<reference_model::ticket>(expected), r, ns(clock));
            }
        } else if (action < 60 && !held.empty()) {
            auto const i = pick(held.size());
            auto const r = result();
            held[i].first.record(r);
            model.complete(held[i].second, r, ns(clock));
            held.erase(held.begin() + static_cast<std::ptrdiff_t>(i));
        } else if (action < 63 && !held.empty()) {
            auto const i = pick(held.size());
            auto const ticket = held[i].second;
            held.erase(held.begin() + static_cast<std::ptrdiff_t>(i)); // dropped unrecorded
            model.complete(ticket, circuit_result::ignored, ns(clock));
        } else if (action < 97) {
            static constexpr std::chrono::nanoseconds steps_of[] = {1ms, 100ms, 700ms, 2s, 9s};
            clock.advance(steps_of[pick(5)]);
        } else {
            static constexpr circuit_state manual_states[] = {
                circuit_state::forced_open, circuit_state::disabled, circuit_state::closed};
            auto const to = manual_states[pick(3)];
            if (pick(4) == 0) {
                to == circuit_state::forced_open ? breaker.force_open()
                : to == circuit_state::disabled  ? breaker.disable()
                                                 : breaker.reset();
                model.manual(to, ns(clock));
            }
        }
        REQUIRE(breaker.state() == model.state());
        auto const m = breaker.metrics();
        auto const expected = model.window(ns(clock));
        REQUIRE(m.calls == expected.calls);
        REQUIRE(m.failed_calls == expected.failures);
        REQUIRE(m.slow_calls == expected.slow);
        REQUIRE(m.rejected_calls == model.rejected);
        REQUIRE(m.consecutive_openings == model.openings());
        if (m.state == circuit_state::open) {
            REQUIRE(m.time_until_half_open->count() ==
                    std::max<std::int64_t>(0, model.open_until() - ns(clock)));
        }
        REQUIRE(seen == model.events);
    }
}

} // namespace

TEST_CASE("circuit_breaker agrees with a reference model on random count-window runs",
          "[circuit_breaker][model]") {
    auto o = small_options();
    o.window_size = 8;
    o.minimum_calls = 5;
    o.slow_call_duration = 300ms;
    o.slow_call_rate_threshold = 60;
    o.reset_timeout = 1s;
    o.max_reset_timeout = 9s;
    o.reset_jitter = 500ms;
    o.permitted_calls_in_half_open = 3;
    o.max_wait_in_half_open = 3s;
    for (std::uint64_t seed = 1; seed <= 40; ++seed) {
        run_model(o, seed, 3000);
    }
}

TEST_CASE("circuit_breaker agrees with a reference model on random time-window runs",
          "[circuit_breaker][model]") {
    auto o = small_options();
    o.window = keel::circuit_window::time_based;
    o.window_size = 4;
    o.minimum_calls = 6;
    o.failure_rate_threshold = 40;
    o.slow_call_duration = 300ms;
    o.slow_call_rate_threshold = 50;
    o.reset_timeout = 2s;
    o.max_reset_timeout = 30s;
    o.reset_jitter = 1s;
    o.permitted_calls_in_half_open = 2;
    o.max_wait_in_half_open = 4s;
    for (std::uint64_t seed = 100; seed <= 140; ++seed) {
        run_model(o, seed, 3000);
    }
}

TEST_CASE("circuit_breaker agrees with a reference model with one probe and no max wait",
          "[circuit_breaker][model]") {
    auto o = small_options();
    o.window_size = 3;
    o.minimum_calls = 50; // effective minimum 3
    o.reset_timeout = 500ms;
    o.max_reset_timeout = 500ms; // no backoff growth
    o.reset_jitter = 0s;
    o.permitted_calls_in_half_open = 1;
    o.max_wait_in_half_open = 0s;
    for (std::uint64_t seed = 1000; seed <= 1020; ++seed) {
        run_model(o, seed, 3000);
    }
}

// ---------------------------------------------------------------------------------
// Concurrency: several threads hammer one breaker; invariants are checked after
// joining (Catch2 assertions are not thread-safe).

namespace {
constexpr int hammer_threads = 4;

template <class Body>
void run_threads(int n, Body body) {
    std::vector<std::thread> threads;
    std::atomic<bool> go{false};
    for (int t = 0; t < n; ++t) {
        threads.emplace_back([&, t] {
            while (!go.load(std::memory_order_acquire)) {
                std::this_thread::yield();
            }
            body(t);
        });
    }
    go.store(true, std::memory_order_release);
    for (auto& th : threads) {
        th.join();
    }
}
} // namespace

TEST_CASE("circuit_breaker closed-state recording from several threads conserves counts",
          "[circuit_breaker][concurrency]") {
    auto o = small_options();
    o.window_size = 32768;
    o.minimum_calls = 32768; // never reached: nothing trips
    keel::manual_clock clock;
    keel::basic_circuit_breaker<keel::manual_clock> b{o, clock};
    constexpr int per_thread = 6000;
    run_threads(hammer_threads, [&](int) {
        for (int i = 0; i < per_thread; ++i) {
            auto p = b.try_acquire();
            auto const took = i % 5 == 0 ? 2s : 1ms;
            i % 3 == 0 ? p.failure(took) : p.success(took);
        }
    });
    auto const m = b.metrics();
    CHECK(m.calls == hammer_threads * per_thread);
    CHECK(m.failed_calls == hammer_threads * 2000);
    CHECK(m.slow_calls == hammer_threads * 1200);
    CHECK(m.state == circuit_state::closed);
}

TEST_CASE("circuit_breaker totals add up exactly across threads while the state changes",
          "[circuit_breaker][concurrency]") {
    auto o = small_options();
    o.minimum_calls = 4;
    o.window_size = 4;
    o.reset_timeout = 1ms;
    o.max_reset_timeout = 1ms;
    o.max_wait_in_half_open = 0s;
    keel::manual_clock clock;
    keel::basic_circuit_breaker<keel::manual_clock> b{o, clock};
    b.count_totals();
    constexpr int per_thread = 4000;
    // Per thread: successes, failures, ignored, rejected; slow successes and failures.
    std::vector<std::array<std::uint64_t, 5>> seen(hammer_threads);
    std::atomic<bool> done{false};
    std::thread stepper{[&] {
        // Moves time on so open breakers half-open; a manual change now and then.
        for (int i = 0; !done.load(std::memory_order_relaxed); ++i) {
            clock.advance(1ms);
            if (i % 64 == 0) {
                i % 128 == 0 ? b.force_open() : b.reset();
            }
            std::this_thread::yield();
        }
    }};
    run_threads(hammer_threads, [&](int t) {
        auto& mine = seen[static_cast<std::size_t>(t)];
        for (int i = 0; i < per_thread; ++i) {
            auto p = b.try_acquire();
            if (!p) {
                ++mine[3];
                continue;
            }
            bool const slow = i % 7 == 0;
            auto const took = slow ? 2s : 1ms;
            switch (i % 4) {
            case 0: p.failure(took); break;
            case 1: p.ignore(); break;
            case 2: break; // dropped: ignored
            default: p.success(took); break;
            }
            std::size_t const kind = i % 4 == 0 ? 1 : (i % 4 == 3 ? 0 : 2);
            ++mine[kind];
            mine[4] += slow && kind != 2 ? 1 : 0;
        }
    });
    done.store(true);
    stepper.join();
    std::array<std::uint64_t, 5> sum{};
    for (auto const& mine : seen) {
        for (std::size_t k = 0; k < sum.size(); ++k) {
            sum[k] += mine[k];
        }
    }
    auto const m = b.metrics();
    CHECK(m.total_successful_calls == sum[0]);
    CHECK(m.total_failed_calls == sum[1]);
    CHECK(m.total_ignored_calls == sum[2]);
    CHECK(m.rejected_calls == sum[3]);
    CHECK(m.total_slow_calls == sum[4]);
    CHECK(sum[0] + sum[1] + sum[2] + sum[3] == std::uint64_t{hammer_threads} * per_thread);
    CHECK(sum[3] > 0); // the breaker did open
}

TEST_CASE("circuit_breaker count ring stays conserved under eviction and concurrent resets",
          "[circuit_breaker][concurrency]") {
    auto o = small_options();
    o.window_size = 64;
    o.minimum_calls = 64;
    o.failure_rate_threshold = 100; // at most one failure in three: never trips
    o.slow_call_rate_threshold = 100;
    keel::manual_clock clock;
    keel::basic_circuit_breaker<keel::manual_clock> b{o, clock};
    std::atomic<int> running{hammer_threads};
    std::atomic<int> resets{0};
    std::thread resetter([&] {
        while (running.load(std::memory_order_acquire) > 0) {
            b.reset();
            resets.fetch_add(1, std::memory_order_relaxed);
            std::this_thread::yield();
        }
    });
    run_threads(hammer_threads, [&](int t) {
        for (int i = 0; i < 20000; ++i) {
            auto p = b.try_acquire();
            if ((i + t) % 7 == 0) {
                std::this_thread::yield(); // become a late recorder now and then
            }
            (i + t) % 3 == 0 ? p.failure((i % 4 == 0) ? 2s : 1ms) : p.success(1ms);
        }
        running.fetch_sub(1, std::memory_order_acq_rel);
    });
    resetter.join();
    auto const m = b.metrics();
    CHECK(m.calls <= 64);
    CHECK(m.failed_calls <= m.calls);
    CHECK(m.slow_calls <= m.calls);
    CHECK(resets.load() > 0);
    // 64 fast successes evict everything: any leaked or lost count would remain.
    for (int i = 0; i < 64; ++i) {
        b.try_acquire().success(1ms);
    }
    auto const after = b.metrics();
    CHECK(after.calls == 64);
    CHECK(after.failed_calls == 0);
    CHECK(after.slow_calls == 0);
}

TEST_CASE("circuit_breaker never admits more half-open probes than permitted",
          "[circuit_breaker][concurrency]") {
    auto o = small_options();
    o.permitted_calls_in_half_open = 3;
    o.max_wait_in_half_open = 0s;
    keel::manual_clock clock;
    keel::basic_circuit_breaker<keel::manual_clock> b{o, clock};
    for (int i = 0; i < 10; ++i) {
        b.try_acquire().failure(1ms);
    }
    REQUIRE(b.state() == circuit_state::open);
    clock.advance(10s);
    std::atomic<int> in_flight{0};
    std::atomic<int> max_in_flight{0};
    std::atomic<int> admitted{0};
    std::atomic<int> wrong_state{0};
    run_threads(hammer_threads, [&](int t) {
        for (int i = 0; i < 5000; ++i) {
            auto p = b.try_acquire();
            if (!p) {
                continue;
            }
            if (p.admitted_in() != circuit_state::half_open) {
                wrong_state.fetch_add(1);
            }
            admitted.fetch_add(1, std::memory_order_relaxed);
            int const now_in = in_flight.fetch_add(1, std::memory_order_acq_rel) + 1;
            int seen = max_in_flight.load(std::memory_order_relaxed);
            while (now_in > seen && !max_in_flight.compare_exchange_weak(seen, now_in)) {
            }
            std::this_thread::yield();
            in_flight.fetch_sub(1, std::memory_order_acq_rel);
            if ((i + t) % 2 == 0) {
                p.ignore();
            } // else dropped at the end of scope
        }
    });
    CHECK(max_in_flight.load() <= 3);
    CHECK(max_in_flight.load() >= 1);
    CHECK(admitted.load() > 3); // slots were given back and reused
    CHECK(wrong_state.load() == 0);
    CHECK(b.state() == circuit_state::half_open);
    // Every slot was released: exactly three more probes fit.
    auto p1 = b.try_acquire();
    auto p2 = b.try_acquire();
    auto p3 = b.try_acquire();
    CHECK((p1 && p2 && p3));
    CHECK_FALSE(b.try_acquire());
}

TEST_CASE("circuit_breaker half-open decides exactly once when probes race",
          "[circuit_breaker][concurrency]") {
    auto o = small_options();
    o.permitted_calls_in_half_open = 5;
    keel::manual_clock clock;
    keel::basic_circuit_breaker<keel::manual_clock> b{o, clock};
    std::atomic<int> closes{0};
    b.on_transition([&](auto const& t) {
        if (t.to == circuit_state::closed) {
            closes.fetch_add(1);
        }
    });
    for (int i = 0; i < 10; ++i) {
        b.try_acquire().failure(1ms);
    }
    clock.advance(10s);
    std::atomic<int> probes{0};
    run_threads(hammer_threads, [&](int) {
        for (int i = 0; i < 2000; ++i) {
            auto p = b.try_acquire();
            if (p && p.admitted_in() == circuit_state::half_open) {
                probes.fetch_add(1);
            }
            p.success(1ms);
        }
    });
    CHECK(probes.load() == 5);
    CHECK(closes.load() == 1);
    CHECK(b.state() == circuit_state::closed);
    CHECK(b.metrics().calls == 10); // closed afterwards: the window filled with successes
    CHECK(b.metrics().failed_calls == 0);
}

TEST_CASE("circuit_breaker time window conserves counts within a second across threads",
          "[circuit_breaker][concurrency]") {
    auto o = small_options();
    o.window = keel::circuit_window::time_based;
    o.window_size = 5;
    o.minimum_calls = 1'000'000;
    keel::manual_clock clock;
    keel::basic_circuit_breaker<keel::manual_clock> b{o, clock};
    run_threads(hammer_threads, [&](int) {
        for (int i = 0; i < 3000; ++i) {
            auto p = b.try_acquire();
            i % 4 == 0 ? p.failure(1ms) : p.success(i % 10 == 0 ? 2s : 1ms);
        }
    });
    auto const m = b.metrics();
    CHECK(m.calls == hammer_threads * 3000);
    CHECK(m.failed_calls == hammer_threads * 750);
    CHECK(m.slow_calls == hammer_threads * (300 - 150)); // i % 10 == 0 and odd multiples of 2
}

TEST_CASE("circuit_breaker survives concurrent outcomes, time steps and manual changes",
          "[circuit_breaker][concurrency]") {
    auto o = small_options();
    o.window_size = 16;
    o.minimum_calls = 4;
    o.reset_timeout = 1ms;
    o.max_reset_timeout = 8ms;
    o.reset_jitter = 1ms;
    o.permitted_calls_in_half_open = 2;
    o.max_wait_in_half_open = 2ms;
    keel::manual_clock clock;
    keel::basic_circuit_breaker<keel::manual_clock, keel::scripted_random> b{
        o, clock, keel::scripted_random::from_units({0.5, 0.25})};
    std::atomic<int> transitions{0};
    b.on_transition([&](auto const&) { transitions.fetch_add(1); });
    std::atomic<int> bad{0};
    run_threads(hammer_threads, [&](int t) {
        keel::xoshiro256ss random{static_cast<std::uint64_t>(t) + 1};
        std::vector<decltype(b)::permit> held;
        for (int i = 0; i < 20000; ++i) {
            auto const r = random() % 100;
            if (t == 0 && r < 10) {
                clock.advance(std::chrono::microseconds{random() % 3000});
            } else if (t == 0 && r == 99 && i % 64 == 0) {
                (random() % 2 == 0) ? b.force_open() : b.reset();
            } else if (r < 70) {
                auto p = b.try_acquire();
                if (p && p.admitted_in() != circuit_state::closed &&
                    p.admitted_in() != circuit_state::half_open &&
                    p.admitted_in() != circuit_state::disabled) {
                    bad.fetch_add(1);
                }
                if (!p && p.retry_after() && *p.retry_after() > o.max_reset_timeout) {
                    bad.fetch_add(1);
                }
                if (p && random() % 4 == 0) {
                    held.push_back(std::move(p));
                } else {
                    random() % 2 == 0 ? p.failure(1ms) : p.success(1ms);
                }
            } else if (!held.empty()) {
                held.back().failure(1ms);
                held.pop_back();
            }
        }
    });
    CHECK(bad.load() == 0);
    CHECK(transitions.load() > 0);
    CHECK(static_cast<std::uint64_t>(transitions.load()) <= b.generation());
    b.reset();
    for (int i = 0; i < 16; ++i) {
        b.try_acquire().success(1ms);
    }
    auto const m = b.metrics();
    CHECK(m.calls == 16);
    CHECK(m.failed_calls == 0);
    CHECK(m.slow_calls == 0);
}

// ---------------------------------------------------------------------------------
// The time window's edge paths, which only races reach through the breaker.

TEST_CASE("circuit_breaker time window counts an outcome a window late at the latest second",
          "[circuit_breaker]") {
    keel::detail::time_window w{3};
    w.record(10, true, false);
    CHECK(w.record(7, true, false) == 10); // 7 <= 10 - 3: the epoch ring's late-writer rule
    CHECK(w.record(8, false, false) == 10);
    auto const t = w.read(10);
    CHECK(t.calls == 3);
    CHECK(t.failures == 2);
    CHECK(w.read(7).calls == 3); // a reader behind the latest second reads at it too
    CHECK(w.read(13).calls == 0);
}

TEST_CASE("circuit_breaker time window replaces a bucket whose stamp aliases a newer second",
          "[circuit_breaker]") {
    keel::detail::time_window w{3};
    w.record(3, true, true);                                // bucket 0, stamp 3
    std::int64_t const later = (std::int64_t{1} << 22) + 2; // bucket 0, stamp 2: looks older
    w.record(later, false, false);
    auto const t = w.read(later);
    CHECK(t.calls == 1);
    CHECK(t.failures == 0);
    CHECK(t.slow == 0);
}

TEST_CASE("circuit_breaker time window samples at most 16383 outcomes per second",
          "[circuit_breaker]") {
    keel::detail::time_window w{2};
    for (int i = 0; i < 20000; ++i) {
        w.record(5, i % 2 == 0, false);
    }
    auto const t = w.read(5);
    CHECK(t.calls == 16383);
    CHECK(t.failures == 8192);
}
