// SPDX-License-Identifier: MIT
// Sleepers: the one seam through which keel waits (between retries, for a queue
// slot, for a rate limit). keel::real_sleeper waits for real and wakes early when
// a std::stop_token fires; keel::virtual_sleeper advances a manual clock
// instead, so tests of backoff run in microseconds.
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
/// once: true unless the token has fired. Sleepers are copyable values or handles.
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
        // The predicate is never true: only the timeout or the token ends the wait. An
        // absolute, saturated deadline: wait_for(nanoseconds::max()) adds to now() and wraps.
        wake.wait_until(lock, token, detail::saturating_add(std::chrono::steady_clock::now(), d),
                        [] { return false; });
        return !token.stop_requested();
    }
};

static_assert(sleeper<real_sleeper>);

KEEL_END_NAMESPACE
