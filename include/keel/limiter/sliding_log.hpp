// SPDX-License-Identifier: MIT
// keel::sliding_log: the exact sliding window. It remembers the times of the
// last `limit` admitted permits in a ring and admits only if no window of length
// `window` would hold more than `limit`. O(limit) memory; a mutex guards the
// ring, because updating many words at once has no honest lock-free form here.
#pragma once

#include <keel/core/clock.hpp>
#include <keel/limiter/decision.hpp>
#include <keel/limiter/limiter.hpp>
#include <keel/version.hpp>

#include <chrono>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>

KEEL_BEGIN_NAMESPACE

/// Configures a keel::sliding_log.
struct sliding_log_options {
    /// Permits per sliding window. No default (0 is rejected). Range
    /// [1, 16777216]: the ring holds `limit` 8-byte timestamps, allocated at
    /// construction (16 M permits = 128 MiB, the cap).
    std::int64_t limit = 0;
    /// Window length. Default 1 s. Range [1 ns, 2^61 ns] (about 73 years), as
    /// the other limiters.
    std::chrono::nanoseconds window = std::chrono::seconds{1};
};

/// Admits at most `limit` permits in every window (t - window, t].
///
/// Exact: it stores one timestamp per admitted permit, the last `limit` of
/// them, so a request of n permits is admitted when the n-th oldest stored
/// timestamp has left the window; its retry_after is the time that timestamp
/// leaves. Memory is 8 bytes per permit of `limit`. Thread-safe: a std::mutex
/// guards the ring (the benchmarks measure what it costs beside the lock-free
/// limiters). A `now` earlier than the newest stored time counts as that time.
/// Example:
///
///     keel::sliding_log strict{{.limit = 10, .window = 1s}};
///     auto d = strict.try_acquire();
template <clock Clock = steady_clock>
class basic_sliding_log {
public:
    using clock_type = Clock;
    using time_point = typename Clock::time_point;
    using options = sliding_log_options;

    /// Validates `opts` (throws std::invalid_argument naming the field) and allocates the ring.
    explicit basic_sliding_log(options const& opts, Clock clock = Clock{})
        : m_limit(validate(opts).limit), m_window(opts.window.count()), m_clock(std::move(clock)),
          m_ring(std::make_unique<std::int64_t[]>(static_cast<std::size_t>(opts.limit))) {
        for (std::int64_t i = 0; i < m_limit; ++i) {
            m_ring[static_cast<std::size_t>(i)] = never;
        }
    }

    /// Takes `permits` if the window has room; reads the clock once.
    decision try_acquire(std::int64_t permits = 1) { return try_acquire(permits, m_clock.now()); }
    /// Takes `permits` at time `now`. 0 peeks; more than `limit` or negative is unsatisfiable.
    decision try_acquire(std::int64_t permits, time_point now) {
        std::lock_guard lock{m_mutex};
        decision const d = permits < 0 || permits > m_limit
                               ? detail::unsatisfiable(acquire_locked(0, detail::to_ns(now)))
                               : acquire_locked(permits, detail::to_ns(now));
        m_decisions.record_locked(d, permits);
        return d;
    }

    /// Returns how many requests were allowed, refused and unsatisfiable since construction.
    decision_counts decisions() const noexcept { return m_decisions.read(); }

    /// Returns the limit: permits per sliding window.
    std::int64_t limit() const noexcept { return m_limit; }
    /// Returns the window length.
    std::chrono::nanoseconds window() const noexcept { return std::chrono::nanoseconds{m_window}; }
    /// Returns the clock this limiter reads.
    Clock const& clock() const noexcept { return m_clock; }

private:
    static constexpr std::int64_t never = std::numeric_limits<std::int64_t>::min() / 2;
    static constexpr std::int64_t max_limit = std::int64_t{1} << 24;

    static options const& validate(options const& opts) {
        if (opts.limit < 1 || opts.limit > max_limit) {
            detail::invalid_option("keel::sliding_log", "limit", "in [1, 16777216]", opts.limit);
        }
        detail::check_window("keel::sliding_log", "window", opts.window);
        return opts;
    }

    // The i-th oldest stored timestamp (0-based).
    std::int64_t at(std::int64_t i) const noexcept {
        auto const j = m_head + i; // < 2 * limit: a subtraction instead of a division
        return m_ring[static_cast<std::size_t>(j < m_limit ? j : j - m_limit)];
    }

    // How long from `now_ns` until stored time `t` (<= now) leaves the window; 0 if it has.
    std::int64_t leaves_in(std::int64_t t, std::int64_t now_ns) const noexcept {
        auto const age = detail::saturating_sub(now_ns, t);
        return age < m_window ? m_window - age : 0;
    }

    // How many stored timestamps are inside (now - W, now]: binary search, the ring is sorted.
    std::int64_t in_window(std::int64_t now_ns) const noexcept {
        auto const start = detail::saturating_sub(now_ns, m_window);
        std::int64_t lo = 0;
        std::int64_t hi = m_limit;
        while (lo < hi) {
            auto const mid = lo + (hi - lo) / 2;
            if (at(mid) > start) {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        return m_limit - lo;
    }

    // `reset` is the time until the newest stored time leaves the window (the quota
    // whole again), or with nothing left the time until the oldest does and frees a
    // permit (a refusal's retry_after itself), so a RateLimit t never contradicts
    // Retry-After.
    decision acquire_locked(std::int64_t permits, std::int64_t now_ns) {
        auto const newest = at(m_limit - 1);
        if (now_ns < newest) {
            now_ns = newest;
        }
        decision d;
        d.limit = m_limit;
        // Admitting n keeps the newest limit - n stored times plus n new ones; the
        // window holds at most `limit` iff the n-th oldest has left it.
        auto const wait = permits == 0 ? 0 : leaves_in(at(permits - 1), now_ns);
        if (wait > 0) {
            d.remaining = m_limit - in_window(now_ns);
            d.retry_after = std::chrono::nanoseconds{wait};
            d.reset = d.remaining > 0 ? std::chrono::nanoseconds{leaves_in(newest, now_ns)}
                                      : d.retry_after;
            return d;
        }
        for (std::int64_t i = 0; i < permits; ++i) {
            m_ring[static_cast<std::size_t>(m_head)] = now_ns;
            m_head = m_head + 1 == m_limit ? 0 : m_head + 1;
        }
        d.allowed = true;
        d.remaining = m_limit - in_window(now_ns);
        d.reset =
            std::chrono::nanoseconds{leaves_in(d.remaining > 0 ? at(m_limit - 1) : at(0), now_ns)};
        return d;
    }

    std::int64_t m_limit;
    std::int64_t m_window;
    [[no_unique_address]] Clock m_clock;
    std::mutex m_mutex;
    std::unique_ptr<std::int64_t[]> m_ring; // oldest at m_head; sorted ascending from there
    std::int64_t m_head = 0;
    detail::decision_counters m_decisions; // written under m_mutex
};

/// A sliding log on keel::steady_clock.
using sliding_log = basic_sliding_log<>;

KEEL_END_NAMESPACE
