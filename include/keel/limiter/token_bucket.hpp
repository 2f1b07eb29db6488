// SPDX-License-Identifier: MIT
// keel::token_bucket: a bucket of `burst` permits refilled at `rate` per
// `period`, stored as one word: the time at which the bucket would have been
// empty (folly::TokenBucket's zeroTime), in integer nanoseconds, updated by CAS.
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

/// Configures a keel::token_bucket.
struct token_bucket_options {
    /// Permits added per `period`. No default (0 is rejected). Range [1, period
    /// in ns]: one permit costs period / rate ns rounded up to a whole ns, so the
    /// effective rate is at most the configured one (relative error below
    /// rate / period_ns, e.g. 1e-6 at 1000 per ms).
    std::int64_t rate = 0;
    /// The period `rate` is counted over. Default 1 s. Must be positive.
    std::chrono::nanoseconds period = std::chrono::seconds{1};
    /// Bucket capacity: the most permits taken at once after idling. Default 0
    /// means "equal to rate" (a one-period burst, as Guava's SmoothBursty with
    /// maxBurstSeconds = 1). burst * period / rate must be at most 2^62 ns.
    /// Note that in any span t at most burst + rate * t / period pass, so
    /// burst = rate admits up to 2 x rate within one period.
    std::int64_t burst = 0;
};

/// Admits permits while the bucket holds them; the bucket starts full.
///
/// Tokens at `now` are min(burst, (now - empty_at) / T), T = period / rate;
/// taking n moves empty_at forward by n * T. Integer nanoseconds throughout; a
/// refused request's retry_after is exact (the time at which the same request
/// is admitted if nothing else takes permits). Thread-safe and lock-free: one
/// CAS loop on one 64-bit word; a refusal only loads. Example:
///
///     keel::token_bucket<> calls{{.rate = 100, .period = 1s, .burst = 20}};
///     if (auto d = calls.try_acquire(); !d) { wait(d.retry_after); }
template <clock Clock = steady_clock>
class token_bucket {
public:
    using clock_type = Clock;
    using time_point = typename Clock::time_point;
    using options = token_bucket_options;

    /// The state of a full bucket: empty_at at the beginning of time.
    static constexpr std::uint64_t fresh_state =
        static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::min());

    /// Validates `opts` (throws std::invalid_argument naming the field); the bucket starts full.
    explicit token_bucket(options const& opts, Clock clock = Clock{})
        : m_params(
              detail::make_rate_params("keel::token_bucket", opts.rate, opts.period, opts.burst)),
          m_clock(std::move(clock)) {}

    token_bucket(token_bucket const&) = delete;
    token_bucket& operator=(token_bucket const&) = delete;

    /// Takes `permits` if the bucket holds them; reads the clock once.
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
        auto const empty_at = static_cast<std::int64_t>(word);
        auto const full_at = now_ns - p.span; // a bucket empty before this is full now
        auto const from = empty_at > full_at ? empty_at : full_at;
        auto const next = from + permits * p.interval;
        decision d;
        d.limit = p.burst;
        if (next <= now_ns) {
            d.allowed = true;
            d.remaining = (now_ns - next) / p.interval;
            d.reset = detail::non_negative(next + p.span - now_ns);
            if (permits == 0) {
                return {d};
            }
            return {d, static_cast<std::uint64_t>(next), true};
        }
        d.remaining = std::max<std::int64_t>(0, (now_ns - from) / p.interval);
        d.retry_after = std::chrono::nanoseconds{next - now_ns};
        d.reset = detail::non_negative(from + p.span - now_ns);
        return {d};
    }

    /// Returns how long from `now_ns` until `word` is a full bucket (fresh_state's decisions).
    std::int64_t rest_after(std::uint64_t word, std::int64_t now_ns) const noexcept {
        auto const full_at = static_cast<std::int64_t>(word) + m_params.span;
        return full_at > now_ns ? full_at - now_ns : 0;
    }

    /// Returns the bucket capacity.
    std::int64_t burst() const noexcept { return m_params.burst; }
    /// Returns the time one permit takes to refill (period / rate, rounded up).
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
