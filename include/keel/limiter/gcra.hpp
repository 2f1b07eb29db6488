// SPDX-License-Identifier: MIT
// keel::gcra: the generic cell rate algorithm (the leaky bucket as a meter, as
// in redis-cell, Rust governor and redis_rate). One word of state, the
// theoretical arrival time (TAT) in integer nanoseconds, updated by CAS.
#pragma once

#include <keel/core/clock.hpp>
#include <keel/limiter/decision.hpp>
#include <keel/limiter/limiter.hpp>
#include <keel/version.hpp>

#include <chrono>
#include <cstdint>
#include <limits>

KEEL_BEGIN_NAMESPACE

/// Configures a keel::gcra.
struct gcra_options {
    /// Permits per `period`: the emission interval is T = period / rate, rounded
    /// up to a whole ns. No default (0 is rejected). Range [1, period in ns].
    std::int64_t rate = 0;
    /// The period `rate` is counted over. Default 1 s. Range [1 ns, 2^61 ns]
    /// (about 73 years: every duration GCRA computes then fits in int64).
    std::chrono::nanoseconds period = std::chrono::seconds{1};
    /// Permits that may arrive at once: the delay variation tolerance is
    /// tau = (burst - 1) * T. Default 0 means "equal to rate". redis-cell's
    /// `max_burst` is burst - 1 (it reports limit = max_burst + 1). burst * T
    /// must be at most 2^62 ns (the default always is).
    std::int64_t burst = 0;
};

/// Admits n permits at `now` when max(TAT, now) + n * T - now <= burst * T,
/// then advances TAT by n * T.
///
/// Decides exactly as a keel::token_bucket with the same rate, period and burst
/// (TAT = empty_at + burst * T); it is the formulation Redis limiters use. A
/// `now` before TAT is measured from TAT as it is; a TAT that would pass the
/// clock's end saturates there. Thread-safe and lock-free: one CAS loop on one
/// 64-bit word; a refusal only loads. Example:
///
///     keel::gcra login{{.rate = 5, .period = 1min, .burst = 5}};
///     auto d = login.try_acquire();
template <clock Clock = steady_clock>
class basic_gcra : public detail::word_limiter_front<basic_gcra<Clock>, Clock> {
public:
    using options = gcra_options;

    /// The state of a limiter that has admitted nothing: TAT at the beginning of time.
    static constexpr std::uint64_t fresh_state =
        static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::min());

    /// Validates `opts` (throws std::invalid_argument naming the field).
    explicit basic_gcra(options const& opts, Clock clock = Clock{})
        : front(std::move(clock)),
          m_params(detail::make_rate_params("keel::gcra", opts.rate, opts.period, opts.burst)) {}

    /// Returns how long from `now_ns` until TAT is in the past (fresh_state's decisions).
    std::int64_t rest_after(std::uint64_t word, std::int64_t now_ns) const noexcept {
        return ahead(word, now_ns);
    }

    /// Returns the burst: permits that may arrive at once.
    std::int64_t burst() const noexcept { return m_params.burst; }
    /// Returns the emission interval T (period / rate, rounded up).
    std::chrono::nanoseconds interval() const noexcept {
        return std::chrono::nanoseconds{m_params.interval};
    }

private:
    using front = detail::word_limiter_front<basic_gcra<Clock>, Clock>;
    friend front;

    KEEL_ALWAYS_INLINE std::int64_t capacity() const noexcept { return m_params.burst; }

    // The word decide writes for 1 <= permits <= capacity, or fresh_state.
    KEEL_ALWAYS_INLINE std::uint64_t admit(std::uint64_t word, std::int64_t permits,
                                           std::int64_t now_ns) const noexcept {
        auto const due = detail::saturating_add(ahead(word, now_ns), permits * m_params.interval);
        return conforms(due, now_ns) ? static_cast<std::uint64_t>(now_ns + due) : fresh_state;
    }

    // TAT - now when TAT is ahead, else 0; saturating for a `now` far behind TAT.
    KEEL_ALWAYS_INLINE static std::int64_t ahead(std::uint64_t word, std::int64_t now_ns) noexcept {
        auto const tat = static_cast<std::int64_t>(word);
        return tat > now_ns ? detail::saturating_sub(tat, now_ns) : 0;
    }

    // Whether a request whose new TAT is `due` from now conforms. A TAT past the
    // clock's end cannot be stored: such a request is refused (stricter, never looser).
    KEEL_ALWAYS_INLINE bool conforms(std::int64_t due, std::int64_t now_ns) const noexcept {
        return due <= m_params.span &&
               due <= detail::saturating_sub(std::numeric_limits<std::int64_t>::max(), now_ns);
    }

    // Permits that conform within `slack` ns of tolerance: a division only when one does.
    std::int64_t conforming(std::int64_t slack) const noexcept {
        return slack < m_params.interval ? 0 : m_params.per_interval.floor_div(slack);
    }

    // Decides 0 <= permits <= burst in durations from now (new TAT - now = `due`), so
    // nothing wraps near the clock's end. `reset` is the time until TAT has passed, or
    // with no permit left the time until the next conforms (a refusal's retry_after
    // itself), so a RateLimit t never contradicts Retry-After.
    KEEL_ALWAYS_INLINE limiter_step decide(std::uint64_t word, std::int64_t permits,
                                           std::int64_t now_ns) const noexcept {
        auto const& p = m_params;
        auto const tat_ahead = ahead(word, now_ns);
        auto const due = detail::saturating_add(tat_ahead, permits * p.interval);
        decision d;
        d.limit = p.burst;
        if (conforms(due, now_ns)) {
            d.allowed = true;
            d.remaining = conforming(p.span - due);
            d.reset = std::chrono::nanoseconds{d.remaining > 0 ? due : due + p.interval - p.span};
            if (permits == 0) {
                return {d};
            }
            return {d, static_cast<std::uint64_t>(now_ns + due), true};
        }
        d.remaining = tat_ahead < p.span ? conforming(p.span - tat_ahead) : 0;
        // At the clock's end `due` may be within the tolerance and still refused.
        d.retry_after = std::chrono::nanoseconds{due > p.span ? due - p.span : 1};
        d.reset = d.remaining > 0 ? std::chrono::nanoseconds{tat_ahead} : d.retry_after;
        return {d};
    }

    decision peek(std::uint64_t word, std::int64_t now_ns) const noexcept {
        return decide(word, 0, now_ns).result;
    }

    detail::rate_params m_params;
};

/// A GCRA limiter on keel::steady_clock.
using gcra = basic_gcra<>;

KEEL_END_NAMESPACE
