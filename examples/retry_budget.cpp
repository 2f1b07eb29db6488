// SPDX-License-Identifier: MIT
// Why a retry budget: during an outage, every caller retrying 3 times triples the
// load on the dependency that is already down. A shared keel::retry_budget caps
// retries at 20 % of calls (plus a small floor), as Finagle and Envoy do.
// Simulates 60 s of a full outage at 100 calls/s in virtual time (keel::manual_clock
// and keel::virtual_sleeper), so it runs in milliseconds.
#include <keel/keel.hpp>
#include <keel/testing/manual_clock.hpp>
#include <keel/testing/virtual_sleeper.hpp>

#include <fmt/format.h>

#include <chrono>
#include <optional>
#include <stdexcept>

using namespace std::chrono_literals;

namespace {

struct totals {
    int calls = 0;
    int attempts = 0;
    int ended_by_budget = 0;
    int retries() const { return attempts - calls; }
};

// Sends 100 calls/s for 60 s to a dependency that always fails.
totals outage(bool with_budget) {
    keel::manual_clock clock;
    keel::virtual_sleeper sleeper{clock};
    std::optional<keel::basic_retry_budget<keel::manual_clock>> budget;
    if (with_budget) {
        budget.emplace(keel::retry_budget_options{.retry_ratio = 0.2,           // Finagle's
                                                  .min_retries_per_second = 10, // defaults
                                                  .ttl = 10s},
                       clock);
    }
    totals t;
    auto guarded = keel::resilient{[&]() -> int {
                                       ++t.attempts;
                                       throw std::runtime_error{"503 Service Unavailable"};
                                   },
                                   keel::retry{keel::basic_retry_options<keel::manual_clock>{
                                                   .max_attempts = 3,
                                                   .backoff = keel::exponential{1ms, 2.0, 10ms},
                                                   .budget = budget ? &*budget : nullptr},
                                               keel::on_failure{}, clock, sleeper}};
    for (int i = 0; i < 6000; ++i) {
        if (guarded.try_call().error() == keel::errc::retry_budget_exhausted) {
            ++t.ended_by_budget;
        }
        ++t.calls;
        clock.advance(10ms);
    }
    if (budget) {
        auto const s = budget->snapshot();
        fmt::print("  budget at the end: {} calls and {} retries in the last 10 s, {} refused\n",
                   s.calls, s.retries, s.refused);
    }
    return t;
}

void report(char const* name, totals const& t) {
    fmt::print("{:<30} {} calls, {} attempts, {} retries ({:.2f} per call), {} calls ended by "
               "the budget\n",
               name, t.calls, t.attempts, t.retries(), static_cast<double>(t.retries()) / t.calls,
               t.ended_by_budget);
}

} // namespace

int main() {
    fmt::print("A 60 s outage at 100 calls/s, each call allowed 3 attempts:\n");
    totals const without = outage(false);
    report("without a budget:", without);
    totals const with = outage(true);
    report("with a budget (20 % + 10/s):", with);
    double const ratio = static_cast<double>(with.retries()) / with.calls;
    return without.attempts == 3 * without.calls && ratio < 0.35 ? 0 : 1;
}
