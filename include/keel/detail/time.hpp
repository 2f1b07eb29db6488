// SPDX-License-Identifier: MIT
// Time helpers shared by everything that computes a deadline: a time point as
// signed nanoseconds, and `now + d` that saturates at the clock's end instead of
// wrapping, so a wait or budget of nanoseconds::max() means forever.
#pragma once

#include <keel/detail/integer.hpp>
#include <keel/version.hpp>

#include <chrono>
#include <cstdint>

KEEL_BEGIN_NAMESPACE
namespace detail {

/// Returns `t` as signed nanoseconds since its clock's epoch.
template <class TimePoint>
constexpr std::int64_t to_ns(TimePoint t) noexcept {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

/// Converts `d` to the duration `To`, clamped to To's range instead of
/// overflowing (nanoseconds::max() in seconds, or hours::max() in nanoseconds).
template <class To, class Rep, class Period>
constexpr To saturating_cast(std::chrono::duration<Rep, Period> d) noexcept {
    // long double holds every int64 exactly, so the range check itself cannot overflow.
    using wide = std::chrono::duration<long double, typename To::period>;
    auto const w = std::chrono::duration_cast<wide>(d);
    if (w >= wide{To::max()}) {
        return To::max();
    }
    if (w <= wide{To::min()}) {
        return To::min();
    }
    return std::chrono::duration_cast<To>(d);
}

/// Returns `t + d`, or TimePoint::max() (min() for a negative `d`) where the sum
/// would not fit: how keel adds a duration it did not choose to a time point, so
/// that "forever" never wraps into the past.
template <class TimePoint, class Rep, class Period>
constexpr TimePoint saturating_add(TimePoint t, std::chrono::duration<Rep, Period> d) noexcept {
    using duration = typename TimePoint::duration;
    auto const step = saturating_cast<duration>(d).count();
    typename duration::rep sum{};
    if (__builtin_add_overflow(t.time_since_epoch().count(), step, &sum)) {
        return step > 0 ? TimePoint::max() : TimePoint::min();
    }
    return TimePoint{duration{sum}};
}

/// Returns `a + b`, or nanoseconds::max() (min()) where the sum would not fit.
constexpr std::chrono::nanoseconds saturating_add(std::chrono::nanoseconds a,
                                                  std::chrono::nanoseconds b) noexcept {
    std::chrono::nanoseconds::rep sum{};
    if (__builtin_add_overflow(a.count(), b.count(), &sum)) {
        return b.count() > 0 ? std::chrono::nanoseconds::max() : std::chrono::nanoseconds::min();
    }
    return std::chrono::nanoseconds{sum};
}

} // namespace detail
KEEL_END_NAMESPACE
