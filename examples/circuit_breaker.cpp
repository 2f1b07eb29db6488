// SPDX-License-Identifier: MIT
// A circuit breaker in front of a dependency that goes down and comes back: the
// breaker opens once enough calls failed, rejects calls as values while open
// (with the time until it half-opens), lets probes through after the reset
// timeout and closes when they succeed. The same breaker then guards a
// keel::resilient pipeline through keel::guard(), with a classifier that ignores
// client errors.
#include <keel/fmt.hpp>
#include <keel/keel.hpp>

#include <fmt/chrono.h>
#include <fmt/format.h>

#include <chrono>
#include <thread>

using namespace std::chrono_literals;

namespace {

// A dependency that answers with an HTTP status; `down` makes it return 503.
struct dependency {
    bool down = false;
    int get() const { return down ? 503 : 200; }
};

} // namespace

int main() {
    keel::circuit_breaker breaker{{.failure_rate_threshold = 50,
                                   .window_size = 20,
                                   .minimum_calls = 10,
                                   .reset_timeout = 20ms, // short, for the example
                                   .reset_jitter = 0ms,
                                   .permitted_calls_in_half_open = 2}};
    breaker.on_transition(
        [](auto const& t) { fmt::print("breaker: {} -> {} ({})\n", t.from, t.to, t.why); });

    dependency users;
    users.down = true;
    int rejected = 0;
    for (int i = 0; i < 30; ++i) {
        if (auto permit = breaker.try_acquire()) {
            users.get() >= 500 ? permit.failure() : permit.success();
        } else {
            ++rejected;
            if (rejected == 1) {
                auto const wait = std::chrono::duration_cast<std::chrono::milliseconds>(
                    permit.retry_after().value_or(0ns));
                fmt::print("rejected without calling; retry after about {}\n", wait);
            }
        }
    }
    auto m = breaker.metrics();
    fmt::print("state {}, {} calls in the window, failure rate {}%, {} rejected\n", m.state,
               m.calls, m.failure_rate, m.rejected_calls);

    users.down = false; // the dependency recovers
    std::this_thread::sleep_for(25ms);

    // The same breaker guarding a pipeline: keel::resilient runs it outermost, so a
    // logical call is one outcome; the classifier ignores client errors (4xx).
    auto get_user = keel::resilient{
        [&](keel::context const&) { return users.get(); },
        keel::guard(breaker,
                    [](keel::outcome<int> const& status) {
                        if (!status || *status >= 500) {
                            return keel::circuit_result::failure;
                        }
                        return *status >= 400 ? keel::circuit_result::ignored
                                              : keel::circuit_result::success;
                    }),
    };
    for (int i = 0; i < 3; ++i) {
        keel::outcome<int> const r = get_user.try_call();
        fmt::print("call {}: {}\n", i + 1,
                   r ? fmt::format("status {}", *r) : fmt::format("{}", r.failure()));
    }
    return breaker.state() == keel::circuit_state::closed ? 0 : 1;
}
