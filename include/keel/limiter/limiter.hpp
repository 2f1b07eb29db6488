// SPDX-License-Identifier: MIT
// The rate limiter concept every keel limiter meets (try_acquire with and
// without an explicit `now`), the hooks keel::keyed uses to keep one limiter
// state per key, and the integer helpers the algorithms share: time as signed
// nanoseconds, 128-bit products, option validation.
#pragma once

#include <keel/core/clock.hpp>
#include <keel/detail/integer.hpp>
#include <keel/detail/time.hpp>
#include <keel/detail/validate.hpp>
#include <keel/limiter/decision.hpp>
#include <keel/version.hpp>

#include <atomic>
#include <chrono>
#include <concepts>
#include <cstdint>
#include <string_view>

KEEL_BEGIN_NAMESPACE

/// Describes a rate limiter: `try_acquire(permits)` reads the limiter's clock,
/// `try_acquire(permits, now)` uses a time the caller already read, both return
/// a keel::decision and never block.
template <class L>
concept rate_limiter = requires(L& l, std::int64_t permits, typename L::time_point now) {
    typename L::clock_type;
    typename L::time_point;
    { l.try_acquire() } -> std::same_as<decision>;
    { l.try_acquire(permits) } -> std::same_as<decision>;
    { l.try_acquire(permits, now) } -> std::same_as<decision>;
};

/// The outcome of one limiter step on a state word: the decision and, when
/// `write` is set, the word to store.
struct limiter_step {
    decision result;        ///< What to answer.
    std::uint64_t next = 0; ///< The new state word when `write`.
    bool write = false;     ///< Whether the state changes.
};

/// Describes a limiter whose whole state is one 64-bit word, so keel::keyed can
/// store a word per key and share the limiter's configuration. `step` computes
/// the decision and the next word from a word and a time (pure: no side
/// effects); `rest_after` returns how long from `now_ns` until the word decides
/// every future request exactly as `fresh_state` does (0: it already does).
/// Evicting a word at rest therefore changes no future decision: the proof that
/// keel::keyed's eviction is not a way around the limit. A word written by a
/// step (`write` set) never equals `fresh_state`, so keel::keyed marks empty
/// slots with it. keel::keyed also builds one limiter from `L::options` and a
/// clock, and reads the time through its `clock()`.
template <class L>
concept word_limiter = rate_limiter<L> &&
    std::constructible_from<L, typename L::options const&, typename L::clock_type> &&
    requires(L const& l, std::uint64_t word, std::int64_t permits, std::int64_t now_ns) {
    { L::fresh_state } -> std::convertible_to<std::uint64_t>;
    { l.step(word, permits, now_ns) } -> std::same_as<limiter_step>;
    { l.rest_after(word, now_ns) } -> std::same_as<std::int64_t>;
    { l.clock().now() } -> std::same_as<typename L::time_point>;
};

namespace detail {

/// A decision refusing `permits` that can never be granted (more than `limit`, or negative).
constexpr decision unsatisfiable(std::int64_t limit) noexcept {
    decision d;
    d.allowed = false;
    d.unsatisfiable = true;
    d.limit = limit;
    return d;
}

/// Returns a non-negative nanosecond duration of `ns` (negative clamps to zero).
constexpr std::chrono::nanoseconds non_negative(std::int64_t ns) noexcept {
    return std::chrono::nanoseconds{ns > 0 ? ns : 0};
}

/// The validated integer parameters of a rate-and-burst limiter (token bucket, GCRA).
struct rate_params {
    std::int64_t burst;    // permits the bucket holds
    std::int64_t interval; // T: ns per permit, rounded up
    std::int64_t span;     // burst * T: ns to refill a whole bucket
};

/// Validates rate / period / burst for `component` and derives the emission interval.
inline rate_params make_rate_params(std::string_view component, std::int64_t rate,
                                    std::chrono::nanoseconds period, std::int64_t burst) {
    if (period.count() <= 0) {
        invalid_option(component, "period", "positive", period);
    }
    if (rate < 1 || rate > period.count()) {
        // A rate above one permit per ns would truncate the emission interval to 0
        // (the redis-cell #80 failure); refuse it instead of running unlimited.
        invalid_option(component, "rate", "in [1, period in ns]", rate);
    }
    auto const b = burst == 0 ? rate : burst;
    if (b < 0) {
        invalid_option(component, "burst", "0 (same as rate) or positive", burst);
    }
    // Rounding the interval up makes the rate slightly lower, never higher.
    auto const interval = (period.count() + rate - 1) / rate;
    if (b > (std::int64_t{1} << 62) / interval) {
        invalid_option(component, "burst", "at most 2^62 ns of refill (burst * period / rate)", b);
    }
    return {b, interval, b * interval};
}

/// Applies `limiter.step` to `state` in one CAS loop: a refusal only loads, an
/// admission retries until its compare-exchange wins. Relaxed ordering: the
/// word is the whole state and publishes no other data.
template <class L>
decision acquire_word(L const& limiter, std::atomic<std::uint64_t>& state, std::int64_t permits,
                      std::int64_t now_ns) noexcept {
    auto current = state.load(std::memory_order_relaxed);
    for (;;) {
        limiter_step const s = limiter.step(current, permits, now_ns);
        if (!s.write || state.compare_exchange_weak(current, s.next, std::memory_order_relaxed,
                                                    std::memory_order_relaxed)) {
            return s.result;
        }
    }
}

} // namespace detail

KEEL_END_NAMESPACE
