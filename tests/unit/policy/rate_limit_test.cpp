// SPDX-License-Identifier: MIT
#include <keel/core/context.hpp>
#include <keel/limiter/fixed_window.hpp>
#include <keel/limiter/gcra.hpp>
#include <keel/limiter/sliding_counter.hpp>
#include <keel/limiter/token_bucket.hpp>
#include <keel/policy/policy.hpp>
#include <keel/policy/rate_limit.hpp>
#include <keel/resilient.hpp>
#include <keel/testing/manual_clock.hpp>
#include <keel/testing/virtual_sleeper.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <type_traits>
#include <vector>

using namespace std::chrono_literals;
using keel::manual_clock;
using ctx_type = keel::basic_context<manual_clock>;

static_assert(keel::policy_for<keel::rate_limit<keel::token_bucket>, int>);
static_assert(
    keel::policy_for<keel::rate_limit<keel::basic_gcra<manual_clock>, keel::virtual_sleeper>, int,
                     ctx_type>);
static_assert(std::is_same_v<keel::policy_clock_t<keel::rate_limit<keel::basic_gcra<manual_clock>>>,
                             manual_clock>);

namespace {
// A limiter that refuses with scripted retry_after values, then grants.
struct scripted_limiter {
    using clock_type = manual_clock;
    using time_point = manual_clock::time_point;
    manual_clock m_clock;
    std::vector<std::chrono::nanoseconds> refusals; // in order; then every call is granted
    std::size_t next = 0;
    keel::decision try_acquire(std::int64_t = 1) { return try_acquire(1, m_clock.now()); }
    keel::decision try_acquire(std::int64_t, time_point) {
        keel::decision d;
        if (next < refusals.size()) {
            d.retry_after = refusals[next++];
        } else {
            d.allowed = true;
        }
        return d;
    }
    manual_clock const& clock() const { return m_clock; }
};
static_assert(keel::rate_limiter<scripted_limiter>);

struct counting_call {
    int* calls;
    keel::outcome<int> operator()(ctx_type const&) const {
        ++*calls;
        return 42;
    }
};
} // namespace

TEST_CASE("rate_limit runs the call while permits last, then rejects with retry_after",
          "[rate_limit]") {
    manual_clock clock;
    keel::basic_gcra<manual_clock> limiter{{.rate = 1, .period = 1s, .burst = 2}, clock};
    keel::rate_limit policy{limiter};
    int calls = 0;
    ctx_type ctx;
    CHECK(*policy.execute(counting_call{&calls}, ctx) == 42);
    CHECK(*policy.execute(counting_call{&calls}, ctx) == 42);
    auto const r = policy.execute(counting_call{&calls}, ctx);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.failure().is(keel::errc::rate_limited));
    CHECK(r.retry_after() == 1s);
    CHECK(calls == 2);
    CHECK_THROWS_AS(r.value(), keel::rate_limited);
}

TEST_CASE("rate_limit waits through the sleeper up to max_wait", "[rate_limit]") {
    manual_clock clock;
    keel::virtual_sleeper sleeper{clock};
    keel::basic_token_bucket<manual_clock> limiter{{.rate = 10, .period = 1s, .burst = 1}, clock};
    keel::rate_limit policy{limiter, {.max_wait = 250ms}, sleeper};
    int calls = 0;
    ctx_type ctx;
    CHECK(policy.execute(counting_call{&calls}, ctx).has_value());
    CHECK(policy.execute(counting_call{&calls}, ctx).has_value()); // waited 100 ms
    CHECK(sleeper.total() == 100ms);
    CHECK(clock.now().time_since_epoch() == 100ms);
    CHECK(calls == 2);

    keel::rate_limit strict{limiter, {.permits = 1, .max_wait = 50ms}, sleeper};
    auto const r = strict.execute(counting_call{&calls}, ctx);
    CHECK(r.failure().is(keel::errc::rate_limited));
    CHECK(r.retry_after() == 100ms);
    CHECK(sleeper.total() == 100ms); // no wait started
}

TEST_CASE("rate_limit does not start a wait that ends past the deadline", "[rate_limit]") {
    manual_clock clock;
    keel::virtual_sleeper sleeper{clock};
    keel::basic_token_bucket<manual_clock> limiter{{.rate = 1, .period = 1s, .burst = 1}, clock};
    keel::rate_limit policy{limiter, {.max_wait = 10s}, sleeper};
    int calls = 0;
    CHECK(policy.execute(counting_call{&calls}, ctx_type{}).has_value());
    ctx_type const ctx{1, manual_clock::time_point{500ms}, {}};
    auto const r = policy.execute(counting_call{&calls}, ctx);
    CHECK(r.failure().is(keel::errc::rate_limited));
    CHECK(sleeper.sleeps().empty());
}

TEST_CASE("rate_limit stops waiting when the stop token fires", "[rate_limit]") {
    manual_clock clock;
    keel::virtual_sleeper sleeper{clock};
    keel::basic_fixed_window<manual_clock> limiter{{.limit = 1, .window = 1s}, clock};
    keel::rate_limit policy{limiter, {.max_wait = 5s}, sleeper};
    int calls = 0;
    std::stop_source source;
    ctx_type const ctx{1, std::nullopt, source.get_token()};
    CHECK(policy.execute(counting_call{&calls}, ctx).has_value());
    clock.call_at(manual_clock::time_point{300ms}, [&] { source.request_stop(); });
    auto const r = policy.execute(counting_call{&calls}, ctx);
    CHECK(r.failure().is(keel::errc::cancelled));
    CHECK(clock.now().time_since_epoch() == 300ms);
    CHECK(calls == 1);
    auto const again = policy.execute(counting_call{&calls}, ctx);
    CHECK(again.failure().is(keel::errc::cancelled));
}

TEST_CASE("rate_limit fails unsatisfiable requests with exceeds_capacity", "[rate_limit]") {
    manual_clock clock;
    keel::basic_fixed_window<manual_clock> limiter{{.limit = 3, .window = 1s}, clock};
    keel::rate_limit policy{limiter, {.permits = 4, .max_wait = 1h}};
    int calls = 0;
    auto const r = policy.execute(counting_call{&calls}, ctx_type{});
    CHECK(r.failure().is(keel::errc::exceeds_capacity));
    CHECK(calls == 0);
    CHECK_THROWS_WITH((keel::rate_limit{limiter, {.permits = 0}}),
                      "keel::rate_limit: permits must be at least 1, got 0");
    CHECK_THROWS_AS((keel::rate_limit{limiter, {.max_wait = -1s}}), std::invalid_argument);
}

TEST_CASE("rate_limit composes in keel::resilient: try_call rejects, call throws rate_limited",
          "[rate_limit]") {
    manual_clock clock;
    keel::basic_sliding_counter<manual_clock> limiter{{.limit = 2, .window = 1s}, clock};
    int calls = 0;
    auto guarded =
        keel::resilient{[&](ctx_type const&) { return ++calls; }, keel::rate_limit{limiter}};
    static_assert(std::is_same_v<decltype(guarded)::clock_type, manual_clock>);
    CHECK(guarded.try_call().value() == 1);
    CHECK(guarded() == 2);
    auto const r = guarded.try_call();
    REQUIRE_FALSE(r.has_value());
    CHECK(r.failure().is(keel::errc::rate_limited));
    // The next window starts at 1 s and weighs the 2 permits of [0, 1) until 1.5 s.
    CHECK(r.retry_after() == 1500ms);
    try {
        (void)guarded();
        FAIL("expected keel::rate_limited");
    } catch (keel::rate_limited const& e) {
        CHECK(e.retry_after() == std::optional<std::chrono::nanoseconds>{1500ms});
    }
    clock.advance(2s);
    CHECK(guarded() == 3);
    CHECK(calls == 3);
}

TEST_CASE("rate_limit never starts a wait of centuries that ends past the deadline",
          "[rate_limit]") {
    // From a non-zero time, where now + retry_after overflows unless it saturates.
    manual_clock clock{manual_clock::time_point{1h}};
    keel::virtual_sleeper sleeper{clock};
    scripted_limiter limiter{clock, {std::chrono::nanoseconds::max()}};
    keel::rate_limit policy{limiter, {.max_wait = std::chrono::nanoseconds::max()}, sleeper};
    int calls = 0;
    ctx_type const ctx{1, clock.now() + 1s, {}};
    auto const r = policy.execute(counting_call{&calls}, ctx);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.failure().is(keel::errc::rate_limited));
    CHECK(calls == 0);
    CHECK(sleeper.sleeps().empty());
}

TEST_CASE("rate_limit keeps the total wait within max_wait even when the sum would overflow",
          "[rate_limit]") {
    manual_clock clock;
    keel::virtual_sleeper sleeper{clock};
    auto const century = std::chrono::hours{24 * 365 * 100};
    scripted_limiter limiter{clock, {2 * century, 2 * century}};
    keel::rate_limit policy{limiter, {.max_wait = 2 * century + 1h}, sleeper};
    int calls = 0;
    auto const r = policy.execute(counting_call{&calls}, ctx_type{});
    REQUIRE_FALSE(r.has_value());
    CHECK(r.failure().is(keel::errc::rate_limited));
    CHECK(calls == 0);
    CHECK(sleeper.sleeps() == std::vector<std::chrono::nanoseconds>{2 * century});
}

TEST_CASE("rate_limit with max_wait of nanoseconds::max() waits as long as the limiter asks",
          "[rate_limit]") {
    manual_clock clock{manual_clock::time_point{1h}};
    keel::virtual_sleeper sleeper{clock};
    auto const decade = std::chrono::hours{24 * 365 * 10};
    scripted_limiter limiter{clock, {decade, decade}};
    keel::rate_limit policy{limiter, {.max_wait = std::chrono::nanoseconds::max()}, sleeper};
    int calls = 0;
    CHECK(policy.execute(counting_call{&calls}, ctx_type{}).has_value());
    CHECK(calls == 1);
    CHECK(sleeper.total() == 2 * decade);
}

TEST_CASE("guard(limiter) returns the rate_limit policy with the limiter and options",
          "[rate_limit]") {
    manual_clock clock;
    keel::virtual_sleeper sleeper{clock};
    keel::basic_token_bucket<manual_clock> limiter{{.rate = 10, .period = 1s, .burst = 1}, clock};
    auto const rejects = keel::guard(limiter);
    static_assert(std::is_same_v<decltype(rejects),
                                 keel::rate_limit<keel::basic_token_bucket<manual_clock>> const>);
    CHECK(&rejects.limiter() == &limiter);
    CHECK(rejects.options().permits == 1);
    CHECK(rejects.options().max_wait == 0ns);

    auto const waits = keel::guard(limiter, {.max_wait = 250ms}, sleeper);
    static_assert(
        std::is_same_v<decltype(waits), keel::rate_limit<keel::basic_token_bucket<manual_clock>,
                                                         keel::virtual_sleeper> const>);
    CHECK(waits.options().max_wait == 250ms);
    int calls = 0;
    auto guarded = keel::resilient{[&](ctx_type const&) { return ++calls; }, waits};
    CHECK(guarded() == 1);
    CHECK(guarded() == 2); // waited 100 ms for the next token
    CHECK(sleeper.total() == 100ms);
    auto const r = keel::resilient{[&](ctx_type const&) { return ++calls; }, rejects}.try_call();
    CHECK(r.failure().is(keel::errc::rate_limited));
    CHECK(r.retry_after() == 100ms);
    CHECK(calls == 2);
    CHECK_THROWS_WITH(keel::guard(limiter, {.permits = 0}),
                      "keel::rate_limit: permits must be at least 1, got 0");
}

TEST_CASE("guard(limiter) guards a pipeline with a default-clock limiter", "[rate_limit]") {
    keel::token_bucket limiter{{.rate = 1, .period = 1h, .burst = 1}};
    int calls = 0;
    auto guarded = keel::resilient{[&](keel::context const&) { return ++calls; },
                                   keel::guard(limiter, {.max_wait = 0ms})};
    CHECK(guarded.try_call().value() == 1);
    CHECK(guarded.try_call().failure().is(keel::errc::rate_limited));
    CHECK(calls == 1);
}
