// SPDX-License-Identifier: MIT
#include <keel/policy/policy.hpp>

#include <keel/core/error.hpp>
#include <keel/core/outcome.hpp>
#include <keel/policy/retry.hpp>
#include <keel/resilient.hpp>
#include <keel/testing/manual_clock.hpp>
#include <keel/testing/virtual_sleeper.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <memory>
#include <string>
#include <type_traits>

namespace {

// A user's metrics policy: counts calls and failures in counters it shares.
struct count_calls {
    std::shared_ptr<std::atomic<int>> calls = std::make_shared<std::atomic<int>>(0);
    std::shared_ptr<std::atomic<int>> failures = std::make_shared<std::atomic<int>>(0);

    template <class Next, class Context>
    auto execute(Next const& next, Context const& ctx) const -> decltype(next(ctx)) {
        calls->fetch_add(1);
        auto result = next(ctx);
        if (!result) {
            failures->fetch_add(1);
        }
        return result;
    }
};

// A user's policy that refuses without calling the rest of the pipeline, and names
// a clock.
struct closed_for_maintenance {
    using clock_type = keel::manual_clock;
    template <class Next, class Context>
    auto execute(Next const&, Context const&) const
        -> decltype(std::declval<Next const&>()(std::declval<Context const&>())) {
        return keel::failure::from(keel::errc::unavailable);
    }
};

// Not policies: execute is not const; execute returns the wrong type.
struct mutable_execute {
    template <class Next, class Context>
    auto execute(Next const& next, Context const& ctx) -> decltype(next(ctx)) {
        return next(ctx);
    }
};
struct returns_int {
    template <class Next, class Context>
    int execute(Next const&, Context const&) const {
        return 0;
    }
};

} // namespace

static_assert(keel::policy_for<count_calls, int>);
static_assert(keel::policy_for<count_calls, void>);
static_assert(keel::policy_for<count_calls, std::string>);
static_assert(
    keel::policy_for<closed_for_maintenance, int, keel::basic_context<keel::manual_clock>>);
static_assert(!keel::policy_for<mutable_execute, int>);
static_assert(!keel::policy_for<returns_int, int>);
static_assert(std::is_void_v<keel::policy_clock_t<count_calls>>);
static_assert(std::is_same_v<keel::policy_clock_t<closed_for_maintenance>, keel::manual_clock>);
static_assert(
    std::is_same_v<keel::policy_clock_t<closed_for_maintenance const&>, keel::manual_clock>);

TEST_CASE("policy: a user's policy composes with keel's and sees every attempt", "[policy]") {
    keel::manual_clock clock;
    keel::virtual_sleeper sleeper{clock}; // the backoff waits advance virtual time
    count_calls outer;
    count_calls inner;
    int failures_left = 2;
    auto guarded = keel::resilient{
        [&failures_left]() -> keel::outcome<int> {
            if (failures_left > 0) {
                --failures_left;
                return keel::failure::from(keel::errc::unavailable);
            }
            return 7;
        },
        outer,
        keel::retry{keel::basic_retry_options<keel::manual_clock>{.max_attempts = 3},
                    keel::on_failure{}, clock, sleeper},
        inner};
    CHECK(guarded() == 7);
    CHECK(outer.calls->load() == 1); // outside the retry: one logical call
    CHECK(outer.failures->load() == 0);
    CHECK(inner.calls->load() == 3); // inside: every attempt
    CHECK(inner.failures->load() == 2);
}

TEST_CASE("policy: a policy may refuse without calling what it wraps", "[policy]") {
    int calls = 0;
    auto guarded = keel::resilient{[&calls] { return ++calls; }, closed_for_maintenance{}};
    CHECK(guarded.try_call().error() == keel::errc::unavailable);
    CHECK(calls == 0);
}
