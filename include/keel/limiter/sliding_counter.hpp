// SPDX-License-Identifier: MIT
// keel::sliding_counter: the two-counter sliding window (Cloudflare, Kong,
// drogon): the count of the previous aligned window, weighted by how much of it
// still overlaps the sliding window, plus the current window's count. O(1)
// memory: one 64-bit word updated by CAS. Approximate, with a documented bound.
#pragma once

#include <keel/core/clock.hpp>
#include <keel/limiter/decision.hpp>
#include <keel/limiter/limiter.hpp>
#include <keel/version.hpp>

#include <bit>
#include <chrono>
#include <cstdint>
#include <limits>

KEEL_BEGIN_NAMESPACE

/// Configures a keel::sliding_counter.
struct sliding_counter_options {
    /// Permits per sliding window. No default (0 is rejected), as in .NET
    /// SlidingWindowRateLimiterOptions.PermitLimit. Range [1, 4194303] (2^22 - 1:
    /// both counts and the window index share one 64-bit word).
    std::int64_t limit = 0;
    /// Window length. Default 1 s. Range [1 ns, 2^61 ns] (about 73 years: twice
    /// a window, the longest reset, then fits in int64).
    std::chrono::nanoseconds window = std::chrono::seconds{1};
};

/// Admits a request when `prev * (W - e) / W + curr + permits <= limit`, where
/// `e` is the time elapsed in the current aligned window of length W, `prev` the
/// previous window's count and `curr` the current one's.
///
/// The comparison is exact (integers, 128-bit products; no rounding).
/// Error bound: in every window of length W that ends a fraction f (0 <= f < 1)
/// into an aligned window, at most `limit * (1 + f)` permits are admitted (so
/// never more than 2 x limit, and exactly limit when aligned); the excess needs
/// the previous window's permits packed at its very end. On traffic spread
/// evenly the estimate is close to exact (Cloudflare measured 0.003 % wrong
/// decisions on real traffic). It can also refuse early: just after a boundary
/// it counts the whole previous window even if those requests were long ago.
///
/// State is one word {window index: 64 - 2c bits, prev: c bits, curr: c bits},
/// c the bits `limit` needs (so at least 20 index bits; 44 for a limit of 1000).
/// Thread-safe and lock-free (one CAS loop; a refusal only loads). A request
/// whose `now` lies in a window before the stored one (threads racing across a
/// boundary, or an old explicit `now`) is decided at the start of the stored
/// window: the state never moves backwards. The stored index is read as the
/// window nearest to now's with the same low 64 - 2c bits, so only a state left
/// idle for 2^(63 - 2c) windows or more can be taken for current or ahead
/// (stricter, for fewer windows than that). Example:
///
///     keel::sliding_counter api{{.limit = 600, .window = 1min}};
///     auto d = api.try_acquire();
template <clock Clock = steady_clock>
class basic_sliding_counter
    : public detail::word_limiter_front<basic_sliding_counter<Clock>, Clock> {
public:
    using options = sliding_counter_options;

    /// The state of a limiter that has admitted nothing.
    static constexpr std::uint64_t fresh_state = 0;
    /// The largest accepted limit.
    static constexpr std::int64_t max_limit = (std::int64_t{1} << 22) - 1;

    /// Validates `opts` (throws std::invalid_argument naming the field) and starts empty.
    explicit basic_sliding_counter(options const& opts, Clock clock = Clock{})
        : front(std::move(clock)), m_limit(opts.limit), m_window(opts.window.count()),
          m_divider(opts.window.count() > 0 ? opts.window.count() : 1),
          m_count_bits(static_cast<int>(
              std::bit_width(static_cast<std::uint64_t>(opts.limit > 0 ? opts.limit : 1)))),
          m_products_fit_64(opts.limit >= 1 && opts.limit <= max_limit && opts.window.count() > 0 &&
                            opts.window.count() <=
                                std::numeric_limits<std::int64_t>::max() / (opts.limit + 1)) {
        if (opts.limit < 1 || opts.limit > max_limit) {
            detail::invalid_option("keel::sliding_counter", "limit", "in [1, 4194303]", opts.limit);
        }
        detail::check_window("keel::sliding_counter", "window", opts.window);
    }

    /// Returns how long from `now_ns` until `word` is indistinguishable from fresh_state.
    std::int64_t rest_after(std::uint64_t word, std::int64_t now_ns) const noexcept {
        auto const v = view(word, now_ns);
        if (v.lag > 0) {
            // The stored window starts lag windows after now's; at rest from there.
            return detail::saturating_windows(v.lag, m_window,
                                              reset_from(v.prev, v.curr, 0) - v.elapsed);
        }
        auto const c = current(word, now_ns);
        return reset_from(c.prev, c.curr, c.elapsed);
    }

    /// Returns the limit: permits per sliding window.
    std::int64_t limit() const noexcept { return m_limit; }
    /// Returns the window length.
    std::chrono::nanoseconds window() const noexcept { return std::chrono::nanoseconds{m_window}; }

private:
    using front = detail::word_limiter_front<basic_sliding_counter<Clock>, Clock>;
    friend front;

    KEEL_ALWAYS_INLINE std::int64_t capacity() const noexcept { return m_limit; }

    // The word decide writes for 1 <= permits <= capacity, or fresh_state.
    KEEL_ALWAYS_INLINE std::uint64_t admit(std::uint64_t word, std::int64_t permits,
                                           std::int64_t now_ns) const noexcept {
        auto const v = current(word, now_ns);
        return fits(v, permits) ? pack(v.index, v.prev, v.curr + permits) : fresh_state;
    }

    struct counts {
        std::int64_t index;   // the aligned window decided in (full width)
        std::int64_t elapsed; // e: ns into it, [0, W)
        std::int64_t prev;
        std::int64_t curr;
        std::int64_t lag; // the stored window minus now's (0 for an empty state)
    };

    // Reads `word` from now's window: `lag` is the stored index minus now's, as a
    // signed (64 - 2c)-bit number, so both racing readers and idle states are near.
    KEEL_ALWAYS_INLINE counts view(std::uint64_t word, std::int64_t now_ns) const noexcept {
        auto const index = m_divider.floor_div(now_ns);
        auto const prev = static_cast<std::int64_t>((word >> m_count_bits) & count_mask());
        auto const curr = static_cast<std::int64_t>(word & count_mask());
        std::int64_t lag = 0;
        if ((prev | curr) != 0) { // a word without counts is fresh_state, whatever its index
            auto const shift = 2 * m_count_bits;
            auto const stored = word >> shift;
            lag =
                static_cast<std::int64_t>((stored - static_cast<std::uint64_t>(index)) << shift) >>
                shift;
        }
        return {index, now_ns - index * m_window, prev, curr, lag};
    }

    // The counts a request at `now_ns` is decided on: rolled forward to now's
    // window, or, when `now` is behind the state, the stored window at its start.
    KEEL_ALWAYS_INLINE counts current(std::uint64_t word, std::int64_t now_ns) const noexcept {
        auto v = view(word, now_ns);
        if (v.lag > 0) {
            v.index += v.lag;
            v.elapsed = 0;
        } else if (v.lag == -1) {
            v.prev = v.curr;
            v.curr = 0;
        } else if (v.lag < -1) {
            v.prev = 0;
            v.curr = 0;
        }
        return v;
    }

    // Admit iff prev * (W - e) / W + curr + permits <= limit, in integers:
    // prev * (W - e) <= (limit - curr - permits) * W.
    KEEL_ALWAYS_INLINE bool fits(counts const& v, std::int64_t permits) const noexcept {
        auto const w = m_window;
        auto const room = m_limit - v.curr - permits;
        if (m_products_fit_64) { // windows up to about 36 min: 64-bit products
            return v.prev * (w - v.elapsed) <= room * w;
        }
        return static_cast<detail::int128>(v.prev) * (w - v.elapsed) <=
               static_cast<detail::int128>(room) * w;
    }

    // The previous window's weight in permits, ceil(prev * (W - e) / W).
    std::int64_t prev_share(counts const& v) const noexcept {
        auto const w = m_window;
        if (m_products_fit_64) {
            return m_divider.floor_div(v.prev * (w - v.elapsed) + w - 1);
        }
        return div_by_window(static_cast<detail::int128>(v.prev) * (w - v.elapsed) + w - 1);
    }

    // Decides 0 <= permits <= limit. What is left is (limit - curr) - ceil(prev *
    // (W - e) / W), less the permits taken. `reset` is the time until both counts
    // have slid out, or with nothing left the time until one permit fits (a
    // refusal's retry_after itself), so a RateLimit t never contradicts Retry-After.
    KEEL_ALWAYS_INLINE limiter_step decide(std::uint64_t word, std::int64_t permits,
                                           std::int64_t now_ns) const noexcept {
        auto const v = current(word, now_ns);
        auto const e = v.elapsed;
        std::int64_t const free = m_limit - v.curr;
        decision d;
        d.limit = m_limit;
        if (fits(v, permits)) {
            auto const curr = v.curr + permits;
            d.allowed = true;
            d.remaining = free - permits - prev_share(v);
            d.reset = std::chrono::nanoseconds{d.remaining > 0 ? reset_from(v.prev, curr, e)
                                                               : retry_from(v.prev, curr, e, 1)};
            if (permits == 0) {
                return {d};
            }
            return {d, pack(v.index, v.prev, curr), true};
        }
        auto const share = prev_share(v);
        d.remaining = free > share ? free - share : 0;
        d.retry_after = std::chrono::nanoseconds{retry_from(v.prev, v.curr, e, permits)};
        d.reset = d.remaining > 0 ? std::chrono::nanoseconds{reset_from(v.prev, v.curr, e)}
                                  : d.retry_after;
        return {d};
    }

    decision peek(std::uint64_t word, std::int64_t now_ns) const noexcept {
        return decide(word, 0, now_ns).result;
    }

    std::uint64_t count_mask() const noexcept { return (std::uint64_t{1} << m_count_bits) - 1; }

    // Returns x / W for 0 <= x <= (limit + 1) * W: a 64-bit division when x fits (it
    // does for windows up to 36 min), avoiding the slow 128-bit one on the hot path.
    std::int64_t div_by_window(detail::int128 x) const noexcept {
        if (x <= static_cast<detail::int128>(std::numeric_limits<std::int64_t>::max())) {
            return m_divider.floor_div(static_cast<std::int64_t>(x));
        }
        return static_cast<std::int64_t>(x / m_window);
    }

    // Time from elapsed `e` until both counts have slid out of the window.
    std::int64_t reset_from(std::int64_t prev, std::int64_t curr, std::int64_t e) const noexcept {
        if (curr > 0) {
            return 2 * m_window - e;
        }
        return prev > 0 ? m_window - e : 0;
    }

    // The exact wait, with no other traffic, until `permits` fit: first within
    // the current window as `prev` slides out, else in the next window.
    std::int64_t retry_from(std::int64_t prev, std::int64_t curr, std::int64_t e,
                            std::int64_t permits) const noexcept {
        auto const w = m_window;
        auto const room = m_limit - curr - permits;
        if (room >= 0 && prev > 0) {
            // Smallest e' with prev * (W - e') <= room * W.
            auto const at = w - detail::mul_div_floor(room, w, prev);
            if (at < w) {
                return at - e;
            }
        }
        // Next window: prev' = curr, curr' = 0; smallest e'' with curr * (W - e'') <= (L - n) * W.
        auto const at_next = curr > m_limit - permits
                                 ? w - detail::mul_div_floor(m_limit - permits, w, curr)
                                 : std::int64_t{0};
        return (w - e) + at_next;
    }

    std::uint64_t pack(std::int64_t index, std::int64_t prev, std::int64_t curr) const noexcept {
        return (static_cast<std::uint64_t>(index) << (2 * m_count_bits)) |
               (static_cast<std::uint64_t>(prev) << m_count_bits) |
               static_cast<std::uint64_t>(curr);
    }

    std::int64_t m_limit;
    std::int64_t m_window;
    detail::divider m_divider; // by m_window
    int m_count_bits;          // bits of each count field: bit_width(limit), 1 to 22
    bool m_products_fit_64;    // (limit + 1) * window fits in int64: step needs no 128-bit math
};

/// A sliding-window counter on keel::steady_clock.
using sliding_counter = basic_sliding_counter<>;

KEEL_END_NAMESPACE
