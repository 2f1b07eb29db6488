// SPDX-License-Identifier: MIT
// keel::fixed_window: at most `limit` permits per aligned window of length
// `window` (windows start at multiples of `window` on the clock's epoch). The
// cheapest limiter, one 64-bit word updated by CAS, with the known weakness:
// up to 2 x limit can pass within a short span straddling a window boundary.
#pragma once

#include <keel/core/clock.hpp>
#include <keel/limiter/decision.hpp>
#include <keel/limiter/limiter.hpp>
#include <keel/version.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>

KEEL_BEGIN_NAMESPACE

/// Configures a keel::fixed_window.
struct fixed_window_options {
    /// Permits per window. No default (0 is rejected): the quota is the caller's
    /// decision, as in .NET FixedWindowRateLimiterOptions.PermitLimit. Range
    /// [1, 2^32 - 1].
    std::int64_t limit = 0;
    /// Window length. Default 1 s (the unit rate limits are usually quoted in).
    /// Must be positive. Windows are aligned on the clock's epoch.
    std::chrono::nanoseconds window = std::chrono::seconds{1};
};

/// Admits at most `limit` permits per aligned window.
///
/// State is one 64-bit word {window index: 32 bits, count: 32 bits} updated in
/// one CAS loop; a refusal only loads it. Thread-safe and lock-free. A request
/// whose `now` lies in the window just before the stored one (two threads
/// racing across a boundary) counts against the stored window; a state idle for
/// exactly a multiple of 2^32 windows is taken for current (more restrictive,
/// for at most one window). Example:
///
///     keel::fixed_window<> per_second{{.limit = 100, .window = 1s}};
///     if (!per_second.try_acquire()) { return reply_429(); }
template <clock Clock = steady_clock>
class fixed_window {
public:
    using clock_type = Clock;
    using time_point = typename Clock::time_point;
    using options = fixed_window_options;

    /// The state of a limiter that has admitted nothing.
    static constexpr std::uint64_t fresh_state = 0;

    /// Validates `opts` (throws std::invalid_argument naming the field) and starts empty.
    explicit fixed_window(options const& opts, Clock clock = Clock{})
        : m_limit(opts.limit), m_window(opts.window.count()),
          m_divider(opts.window.count() > 0 ? opts.window.count() : 1), m_clock(std::move(clock)) {
        if (opts.limit < 1 || opts.limit > max_limit) {
            detail::invalid_option("keel::fixed_window", "limit", "in [1, 2^32 - 1]", opts.limit);
        }
        if (opts.window.count() <= 0) {
            detail::invalid_option("keel::fixed_window", "window", "positive", opts.window);
        }
    }

    fixed_window(fixed_window const&) = delete;
    fixed_window& operator=(fixed_window const&) = delete;

    /// Takes `permits` if the current window has room; reads the clock once.
    decision try_acquire(std::int64_t permits = 1) noexcept {
        return try_acquire(permits, m_clock.now());
    }
    /// Takes `permits` at time `now` (a time the caller already read).
    ///
    /// `permits` == 0 peeks (allowed, nothing taken); more than `limit` or
    /// negative is refused as unsatisfiable.
    decision try_acquire(std::int64_t permits, time_point now) noexcept {
        return detail::acquire_word(*this, m_state, permits, detail::to_ns(now));
    }

    /// Computes the decision and next state for state word `word` at `now_ns`.
    limiter_step step(std::uint64_t word, std::int64_t permits,
                      std::int64_t now_ns) const noexcept {
        if (permits < 0 || permits > m_limit) {
            return {detail::unsatisfiable(m_limit)};
        }
        auto index = m_divider.floor_div(now_ns);
        auto const stored = static_cast<std::uint32_t>(word >> 32);
        auto count = static_cast<std::int64_t>(word & 0xffff'ffffu);
        auto const lag = static_cast<std::int32_t>(stored - static_cast<std::uint32_t>(index));
        if (lag == 1) {
            // `now` is one window behind the state (a racing reader): count it
            // against the stored window, as if it arrived at that window's start.
            ++index;
            now_ns = index * m_window;
        } else if (lag != 0) {
            count = 0; // the stored window is over
        }
        auto const window_end = (index + 1) * m_window;
        decision d;
        d.limit = m_limit;
        if (count + permits <= m_limit) {
            count += permits;
            d.allowed = true;
            d.remaining = m_limit - count;
            d.reset = detail::non_negative(count > 0 ? window_end - now_ns : 0);
            if (permits == 0) {
                return {d};
            }
            return {d, pack(index, count), true};
        }
        d.remaining = m_limit - count;
        d.retry_after = detail::non_negative(window_end - now_ns);
        d.reset = d.retry_after;
        return {d};
    }

    /// Returns how long from `now_ns` until `word` is indistinguishable from fresh_state.
    std::int64_t rest_after(std::uint64_t word, std::int64_t now_ns) const noexcept {
        auto const index = m_divider.floor_div(now_ns);
        auto const stored = static_cast<std::uint32_t>(word >> 32);
        auto const count = word & 0xffff'ffffu;
        auto const lag = static_cast<std::int32_t>(stored - static_cast<std::uint32_t>(index));
        if (count == 0 || (lag != 0 && lag != 1)) {
            return 0;
        }
        return (index + 1 + lag) * m_window - now_ns;
    }

    /// Returns the limit: permits per window.
    std::int64_t limit() const noexcept { return m_limit; }
    /// Returns the window length.
    std::chrono::nanoseconds window() const noexcept { return std::chrono::nanoseconds{m_window}; }
    /// Returns the clock this limiter reads.
    Clock const& clock() const noexcept { return m_clock; }

private:
    static constexpr std::int64_t max_limit = 0xffff'ffff;

    static std::uint64_t pack(std::int64_t index, std::int64_t count) noexcept {
        return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(index)) << 32) |
               static_cast<std::uint64_t>(count);
    }

    std::atomic<std::uint64_t> m_state{fresh_state};
    std::int64_t m_limit;
    std::int64_t m_window;
    detail::divider m_divider; // by m_window
    [[no_unique_address]] Clock m_clock;
};

KEEL_END_NAMESPACE
