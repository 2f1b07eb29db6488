// SPDX-License-Identifier: MIT
#include <keel/policy/fallback.hpp>

#include <keel/policy/retry.hpp>
#include <keel/policy/timeout.hpp>
#include <keel/resilient.hpp>
#include <keel/testing/manual_clock.hpp>
#include <keel/testing/virtual_sleeper.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <stdexcept>
#include <string>

namespace {
struct upstream_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};
struct response {
    int status = 200;
};
} // namespace

TEST_CASE("fallback: a value replaces a failure", "[fallback]") {
    auto guarded = keel::resilient{[]() -> std::string { throw upstream_error{"x"}; },
                                   keel::fallback{std::string{"anonymous"}}};
    CHECK(guarded() == "anonymous");
}

TEST_CASE("fallback: successes pass through", "[fallback]") {
    auto guarded = keel::resilient{[] { return 1; }, keel::fallback{2}};
    CHECK(guarded() == 1);
}

TEST_CASE("fallback: a function of the failure computes the replacement", "[fallback]") {
    auto guarded = keel::resilient{
        []() -> keel::outcome<int> { return keel::failure::from(keel::errc::circuit_open); },
        keel::fallback{
            [](keel::failure const& f) { return f.is(keel::errc::circuit_open) ? 7 : 0; }}};
    CHECK(guarded() == 7);
}

TEST_CASE("fallback: only the chosen errors are replaced", "[fallback]") {
    auto const handler = keel::fallback{[] { return -1; }, keel::on_error(keel::errc::timeout)};
    auto timed_out = keel::resilient{
        []() -> keel::outcome<int> { return keel::failure::from(keel::errc::timeout); }, handler};
    auto broken = keel::resilient{[]() -> int { throw upstream_error{"x"}; }, handler};
    CHECK(timed_out() == -1);
    CHECK_THROWS_AS(broken(), upstream_error);
}

TEST_CASE("fallback: a result predicate replaces bad results", "[fallback]") {
    auto guarded = keel::resilient{
        [] { return response{503}; },
        keel::fallback{[](keel::outcome<response> const& o) {
                           return response{o.has_value() ? o->status + 1 : 0};
                       },
                       keel::on_result([](response const& r) { return r.status == 503; })}};
    CHECK(guarded().status == 504);
}

TEST_CASE("fallback: a throwing handler becomes a failure", "[fallback]") {
    auto guarded =
        keel::resilient{[]() -> int { throw upstream_error{"x"}; },
                        keel::fallback{[]() -> int { throw std::logic_error{"no cache"}; }}};
    CHECK_THROWS_AS(guarded(), std::logic_error);
}

TEST_CASE("fallback: cancellation is not replaced by default", "[fallback]") {
    auto guarded = keel::resilient{
        []() -> keel::outcome<int> { return keel::failure::from(keel::errc::cancelled); },
        keel::fallback{1}};
    CHECK(guarded.try_call().error() == keel::errc::cancelled);
}

TEST_CASE("fallback: void pipelines run a nullary handler", "[fallback]") {
    int handled = 0;
    auto guarded =
        keel::resilient{[] { throw upstream_error{"x"}; }, keel::fallback{[&] { ++handled; }}};
    CHECK_NOTHROW(guarded());
    CHECK(handled == 1);
}

TEST_CASE("fallback: outermost, it replaces what retry and timeout could not fix",
          "[fallback][retry][timeout]") {
    keel::manual_clock clock;
    keel::virtual_sleeper sleeper{clock};
    int attempts = 0;
    auto guarded =
        keel::resilient{[&](keel::basic_context<keel::manual_clock> const& ctx) {
                            ++attempts;
                            sleeper.sleep_for(std::chrono::seconds{5}, ctx.stop_token());
                            return std::string{"fresh"};
                        },
                        keel::fallback{std::string{"cached"}},
                        keel::retry{keel::basic_retry_options<keel::manual_clock>{
                                        .max_attempts = 2,
                                        .backoff = keel::constant{std::chrono::milliseconds{10}},
                                        .jitter = keel::jitter::none},
                                    keel::on_failure{}, clock, sleeper},
                        keel::basic_timeout{std::chrono::seconds{1}, clock}};
    CHECK(guarded() == "cached");
    CHECK(attempts == 2);
    CHECK(clock.now().time_since_epoch() == std::chrono::milliseconds{2010});
}
