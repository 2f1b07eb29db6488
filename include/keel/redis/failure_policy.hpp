// SPDX-License-Identifier: MIT
// What a distributed limiter answers while Redis is slow or down: fail open (the
// default, as Envoy, Stripe and Spring Cloud Gateway do), fail closed, or ask a
// local limiter holding the instance's share of the limit. Also the breaker
// settings that keep a dead Redis from costing a timeout on every request.
#pragma once

#include <keel/detail/validate.hpp>
#include <keel/version.hpp>

#include <chrono>
#include <cstdint>
#include <string_view>

KEEL_BEGIN_NAMESPACE

namespace redis {

/// Chooses the answer of a distributed limiter when Redis cannot decide (an
/// error, a timeout, no free connection, or the breaker guarding Redis is open).
enum class failure_mode : std::uint8_t {
    /// Admit the request (decision_source::fallback_open). The industry default:
    /// Envoy's rate-limit filter (failure_mode_deny = false), Spring Cloud
    /// Gateway's RedisRateLimiter (allowed on any Redis error) and Stripe ("fail
    /// open") all keep serving when the limiter's store is down.
    fail_open,
    /// Reject the request (decision_source::fallback_closed), retry_after set to
    /// when Redis is next probed. Turns a Redis outage into an outage of the
    /// guarded path: for abuse-critical paths only.
    fail_closed,
    /// Decide with an in-process limiter of the same algorithm holding
    /// limit / expected_instances (decision_source::fallback_local), as
    /// rate-limiter-flexible's insurance limiter and Doorman's safe_capacity do.
    local,
};

/// Configures the failure policy and the circuit breaker guarding Redis.
struct failure_policy {
    /// What to answer while Redis cannot decide. Default failure_mode::fail_open
    /// (Envoy, Stripe, Spring Cloud Gateway).
    failure_mode mode = failure_mode::fail_open;
    /// How many instances share the limit; failure_mode::local gives each one
    /// limit / expected_instances (rounded down, at least 1), Doorman's
    /// safe_capacity. Default 1. Range [1, 2^31). Ignored by the other modes.
    std::int64_t expected_instances = 1;
    /// Consecutive failed Redis calls that open the keel::circuit_breaker guarding
    /// Redis (a count window of this size, all failed). Default 5 (gobreaker's
    /// ReadyToTrip default trips after more than 5 consecutive failures). Range
    /// [1, 32768].
    std::int64_t breaker_failures = 5;
    /// How long the breaker stays open before one probe call goes to Redis again
    /// (every time: no backoff, so recovery is noticed within this period).
    /// Default 1 s: Redis restarts in about a second; a probe per second per
    /// instance is no load. Must be positive. While open, every decision is the
    /// failure mode's, with no network wait at all.
    std::chrono::milliseconds breaker_open_for{1000};
};

namespace detail {
/// Throws std::invalid_argument unless `p` is within the documented ranges.
inline void validate(failure_policy const& p, std::string_view component) {
    constexpr std::int64_t max = std::int64_t{1} << 31;
    if (p.mode != failure_mode::fail_open && p.mode != failure_mode::fail_closed &&
        p.mode != failure_mode::local) {
        keel::detail::invalid_configuration(
            component, "on_failure.mode must be fail_open, fail_closed or local");
    }
    if (p.expected_instances < 1 || p.expected_instances >= max) {
        keel::detail::invalid_option(component, "on_failure.expected_instances", "in [1, 2^31)",
                                     p.expected_instances);
    }
    if (p.breaker_failures < 1 || p.breaker_failures > 32768) {
        keel::detail::invalid_option(component, "on_failure.breaker_failures", "in [1, 32768]",
                                     p.breaker_failures);
    }
    if (p.breaker_open_for <= std::chrono::milliseconds::zero()) {
        keel::detail::invalid_option(component, "on_failure.breaker_open_for", "positive",
                                     p.breaker_open_for);
    }
}
} // namespace detail

} // namespace redis

KEEL_END_NAMESPACE
