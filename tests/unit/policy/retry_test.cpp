// SPDX-License-Identifier: MIT
#include <keel/policy/fallback.hpp>
#include <keel/policy/retry.hpp>

#include <keel/resilient.hpp>
#include <keel/testing/manual_clock.hpp>
#include <keel/testing/scripted_random.hpp>
#include <keel/testing/virtual_sleeper.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <stdexcept>
#include <stop_token>
#include <utility>
#include <vector>

using namespace std::chrono_literals;
using std::chrono::nanoseconds;

namespace {

struct upstream_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};
struct bad_request : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct response {
    int status = 200;
};

using context = keel::basic_context<keel::manual_clock>;
using options = keel::basic_retry_options<keel::manual_clock>;

// A retry on virtual time; jitter draws from a scripted 0.5.
template <class Predicate = keel::on_failure>
auto make_retry(keel::manual_clock clock, keel::virtual_sleeper sleeper, options o,
                Predicate p = {}) {
    return keel::retry{std::move(o), std::move(p), clock, sleeper,
                       keel::scripted_random::from_units({0.5})};
}

} // namespace

TEST_CASE("retry: a success runs once and never sleeps", "[retry]") {
    keel::manual_clock clock;
    keel::virtual_sleeper sleeper{clock};
    int calls = 0;
    auto guarded = keel::resilient{[&] { return ++calls; }, make_retry(clock, sleeper, {})};
    CHECK(guarded() == 1);
    CHECK(calls == 1);
    CHECK(sleeper.sleeps().empty());
}

TEST_CASE("retry: max_attempts counts the first call and waits the exact backoff", "[retry]") {
    keel::manual_clock clock;
    keel::virtual_sleeper sleeper{clock};
    std::vector<int> attempts;
    auto guarded = keel::resilient{[&](context const& ctx) -> int {
                                       attempts.push_back(ctx.attempt());
                                       throw upstream_error{"503"};
                                   },
                                   make_retry(clock, sleeper,
                                              {.max_attempts = 4,
                                               .backoff = keel::exponential{100ms, 2.0, 1s},
                                               .jitter = keel::jitter::none})};
    CHECK_THROWS_AS(guarded(), upstream_error); // the call's own exception, unchanged
    CHECK(attempts == std::vector<int>{1, 2, 3, 4});
    CHECK(sleeper.sleeps() == std::vector<nanoseconds>{100ms, 200ms, 400ms});
    CHECK(clock.now().time_since_epoch() == 700ms);
}

TEST_CASE("retry: jitter applies to each wait", "[retry]") {
    keel::manual_clock clock;
    keel::virtual_sleeper sleeper{clock};
    auto guarded = keel::resilient{[]() -> int { throw upstream_error{"x"}; },
                                   make_retry(clock, sleeper,
                                              {.max_attempts = 3,
                                               .backoff = keel::exponential{100ms, 2.0, 1s},
                                               .jitter = keel::jitter::full})};
    CHECK_FALSE(guarded.try_call().has_value());
    CHECK(sleeper.sleeps() == std::vector<nanoseconds>{50ms, 100ms});
}

TEST_CASE("retry: a result predicate retries 503 and returns 404 unchanged", "[retry]") {
    keel::manual_clock clock;
    keel::virtual_sleeper sleeper{clock};
    auto const is_503 = keel::on_result([](response const& r) { return r.status == 503; });
    std::vector<int> statuses;
    auto guarded = keel::resilient{
        [&](context const& ctx) {
            statuses.push_back(ctx.attempt());
            return response{ctx.attempt() < 3 ? 503 : 404};
        },
        make_retry(clock, sleeper, {.max_attempts = 5, .jitter = keel::jitter::none}, is_503)};
    auto const r = guarded.try_call();
    REQUIRE(r.has_value());
    CHECK(r->status == 404);
    CHECK(statuses.size() == 3);
}

TEST_CASE("retry: when attempts run out on a failing result, that result comes back", "[retry]") {
    keel::manual_clock clock;
    keel::virtual_sleeper sleeper{clock};
    int calls = 0;
    auto guarded = keel::resilient{
        [&] {
            ++calls;
            return response{503};
        },
        make_retry(clock, sleeper, {.max_attempts = 3},
                   keel::on_result([](response const& r) { return r.status == 503; }))};
    auto const r = guarded.try_call();
    REQUIRE(r.has_value());
    CHECK(r->status == 503);
    CHECK(calls == 3);
}

TEST_CASE("retry: exceptions the predicate does not select propagate at once", "[retry]") {
    keel::manual_clock clock;
    keel::virtual_sleeper sleeper{clock};
    int calls = 0;
    auto guarded = keel::resilient{
        [&]() -> int {
            ++calls;
            throw bad_request{"400"};
        },
        make_retry(clock, sleeper, {.max_attempts = 5}, keel::on_exception<upstream_error>{})};
    CHECK_THROWS_AS(guarded(), bad_request);
    CHECK(calls == 1);
}

TEST_CASE("retry: exceptions the predicate selects are retried", "[retry]") {
    keel::manual_clock clock;
    keel::virtual_sleeper sleeper{clock};
    int calls = 0;
    auto guarded = keel::resilient{[&]() -> int {
                                       ++calls;
                                       throw upstream_error{"503"};
                                   },
                                   make_retry(clock, sleeper, {.max_attempts = 4},
                                              keel::on_exception<bad_request, upstream_error>{})};
    CHECK_THROWS_AS(guarded(), upstream_error);
    CHECK(calls == 4);
}

TEST_CASE("retry: an error-code predicate retries the chosen codes only", "[retry]") {
    keel::manual_clock clock;
    keel::virtual_sleeper sleeper{clock};
    int calls = 0;
    auto guarded = keel::resilient{
        [&]() -> keel::outcome<int> {
            ++calls;
            return keel::failure::from(calls == 1 ? keel::errc::unavailable
                                                  : keel::errc::exceeds_capacity);
        },
        make_retry(clock, sleeper, {.max_attempts = 5}, keel::on_error(keel::errc::unavailable))};
    auto const r = guarded.try_call();
    CHECK(r.error() == keel::errc::exceeds_capacity);
    CHECK(calls == 2);
}

TEST_CASE("retry: max_duration bounds attempts and waits together", "[retry]") {
    keel::manual_clock clock;
    keel::virtual_sleeper sleeper{clock};
    int calls = 0;
    auto guarded = keel::resilient{[&]() -> int {
                                       ++calls;
                                       throw upstream_error{"x"};
                                   },
                                   make_retry(clock, sleeper,
                                              {.max_attempts = 10,
                                               .max_duration = 2500ms,
                                               .backoff = keel::constant{1s},
                                               .jitter = keel::jitter::none})};
    CHECK_THROWS_AS(guarded(), upstream_error);
    CHECK(calls == 3); // at 0, 1 s, 2 s; a wait to 3 s would pass 2.5 s
    CHECK(sleeper.sleeps() == std::vector<nanoseconds>{1s, 1s});
}

TEST_CASE("retry: the earlier of the context's deadline and max_duration ends the waits, "
          "in execute() as in start()'s schedule",
          "[retry]") {
    keel::manual_clock clock;
    keel::virtual_sleeper sleeper{clock};
    auto const [max_duration, deadline_in] =
        GENERATE(std::pair{nanoseconds{10s}, nanoseconds{2500ms}},
                 std::pair{nanoseconds{2500ms}, nanoseconds{10s}});
    auto const policy = make_retry(clock, sleeper,
                                   {.max_attempts = 10,
                                    .max_duration = max_duration,
                                    .backoff = keel::constant{1s},
                                    .jitter = keel::jitter::none});
    SECTION("execute()") {
        int calls = 0;
        auto guarded = keel::resilient{[&]() -> keel::outcome<int> {
                                           ++calls;
                                           return keel::failure::from(keel::errc::unavailable);
                                       },
                                       policy};
        context const ctx{1, clock.now() + deadline_in, {}};
        auto const r = guarded.try_call_with(ctx);
        CHECK(r.error() == keel::errc::unavailable);
        CHECK(calls == 3); // at 0, 1 s, 2 s; a wait to 3 s would pass 2.5 s
        CHECK(r.attempts() == 3);
        CHECK(sleeper.sleeps() == std::vector<nanoseconds>{1s, 1s});
    }
    SECTION("start()") {
        context const ctx{1, clock.now() + deadline_in, {}};
        auto plan = policy.start(ctx);
        keel::outcome<int> result = keel::failure::from(keel::errc::unavailable);
        std::vector<nanoseconds> delays;
        while (auto const delay = plan.next_delay(result, false)) {
            delays.push_back(*delay);
            clock.advance(*delay);
        }
        CHECK(delays == std::vector<nanoseconds>{1s, 1s});
        CHECK(plan.attempt() == 3);
    }
}

TEST_CASE("retry: a retry-after hint lengthens the wait", "[retry]") {
    keel::manual_clock clock;
    keel::virtual_sleeper sleeper{clock};
    int calls = 0;
    auto guarded = keel::resilient{
        [&]() -> keel::outcome<int> {
            if (++calls == 1) {
                return keel::failure::from(keel::errc::rate_limited, nanoseconds{3s});
            }
            return 7;
        },
        make_retry(clock, sleeper,
                   {.backoff = keel::constant{100ms}, .jitter = keel::jitter::none})};
    CHECK(guarded() == 7);
    CHECK(sleeper.sleeps() == std::vector<nanoseconds>{3s});
}

TEST_CASE("retry: never waits past the context's deadline, even for a retry-after hint",
          "[retry]") {
    keel::manual_clock clock;
    keel::virtual_sleeper sleeper{clock};
    int calls = 0;
    auto guarded = keel::resilient{
        [&]() -> keel::outcome<int> {
            ++calls;
            return keel::failure::from(keel::errc::rate_limited, nanoseconds{3s});
        },
        make_retry(clock, sleeper,
                   {.backoff = keel::constant{100ms}, .jitter = keel::jitter::none})};
    context const ctx{1, clock.now() + 2s, {}};
    auto const r = guarded.try_call_with(ctx);
    CHECK(r.error() == keel::errc::rate_limited);
    CHECK(r.retry_after() == nanoseconds{3s});
    CHECK(calls == 1);
    CHECK(sleeper.sleeps().empty());
}

TEST_CASE("retry: honor_retry_after = false keeps the backoff", "[retry]") {
    keel::manual_clock clock;
    keel::virtual_sleeper sleeper{clock};
    auto guarded =
        keel::resilient{[]() -> keel::outcome<int> {
                            return keel::failure::from(keel::errc::rate_limited, nanoseconds{3s});
                        },
                        make_retry(clock, sleeper,
                                   {.max_attempts = 2,
                                    .backoff = keel::constant{100ms},
                                    .jitter = keel::jitter::none,
                                    .honor_retry_after = false})};
    CHECK(guarded.try_call().error() == keel::errc::rate_limited);
    CHECK(sleeper.sleeps() == std::vector<nanoseconds>{100ms});
}

TEST_CASE("retry: a fired stop token ends the call without retrying", "[retry]") {
    keel::manual_clock clock;
    keel::virtual_sleeper sleeper{clock};
    int calls = 0;
    auto guarded = keel::resilient{[&]() -> int {
                                       ++calls;
                                       throw upstream_error{"x"};
                                   },
                                   make_retry(clock, sleeper, {.max_attempts = 5})};
    std::stop_source caller;
    caller.request_stop();
    CHECK_THROWS_AS(guarded.call_with(context{}.with_stop_token(caller.get_token())),
                    upstream_error);
    CHECK(calls == 1);
}

TEST_CASE("retry: the wait stops early when the stop token fires", "[retry]") {
    keel::manual_clock clock;
    keel::virtual_sleeper sleeper{clock};
    std::stop_source caller;
    clock.call_at(clock.now() + 50ms, [&] { caller.request_stop(); });
    int calls = 0;
    auto guarded = keel::resilient{
        [&]() -> int {
            ++calls;
            throw upstream_error{"x"};
        },
        make_retry(
            clock, sleeper,
            {.max_attempts = 5, .backoff = keel::constant{1s}, .jitter = keel::jitter::none})};
    auto const r = guarded.try_call_with(context{}.with_stop_token(caller.get_token()));
    CHECK_FALSE(r.has_value());
    CHECK(calls == 1);
    CHECK(clock.now().time_since_epoch() == 50ms);
}

TEST_CASE("retry: on_retry sees the attempt, the failure or result, and the delay", "[retry]") {
    keel::manual_clock clock;
    keel::virtual_sleeper sleeper{clock};
    struct seen {
        int attempt;
        nanoseconds delay;
        bool has_failure;
        int status;
    };
    std::vector<seen> events;
    int calls = 0;
    auto guarded = keel::resilient{
        [&]() -> response {
            if (++calls == 1) {
                throw upstream_error{"x"};
            }
            return response{calls == 2 ? 503 : 200};
        },
        make_retry(clock, sleeper,
                   {.max_attempts = 5,
                    .backoff = keel::linear{10ms, 10ms, 1s},
                    .jitter = keel::jitter::none,
                    .on_retry =
                        [&](keel::retry_event const& e) {
                            auto const* r = e.result<response>();
                            events.push_back({e.attempt(), e.delay(), e.failure() != nullptr,
                                              r ? r->status : 0});
                            CHECK(e.result<int>() == nullptr);
                        }},
                   keel::any_of(keel::on_failure{}, keel::on_result([](response const& r) {
                                    return r.status == 503;
                                })))};
    CHECK(guarded().status == 200);
    REQUIRE(events.size() == 2);
    CHECK(events[0].attempt == 1);
    CHECK(events[0].delay == 10ms);
    CHECK(events[0].has_failure);
    CHECK(events[1].attempt == 2);
    CHECK(events[1].delay == 20ms);
    CHECK_FALSE(events[1].has_failure);
    CHECK(events[1].status == 503);
}

TEST_CASE("retry: an exhausted budget ends the call with retry_budget_exhausted", "[retry]") {
    keel::manual_clock clock;
    keel::virtual_sleeper sleeper{clock};
    keel::basic_retry_budget<keel::manual_clock> budget{
        {.retry_ratio = 0.0, .min_retries_per_second = 0.1, .ttl = 10s}, clock}; // one retry
    int calls = 0;
    auto guarded = keel::resilient{
        [&]() -> int {
            ++calls;
            throw upstream_error{"x"};
        },
        make_retry(clock, sleeper,
                   {.max_attempts = 5, .backoff = keel::constant{0ms}, .budget = &budget})};
    auto const r = guarded.try_call();
    CHECK(calls == 2); // the first call and the one retry the budget allowed
    CHECK(r.error() == keel::errc::retry_budget_exhausted);
    REQUIRE(r.exception() != nullptr); // the last attempt's exception stays available
    CHECK_THROWS_AS(std::rethrow_exception(r.exception()), upstream_error);
    CHECK_THROWS_AS(guarded(), upstream_error); // call() rethrows it
    CHECK(budget.snapshot().refused == 2);
}

TEST_CASE("retry: void calls are retried too", "[retry]") {
    keel::manual_clock clock;
    keel::virtual_sleeper sleeper{clock};
    int calls = 0;
    auto guarded = keel::resilient{[&] {
                                       if (++calls < 3) {
                                           throw upstream_error{"x"};
                                       }
                                   },
                                   make_retry(clock, sleeper, {.max_attempts = 3})};
    CHECK_NOTHROW(guarded());
    CHECK(calls == 3);
}

TEST_CASE("retry: cancellation is not retried by default", "[retry]") {
    keel::manual_clock clock;
    keel::virtual_sleeper sleeper{clock};
    int calls = 0;
    auto guarded = keel::resilient{[&]() -> keel::outcome<int> {
                                       ++calls;
                                       return keel::failure::from(keel::errc::cancelled);
                                   },
                                   make_retry(clock, sleeper, {.max_attempts = 3})};
    CHECK_THROWS_AS(guarded(), keel::cancelled);
    CHECK(calls == 1);
}

TEST_CASE("retry: rejects invalid options with the documented range", "[retry]") {
    CHECK_THROWS_WITH(keel::retry{{.max_attempts = 0}},
                      "keel::retry: max_attempts must be >= 1, got 0");
    CHECK_THROWS_WITH(keel::retry{{.max_duration = -1s}},
                      "keel::retry: max_duration must be >= 0, got -1s");
    keel::backoff const bad = keel::exponential{1s, 0.5, 2s};
    CHECK_THROWS_WITH(keel::retry{{.backoff = bad}},
                      "keel::retry: backoff.multiplier must be finite and >= 1, got 0.5");
}

TEST_CASE("retry: defaults follow resilience4j and the AWS article", "[retry]") {
    keel::retry_options const o;
    CHECK(o.max_attempts == 3);
    CHECK(std::get<keel::exponential>(o.backoff).base == 500ms);
    CHECK(o.jitter == keel::jitter::full);
    CHECK(o.budget == nullptr);
}

TEST_CASE("retry: an enormous retry-after hint never overflows and never waits past max_duration",
          "[retry]") {
    keel::manual_clock clock;
    keel::virtual_sleeper sleeper{clock};
    int calls = 0;
    auto guarded = keel::resilient{
        [&]() -> keel::outcome<int> {
            ++calls;
            return keel::failure::from(keel::errc::rate_limited, nanoseconds::max());
        },
        make_retry(clock, sleeper, {.max_attempts = 3, .max_duration = 10s})};
    CHECK(guarded.try_call().error() == keel::errc::rate_limited);
    CHECK(calls == 1);
    CHECK(sleeper.sleeps().empty());
}

TEST_CASE("retry: max_duration of nanoseconds::max() is no limit", "[retry]") {
    // From a non-zero time, where now + max_duration overflows unless it saturates.
    keel::manual_clock clock{keel::manual_clock::time_point{1h}};
    keel::virtual_sleeper sleeper{clock};
    int calls = 0;
    auto guarded = keel::resilient{[&]() -> int {
                                       ++calls;
                                       throw upstream_error{"x"};
                                   },
                                   make_retry(clock, sleeper,
                                              {.max_attempts = 4,
                                               .max_duration = nanoseconds::max(),
                                               .backoff = keel::constant{1s},
                                               .jitter = keel::jitter::none})};
    CHECK_THROWS_AS(guarded(), upstream_error);
    CHECK(calls == 4);
    CHECK(sleeper.sleeps() == std::vector<nanoseconds>{1s, 1s, 1s});
}

TEST_CASE("retry: a retry-after hint of centuries on a late clock still stops at max_duration",
          "[retry]") {
    keel::manual_clock clock{keel::manual_clock::time_point{nanoseconds::max() - 1h}};
    keel::virtual_sleeper sleeper{clock};
    int calls = 0;
    auto guarded =
        keel::resilient{[&]() -> keel::outcome<int> {
                            ++calls;
                            return keel::failure::from(keel::errc::rate_limited, nanoseconds{2h});
                        },
                        make_retry(clock, sleeper, {.max_attempts = 3, .max_duration = 10s})};
    CHECK(guarded.try_call().error() == keel::errc::rate_limited);
    CHECK(calls == 1);
    CHECK(sleeper.sleeps().empty());
}

TEST_CASE("retry: the outcome says how many attempts the call made and how long it waited, "
          "inner rate-limit waits included",
          "[retry][stats]") {
    keel::manual_clock clock;
    keel::virtual_sleeper sleeper{clock};
    int calls = 0;
    auto flaky = keel::resilient{
        [&]() -> int {
            if (++calls < 3) {
                throw upstream_error{"503"};
            }
            return calls;
        },
        make_retry(
            clock, sleeper,
            {.max_attempts = 5, .backoff = keel::constant{100ms}, .jitter = keel::jitter::none})};
    auto const ok = flaky.try_call();
    REQUIRE(ok.has_value());
    CHECK(ok.stats() == keel::call_stats{3, 200ms});

    auto const once = keel::resilient{[] { return 1; }, make_retry(clock, sleeper, {})}.try_call();
    CHECK(once.stats() == keel::call_stats{1, 0ms});

    // An interrupted wait ends the call: the attempt it waited for never ran.
    std::stop_source stop;
    auto cancelled = keel::resilient{
        [&](context const&) -> int {
            stop.request_stop();
            throw upstream_error{"503"};
        },
        make_retry(clock, sleeper,
                   {.backoff = keel::constant{100ms}, .jitter = keel::jitter::none})};
    auto const stopped = cancelled.try_call_with(context{1, std::nullopt, stop.get_token()});
    CHECK(stopped.attempts() == 1);
}

TEST_CASE("retry: a fallback and a timeout keep the stats of the outcome they replace",
          "[retry][stats]") {
    keel::manual_clock clock;
    keel::virtual_sleeper sleeper{clock};
    auto guarded = keel::resilient{
        []() -> int { throw upstream_error{"503"}; }, keel::fallback{0},
        make_retry(
            clock, sleeper,
            {.max_attempts = 3, .backoff = keel::constant{10ms}, .jitter = keel::jitter::none})};
    auto const r = guarded.try_call();
    REQUIRE(r.has_value());
    CHECK(r.stats() == keel::call_stats{3, 20ms});
}
