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

#include <atomic>
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
    /// Window length. Default 1 s. Must be positive.
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
/// State is one word {window index: 20 bits, prev: 22 bits, curr: 22 bits}.
/// Thread-safe and lock-free (one CAS loop; a refusal only loads). Example:
///
///     keel::sliding_counter<> api{{.limit = 600, .window = 1min}};
///     auto d = api.try_acquire();
template <clock Clock = steady_clock>
class sliding_counter {
public:
    using clock_type = Clock;
    using time_point = typename Clock::time_point;
    using options = sliding_counter_options;

    /// The state of a limiter that has admitted nothing.
    static constexpr std::uint64_t fresh_state = 0;
    /// The largest accepted limit.
    static constexpr std::int64_t max_limit = (std::int64_t{1} << 22) - 1;

    /// Validates `opts` (throws std::invalid_argument naming the field) and starts empty.
    explicit sliding_counter(options const& opts, Clock clock = Clock{})
        : m_limit(opts.limit), m_window(opts.window.count()),
          m_divider(opts.window.count() > 0 ? opts.window.count() : 1),
          m_products_fit_64(opts.limit >= 1 && opts.limit <= max_limit && opts.window.count() > 0 &&
                            opts.window.count() <=
                                std::numeric_limits<std::int64_t>::max() / (opts.limit + 1)),
          m_clock(std::move(clock)) {
        if (opts.limit < 1 || opts.limit > max_limit) {
            detail::invalid_option("keel::sliding_counter", "limit", "in [1, 4194303]", opts.limit);
        }
        if (opts.window.count() <= 0) {
            detail::invalid_option("keel::sliding_counter", "window", "positive", opts.window);
        }
    }

    sliding_counter(sliding_counter const&) = delete;
    sliding_counter& operator=(sliding_counter const&) = delete;

    /// Takes `permits` if the weighted count leaves room; reads the clock once.
    decision try_acquire(std::int64_t permits = 1) noexcept {
        return try_acquire(permits, m_clock.now());
    }
    /// Takes `permits` at time `now`. 0 peeks; more than `limit` or negative is unsatisfiable.
    decision try_acquire(std::int64_t permits, time_point now) noexcept {
        return detail::acquire_word(*this, m_state, permits, detail::to_ns(now));
    }

    /// Computes the decision and next state for state word `word` at `now_ns`.
    limiter_step step(std::uint64_t word, std::int64_t permits,
                      std::int64_t now_ns) const noexcept {
        if (permits < 0 || permits > m_limit) {
            return {detail::unsatisfiable(m_limit)};
        }
        auto v = view(word, now_ns);
        auto const w = m_window;
        auto const e = now_ns - v.index * w; // elapsed in the current window, [0, W)
        // Admit iff prev * (W - e) / W + curr + permits <= limit, in integers:
        // x = prev * (W - e) <= (limit - curr - permits) * W. What is left afterwards is
        // (limit - curr) - ceil(x / W), less the permits taken.
        std::int64_t const free = m_limit - v.curr;
        bool admit = false;
        std::int64_t prev_share = 0; // ceil(x / W): the previous window's weight in permits
        if (m_products_fit_64) {     // windows up to about 36 min: 64-bit products
            auto const x = v.prev * (w - e);
            admit = x <= (free - permits) * w;
            prev_share = m_divider.floor_div(x + w - 1);
        } else {
            auto const x = static_cast<detail::int128>(v.prev) * (w - e);
            admit = x <= static_cast<detail::int128>(free - permits) * w;
            prev_share = div_by_window(x + w - 1);
        }
        decision d;
        d.limit = m_limit;
        if (admit) {
            v.curr += permits;
            d.allowed = true;
            d.remaining = free - permits - prev_share;
            d.reset = std::chrono::nanoseconds{reset_from(v.prev, v.curr, e)};
            if (permits == 0) {
                return {d};
            }
            return {d, pack(v.index, v.prev, v.curr), true};
        }
        d.remaining = free > prev_share ? free - prev_share : 0;
        d.retry_after = std::chrono::nanoseconds{retry_from(v.prev, v.curr, e, permits)};
        d.reset = std::chrono::nanoseconds{reset_from(v.prev, v.curr, e)};
        return {d};
    }

    /// Returns how long from `now_ns` until `word` is indistinguishable from fresh_state.
    std::int64_t rest_after(std::uint64_t word, std::int64_t now_ns) const noexcept {
        auto const v = view(word, now_ns);
        return reset_from(v.prev, v.curr, now_ns - v.index * m_window);
    }

    /// Returns the limit: permits per sliding window.
    std::int64_t limit() const noexcept { return m_limit; }
    /// Returns the window length.
    std::chrono::nanoseconds window() const noexcept { return std::chrono::nanoseconds{m_window}; }
    /// Returns the clock this limiter reads.
    Clock const& clock() const noexcept { return m_clock; }

private:
    static constexpr int index_bits = 20;
    static constexpr int count_bits = 22;
    static constexpr std::uint64_t count_mask = (std::uint64_t{1} << count_bits) - 1;
    static constexpr std::uint64_t index_mask = (std::uint64_t{1} << index_bits) - 1;

    struct counts {
        std::int64_t index; // the current aligned window (full width)
        std::int64_t prev;
        std::int64_t curr;
    };

    // Reads `word` as seen from `now_ns`: rolls the counts forward to now's window.
    counts view(std::uint64_t word, std::int64_t& now_ns) const noexcept {
        auto index = m_divider.floor_div(now_ns);
        auto const stored = word >> (2 * count_bits);
        auto const prev = static_cast<std::int64_t>((word >> count_bits) & count_mask);
        auto const curr = static_cast<std::int64_t>(word & count_mask);
        // The distance in windows from the stored index to now's, as a signed
        // 20-bit number.
        auto lag =
            static_cast<std::int64_t>((static_cast<std::uint64_t>(index) - stored) & index_mask);
        if (lag >= (std::int64_t{1} << (index_bits - 1))) {
            lag -= std::int64_t{1} << index_bits;
        }
        if (lag == 0) {
            return {index, prev, curr};
        }
        if (lag == 1) {
            return {index, curr, 0};
        }
        if (lag == -1) {
            // `now` is one window behind the state (a racing reader): evaluate it at
            // the start of the stored window.
            ++index;
            now_ns = index * m_window;
            return {index, prev, curr};
        }
        return {index, 0, 0};
    }

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

    static std::uint64_t pack(std::int64_t index, std::int64_t prev, std::int64_t curr) noexcept {
        return ((static_cast<std::uint64_t>(index) & index_mask) << (2 * count_bits)) |
               (static_cast<std::uint64_t>(prev) << count_bits) | static_cast<std::uint64_t>(curr);
    }

    std::atomic<std::uint64_t> m_state{fresh_state};
    std::int64_t m_limit;
    std::int64_t m_window;
    detail::divider m_divider; // by m_window
    bool m_products_fit_64;    // (limit + 1) * window fits in int64: step needs no 128-bit math
    [[no_unique_address]] Clock m_clock;
};

KEEL_END_NAMESPACE
