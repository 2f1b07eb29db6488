// SPDX-License-Identifier: MIT
#include <keel/observe/pipeline_counters.hpp>

#include <keel/core/error.hpp>
#include <keel/core/outcome.hpp>
#include <keel/limiter/token_bucket.hpp>
#include <keel/policy/rate_limit.hpp>
#include <keel/policy/retry.hpp>
#include <keel/resilient.hpp>
#include <keel/testing/manual_clock.hpp>
#include <keel/testing/virtual_sleeper.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using keel::observe::call_outcome;

TEST_CASE("classify: a value is success, keel's codes are themselves, others are failure",
          "[pipeline_counters]") {
    CHECK(keel::observe::classify({}) == call_outcome::success);
    CHECK(keel::observe::classify(keel::errc::circuit_open) == call_outcome::circuit_open);
    CHECK(keel::observe::classify(keel::errc::unavailable) == call_outcome::unavailable);
    CHECK(keel::observe::classify(keel::errc::timeout) == call_outcome::timeout);
    CHECK(keel::observe::classify(std::make_error_code(std::errc::timed_out)) ==
          call_outcome::failure);
    CHECK(keel::observe::classify(std::error_code{99, keel::error_category()}) ==
          call_outcome::failure);
    CHECK(keel::observe::to_string(call_outcome::retry_budget_exhausted) ==
          "retry_budget_exhausted");
    CHECK(keel::observe::to_string(call_outcome::failure) == "failure");
    CHECK(keel::observe::to_string(static_cast<call_outcome>(200)) == "unknown");
}

TEST_CASE("pipeline_counters: counts attempts, retries, waits and outcomes",
          "[pipeline_counters]") {
    keel::observe::pipeline_counters c;
    c.record_attempt();
    c.record_attempt();
    c.record_retry(100ms);
    c.record_retry(-5ms); // a negative delay adds no wait
    c.record(keel::outcome<int>{3});
    c.record(keel::outcome<int>{keel::failure::from(keel::errc::rate_limited)});
    c.record(keel::outcome<void>{keel::failure::from(keel::errc::timeout)});
    c.record(call_outcome::failure);
    auto const s = c.snapshot();
    CHECK(s.attempts == 2);
    CHECK(s.retries == 2);
    CHECK(s.retry_wait == 100ms);
    CHECK(s.calls_of(call_outcome::success) == 1);
    CHECK(s.calls_of(call_outcome::rate_limited) == 1);
    CHECK(s.calls_of(call_outcome::timeout) == 1);
    CHECK(s.calls_of(call_outcome::failure) == 1);
    CHECK(s.calls_of(call_outcome::circuit_open) == 0);
}

TEST_CASE("pipeline_counters: loses no count under concurrent use",
          "[pipeline_counters][concurrency]") {
    keel::observe::pipeline_counters c;
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&] {
            for (int i = 0; i < 10000; ++i) {
                c.record_attempt();
                c.record_retry(1ns);
                c.record(call_outcome::success);
            }
        });
    }
    for (auto& t : threads) {
        t.join();
    }
    auto const s = c.snapshot();
    CHECK(s.attempts == 40000);
    CHECK(s.retries == 40000);
    CHECK(s.retry_wait == 40000ns);
    CHECK(s.calls_of(call_outcome::success) == 40000);
}

TEST_CASE("observe::count records each call's outcome, attempts, retries and waits from the "
          "outcome, rejections included",
          "[observe][pipeline_counters]") {
    keel::manual_clock clock;
    keel::virtual_sleeper sleeper{clock};
    keel::observe::pipeline_counters counters;
    int calls = 0;
    auto guarded = keel::resilient{
        [&]() -> int {
            if (++calls % 3 != 0) {
                throw std::runtime_error{"503"};
            }
            return calls;
        },
        keel::observe::count(counters),
        keel::retry{
            {.max_attempts = 3, .backoff = keel::constant{10ms}, .jitter = keel::jitter::none},
            keel::on_failure{},
            clock,
            sleeper}};
    CHECK(guarded.try_call().has_value()); // attempts 1, 2 fail; 3 succeeds
    auto const s = counters.snapshot();
    CHECK(s.calls_of(keel::observe::call_outcome::success) == 1);
    CHECK(s.attempts == 3);
    CHECK(s.retries == 2);
    CHECK(s.retry_wait == 20ms);

    keel::token_bucket bucket{{.rate = 1, .burst = 1}};
    auto limited =
        keel::resilient{[] { return 1; }, keel::observe::count(counters), keel::guard(bucket)};
    CHECK(limited.try_call().has_value());
    CHECK(limited.try_call().failure().is(keel::errc::rate_limited));
    CHECK(counters.snapshot().calls_of(keel::observe::call_outcome::rate_limited) == 1);
    CHECK(counters.snapshot().attempts == 5);
}
