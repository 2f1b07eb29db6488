// SPDX-License-Identifier: MIT
// keel::circuit_breaker: stops calling a dependency that keeps failing or keeps
// being slow, and lets a few probe calls through after a reset timeout to find
// out whether it recovered. States CLOSED, OPEN, HALF_OPEN and the manual
// FORCED_OPEN and DISABLED; failure-rate and slow-call-rate thresholds over a
// count-based or time-based sliding window (as resilience4j), a minimum volume,
// a reset timeout that backs off with jitter on consecutive re-openings, a
// bounded wait in HALF_OPEN, and a generation counter that drops outcomes of
// calls admitted before the state changed (as gobreaker).
//
// Admission and recording in CLOSED are lock-free; transitions take a mutex and
// run listeners after releasing it. keel::guard(breaker) adapts a breaker to
// keel::resilient.
#pragma once

#include <keel/core/clock.hpp>
#include <keel/core/error.hpp>
#include <keel/core/outcome.hpp>
#include <keel/core/random.hpp>
#include <keel/detail/config.hpp>
#include <keel/detail/time.hpp>
#include <keel/policy/detail/circuit_breaker.hpp>
#include <keel/version.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

KEEL_BEGIN_NAMESPACE

/// Enumerates the states of a keel::circuit_breaker.
enum class circuit_state : std::uint8_t {
    closed = 0,      ///< Calls pass; outcomes feed the sliding window.
    open = 1,        ///< Calls are rejected until the reset timeout expires.
    half_open = 2,   ///< A limited number of probe calls pass; their outcomes decide.
    forced_open = 3, ///< Manual: every call is rejected until reset() or disable().
    disabled = 4,    ///< Manual: every call passes and is recorded, but the state never changes.
};

/// Returns the lower-case name of `state`, e.g. "half_open".
constexpr std::string_view to_string(circuit_state state) noexcept {
    switch (state) {
    case circuit_state::closed: return "closed";
    case circuit_state::open: return "open";
    case circuit_state::half_open: return "half_open";
    case circuit_state::forced_open: return "forced_open";
    case circuit_state::disabled: return "disabled";
    }
    return "unknown";
}

/// Enumerates how a completed call counts for a circuit breaker.
enum class circuit_result : std::uint8_t {
    success = 0, ///< Counts as a successful call (still slow if it took too long).
    failure = 1, ///< Counts as a failed call.
    ignored = 2, ///< Counts as nothing: not in the window, and a half-open probe slot is freed.
};

/// Enumerates the kinds of sliding window a circuit breaker computes its rates over.
enum class circuit_window : std::uint8_t {
    count_based = 0, ///< The last `window_size` recorded calls.
    time_based = 1,  ///< The calls recorded in the last `window_size` seconds, in 1 s buckets.
};

/// Enumerates who measures a call's duration for the slow-call check.
enum class call_timing : std::uint8_t {
    /// The breaker reads its clock at admission and again when the outcome is
    /// recorded without a duration. What try_acquire() does.
    by_breaker = 0,
    /// The caller passes the duration it measured (success(elapsed) and the other
    /// overloads), so admission while closed reads no clock. An outcome recorded
    /// without a duration then counts as not slow.
    by_caller = 1,
};

/// Enumerates why a circuit breaker changed state.
enum class circuit_reason : std::uint8_t {
    failure_rate_exceeded = 0,   ///< CLOSED to OPEN: the failure rate reached its threshold.
    slow_call_rate_exceeded = 1, ///< CLOSED to OPEN: the slow-call rate reached its threshold.
    reset_timeout_elapsed = 2,   ///< OPEN to HALF_OPEN: a call arrived after the reset timeout.
    probes_succeeded = 3,        ///< HALF_OPEN to CLOSED: the probes stayed below both thresholds.
    probes_failed = 4,           ///< HALF_OPEN to OPEN: the probes reached a threshold.
    half_open_timeout = 5,       ///< HALF_OPEN to OPEN: probes did not report back in time.
    manual = 6,                  ///< force_open(), disable() or reset().
};

/// Returns the lower-case name of `reason`, e.g. "failure_rate_exceeded".
constexpr std::string_view to_string(circuit_reason reason) noexcept {
    switch (reason) {
    case circuit_reason::failure_rate_exceeded: return "failure_rate_exceeded";
    case circuit_reason::slow_call_rate_exceeded: return "slow_call_rate_exceeded";
    case circuit_reason::reset_timeout_elapsed: return "reset_timeout_elapsed";
    case circuit_reason::probes_succeeded: return "probes_succeeded";
    case circuit_reason::probes_failed: return "probes_failed";
    case circuit_reason::half_open_timeout: return "half_open_timeout";
    case circuit_reason::manual: return "manual";
    }
    return "unknown";
}

/// Configures a keel::circuit_breaker. Validated once, at construction.
///
/// The well-known libraries disagree on defaults (resilience4j: 50 % over the
/// last 100 calls, at least 100 calls, 60 s open, 10 half-open probes; Polly v8:
/// 10 % over 30 s, at least 100 calls, 5 s open, 1 probe; opossum: 50 %, 30 s
/// reset). Each field says which one keel follows and why.
struct circuit_breaker_options {
    /// Opens the breaker when at least this percentage of the calls in the window failed
    /// (failures / (successes + failures), ignored calls excluded; compared with >=).
    /// Default 50, as resilience4j, opossum and Hystrix: Polly's 10 % trips on noise for
    /// dependencies with a normal background error rate. Range (0, 100].
    double failure_rate_threshold = 50.0;

    /// Opens the breaker when at least this percentage of the calls in the window were slow
    /// (took longer than `slow_call_duration`). Default 100, as resilience4j: only a
    /// dependency where every call is slow trips on latency alone; lower it to shed load
    /// earlier. Range (0, 100].
    double slow_call_rate_threshold = 100.0;

    /// Counts a call as slow when its duration is strictly longer than this. Default 60 s,
    /// as resilience4j (with the default rate of 100 % it rarely matters). Must be > 0.
    std::chrono::nanoseconds slow_call_duration = std::chrono::seconds{60};

    /// Chooses the sliding window: the last `window_size` calls, or the last
    /// `window_size` seconds. Default count_based, as resilience4j: its meaning does not
    /// depend on the traffic rate.
    circuit_window window = circuit_window::count_based;

    /// Sizes the window: calls for count_based, in [1, 32768]; seconds for time_based, in
    /// [1, 3600]. Default 100 (calls), as resilience4j.
    std::uint32_t window_size = 100;

    /// Requires this many calls in the window before either rate can open the breaker:
    /// the volume threshold that keeps "2 requests, 1 failure" from opening it. For
    /// count_based windows the effective minimum is min(minimum_calls, window_size), as in
    /// resilience4j. Default 20, as Hystrix's requestVolumeThreshold: resilience4j's and
    /// Polly's 100 leave a low-traffic dependency failing for a long time before it trips,
    /// opossum's 0 has the false positive above. Must be >= 1.
    std::uint32_t minimum_calls = 20;

    /// Keeps the breaker OPEN this long after it first opens. Default 30 s, as opossum and
    /// the article's calculateResetTimeout (resilience4j: 60 s, Polly: 5 s). Must be > 0.
    std::chrono::nanoseconds reset_timeout = std::chrono::seconds{30};

    /// Caps the backed-off reset timeout: the k-th consecutive opening (k = 0 for the
    /// first, +1 for each HALF_OPEN to OPEN) stays open for
    /// min(reset_timeout * 2^k + jitter, max_reset_timeout). Default 300 s, as the article,
    /// Envoy's max_ejection_time and Finagle's markDeadFor cap. Must be >= reset_timeout;
    /// equal to it turns the backoff off.
    std::chrono::nanoseconds max_reset_timeout = std::chrono::seconds{300};

    /// Adds a jitter drawn uniformly from [0, reset_jitter) to each open period, so that
    /// breakers opened together do not probe together. Default 1 s, as the article's
    /// `Math.random() * 1000`. Zero means no jitter. Must be >= 0.
    std::chrono::nanoseconds reset_jitter = std::chrono::seconds{1};

    /// Admits this many probe calls in HALF_OPEN; the rest are rejected. Once this many
    /// probes have reported success or failure, the rates over them decide: at or above a
    /// threshold re-opens, below closes. A probe that is ignored, or whose permit is
    /// dropped, frees its slot for another. Default 10, as resilience4j: a rate over
    /// several probes instead of a single probe's verdict (Polly, opossum, Hystrix, which
    /// one unlucky call re-opens). Range [1, 1000].
    std::uint32_t permitted_calls_in_half_open = 10;

    /// Re-opens a HALF_OPEN breaker when a call arrives this long after it half-opened
    /// while admitted probes have still not reported back, so hung probes cannot hold it
    /// half-open (resilience4j's maxWaitDurationInHalfOpenState, whose default 0 waits
    /// forever and is behind its "stuck in HALF_OPEN" reports; Polly's single probe has
    /// the same failure). A half-open breaker with no probe outstanding just waits for
    /// more traffic. Default 60 s, the slow_call_duration default: a probe outstanding
    /// that long is a slow call anyway. Zero means wait forever. Must be >= 0.
    std::chrono::nanoseconds max_wait_in_half_open = std::chrono::seconds{60};
};

/// Describes the state and window of a circuit breaker at one moment.
struct circuit_metrics {
    circuit_state state = circuit_state::closed; ///< The state.
    double failure_rate = 0.0;        ///< Percent of the window's calls that failed; 0 if empty.
    double slow_call_rate = 0.0;      ///< Percent of the window's calls that were slow; 0 if empty.
    std::uint64_t calls = 0;          ///< Calls (successes and failures) in the window.
    std::uint64_t failed_calls = 0;   ///< Failed calls in the window.
    std::uint64_t slow_calls = 0;     ///< Slow calls in the window (failed or not).
    std::uint64_t rejected_calls = 0; ///< Calls rejected since construction.
    /// Time until an OPEN breaker admits a probe; empty in every other state.
    std::optional<std::chrono::nanoseconds> time_until_half_open{};
    std::uint32_t consecutive_openings = 0; ///< Openings since the last close (the backoff's k).
    /// Admitted calls completed as successes since count_totals() was first called (all
    /// the `total_` counts are zero before; keel::observe::registry calls it when the
    /// breaker is registered), in every state (half-open probes, and late outcomes the
    /// window drops, included). Monotonic, as `rejected_calls`: a rate() of them is the
    /// breaker's traffic.
    std::uint64_t total_successful_calls = 0;
    std::uint64_t total_failed_calls = 0; ///< Admitted calls completed as failures, likewise.
    /// Admitted calls completed as ignored, likewise, permits destroyed without an outcome
    /// included.
    std::uint64_t total_ignored_calls = 0;
    /// Successes and failures that were slow (longer than slow_call_duration), likewise.
    std::uint64_t total_slow_calls = 0;
};

/// Stops calls to a failing or slow dependency: rejects them while OPEN, then lets
/// a few probes through to decide whether to close again.
///
/// One breaker guards one dependency and is shared by reference by every caller;
/// it is neither copyable nor movable. All member functions are thread-safe.
/// Admission and recording while CLOSED or DISABLED are lock-free (a load, a
/// compare-and-swap or two; once count_totals() was called, a relaxed add for the totals);
/// transitions and HALF_OPEN outcomes take a mutex, and listeners run after it is released. State
/// changes are evaluated lazily, as functions of the clock: OPEN becomes HALF_OPEN at the first
/// try_acquire() after the reset timeout; no thread or timer runs in the background.
///
/// CLOSED opens when a failure or a slow call is recorded and, with at least
/// `minimum_calls` calls in the window, the failure rate or the slow-call rate
/// reaches its threshold (like Polly and opossum, a success or a fast call never
/// trips the breaker: it can only lower both rates). Outcomes of calls admitted
/// before the breaker changed state are dropped (gobreaker's generations).
///
///     using namespace std::chrono_literals;
///     keel::circuit_breaker breaker{{.failure_rate_threshold = 50,
///                                    .minimum_calls = 10,
///                                    .reset_timeout = 30s}};
///     if (auto permit = breaker.try_acquire()) {
///         bool const ok = send();
///         ok ? permit.success() : permit.failure(); // the breaker times the call
///     } else {
///         respond_503(permit.retry_after());        // rejected: a value, not an exception
///     }
template <clock Clock = steady_clock, random_generator Random = thread_random>
class basic_circuit_breaker {
public:
    using clock_type = Clock;
    using time_point = typename Clock::time_point;
    using duration = typename Clock::duration;

    /// Describes one state change, as given to listeners.
    struct transition {
        circuit_state from; ///< The state left.
        circuit_state to;   ///< The state entered.
        time_point when;    ///< When it happened, on the breaker's clock.
        circuit_reason why; ///< What caused it.
    };

    /// Receives transitions; called without any lock held, possibly from several
    /// threads at once (not necessarily in transition order).
    using listener = std::function<void(transition const&)>;

    class permit;

    /// Builds a CLOSED breaker; throws std::invalid_argument naming the field when an
    /// option is outside its documented range. `clock` and `random` are stored by value
    /// (pass keel::manual_clock and a seeded generator in tests). The generator is only
    /// drawn from under the breaker's lock, so a plain keel::xoshiro256ss is fine.
    explicit basic_circuit_breaker(circuit_breaker_options options = {}, Clock clock = Clock{},
                                   Random random = Random{})
        : m_options(detail::validate_breaker_options(options)), m_clock(std::move(clock)),
          m_random(std::move(random)),
          m_window(options.window == circuit_window::time_based, options.window_size) {
        std::lock_guard lock{m_mutex};
        m_window.reset_locked(0);
    }

    basic_circuit_breaker(basic_circuit_breaker const&) = delete;
    basic_circuit_breaker& operator=(basic_circuit_breaker const&) = delete;

    /// Asks to make one call. Returns an admitted permit, which the caller completes
    /// with success(), failure() or ignore() (a permit destroyed without an outcome counts
    /// as ignored), or a rejected one whose retry_after() is the time until the breaker
    /// half-opens: while OPEN, what is left of the open period; while HALF_OPEN and out
    /// of probes, the open period that would follow if the probes failed now (empty
    /// when forced open). Never throws; may run listeners (an OPEN breaker half-opening,
    /// a half-open one re-opening) on the calling thread. The breaker times the call.
    KEEL_ALWAYS_INLINE permit try_acquire() noexcept {
        return try_acquire(call_timing::by_breaker);
    }

    /// Asks to make one call, as try_acquire(), with `timing` saying who measures its
    /// duration: with call_timing::by_caller, admission while CLOSED or DISABLED reads
    /// no clock (only OPEN and HALF_OPEN, whose decisions depend on the time, do).
    KEEL_ALWAYS_INLINE permit try_acquire(call_timing timing) noexcept {
        std::uint64_t const word = m_word.load(std::memory_order_acquire);
        circuit_state const state = state_of(word);
        if (state == circuit_state::closed || state == circuit_state::disabled) [[likely]] {
            bool const timed = timing == call_timing::by_breaker;
            return permit{this, generation_of(word), timed ? detail::to_ns(m_clock.now()) : 0,
                          state, timed};
        }
        return try_acquire_slow(timing);
    }

    /// Returns the state as last changed (a breaker whose reset timeout has expired
    /// stays OPEN until the next try_acquire()). Lock-free.
    circuit_state state() const noexcept {
        return state_of(m_word.load(std::memory_order_acquire));
    }

    /// Starts counting completed calls by result for metrics()' `total_` counts; until
    /// then nothing is counted, so the lock-free completion pays no atomic add
    /// (keel::observe::registry calls this when the breaker is registered, as it calls
    /// a limiter's count_decisions()). Idempotent; thread-safe.
    void count_totals() noexcept { m_totals.counting.store(true, std::memory_order_relaxed); }

    /// Returns a snapshot of the state, the window's counts and rates, the rejected count
    /// since construction, the completed calls by result since count_totals() and the
    /// time until half-open. The window
    /// read is the one the last CLOSED or DISABLED period filled (time-based windows are read at
    /// now).
    circuit_metrics metrics() const {
        circuit_metrics m;
        std::int64_t const now_ns = detail::to_ns(m_clock.now());
        std::uint64_t const word = m_word.load(std::memory_order_acquire);
        m.state = state_of(word);
        auto const totals = m_window.read(second_of(now_ns));
        m.calls = totals.calls;
        m.failed_calls = totals.failures;
        m.slow_calls = totals.slow;
        if (totals.calls > 0) {
            m.failure_rate =
                static_cast<double>(totals.failures) * 100.0 / static_cast<double>(totals.calls);
            m.slow_call_rate =
                static_cast<double>(totals.slow) * 100.0 / static_cast<double>(totals.calls);
        }
        m.rejected_calls = m_totals.rejected.load(std::memory_order_relaxed);
        if (m.state == circuit_state::open) {
            std::int64_t const until = m_open_until.load(std::memory_order_acquire);
            m.time_until_half_open =
                std::chrono::nanoseconds{std::max<std::int64_t>(0, until - now_ns)};
        }
        m.consecutive_openings = m_consecutive_openings.load(std::memory_order_relaxed);
        m.total_successful_calls = m_totals.completed[0].load(std::memory_order_relaxed);
        m.total_failed_calls = m_totals.completed[1].load(std::memory_order_relaxed);
        m.total_ignored_calls = m_totals.completed[2].load(std::memory_order_relaxed);
        m.total_slow_calls = m_totals.slow.load(std::memory_order_relaxed);
        return m;
    }

    /// Returns the generation: a counter raised by every state change.
    std::uint64_t generation() const noexcept {
        return generation_of(m_word.load(std::memory_order_acquire));
    }

    /// Adds a listener for state changes. Thread-safe; listeners cannot be removed and
    /// must outlive the breaker's use. A listener that throws has its exception ignored.
    void on_transition(listener callback) {
        std::lock_guard lock{m_mutex};
        auto next = m_listeners ? std::make_shared<std::vector<listener>>(*m_listeners)
                                : std::make_shared<std::vector<listener>>();
        next->push_back(std::move(callback));
        m_listeners = std::move(next);
    }

    /// Moves to FORCED_OPEN: every call is rejected (retry_after empty) until reset() or
    /// disable(). Outcomes of calls admitted before are dropped.
    void force_open() { manual(circuit_state::forced_open); }

    /// Moves to DISABLED: every call is admitted and recorded in a fresh window (for
    /// metrics), and the state never changes until reset() or force_open().
    void disable() { manual(circuit_state::disabled); }

    /// Moves to CLOSED with a fresh window and the reset backoff cleared, from any state.
    void reset() { manual(circuit_state::closed); }

    /// Returns the options the breaker was built with.
    circuit_breaker_options const& options() const noexcept { return m_options; }

    /// Returns the breaker's clock.
    Clock const& clock() const noexcept { return m_clock; }

    /// Allows one call, or says why not. Move-only; complete it at most once with
    /// success(), failure(), ignore() or record(). A permit destroyed without an outcome
    /// counts as ignored, so a HALF_OPEN probe slot is never lost. Without a duration
    /// argument the breaker times the call with its clock from try_acquire() on (with
    /// call_timing::by_caller, such a call counts as not slow). A permit must not outlive
    /// its breaker; completing it is thread-safe like the breaker.
    class permit {
    public:
        /// Makes a rejected permit with no retry hint.
        permit() noexcept = default;
        /// Takes over `other`'s call; `other` is left completed (pending() false).
        permit(permit&& other) noexcept
            : m_breaker(std::exchange(other.m_breaker, nullptr)), m_generation(other.m_generation),
              m_start(other.m_start), m_admitted_in(other.m_admitted_in),
              m_retry_after(other.m_retry_after), m_admitted(other.m_admitted),
              m_timed(other.m_timed) {}
        /// Ignores this permit's pending call, then takes over `other`'s.
        permit& operator=(permit&& other) noexcept {
            if (this != &other) {
                ignore();
                m_breaker = std::exchange(other.m_breaker, nullptr);
                m_generation = other.m_generation;
                m_start = other.m_start;
                m_admitted_in = other.m_admitted_in;
                m_retry_after = other.m_retry_after;
                m_admitted = other.m_admitted;
                m_timed = other.m_timed;
            }
            return *this;
        }
        permit(permit const&) = delete;
        permit& operator=(permit const&) = delete;
        /// Ignores the call if no outcome was recorded (frees a half-open probe slot).
        KEEL_ALWAYS_INLINE ~permit() { ignore(); }

        /// Returns true if the call was admitted.
        bool admitted() const noexcept { return m_admitted; }
        /// Returns admitted().
        explicit operator bool() const noexcept { return m_admitted; }
        /// Returns true until an outcome is recorded (false for rejected permits).
        bool pending() const noexcept { return m_breaker != nullptr; }
        /// Returns, for a rejected permit, the time until the breaker half-opens if known
        /// (see circuit_breaker::try_acquire()).
        std::optional<std::chrono::nanoseconds> retry_after() const noexcept {
            return m_retry_after >= 0
                       ? std::optional<std::chrono::nanoseconds>{std::chrono::nanoseconds{
                             m_retry_after}}
                       : std::nullopt;
        }
        /// Returns the state the call was admitted in (closed, half_open or disabled).
        circuit_state admitted_in() const noexcept { return m_admitted_in; }

        /// Records the call's result, timed by the breaker's clock.
        KEEL_ALWAYS_INLINE void record(circuit_result result) noexcept {
            if (m_breaker != nullptr) {
                std::exchange(m_breaker, nullptr)
                    ->complete_timed(m_generation, m_admitted_in, result, m_start, m_timed);
            }
        }
        /// Records the call's result with the duration the caller measured (the slow-call
        /// check uses it; a time-based window still places the outcome at the current time).
        KEEL_ALWAYS_INLINE void record(circuit_result result,
                                       std::chrono::nanoseconds elapsed) noexcept {
            if (m_breaker != nullptr) {
                std::exchange(m_breaker, nullptr)
                    ->complete_measured(m_generation, m_admitted_in, result, elapsed);
            }
        }
        /// Records a success, timed by the breaker.
        KEEL_ALWAYS_INLINE void success() noexcept { record(circuit_result::success); }
        /// Records a success that took `elapsed`.
        KEEL_ALWAYS_INLINE void success(std::chrono::nanoseconds elapsed) noexcept {
            record(circuit_result::success, elapsed);
        }
        /// Records a failure, timed by the breaker.
        KEEL_ALWAYS_INLINE void failure() noexcept { record(circuit_result::failure); }
        /// Records a failure that took `elapsed`.
        KEEL_ALWAYS_INLINE void failure(std::chrono::nanoseconds elapsed) noexcept {
            record(circuit_result::failure, elapsed);
        }
        /// Records nothing and frees a half-open probe slot; what the destructor does.
        KEEL_ALWAYS_INLINE void ignore() noexcept {
            if (m_breaker != nullptr) {
                std::exchange(m_breaker, nullptr)
                    ->complete(m_generation, m_admitted_in, circuit_result::ignored,
                               std::chrono::nanoseconds{0}, 0);
            }
        }

    private:
        friend class basic_circuit_breaker;
        permit(basic_circuit_breaker* breaker, std::uint64_t generation, std::int64_t start,
               circuit_state admitted_in, bool timed) noexcept
            : m_breaker(breaker), m_generation(generation), m_start(start),
              m_admitted_in(admitted_in), m_admitted(true), m_timed(timed) {}
        // `retry_after` in ns, or -1 when unknown. Kept as a plain integer: copying an
        // std::optional through a permit costs store-forwarding stalls on the
        // rejection path.
        explicit permit(std::int64_t retry_after) noexcept : m_retry_after(retry_after) {}

        basic_circuit_breaker* m_breaker = nullptr;
        std::uint64_t m_generation = 0;
        std::int64_t m_start = 0;
        circuit_state m_admitted_in = circuit_state::closed;
        std::int64_t m_retry_after = -1;
        bool m_admitted = false;
        bool m_timed = false; // m_start was read from the clock
    };

private:
    using events = detail::pending_transitions<transition>;

    // State word: generation (48 bits) | probes admitted in HALF_OPEN (13) | state (3).
    static constexpr std::uint64_t state_mask = 0x7;
    static constexpr std::uint64_t probe_unit = 0x8;
    static constexpr std::uint64_t probe_mask = 0x1FFF << 3;
    static constexpr unsigned generation_shift = 16;
    static constexpr std::int64_t no_deadline = INT64_MAX;

    static circuit_state state_of(std::uint64_t word) noexcept {
        return static_cast<circuit_state>(word & state_mask);
    }
    static std::uint32_t probes_of(std::uint64_t word) noexcept {
        return static_cast<std::uint32_t>((word & probe_mask) >> 3);
    }
    static std::uint64_t generation_of(std::uint64_t word) noexcept {
        return word >> generation_shift;
    }
    // The second a time-based window places `ns` in (times before the epoch in second 0).
    static std::int64_t second_of(std::int64_t ns) noexcept {
        return ns > 0 ? ns / 1'000'000'000 : 0;
    }

    // Admission in OPEN, HALF_OPEN and FORCED_OPEN: the states whose decisions
    // read the clock. Out of line, so that the closed path inlines.
    [[gnu::noinline]] permit try_acquire_slow(call_timing timing) noexcept {
        time_point const now = m_clock.now();
        std::int64_t const now_ns = detail::to_ns(now);
        bool const timed = timing == call_timing::by_breaker;
        for (;;) {
            std::uint64_t word = m_word.load(std::memory_order_acquire);
            switch (state_of(word)) {
            case circuit_state::closed:
            case circuit_state::disabled:
                return permit{this, generation_of(word), now_ns, state_of(word), timed};
            case circuit_state::forced_open: return reject(-1);
            case circuit_state::open: {
                // Written only on entering OPEN, so a racing transition can make it newer
                // (the breaker re-opened since) but never another state's deadline.
                std::int64_t const until = m_open_until.load(std::memory_order_acquire);
                if (now_ns < until) {
                    // `until` may be of an opening made after `now` was read; the
                    // period itself never exceeds the cap.
                    return reject(std::min(until - now_ns, m_options.max_reset_timeout.count()));
                }
                half_open_if_due(generation_of(word), now);
                continue;
            }
            case circuit_state::half_open: {
                std::int64_t const deadline = m_half_open_deadline.load(std::memory_order_acquire);
                if (deadline != no_deadline && now_ns >= deadline &&
                    probes_of(word) > m_probes_recorded.load(std::memory_order_acquire)) {
                    if (reopen_if_stuck(generation_of(word), now)) {
                        continue;
                    }
                }
                if (probes_of(word) >= m_options.permitted_calls_in_half_open) {
                    // When the probes decide is not known; if they fail, the breaker
                    // opens for this long, and a caller that waits it out finds the
                    // breaker closed or probing again (Polly reports one break
                    // duration from half-opening; resilience4j reports nothing).
                    return reject(
                        base_open_period(m_consecutive_openings.load(std::memory_order_relaxed)));
                }
                if (m_word.compare_exchange_weak(word, word + probe_unit, std::memory_order_acq_rel,
                                                 std::memory_order_acquire)) {
                    return permit{this, generation_of(word), now_ns, circuit_state::half_open,
                                  timed};
                }
                continue;
            }
            }
        }
    }

    permit reject(std::int64_t retry_after) noexcept {
        m_totals.rejected.fetch_add(1, std::memory_order_relaxed);
        return permit{retry_after};
    }

    // Completes a permit without a duration: measured from `start_ns` when the
    // breaker timed the admission; otherwise (call_timing::by_caller) not slow.
    KEEL_ALWAYS_INLINE void complete_timed(std::uint64_t generation, circuit_state admitted_in,
                                           circuit_result result, std::int64_t start_ns,
                                           bool timed) noexcept {
        if (!timed && !m_window.time_based()) {
            complete(generation, admitted_in, result, std::chrono::nanoseconds{0}, 0);
            return;
        }
        std::int64_t const end_ns = detail::to_ns(m_clock.now());
        complete(generation, admitted_in, result,
                 std::chrono::nanoseconds{timed ? end_ns - start_ns : 0}, end_ns);
    }

    // Completes a permit with the duration its caller measured: only a time-based
    // window needs the time, to place the outcome.
    KEEL_ALWAYS_INLINE void complete_measured(std::uint64_t generation, circuit_state admitted_in,
                                              circuit_result result,
                                              std::chrono::nanoseconds elapsed) noexcept {
        std::int64_t const end_ns = m_window.time_based() ? detail::to_ns(m_clock.now()) : 0;
        complete(generation, admitted_in, result, elapsed, end_ns);
    }

    // Records the outcome of a permit admitted in `admitted_in` during `generation`,
    // which ended at `end_ns` (read only by a time-based window).
    KEEL_ALWAYS_INLINE void complete(std::uint64_t generation, circuit_state admitted_in,
                                     circuit_result result, std::chrono::nanoseconds elapsed,
                                     std::int64_t end_ns) noexcept {
        // Every completed permit counts here, before any outcome can be dropped; only
        // once count_totals() was called: the add costs about as much as the rest of
        // the lock-free completion (bench/circuit_breaker_bench.cpp).
        if (m_totals.counting.load(std::memory_order_relaxed)) [[unlikely]] {
            m_totals.completed[static_cast<std::size_t>(result)].fetch_add(
                1, std::memory_order_relaxed);
            if (result != circuit_result::ignored && elapsed > m_options.slow_call_duration) {
                m_totals.slow.fetch_add(1, std::memory_order_relaxed);
            }
        }
        if (admitted_in == circuit_state::half_open) {
            complete_probe(generation, result, elapsed);
            return;
        }
        if (result == circuit_result::ignored) {
            return;
        }
        if (generation_of(m_word.load(std::memory_order_acquire)) != generation) {
            return; // admitted before the last state change
        }
        bool const failed = result == circuit_result::failure;
        bool const slow = elapsed > m_options.slow_call_duration;
        // Only a failure or a slow call in CLOSED can trip the breaker (see the class comment).
        bool const decides = admitted_in == circuit_state::closed && (failed || slow);
        auto const totals = m_window.record(generation, second_of(end_ns), failed, slow, decides);
        if (totals) {
            evaluate(generation, *totals, m_window.minimum(m_options.minimum_calls));
        }
    }

    // Returns the reason the totals trip the breaker, if they do.
    std::optional<circuit_reason> exceeded(detail::count_window::totals const& t,
                                           std::uint64_t minimum) const noexcept {
        if (t.calls < minimum || t.calls == 0) {
            return std::nullopt;
        }
        auto const calls = static_cast<double>(t.calls);
        if (static_cast<double>(t.failures) * 100.0 >= m_options.failure_rate_threshold * calls) {
            return circuit_reason::failure_rate_exceeded;
        }
        if (static_cast<double>(t.slow) * 100.0 >= m_options.slow_call_rate_threshold * calls) {
            return circuit_reason::slow_call_rate_exceeded;
        }
        return std::nullopt;
    }

    [[gnu::noinline]] void evaluate(std::uint64_t generation, detail::count_window::totals const& t,
                                    std::uint64_t minimum) noexcept {
        auto const why = exceeded(t, minimum);
        if (!why) {
            return;
        }
        events out;
        {
            std::lock_guard lock{m_mutex};
            std::uint64_t const word = m_word.load(std::memory_order_acquire);
            if (generation_of(word) != generation || state_of(word) != circuit_state::closed) {
                return;
            }
            transition_locked(circuit_state::open, *why, m_clock.now(), out);
        }
        notify(out);
    }

    [[gnu::noinline]] void complete_probe(std::uint64_t generation, circuit_result result,
                                          std::chrono::nanoseconds elapsed) noexcept {
        if (result == circuit_result::ignored) {
            // Give the slot back, if the half-open period it was taken in still runs.
            std::uint64_t word = m_word.load(std::memory_order_acquire);
            while (generation_of(word) == generation &&
                   state_of(word) == circuit_state::half_open && probes_of(word) > 0 &&
                   !m_word.compare_exchange_weak(word, word - probe_unit, std::memory_order_acq_rel,
                                                 std::memory_order_acquire)) {
            }
            return;
        }
        events out;
        {
            std::lock_guard lock{m_mutex};
            std::uint64_t const word = m_word.load(std::memory_order_acquire);
            if (generation_of(word) != generation || state_of(word) != circuit_state::half_open) {
                return;
            }
            m_probe_totals.calls += 1;
            m_probe_totals.failures += result == circuit_result::failure ? 1U : 0U;
            m_probe_totals.slow += elapsed > m_options.slow_call_duration ? 1U : 0U;
            m_probes_recorded.store(static_cast<std::uint32_t>(m_probe_totals.calls),
                                    std::memory_order_release);
            if (m_probe_totals.calls < m_options.permitted_calls_in_half_open) {
                return;
            }
            bool const reopen = exceeded(m_probe_totals, 1).has_value();
            transition_locked(reopen ? circuit_state::open : circuit_state::closed,
                              reopen ? circuit_reason::probes_failed
                                     : circuit_reason::probes_succeeded,
                              m_clock.now(), out);
        }
        notify(out);
    }

    void half_open_if_due(std::uint64_t generation, time_point now) noexcept {
        events out;
        {
            std::lock_guard lock{m_mutex};
            std::uint64_t const word = m_word.load(std::memory_order_acquire);
            if (generation_of(word) != generation || state_of(word) != circuit_state::open ||
                detail::to_ns(now) < m_open_until.load(std::memory_order_relaxed)) {
                return;
            }
            transition_locked(circuit_state::half_open, circuit_reason::reset_timeout_elapsed, now,
                              out);
        }
        notify(out);
    }

    // Re-opens a half-open breaker whose wait expired with probes outstanding; returns
    // true if the state changed (or had changed already).
    bool reopen_if_stuck(std::uint64_t generation, time_point now) noexcept {
        events out;
        {
            std::lock_guard lock{m_mutex};
            std::uint64_t const word = m_word.load(std::memory_order_acquire);
            if (generation_of(word) != generation || state_of(word) != circuit_state::half_open) {
                return true;
            }
            if (detail::to_ns(now) < m_half_open_deadline.load(std::memory_order_relaxed) ||
                probes_of(word) <= m_probe_totals.calls) {
                return false;
            }
            transition_locked(circuit_state::open, circuit_reason::half_open_timeout, now, out);
        }
        notify(out);
        return true;
    }

    void manual(circuit_state to) {
        events out;
        {
            std::lock_guard lock{m_mutex};
            transition_locked(to, circuit_reason::manual, m_clock.now(), out);
        }
        notify(out);
    }

    // The open period of the k-th consecutive opening without its jitter.
    std::int64_t base_open_period(std::uint32_t k) const noexcept {
        return detail::doubled_period(m_options.reset_timeout.count(), k,
                                      m_options.max_reset_timeout.count());
    }

    // The open period of the k-th consecutive opening: min(base * 2^k + jitter, max).
    std::int64_t open_period_locked(std::uint32_t k) {
        std::int64_t const cap = m_options.max_reset_timeout.count();
        std::int64_t period = base_open_period(k);
        if (m_options.reset_jitter > std::chrono::nanoseconds::zero()) {
            double const unit = uniform_unit(m_random);
            auto const jitter = static_cast<std::int64_t>(
                unit * static_cast<double>(m_options.reset_jitter.count()));
            period = period > cap - jitter ? cap : period + jitter;
        }
        return std::min(period, cap);
    }

    // Moves to `to` as of `now`: a new generation, the state's timer, a fresh window
    // when entering CLOSED or DISABLED. Records the event for notify().
    void transition_locked(circuit_state to, circuit_reason why, time_point now, events& out) {
        std::uint64_t const word = m_word.load(std::memory_order_acquire);
        circuit_state const from = state_of(word);
        std::uint64_t const generation = generation_of(word) + 1;
        std::int64_t const now_ns = detail::to_ns(now);
        switch (to) {
        case circuit_state::open: {
            std::uint32_t const k = m_consecutive_openings.load(std::memory_order_relaxed);
            m_open_until.store(detail::finite_deadline(now_ns, open_period_locked(k)),
                               std::memory_order_release);
            m_consecutive_openings.store(k + 1, std::memory_order_relaxed);
            break;
        }
        case circuit_state::half_open:
            m_probe_totals = {};
            m_probes_recorded.store(0, std::memory_order_relaxed);
            m_half_open_deadline.store(
                m_options.max_wait_in_half_open > std::chrono::nanoseconds::zero()
                    ? detail::finite_deadline(now_ns, m_options.max_wait_in_half_open.count())
                    : no_deadline,
                std::memory_order_release);
            break;
        case circuit_state::closed:
            m_consecutive_openings.store(0, std::memory_order_relaxed);
            m_window.reset_locked(generation);
            break;
        case circuit_state::disabled: m_window.reset_locked(generation); break;
        case circuit_state::forced_open: break;
        }
        // A half-open admission racing this store belongs to the old generation, so
        // its outcome is dropped: overwriting its probe count is intended.
        m_word.store((generation << generation_shift) | static_cast<std::uint64_t>(to),
                     std::memory_order_release);
        if (from != to) {
            out.push(transition{from, to, now, why});
        }
    }

    void notify(events const& out) noexcept {
        if (out.size != 0) {
            detail::notify_listeners(shared_listeners(), out);
        }
    }

    std::shared_ptr<std::vector<listener> const> shared_listeners() const {
        std::lock_guard lock{m_mutex};
        return m_listeners;
    }

    circuit_breaker_options m_options;
    [[no_unique_address]] Clock m_clock;
    [[no_unique_address]] Random m_random;

    // Read on every admission; written only by transitions and half-open admissions.
    alignas(64) std::atomic<std::uint64_t> m_word{0};
    // When the current (or last) OPEN period ends; written only on entering OPEN.
    std::atomic<std::int64_t> m_open_until{no_deadline};
    // When outstanding probes of the current HALF_OPEN period count as stuck.
    std::atomic<std::int64_t> m_half_open_deadline{no_deadline};
    std::atomic<std::uint32_t> m_probes_recorded{0};
    std::atomic<std::uint32_t> m_consecutive_openings{0};

    // The counts (rejections since construction, completions since count_totals()),
    // relaxed: each is only ever read alone. Their own
    // line, written once per completion (and rejection): the window's aggregate word
    // has no spare bits, and m_word's line must stay read-mostly for admissions.
    struct totals_since_construction {
        std::atomic<bool> counting{false}; // count_totals() was called
        std::atomic<std::uint64_t> rejected{0};
        std::array<std::atomic<std::uint64_t>, 3> completed{}; // indexed by circuit_result
        std::atomic<std::uint64_t> slow{0};
    };
    alignas(64) totals_since_construction m_totals;

    detail::breaker_window m_window;

    mutable std::mutex m_mutex;
    detail::count_window::totals m_probe_totals{};
    std::shared_ptr<std::vector<listener> const> m_listeners;
};

/// A circuit breaker on keel::steady_clock with keel::thread_random.
using circuit_breaker = basic_circuit_breaker<>;

/// Classifies an outcome the default way: a value is a success, any failure a failure.
struct classify_any_failure {
    /// Returns success for a value, failure otherwise.
    template <class R>
    circuit_result operator()(outcome<R> const& result) const noexcept {
        return result.has_value() ? circuit_result::success : circuit_result::failure;
    }
};

/// Guards a pipeline with a circuit breaker: the policy keel::guard() returns.
///
/// A small copyable value holding a pointer to the breaker (which must outlive it)
/// and the classifier. execute() asks the breaker for a permit; when rejected it
/// returns keel::failure::from(errc::circuit_open, retry_after) without calling
/// `next`; otherwise it runs `next(ctx)`, records the classifier's verdict on the
/// outcome (timed by the breaker's clock) and returns the outcome unchanged.
/// Thread-safe; never throws (a throwing classifier counts the call as a failure).
template <class Breaker, class Classifier = classify_any_failure>
class circuit_breaker_policy {
public:
    using clock_type = typename Breaker::clock_type;

    /// Guards with `breaker`, classifying outcomes with `classify`.
    circuit_breaker_policy(Breaker& breaker, Classifier classify)
        : m_breaker(&breaker), m_classify(std::move(classify)) {}

    /// Runs `next(ctx)` through the breaker; see the class comment.
    template <class Next, class Context>
    std::invoke_result_t<Next const&, Context const&> execute(Next const& next,
                                                              Context const& ctx) const noexcept {
        using result_type = std::invoke_result_t<Next const&, Context const&>;
        auto permit = m_breaker->try_acquire();
        if (!permit) {
            return result_type{rejection(permit)};
        }
        try {
            result_type result = next(ctx);
            complete(permit, result);
            return result;
        } catch (...) {
            permit.failure();
            return result_type{failure::from_current_exception()};
        }
    }

    /// Returns the failure a rejected `permit` stands for: errc::circuit_open with the
    /// time until the breaker half-opens as retry_after, if known.
    static failure rejection(typename Breaker::permit const& permit) {
        return failure::from(errc::circuit_open, permit.retry_after());
    }

    /// Records the classifier's verdict on `result` in the admitted `permit` (a
    /// classifier that throws counts the call as a failure). Both pipelines
    /// complete their permits here.
    template <class Result>
    void complete(typename Breaker::permit& permit, Result const& result) const noexcept {
        circuit_result verdict = circuit_result::failure;
        try {
            verdict = m_classify(result);
        } catch (...) { // NOLINT(bugprone-empty-catch): counted as a failure
        }
        permit.record(verdict);
    }

    /// Returns the guarded breaker.
    Breaker& target() const noexcept { return *m_breaker; }

private:
    Breaker* m_breaker;
    [[no_unique_address]] Classifier m_classify;
};

/// Returns a policy for keel::resilient that guards the rest of the pipeline with
/// `breaker`; any failure counts as a failure. `breaker` must outlive the policy.
template <class Clock, class Random>
circuit_breaker_policy<basic_circuit_breaker<Clock, Random>>
guard(basic_circuit_breaker<Clock, Random>& breaker) {
    return circuit_breaker_policy<basic_circuit_breaker<Clock, Random>>{breaker,
                                                                        classify_any_failure{}};
}

/// Returns a policy that guards with `breaker` and lets `classify` decide, from the
/// `outcome<R> const&`, whether a call is a success, a failure or ignored (e.g. a 4xx
/// that is the client's fault). `classify` must be copyable and thread-safe.
template <class Clock, class Random, class Classifier>
circuit_breaker_policy<basic_circuit_breaker<Clock, Random>, Classifier>
guard(basic_circuit_breaker<Clock, Random>& breaker, Classifier classify) {
    return circuit_breaker_policy<basic_circuit_breaker<Clock, Random>, Classifier>{
        breaker, std::move(classify)};
}

KEEL_END_NAMESPACE
