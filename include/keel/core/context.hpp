// SPDX-License-Identifier: MIT
// keel::context: what a guarded call may see of the pipeline around it: which
// attempt this is, the deadline if a timeout applies, and a std::stop_token that
// fires at that deadline or when the caller gives up. Calls that ignore it still
// work; calls that honour it stop early and free their resources.
#pragma once

#include <keel/core/clock.hpp>
#include <keel/version.hpp>

#include <optional>
#include <stop_token>

KEEL_BEGIN_NAMESPACE

/// Describes one attempt of a guarded call, on the clock `Clock` the pipeline reads.
///
/// A small value (an int, an optional time point and a stop token) passed by
/// const reference to calls that take it. Thread-safe to read; the stop token
/// may fire from another thread (a deadline timer, the caller).
template <clock Clock = steady_clock>
class basic_context {
public:
    using clock_type = Clock;
    using time_point = typename Clock::time_point;

    /// Describes the first attempt with no deadline and a token that never fires.
    basic_context() = default;

    /// Describes attempt `attempt` (1-based) with an optional deadline and a stop token.
    basic_context(int attempt, std::optional<time_point> deadline, std::stop_token token) noexcept
        : m_attempt(attempt), m_deadline(deadline), m_token(std::move(token)) {}

    /// Returns the attempt number: 1 for the first try, 2 for the first retry, ...
    int attempt() const noexcept { return m_attempt; }
    /// Returns the deadline of this attempt, the earliest of all enclosing timeouts, if any.
    std::optional<time_point> deadline() const noexcept { return m_deadline; }
    /// Returns the token that fires at the deadline or when the caller cancels.
    std::stop_token stop_token() const noexcept { return m_token; }
    /// Returns true once the stop token has fired.
    bool stop_requested() const noexcept { return m_token.stop_requested(); }

    /// Returns a copy for attempt `attempt`.
    basic_context with_attempt(int attempt) const {
        return basic_context{attempt, m_deadline, m_token};
    }
    /// Returns a copy whose deadline is the earlier of this one and `deadline`
    /// (an inner timeout never extends an outer one), with the stop token `token`.
    basic_context with_deadline(time_point deadline, std::stop_token token) const {
        auto const earliest = m_deadline && *m_deadline < deadline ? *m_deadline : deadline;
        return basic_context{m_attempt, earliest, std::move(token)};
    }
    /// Returns a copy with the stop token `token`.
    basic_context with_stop_token(std::stop_token token) const {
        return basic_context{m_attempt, m_deadline, std::move(token)};
    }

private:
    int m_attempt = 1;
    std::optional<time_point> m_deadline;
    std::stop_token m_token;
};

/// The context of a pipeline on keel::steady_clock, the type most calls take.
using context = basic_context<>;

KEEL_END_NAMESPACE
