// SPDX-License-Identifier: MIT
#include <keel/observe/pipeline_counters.hpp>

#include <keel/core/error.hpp>
#include <keel/core/outcome.hpp>

#include <catch2/catch.hpp>

#include <chrono>
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
