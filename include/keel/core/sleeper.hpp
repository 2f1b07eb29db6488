// SPDX-License-Identifier: MIT
// Sleepers: the one seam through which keel waits (between retries, for a queue
// slot, for a rate limit). keel::real_sleeper waits for real and wakes early when
// a std::stop_token fires; keel::virtual_sleeper advances a manual clock
// instead, so tests of backoff run in microseconds. A wait of
// nanoseconds::max() (or any wait past the clock's end) lasts forever: until the
// token fires.
#pragma once

#include <keel/detail/time.hpp>
#include <keel/version.hpp>

#include <chrono>
#include <concepts>
#include <condition_variable>
#include <mutex>
#include <stop_token>

KEEL_BEGIN_NAMESPACE

/// Describes a sleeper: `s.sleep_for(d, token)` waits for `d` unless `token` fires
/// first, and returns true if it waited the whole time, false if it was
/// interrupted (or the token had already fired). A non-positive `d` returns at
/// once: true unless the token has fired. A `d` whose end lies past the clock's
/// range (nanoseconds::max() is the usual spelling) waits until the token fires:
/// "forever" never wraps into "already over". Sleepers are copyable values or handles.
template <class S>
concept sleeper = std::copy_constructible<S> &&
    requires(S& s, std::chrono::nanoseconds d, std::stop_token token) {
    { s.sleep_for(d, token) } -> std::same_as<bool>;
};

/// Sleeps on the calling thread, waking early when the stop token fires.
///
/// Thread-safe and stateless. The wait is on a condition variable bound to the
/// token, so a stop request wakes the sleeper within microseconds rather than
/// at the end of the interval.
struct real_sleeper {
    /// Waits up to `d`; returns true if the whole interval passed without `token` firing.
    /// A `d` ending past steady_clock's range waits until `token` fires (forever if
    /// it cannot).
    bool sleep_for(std::chrono::nanoseconds d, std::stop_token token = {}) const {
        if (token.stop_requested()) {
            return false;
        }
        if (d <= std::chrono::nanoseconds::zero()) {
            return true;
        }
        std::mutex mutex;
        std::condition_variable_any wake;
        std::unique_lock lock{mutex};
        // The predicate is never true: only the end of the wait or the token ends it.
        // An absolute, saturated end: wait_for(d) adds d to now() unchecked, so
        // nanoseconds::max() would wrap into the past and return "slept" at once.
        auto const never = [] { return false; };
        auto const end = detail::saturating_add(std::chrono::steady_clock::now(), d);
        if (end == std::chrono::steady_clock::time_point::max()) {
            wake.wait(lock, token, never);
        } else {
            wake.wait_until(lock, token, end, never);
        }
        return !token.stop_requested();
    }
};

static_assert(sleeper<real_sleeper>);

KEEL_END_NAMESPACE
