// SPDX-License-Identifier: MIT
// keel::token_bucket: a bucket of `burst` permits refilled at `rate` per
// `period`, stored as one word: the time at which the bucket would have been
// empty (folly::TokenBucket's zeroTime), in integer nanoseconds, updated by CAS.
#pragma once

#include <keel/core/clock.hpp>
#include <keel/limiter/decision.hpp>
#include <keel/limiter/limiter.hpp>
#include <keel/version.hpp>

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
    /// The period `rate` is counted over. Default 1 s. Range [1 ns, 2^61 ns]
    /// (about 73 years: every duration the bucket computes then fits in int64).
    std::chrono::nanoseconds period = std::chrono::seconds{1};
    /// Bucket capacity: the most permits taken at once after idling. Default 0
    /// means "equal to rate" (a one-period burst, as Guava's SmoothBursty with
    /// maxBurstSeconds = 1). burst * period / rate must be at most 2^62 ns (the
    /// default always is).
    /// Note that in any span t at most burst + rate * t / period pass, so
    /// burst = rate admits up to 2 x rate within one period.
    std::int64_t burst = 0;
};

/// Admits permits while the bucket holds them; the bucket starts full.
///
/// Tokens at `now` are min(burst, (now - empty_at) / T), T = period / rate;
/// taking n moves empty_at forward by n * T. Integer nanoseconds throughout; a
/// refused request's retry_after is exact (the time at which the same request
/// is admitted if nothing else takes permits). A `now` before empty_at finds no
/// tokens. Times that would pass the clock's end saturate there. Thread-safe
/// and lock-free: one CAS loop on one 64-bit word; a refusal only loads. Example:
///
///     keel::token_bucket calls{{.rate = 100, .period = 1s, .burst = 20}};
///     if (auto d = calls.try_acquire(); !d) { wait(d.retry_after); }
template <clock Clock = steady_clock>
class basic_token_bucket : public detail::word_limiter_front<basic_token_bucket<Clock>, Clock> {
public:
    using options = token_bucket_options;

    /// The state of a full bucket: empty_at at the beginning of time.
    static constexpr std::uint64_t fresh_state =
        static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::min());

    /// Validates `opts` (throws std::invalid_argument naming the field); the bucket starts full.
    explicit basic_token_bucket(options const& opts, Clock clock = Clock{})
        : front(std::move(clock)), m_params(detail::make_rate_params(
                                       "keel::token_bucket", opts.rate, opts.period, opts.burst)) {}

    /// Returns how long from `now_ns` until `word` is a full bucket (fresh_state's decisions).
    std::int64_t rest_after(std::uint64_t word, std::int64_t now_ns) const noexcept {
        auto const to_empty = detail::saturating_sub(static_cast<std::int64_t>(word), now_ns);
        return to_empty > -m_params.span ? detail::saturating_add(to_empty, m_params.span) : 0;
    }

    /// Returns the bucket capacity.
    std::int64_t burst() const noexcept { return m_params.burst; }
    /// Returns the time one permit takes to refill (period / rate, rounded up).
    std::chrono::nanoseconds interval() const noexcept {
        return std::chrono::nanoseconds{m_params.interval};
    }

private:
    using front = detail::word_limiter_front<basic_token_bucket<Clock>, Clock>;
    friend front;

    KEEL_ALWAYS_INLINE std::int64_t capacity() const noexcept { return m_params.burst; }

    // The word decide writes for 1 <= permits <= capacity, or fresh_state.
    KEEL_ALWAYS_INLINE std::uint64_t admit(std::uint64_t word, std::int64_t permits,
                                           std::int64_t now_ns) const noexcept {
        auto const f = fill(word, now_ns);
        auto const cost = permits * m_params.interval;
        return f.elapsed >= cost ? static_cast<std::uint64_t>(f.from + cost) : fresh_state;
    }

    struct filled {
        std::int64_t from;    // empty_at, or the time before which the bucket is full
        std::int64_t elapsed; // now - from: at most span; negative for a now before empty_at
    };

    // Measured as durations from now, so nothing wraps near the clock's ends.
    KEEL_ALWAYS_INLINE filled fill(std::uint64_t word, std::int64_t now_ns) const noexcept {
        auto const empty_at = static_cast<std::int64_t>(word);
        // A bucket empty before full_at is full now.
        auto const full_at = detail::saturating_sub(now_ns, m_params.span);
        auto const from = empty_at > full_at ? empty_at : full_at;
        return {from, detail::saturating_sub(now_ns, from)};
    }

    // Tokens in `elapsed` ns: a division only when there is at least one.
    std::int64_t tokens(std::int64_t elapsed) const noexcept {
        return elapsed < m_params.interval ? 0 : m_params.per_interval.floor_div(elapsed);
    }

    // Decides 0 <= permits <= burst. `reset` is the time to a full bucket, or with
    // no token left the time to the next one (a refusal's retry_after itself), so a
    // RateLimit t never contradicts Retry-After.
    KEEL_ALWAYS_INLINE limiter_step decide(std::uint64_t word, std::int64_t permits,
                                           std::int64_t now_ns) const noexcept {
        auto const& p = m_params;
        auto const f = fill(word, now_ns);
        auto const cost = permits * p.interval;
        decision d;
        d.limit = p.burst;
        if (f.elapsed >= cost) {
            auto const spare = f.elapsed - cost; // tokens' worth left, in [0, span]
            d.allowed = true;
            d.remaining = tokens(spare);
            d.reset = std::chrono::nanoseconds{(d.remaining > 0 ? p.span : p.interval) - spare};
            if (permits == 0) {
                return {d};
            }
            return {d, static_cast<std::uint64_t>(f.from + cost), true};
        }
        d.remaining = tokens(f.elapsed);
        d.retry_after = std::chrono::nanoseconds{detail::saturating_sub(cost, f.elapsed)};
        d.reset = d.remaining > 0 ? std::chrono::nanoseconds{p.span - f.elapsed} : d.retry_after;
        return {d};
    }

    decision peek(std::uint64_t word, std::int64_t now_ns) const noexcept {
        return decide(word, 0, now_ns).result;
    }

    detail::rate_params m_params;
};

/// A token bucket on keel::steady_clock.
using token_bucket = basic_token_bucket<>;

KEEL_END_NAMESPACE
