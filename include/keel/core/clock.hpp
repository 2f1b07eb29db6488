// SPDX-License-Identifier: MIT
// Clocks keel reads time from, and the concept all time-reading code is templated
// on. keel::steady_clock is the default; keel::coarse_clock trades resolution (a
// few milliseconds) for a much cheaper read, which pays in rate limiters.
// keel::manual_clock, for tests, lives in keel/testing/manual_clock.hpp.
#pragma once

#include <keel/version.hpp>

#include <chrono>
#include <concepts>
#include <ctime>

KEEL_BEGIN_NAMESPACE

/// Describes a clock keel can read: a copyable value (usually empty, or a cheap
/// handle to shared state) whose const `now()` returns its `time_point`.
///
/// Components store their clock by value, so a stateful clock such as
/// keel::manual_clock must be a handle whose copies share one time.
template <class C>
concept clock = std::copy_constructible<C> && requires(C const& c) {
    typename C::duration;
    typename C::time_point;
    { c.now() } -> std::same_as<typename C::time_point>;
};

/// Reads std::chrono::steady_clock; keel's default clock.
///
/// Thread-safe; costs one vDSO call (about 15-25 ns on x86-64 Linux).
struct steady_clock {
    using duration = std::chrono::steady_clock::duration;
    using rep = duration::rep;
    using period = duration::period;
    using time_point = std::chrono::steady_clock::time_point;
    static constexpr bool is_steady = true;

    /// Returns the current monotonic time.
    static time_point now() noexcept { return std::chrono::steady_clock::now(); }
};

/// Reads CLOCK_MONOTONIC_COARSE where the platform has it (Linux), else
/// std::chrono::steady_clock.
///
/// The coarse clock advances once per kernel tick (1-4 ms) but reads in a few ns,
/// without a hardware counter read. It shares steady_clock's epoch and
/// time_point, so the two can be mixed: a coarse reading is at most one tick
/// behind a steady one. Use it where decisions are per-request and millisecond
/// resolution is enough (rate limiters over windows of seconds); keep
/// steady_clock for timeouts and latency measurements. Thread-safe.
struct coarse_clock {
    using duration = std::chrono::steady_clock::duration;
    using rep = duration::rep;
    using period = duration::period;
    using time_point = std::chrono::steady_clock::time_point;
    static constexpr bool is_steady = true;

    /// Returns the current coarse monotonic time.
    static time_point now() noexcept {
#if defined(CLOCK_MONOTONIC_COARSE)
        ::timespec ts{};
        ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
        return time_point{std::chrono::duration_cast<duration>(
            std::chrono::seconds{ts.tv_sec} + std::chrono::nanoseconds{ts.tv_nsec})};
#else
        return std::chrono::steady_clock::now();
#endif
    }
};

static_assert(clock<steady_clock>);
static_assert(clock<coarse_clock>);

KEEL_END_NAMESPACE
