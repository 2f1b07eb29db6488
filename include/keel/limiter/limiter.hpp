// SPDX-License-Identifier: MIT
// The rate limiter concept every keel limiter meets (try_acquire with and
// without an explicit `now`), the hooks keel::keyed uses to keep one limiter
// state per key, the CAS loop they all decide in, and the front every one-word
// limiter shares (their arithmetic: keel/limiter/detail/params.hpp).
#pragma once

#include <keel/core/clock.hpp>
#include <keel/detail/config.hpp>
#include <keel/detail/time.hpp>
#include <keel/limiter/decision.hpp>
#include <keel/limiter/detail/params.hpp>
#include <keel/version.hpp>

#include <atomic>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>

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
///
/// A state never moves backwards. Threads read the clock in one order and reach
/// the word in another, and a caller may pass an old `now`: a `now_ns` earlier
/// than the time a word records is decided against the word's own time (as
/// strictly as a request at that time, never more loosely), a step never writes
/// a word recording an earlier time than the one it read, and `rest_after` at
/// such a `now_ns` counts from the word's time, so neither a stale request nor a
/// sweep at a stale time can hand a limited key a fresh quota.
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

/// Counts a limiter's decisions (keel::decision_counts): one relaxed atomic per
/// kind, beside the state it counts for. record() is a relaxed add, made only
/// once enable() was called: on a lock-free limiter that add costs about as much
/// as the admission itself (bench/limiter_bench.cpp), so a limiter nobody
/// observes does not pay it. record_locked() always counts, with a load and a
/// store, for callers that serialise their writers under a lock they hold anyway
/// (there it costs what a plain increment does). Readers load without a lock and
/// see each count on its own. A peek (0 permits) is not counted.
class decision_counters {
public:
    /// Starts counting in record(); idempotent and thread-safe.
    void enable() noexcept { m_enabled.store(true, std::memory_order_relaxed); }
    /// Returns true once enable() was called.
    bool enabled() const noexcept { return m_enabled.load(std::memory_order_relaxed); }
    /// Counts `d`, the answer to a request for `permits`, with an atomic add if enabled.
    KEEL_ALWAYS_INLINE void record(decision const& d, std::int64_t permits) noexcept {
        if (m_enabled.load(std::memory_order_relaxed) && permits != 0) [[unlikely]] {
            m_counts[index(d)].fetch_add(1, std::memory_order_relaxed);
        }
    }
    /// Counts `d` (always); the caller holds the lock every writer takes.
    KEEL_ALWAYS_INLINE void record_locked(decision const& d, std::int64_t permits) noexcept {
        if (permits != 0) [[likely]] {
            auto& count = m_counts[index(d)];
            count.store(count.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
        }
    }
    /// Returns the counts.
    decision_counts read() const noexcept {
        return {m_counts[0].load(std::memory_order_relaxed),
                m_counts[1].load(std::memory_order_relaxed),
                m_counts[2].load(std::memory_order_relaxed)};
    }

private:
    KEEL_ALWAYS_INLINE static std::size_t index(decision const& d) noexcept {
        return d.allowed ? 0 : (d.unsatisfiable ? 2 : 1);
    }
    std::atomic<bool> m_enabled{false};
    std::atomic<std::uint64_t> m_counts[3]{};
};

/// Applies `limiter.step` to `state` in one CAS loop: a refusal only loads, an
/// admission retries until its compare-exchange wins. Relaxed ordering: the
/// word is the whole state and publishes no other data.
///
/// A limiter may also provide `next_word(word, permits, now_ns)`: the word `step`
/// would write, or `fresh_state` when it writes nothing (a word written never
/// equals it). The loop then runs only that between the load and the
/// compare-exchange, so a failed exchange repeats no more than the admission
/// test, and builds the decision once, from the word the exchange replaced.
template <class L>
KEEL_ALWAYS_INLINE decision acquire_word(L const& limiter, std::atomic<std::uint64_t>& state,
                                         std::int64_t permits, std::int64_t now_ns) noexcept {
    auto current = state.load(std::memory_order_relaxed);
    if constexpr (requires {
                      {
                          limiter.next_word(current, permits, now_ns)
                          } -> std::same_as<std::uint64_t>;
                  }) {
        for (;;) {
            // A copy the exchange cannot touch, so the step after it reuses the test's work.
            auto const seen = current;
            auto const next = limiter.next_word(seen, permits, now_ns);
            if (next == L::fresh_state ||
                state.compare_exchange_weak(current, next, std::memory_order_relaxed,
                                            std::memory_order_relaxed)) {
                return limiter.step(seen, permits, now_ns).result;
            }
        }
    } else {
        for (;;) {
            limiter_step const s = limiter.step(current, permits, now_ns);
            if (!s.write || state.compare_exchange_weak(current, s.next, std::memory_order_relaxed,
                                                        std::memory_order_relaxed)) {
                return s.result;
            }
        }
    }
}

/// Holds what every one-word limiter shares, written once: a CRTP base
/// (`class basic_x : public detail::word_limiter_front<basic_x<Clock>, Clock>`)
/// that owns the state word and the clock and provides the clock and time
/// types, no copies, both `try_acquire`s (through acquire_word), `step`,
/// `next_word` and `clock()`. A request for more permits than the limiter's
/// capacity, or negative, is unsatisfiable: `step` answers the decision of a
/// peek marked so and `next_word` writes nothing; 0 permits peeks.
///
/// A derived limiter provides its algorithm and the rest of word_limiter:
/// publicly `options`, a constructor from options and a clock that hands the
/// clock to this base, `fresh_state` and `rest_after`; privately, with this
/// base as a friend, `capacity()` (the most permits one request may take: its
/// limit or burst), `decide(word, permits, now_ns)` (the step for 0 <= permits
/// <= capacity), `admit(word, permits, now_ns)` (the word decide writes for
/// 1 <= permits <= capacity, or fresh_state when it refuses: the admission test
/// alone, which acquire_word runs between its load and compare-exchange) and
/// `peek(word, now_ns)` (decide's decision for 0 permits). The clock is
/// [[no_unique_address]], so a stateless clock adds no bytes.
template <class Derived, clock Clock>
class word_limiter_front {
public:
    using clock_type = Clock;
    using time_point = typename Clock::time_point;

    word_limiter_front(word_limiter_front const&) = delete;
    word_limiter_front& operator=(word_limiter_front const&) = delete;

    /// Takes `permits` if the limiter admits them; reads the clock once.
    KEEL_ALWAYS_INLINE decision try_acquire(std::int64_t permits = 1) noexcept {
        return try_acquire(permits, m_clock.now());
    }
    /// Takes `permits` at time `now` (a time the caller already read).
    ///
    /// `permits` == 0 peeks (allowed, nothing taken); more than the limiter's
    /// limit or burst, or negative, is refused as unsatisfiable.
    KEEL_ALWAYS_INLINE decision try_acquire(std::int64_t permits, time_point now) noexcept {
        decision const d = acquire_word(derived(), m_state, permits, to_ns(now));
        m_decisions.record(d, permits);
        return d;
    }

    /// Starts counting decisions for decisions(); until then nothing is counted,
    /// so the lock-free admission pays no atomic add (keel::observe::registry calls
    /// this when the limiter is registered). Idempotent; thread-safe.
    void count_decisions() noexcept { m_decisions.enable(); }

    /// Returns how many requests were allowed, refused and unsatisfiable since
    /// count_decisions() was first called (all zero before). keel::keyed counts
    /// its own, not through this.
    decision_counts decisions() const noexcept { return m_decisions.read(); }

    /// Computes the decision and next state for state word `word` at `now_ns`.
    KEEL_ALWAYS_INLINE limiter_step step(std::uint64_t word, std::int64_t permits,
                                         std::int64_t now_ns) const noexcept {
        auto const& self = derived();
        if (permits < 0 || permits > self.capacity()) [[unlikely]] {
            return {unsatisfiable(self.peek(word, now_ns))};
        }
        return self.decide(word, permits, now_ns);
    }

    /// Returns the word step() writes for `permits` at `now_ns`, or fresh_state if none.
    KEEL_ALWAYS_INLINE std::uint64_t next_word(std::uint64_t word, std::int64_t permits,
                                               std::int64_t now_ns) const noexcept {
        auto const& self = derived();
        if (permits <= 0 || permits > self.capacity()) {
            return Derived::fresh_state;
        }
        return self.admit(word, permits, now_ns);
    }

    /// Returns the clock this limiter reads.
    Clock const& clock() const noexcept { return m_clock; }

protected:
    explicit word_limiter_front(Clock clock) noexcept(std::is_nothrow_move_constructible_v<Clock>)
        : m_clock(std::move(clock)) {}
    ~word_limiter_front() = default;

private:
    KEEL_ALWAYS_INLINE Derived& derived() noexcept { return static_cast<Derived&>(*this); }
    KEEL_ALWAYS_INLINE Derived const& derived() const noexcept {
        return static_cast<Derived const&>(*this);
    }

    std::atomic<std::uint64_t> m_state{Derived::fresh_state};
    // Beside the state word: an admission has just made its cache line this core's.
    decision_counters m_decisions;
    [[no_unique_address]] Clock m_clock;
};

} // namespace detail

KEEL_END_NAMESPACE
