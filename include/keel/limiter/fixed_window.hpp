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

#include <bit>
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
    /// Range [1 ns, 2^61 ns] (about 73 years: every duration the limiter computes
    /// then fits in int64). Windows are aligned on the clock's epoch.
    std::chrono::nanoseconds window = std::chrono::seconds{1};
};

/// Admits at most `limit` permits per aligned window.
///
/// State is one 64-bit word {window index: 64 - c bits, count: c bits}, c the
/// bits `limit` needs (so at least 32 index bits; 54 for a limit of 1000),
/// updated in one CAS loop; a refusal only loads it. Thread-safe and lock-free.
/// A request whose `now` lies in a window before the stored one (threads racing
/// across a boundary, or an old explicit `now`) counts against the stored
/// window, as if it arrived at that window's start: the state never moves
/// backwards. The stored index is read as the window nearest to now's that has
/// the same low 64 - c bits, so only a state left idle for 2^(63 - c) windows or
/// more can be taken for current or ahead (stricter, for fewer windows than
/// that). Example:
///
///     keel::fixed_window per_second{{.limit = 100, .window = 1s}};
///     if (!per_second.try_acquire()) { return reply_429(); }
template <clock Clock = steady_clock>
class basic_fixed_window : public detail::word_limiter_front<basic_fixed_window<Clock>, Clock> {
public:
    using options = fixed_window_options;

    /// The state of a limiter that has admitted nothing.
    static constexpr std::uint64_t fresh_state = 0;

    /// Validates `opts` (throws std::invalid_argument naming the field) and starts empty.
    explicit basic_fixed_window(options const& opts, Clock clock = Clock{})
        : front(std::move(clock)), m_limit(opts.limit), m_window(opts.window.count()),
          m_divider(opts.window.count() > 0 ? opts.window.count() : 1),
          m_count_bits(static_cast<int>(
              std::bit_width(static_cast<std::uint64_t>(opts.limit > 0 ? opts.limit : 1)))) {
        if (opts.limit < 1 || opts.limit > max_limit) {
            detail::invalid_option("keel::fixed_window", "limit", "in [1, 2^32 - 1]", opts.limit);
        }
        detail::check_window("keel::fixed_window", "window", opts.window);
    }

    /// Returns how long from `now_ns` until `word` is indistinguishable from fresh_state.
    std::int64_t rest_after(std::uint64_t word, std::int64_t now_ns) const noexcept {
        auto const v = view(word, now_ns);
        if (v.count == 0 || v.lag < 0) {
            return 0;
        }
        // At rest when the stored window ends, `lag` windows after now's.
        return detail::saturating_windows(v.lag, m_window, m_window - v.elapsed);
    }

    /// Returns the limit: permits per window.
    std::int64_t limit() const noexcept { return m_limit; }
    /// Returns the window length.
    std::chrono::nanoseconds window() const noexcept { return std::chrono::nanoseconds{m_window}; }

private:
    using front = detail::word_limiter_front<basic_fixed_window<Clock>, Clock>;
    friend front;

    KEEL_ALWAYS_INLINE std::int64_t capacity() const noexcept { return m_limit; }

    // The word decide writes for 1 <= permits <= capacity, or fresh_state.
    KEEL_ALWAYS_INLINE std::uint64_t admit(std::uint64_t word, std::int64_t permits,
                                           std::int64_t now_ns) const noexcept {
        auto const v = current(word, now_ns);
        return v.count + permits <= m_limit ? pack(v.index, v.count + permits) : fresh_state;
    }

    static constexpr std::int64_t max_limit = 0xffff'ffff;

    struct counted {
        std::int64_t index;   // the window the request counts against (full width)
        std::int64_t elapsed; // ns into it, [0, window)
        std::int64_t count;   // permits it holds
        std::int64_t lag;     // the stored window minus now's (0 for an empty state)
    };

    // Reads `word` from now's window: `lag` is the stored index minus now's, as a
    // signed (64 - c)-bit number, so both racing readers and idle states are near.
    KEEL_ALWAYS_INLINE counted view(std::uint64_t word, std::int64_t now_ns) const noexcept {
        auto const index = m_divider.floor_div(now_ns);
        auto const count = static_cast<std::int64_t>(word & count_mask());
        std::int64_t lag = 0;
        if (count != 0) { // a word without permits is fresh_state, whatever its index
            auto const stored = word >> m_count_bits;
            lag = static_cast<std::int64_t>((stored - static_cast<std::uint64_t>(index))
                                            << m_count_bits) >>
                  m_count_bits;
        }
        return {index, now_ns - index * m_window, count, lag};
    }

    // The window and count a request at `now_ns` is decided against.
    KEEL_ALWAYS_INLINE counted current(std::uint64_t word, std::int64_t now_ns) const noexcept {
        auto v = view(word, now_ns);
        if (v.lag > 0) {
            // `now` is behind the state: decide at the start of the stored window.
            v.index += v.lag;
            v.elapsed = 0;
        } else if (v.lag < 0) {
            v.count = 0; // the stored window is over
        }
        return v;
    }

    // Decides 0 <= permits <= limit. The quota is whole, and a permit free, at the
    // window's end: `reset` is that (a refusal's retry_after too), or 0 when empty.
    KEEL_ALWAYS_INLINE limiter_step decide(std::uint64_t word, std::int64_t permits,
                                           std::int64_t now_ns) const noexcept {
        auto const v = current(word, now_ns);
        auto const to_end = std::chrono::nanoseconds{m_window - v.elapsed};
        decision d;
        d.limit = m_limit;
        if (v.count + permits <= m_limit) {
            auto const count = v.count + permits;
            d.allowed = true;
            d.remaining = m_limit - count;
            d.reset = count > 0 ? to_end : std::chrono::nanoseconds{0};
            if (permits == 0) {
                return {d};
            }
            return {d, pack(v.index, count), true};
        }
        d.remaining = m_limit - v.count;
        d.retry_after = to_end;
        d.reset = to_end;
        return {d};
    }

    decision peek(std::uint64_t word, std::int64_t now_ns) const noexcept {
        return decide(word, 0, now_ns).result;
    }

    std::uint64_t count_mask() const noexcept { return (std::uint64_t{1} << m_count_bits) - 1; }

    std::uint64_t pack(std::int64_t index, std::int64_t count) const noexcept {
        return (static_cast<std::uint64_t>(index) << m_count_bits) |
               static_cast<std::uint64_t>(count);
    }

    std::int64_t m_limit;
    std::int64_t m_window;
    detail::divider m_divider; // by m_window
    int m_count_bits;          // bits of the count field: bit_width(limit), 1 to 32
};

/// A fixed window on keel::steady_clock.
using fixed_window = basic_fixed_window<>;

KEEL_END_NAMESPACE
