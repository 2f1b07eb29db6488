// SPDX-License-Identifier: MIT
// keel::timeout: a per-attempt deadline. Cooperative: the attempt's context gets
// the deadline and a stop token that fires at it (through one shared timer for
// every pending deadline, never a thread per call), and the attempt's outcome is
// errc::timeout once the deadline has passed, even if the call ignored the token
// and returned late. Deadlines nest: an inner timeout never extends an outer one.
#pragma once

#include <keel/core/clock.hpp>
#include <keel/core/context.hpp>
#include <keel/core/error.hpp>
#include <keel/core/outcome.hpp>
#include <keel/detail/deadline_timer.hpp>
#include <keel/detail/time.hpp>
#include <keel/detail/validate.hpp>
#include <keel/version.hpp>

#include <chrono>
#include <concepts>
#include <optional>
#include <stop_token>
#include <type_traits>
#include <utility>

KEEL_BEGIN_NAMESPACE

namespace detail {
struct forward_stop {
    std::stop_source* target;
    void operator()() const noexcept { target->request_stop(); }
};
} // namespace detail

/// Gives each run of the inner pipeline a deadline `duration` from its start.
///
/// The inner pipeline sees `ctx.with_deadline(deadline, token)`: the deadline is
/// the earlier of this one and any outer one, and the token fires at that
/// deadline or when the outer token (the caller's, an outer timeout's) fires.
/// When the inner pipeline returns at or after the deadline, its outcome is
/// replaced by errc::timeout (call() throws keel::timeout_expired); before the
/// deadline its outcome is returned unchanged.
///
/// Cooperative only: the call keeps running until it returns, so a call that
/// ignores the token delays the caller past the deadline (its result is still
/// discarded). keel offers no pessimistic ("walk away") timeout: returning while
/// the call still runs would leave it on another thread with references into the
/// caller's frame, or need a thread per call; see docs/policies.md.
///
/// On a real clock the token is fired by one process-wide timer thread
/// (keel::detail::deadline_timer, started at the first timeout), so stop
/// callbacks the call registers run on that thread and should be short. On a
/// clock with `call_at` (keel::manual_clock) the clock fires it, in virtual time.
/// Cost per attempt: a std::stop_source (one allocation: its shared stop state), a
/// timer heap insertion and removal under one mutex (no allocation once the heap has
/// grown to the most deadlines pending at once), two clock reads. Thread-safe; a
/// value type.
///
///     auto guarded = keel::resilient{
///         [](keel::context const& ctx) { return fetch(ctx.stop_token()); },
///         keel::timeout{250ms}};
template <clock Clock = steady_clock>
class basic_timeout {
public:
    using clock_type = Clock;

    /// Builds a timeout of `duration`; throws std::invalid_argument unless it is in (0, 1 year].
    /// (Polly's default is 30 s, resilience4j's TimeLimiter 1 s: keel has no default,
    /// the right value depends on the dependency's latency.)
    explicit basic_timeout(
        std::chrono::nanoseconds duration) requires std::default_initializable<Clock>
        : basic_timeout(duration, Clock{}) {}

    /// Builds a timeout of `duration` on `clock` (a keel::manual_clock in tests).
    basic_timeout(std::chrono::nanoseconds duration, Clock clock)
        : m_duration(std::chrono::duration_cast<typename Clock::duration>(duration)),
          m_clock(std::move(clock)) {
        static_assert(detail::scheduling_clock<Clock> ||
                          detail::real_time_point<typename Clock::time_point>,
                      "keel::timeout: the clock must offer call_at/cancel (virtual time) or use "
                      "the time_point of a std::chrono clock");
        // Bounded: a timeout is a deadline, not "forever" (for no deadline, leave the
        // policy out); start + duration saturates on clocks near their end anyway.
        if (duration <= std::chrono::nanoseconds::zero() ||
            duration > std::chrono::hours{24 * 365}) {
            detail::invalid_option("keel::timeout", "duration", "in (0, 1 year]", duration);
        }
    }

    /// Runs `next` under the deadline (see the class).
    template <class Next, class Context>
    auto execute(Next const& next, Context const& ctx) const -> decltype(next(ctx)) {
        using time_point = typename Clock::time_point;
        static_assert(std::is_same_v<typename Context::time_point, time_point>,
                      "keel::timeout: the pipeline's context must use the timeout's clock");
        auto const start = m_clock.now();
        time_point const deadline = deadline_from(start, ctx.deadline());
        if (deadline <= start) {
            return keel::failure::from(errc::timeout);
        }
        try {
            std::stop_source source;
            std::stop_callback<detail::forward_stop> const link{ctx.stop_token(),
                                                                detail::forward_stop{&source}};
            auto result =
                run_until(next, ctx.with_deadline(deadline, source.get_token()), deadline, source);
            return settle(std::move(result), m_clock.now(), deadline);
        } catch (...) {
            // Only the stop state's allocation or the timer (std::bad_alloc,
            // std::system_error starting its thread) can throw: `next` does not.
            return keel::failure::from_current_exception();
        }
    }

    /// Returns the deadline of an attempt starting at `start` inside an enclosing
    /// deadline `outer` (if any): the earlier of start + duration and `outer`. Both
    /// pipelines compute the deadline here; an attempt whose deadline is not after
    /// its start fails with errc::timeout without running.
    typename Clock::time_point
    deadline_from(typename Clock::time_point start,
                  std::optional<typename Clock::time_point> outer) const noexcept {
        auto const own = detail::saturating_add(start, m_duration);
        return outer && *outer < own ? *outer : own;
    }

    /// Returns the outcome of an attempt that ended at `now` under `deadline`:
    /// errc::timeout (keeping the attempt's call_stats) at or after the deadline,
    /// else `result` unchanged. Both pipelines end each attempt here.
    template <class Result>
    static Result settle(Result result, typename Clock::time_point now,
                         typename Clock::time_point deadline) {
        if (now < deadline) {
            return result;
        }
        Result expired{keel::failure::from(errc::timeout)};
        expired.set_stats(result.stats());
        return expired;
    }

    /// Returns the clock the deadlines are read on.
    Clock const& clock() const noexcept { return m_clock; }

    /// Returns the duration of each deadline.
    typename Clock::duration duration() const noexcept { return m_duration; }

private:
    template <class Next, class Context, class TimePoint>
    auto run_until(Next const& next, Context const& inner, TimePoint deadline,
                   std::stop_source const& source) const -> decltype(next(inner)) {
        if constexpr (detail::scheduling_clock<Clock>) {
            Clock clock = m_clock;
            auto const id = clock.call_at(deadline, [source]() mutable { source.request_stop(); });
            auto result = next(inner);
            clock.cancel(id);
            return result;
        } else {
            using timer = detail::deadline_timer<typename TimePoint::clock>;
            typename timer::scheduled const fire_at_deadline{deadline, source};
            return next(inner); // the deadline is cancelled after the call returns
        }
    }

    typename Clock::duration m_duration;
    [[no_unique_address]] Clock m_clock;
};

/// A timeout on keel::steady_clock.
using timeout = basic_timeout<>;

KEEL_END_NAMESPACE
