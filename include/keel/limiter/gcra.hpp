// SPDX-License-Identifier: MIT
// keel::gcra: the generic cell rate algorithm (the leaky bucket as a meter, as
// in redis-cell, Rust governor and redis_rate). One word of state, the
// theoretical arrival time (TAT) in integer nanoseconds, updated by CAS.
#pragma once

#include <keel/core/clock.hpp>
#include <keel/limiter/decision.hpp>
#include <keel/limiter/limiter.hpp>
#include <keel/version.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <limits>

KEEL_BEGIN_NAMESPACE

/// Configures a keel::gcra.
struct gcra_options {
    /// Permits per `period`: the emission interval is T = period / rate, rounded
    /// up to a whole ns. No default (0 is rejected). Range [1, period in ns].
    std::int64_t rate = 0;
    /// The period `rate` is counted over. Default 1 s. Must be positive.
    std::chrono::nanoseconds period = std::chrono::seconds{1};
    /// Permits that may arrive at once: the delay variation tolerance is
    /// tau = (burst - 1) * T. Default 0 means "equal to rate". redis-cell's
    /// `max_burst` is burst - 1 (it reports limit = max_burst + 1).
    std::int64_t burst = 0;
};

/// Admits n permits at `now` when max(TAT, now) + n * T - now <= burst * T,
/// then advances TAT by n * T.
///
/// Decides exactly as a keel::token_bucket with the same rate, period and burst
/// (TAT = empty_at + burst * T); it is the formulation Redis limiters use.
/// Thread-safe and lock-free: one CAS loop on one 64-bit word; a refusal only
/// loads. Example:
///
///     keel::gcra<> login{{.rate = 5, .period = 1min, .burst = 5}};
///     auto d = login.try_acquire();
template <clock Clock = steady_clock>
class gcra {
public:
    using clock_type = Clock;
    using time_point = typename Clock::time_point;
    using options = gcra_options;

    /// The state of a limiter that has admitted nothing: TAT at the beginning of time.
    static constexpr std::uint64_t fresh_state =
        static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::min());

    /// Validates `opts` (throws std::invalid_argument naming the field).
    explicit gcra(options const& opts, Clock clock = Clock{})
        : m_params(detail::make_rate_params("keel::gcra", opts.rate, opts.period, opts.burst)),
          m_clock(std::move(clock)) {}

    gcra(gcra const&) = delete;
    gcra& operator=(gcra const&) = delete;

    /// Takes `permits` if they conform; reads the clock once.
    decision try_acquire(std::int64_t permits = 1) noexcept {
        return try_acquire(permits, m_clock.now());
    }
    /// Takes `permits` at time `now`. 0 peeks; more than `burst` or negative is unsatisfiable.
    decision try_acquire(std::int64_t permits, time_point now) noexcept {
        return detail::acquire_word(*this, m_state, permits, detail::to_ns(now));
    }

    /// Computes the decision and next state for state word `word` at `now_ns`.
    limiter_step step(std::uint64_t word, std::int64_t permits,
                      std::int64_t now_ns) const noexcept {
        auto const& p = m_params;
        if (permits < 0 || permits > p.burst) {
            return {detail::unsatisfiable(p.burst)};
        }
        auto const stored = static_cast<std::int64_t>(word);
        auto const tat = stored > now_ns ? stored : now_ns;
        auto const new_tat = tat + permits * p.interval;
        decision d;
        d.limit = p.burst;
        if (new_tat - now_ns <= p.span) {
            d.allowed = true;
            d.remaining = (p.span - (new_tat - now_ns)) / p.interval;
            d.reset = std::chrono::nanoseconds{new_tat - now_ns};
            if (permits == 0) {
                return {d};
            }
            return {d, static_cast<std::uint64_t>(new_tat), true};
        }
        d.remaining = std::max<std::int64_t>(0, (p.span - (tat - now_ns)) / p.interval);
        d.retry_after = std::chrono::nanoseconds{new_tat - p.span - now_ns};
        d.reset = std::chrono::nanoseconds{tat - now_ns};
        return {d};
    }

    /// Returns how long from `now_ns` until TAT is in the past (fresh_state's decisions).
    std::int64_t rest_after(std::uint64_t word, std::int64_t now_ns) const noexcept {
        auto const tat = static_cast<std::int64_t>(word);
        return tat > now_ns ? tat - now_ns : 0;
    }

    /// Returns the burst: permits that may arrive at once.
    std::int64_t burst() const noexcept { return m_params.burst; }
    /// Returns the emission interval T (period / rate, rounded up).
    std::chrono::nanoseconds interval() const noexcept {
        return std::chrono::nanoseconds{m_params.interval};
    }
    /// Returns the clock this limiter reads.
    Clock const& clock() const noexcept { return m_clock; }

private:
    std::atomic<std::uint64_t> m_state{fresh_state};
    detail::rate_params m_params;
    [[no_unique_address]] Clock m_clock;
};

KEEL_END_NAMESPACE
