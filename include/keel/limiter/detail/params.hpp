// SPDX-License-Identifier: MIT
// The arithmetic the limiters share around their one-word states: the longest
// window and refill whose durations stay exact in int64, the validated rate and
// burst of a token bucket or GCRA, and the decisions for requests that can never
// be granted.
#pragma once

#include <keel/detail/integer.hpp>
#include <keel/detail/validate.hpp>
#include <keel/limiter/decision.hpp>
#include <keel/version.hpp>

#include <chrono>
#include <cstdint>
#include <limits>
#include <string_view>

KEEL_BEGIN_NAMESPACE
namespace detail {

/// The longest window or period a limiter accepts: 2^61 ns, about 73 years. Twice
/// a window (a sliding counter's reset), or a bucket's whole refill at the
/// default burst, then stays within max_refill_ns, so every duration a limiter
/// computes is exact in int64.
inline constexpr std::int64_t max_window_ns = std::int64_t{1} << 61;
/// The longest refill a token bucket or GCRA accepts (burst x emission interval): 2^62 ns.
inline constexpr std::int64_t max_refill_ns = std::int64_t{1} << 62;

/// Throws invalid_option for `field` unless `window` is in [1 ns, max_window_ns].
inline void check_window(std::string_view component, std::string_view field,
                         std::chrono::nanoseconds window) {
    if (window.count() <= 0 || window.count() > max_window_ns) {
        invalid_option(component, field, "in [1, 2^61] ns (about 73 years)", window);
    }
}

/// Returns `peek` (the decision of a peek, 0 permits, at the same state and time)
/// as the refusal of a request that can never be granted (more permits than the
/// limit, or negative): `remaining` and `reset` still describe the state, as
/// for any other decision; retry_after is 0, as waiting will not help.
constexpr decision unsatisfiable(decision peek) noexcept {
    peek.allowed = false;
    peek.unsatisfiable = true;
    peek.retry_after = std::chrono::nanoseconds{0};
    return peek;
}

/// Returns windows x window + rest for non-negative arguments, clamped to the int64
/// maximum: how far away a state a whole number of windows ahead comes to rest.
constexpr std::int64_t saturating_windows(std::int64_t windows, std::int64_t window,
                                          std::int64_t rest) noexcept {
    auto const total = static_cast<int128>(windows) * window + rest;
    return total > std::numeric_limits<std::int64_t>::max()
               ? std::numeric_limits<std::int64_t>::max()
               : static_cast<std::int64_t>(total);
}

/// Returns a non-negative nanosecond duration of `ns` (negative clamps to zero).
constexpr std::chrono::nanoseconds non_negative(std::int64_t ns) noexcept {
    return std::chrono::nanoseconds{ns > 0 ? ns : 0};
}

/// The validated integer parameters of a rate-and-burst limiter (token bucket, GCRA).
struct rate_params {
    std::int64_t burst;    // permits the bucket holds
    std::int64_t interval; // T: ns per permit, rounded up
    std::int64_t span;     // burst * T: ns to refill a whole bucket, at most max_refill_ns
    divider per_interval;  // by T, for `remaining` without a division instruction
};

/// Validates rate / period / burst for `component` and derives the emission interval.
inline rate_params make_rate_params(std::string_view component, std::int64_t rate,
                                    std::chrono::nanoseconds period, std::int64_t burst) {
    check_window(component, "period", period);
    if (rate < 1 || rate > period.count()) {
        // A rate above one permit per ns would truncate the emission interval to 0
        // (the redis-cell #80 failure); refuse it instead of running unlimited.
        invalid_option(component, "rate", "in [1, period in ns]", rate);
    }
    auto const b = burst == 0 ? rate : burst;
    if (b < 0) {
        invalid_option(component, "burst", "0 (same as rate) or positive", burst);
    }
    // Rounding the interval up makes the rate slightly lower, never higher. With
    // period <= 2^61 the default burst (= rate) refills in under 2 x period <= 2^62 ns.
    auto const interval = period.count() / rate + (period.count() % rate != 0 ? 1 : 0);
    if (b > max_refill_ns / interval) {
        invalid_option(component, "burst", "at most 2^62 ns of refill (burst * period / rate)", b);
    }
    return {b, interval, b * interval, divider{interval}};
}

} // namespace detail
KEEL_END_NAMESPACE
