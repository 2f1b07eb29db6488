// SPDX-License-Identifier: MIT
#include <keel/policy/retry_budget.hpp>

#include <keel/policy/retry.hpp>
#include <keel/resilient.hpp>
#include <keel/testing/manual_clock.hpp>
#include <keel/testing/virtual_sleeper.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {
using budget_type = keel::basic_retry_budget<keel::manual_clock>;

// Runs `calls` failing calls, one every `spacing`, through a retry of up to 3
// attempts sharing `budget`; returns the number of retries made.
int simulate_outage(keel::manual_clock clock, budget_type& budget, int calls,
                    std::chrono::nanoseconds spacing) {
    keel::virtual_sleeper sleeper{clock};
    int attempts = 0;
    auto guarded = keel::resilient{
        [&]() -> int {
            ++attempts;
            throw std::runtime_error{"down"};
        },
        keel::retry{keel::basic_retry_options<keel::manual_clock>{
                        .max_attempts = 3, .backoff = keel::constant{0ms}, .budget = &budget},
                    keel::on_failure{}, clock, sleeper}};
    for (int i = 0; i < calls; ++i) {
        (void)guarded.try_call();
        clock.advance(spacing);
    }
    return attempts - calls;
}
} // namespace

TEST_CASE("retry_budget: starts with the floor's reserve", "[retry_budget]") {
    keel::manual_clock clock;
    budget_type budget{{.retry_ratio = 0.2, .min_retries_per_second = 1, .ttl = 3s}, clock};
    CHECK(budget.snapshot().balance == Approx(3.0));
    CHECK(budget.try_withdraw());
    CHECK(budget.try_withdraw());
    CHECK(budget.try_withdraw());
    CHECK_FALSE(budget.try_withdraw());
    CHECK(budget.snapshot().refused == 1);
}

TEST_CASE("retry_budget: each call deposits retry_ratio of a retry", "[retry_budget]") {
    keel::manual_clock clock;
    budget_type budget{{.retry_ratio = 0.25, .min_retries_per_second = 0, .ttl = 10s}, clock};
    for (int i = 0; i < 3; ++i) {
        budget.deposit();
    }
    CHECK_FALSE(budget.try_withdraw()); // 0.75 < 1
    budget.deposit();
    CHECK(budget.try_withdraw());
    CHECK_FALSE(budget.try_withdraw());
    auto const s = budget.snapshot();
    CHECK(s.calls == 4);
    CHECK(s.retries == 1);
    CHECK(s.balance == Approx(0.0));
}

TEST_CASE("retry_budget: deposits and retries expire after the ttl", "[retry_budget]") {
    keel::manual_clock clock;
    budget_type budget{{.retry_ratio = 1.0, .min_retries_per_second = 0, .ttl = 10s}, clock};
    budget.deposit();
    budget.deposit();
    CHECK(budget.try_withdraw());
    clock.advance(9s);
    CHECK(budget.snapshot().calls == 2);
    clock.advance(1s);
    auto const s = budget.snapshot();
    CHECK(s.calls == 0);
    CHECK(s.retries == 0);
    CHECK_FALSE(budget.try_withdraw());
}

TEST_CASE("retry_budget: under an outage retries stay at the configured ratio of calls",
          "[retry_budget]") {
    keel::manual_clock clock;
    SECTION("ratio only") {
        budget_type budget{{.retry_ratio = 0.2, .min_retries_per_second = 0, .ttl = 10s}, clock};
        int const calls = 6000; // 60 s at 100 calls/s
        int const retries = simulate_outage(clock, budget, calls, 10ms);
        double const ratio = static_cast<double>(retries) / calls;
        CHECK(ratio <= 0.2);
        CHECK(ratio >= 0.19);
    }
    SECTION("ratio plus the floor: 0.2 * 100/s + 10/s = 30 retries/s") {
        budget_type budget{{.retry_ratio = 0.2, .min_retries_per_second = 10, .ttl = 10s}, clock};
        int const calls = 6000;
        int const retries = simulate_outage(clock, budget, calls, 10ms);
        // Over 60 s: at most 0.2 * calls + 10/s * (60 s + one ttl of initial reserve).
        CHECK(retries <= 0.2 * calls + 10 * 70);
        CHECK(static_cast<double>(retries) / calls == Approx(0.3).epsilon(0.05));
    }
    SECTION("without a budget every call retries twice") {
        keel::virtual_sleeper sleeper{clock};
        int attempts = 0;
        auto guarded =
            keel::resilient{[&]() -> int {
                                ++attempts;
                                throw std::runtime_error{"down"};
                            },
                            keel::retry{keel::basic_retry_options<keel::manual_clock>{
                                            .max_attempts = 3, .backoff = keel::constant{0ms}},
                                        keel::on_failure{}, clock, sleeper}};
        for (int i = 0; i < 100; ++i) {
            (void)guarded.try_call();
        }
        CHECK(attempts == 300);
    }
}

TEST_CASE("retry_budget: concurrent withdrawals never exceed the balance",
          "[retry_budget][concurrency]") {
    keel::retry_budget budget{{.retry_ratio = 0.5, .min_retries_per_second = 0, .ttl = 1h}};
    for (int i = 0; i < 1000; ++i) {
        budget.deposit();
    }
    std::atomic<int> granted{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&] {
            for (int i = 0; i < 500; ++i) {
                if (budget.try_withdraw()) {
                    granted.fetch_add(1);
                }
            }
        });
    }
    for (auto& t : threads) {
        t.join();
    }
    CHECK(granted.load() == 500);
    CHECK(budget.snapshot().refused == 1500);
}

TEST_CASE("retry_budget: rejects invalid options with the documented range", "[retry_budget]") {
    CHECK_THROWS_WITH(keel::retry_budget({.retry_ratio = -0.1}),
                      Catch::StartsWith("keel::retry_budget: retry_ratio must be in [0, 1000]"));
    CHECK_THROWS_WITH(
        keel::retry_budget({.min_retries_per_second = -1}),
        "keel::retry_budget: min_retries_per_second must be finite and >= 0, got -1.0");
    CHECK_THROWS_WITH(keel::retry_budget({.ttl = 1ms}),
                      Catch::StartsWith("keel::retry_budget: ttl must be in [10 ms, 1 h]"));
}

TEST_CASE("retry_budget: a withdrawal whose clock reading is a whole window old counts in the "
          "current bucket instead of erasing it",
          "[retry_budget]") {
    // ttl 10 ms in ten 1 ms buckets; a floor of 1000/s holds 10 retries per ttl.
    keel::manual_clock clock;
    budget_type budget{{.retry_ratio = 0, .min_retries_per_second = 1000, .ttl = 10ms}, clock};
    int granted = 0;
    clock.set(keel::manual_clock::time_point{10ms}); // bucket 10, slot 0
    for (int i = 0; i < 11; ++i) {
        granted += budget.try_withdraw() ? 1 : 0;
    }
    // A thread that read the clock at 0 ms and ran only now: its bucket shares slot 0.
    clock.set(keel::manual_clock::time_point{0ms});
    granted += budget.try_withdraw() ? 1 : 0;
    clock.set(keel::manual_clock::time_point{10ms});
    for (int i = 0; i < 11; ++i) {
        granted += budget.try_withdraw() ? 1 : 0;
    }
    CHECK(granted == 10);
    CHECK(budget.snapshot().retries == 10);
}

TEST_CASE("retry_budget: late deposits count at the latest bucket", "[retry_budget]") {
    keel::manual_clock clock;
    budget_type budget{{.retry_ratio = 1.0, .min_retries_per_second = 0, .ttl = 10ms}, clock};
    clock.set(keel::manual_clock::time_point{25ms});
    budget.deposit();
    clock.set(keel::manual_clock::time_point{5ms}); // two windows back
    budget.deposit();
    CHECK(budget.snapshot().calls == 2);
    clock.set(keel::manual_clock::time_point{34ms});
    CHECK(budget.snapshot().calls == 2);
    clock.set(keel::manual_clock::time_point{35ms});
    CHECK(budget.snapshot().calls == 0);
}

TEST_CASE("retry_budget: threads withdrawing while the clock moves never exceed the bound",
          "[retry_budget][concurrency]") {
    // The clock jumps a whole ttl at a time, so each bucket is its own window and
    // holds at most the floor's 10 retries. More threads than cores get preempted
    // between reading the clock and counting, so some withdrawals arrive a window
    // late, on the slot of the bucket filling now.
    keel::manual_clock clock;
    budget_type budget{{.retry_ratio = 0, .min_retries_per_second = 1000, .ttl = 10ms}, clock};
    int const steps = 200;
    std::atomic<int> granted{0};
    std::atomic<bool> done{false};
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t) {
        threads.emplace_back([&] {
            while (!done.load()) {
                if (budget.try_withdraw()) {
                    granted.fetch_add(1);
                }
            }
        });
    }
    for (int i = 0; i < steps; ++i) {
        std::this_thread::yield();
        clock.advance(10ms);
    }
    done.store(true);
    for (auto& t : threads) {
        t.join();
    }
    CHECK(granted.load() <= 10 * (steps + 1));
}
