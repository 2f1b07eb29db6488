// SPDX-License-Identifier: MIT
// keel::retry: runs the rest of the pipeline again when its outcome is one the
// user's predicate calls retryable, waiting a jittered backoff between attempts
// through a sleeper. Bounded by a number of attempts, a total duration, the
// context's deadline and an optional shared keel::retry_budget; honours a
// retry-after hint carried by the failure; stops waiting when the stop token fires.
#pragma once

#include <keel/core/clock.hpp>
#include <keel/core/context.hpp>
#include <keel/core/error.hpp>
#include <keel/core/outcome.hpp>
#include <keel/core/random.hpp>
#include <keel/core/sleeper.hpp>
#include <keel/detail/time.hpp>
#include <keel/detail/validate.hpp>
#include <keel/policy/backoff.hpp>
#include <keel/policy/predicate.hpp>
#include <keel/policy/retry_budget.hpp>
#include <keel/version.hpp>

#include <chrono>
#include <concepts>
#include <functional>
#include <optional>
#include <string>
#include <type_traits>
#include <typeinfo>
#include <utility>

KEEL_BEGIN_NAMESPACE

/// Describes one retry about to happen, for the on_retry listener.
class retry_event {
public:
    /// Describes a retry after attempt `attempt` that failed with `f` (null when a
    /// result value was retried, then `result` points to it) and waits `delay`.
    template <class T>
    retry_event(int attempt, std::chrono::nanoseconds delay, keel::failure const* f,
                T const* result) noexcept
        : m_attempt(attempt), m_delay(delay), m_failure(f), m_result(result),
          m_result_type(result ? &typeid(T) : nullptr) {}

    /// Returns the attempt that just ended (1 for the first call).
    int attempt() const noexcept { return m_attempt; }
    /// Returns how long the retry waits before the next attempt.
    std::chrono::nanoseconds delay() const noexcept { return m_delay; }
    /// Returns the failure being retried, or null when a result value is retried.
    keel::failure const* failure() const noexcept { return m_failure; }
    /// Returns the retried result value if it is a `T`, else null.
    template <class T>
    T const* result() const noexcept {
        return m_result_type && *m_result_type == typeid(T) ? static_cast<T const*>(m_result)
                                                            : nullptr;
    }

private:
    int m_attempt;
    std::chrono::nanoseconds m_delay;
    keel::failure const* m_failure;
    void const* m_result;
    std::type_info const* m_result_type;
};

namespace detail {
template <class... Types>
concept default_initializable_all = (std::default_initializable<Types> && ...);
} // namespace detail

/// Options of keel::retry (on `Clock`, which only the budget's type depends on).
template <clock Clock = steady_clock>
struct basic_retry_options {
    /// Default 3 (resilience4j maxAttempts); >= 1. The TOTAL number of attempts,
    /// the first call included: 3 means one call and at most two retries. (Polly's
    /// MaxRetryAttempts counts retries only; its default 3 is max_attempts = 4.)
    /// 1 disables retrying.
    int max_attempts = 3;
    /// Default 0 (no limit); >= 0. The longest a logical call may take, attempts
    /// and waits included, measured from the first attempt: no wait is started
    /// that would end past it (like a deadline in the context, which also applies).
    /// nanoseconds::max() (or any limit past the clock's end) is no limit either.
    std::chrono::nanoseconds max_duration{};
    /// Default exponential{500 ms, 2.0, 30 s}: resilience4j's 500 ms initial
    /// interval, Polly's factor 2, a cap of keel's choosing.
    keel::backoff backoff = exponential{};
    /// Default full jitter (the AWS Architecture Blog's recommendation, Envoy's
    /// choice); see keel::jitter for the formulas.
    keel::jitter jitter = jitter::full;
    /// Default true. When a retried failure carries a retry_after hint (a
    /// rate_limited or circuit_open rejection, an HTTP Retry-After the call put
    /// in its keel::error), the wait is at least the hint; if the hint ends past
    /// the deadline or max_duration, the retry gives up instead.
    bool honor_retry_after = true;
    /// Default null (no budget). A shared budget: each logical call deposits once,
    /// each retry withdraws once; a refused withdrawal ends the call (see retry).
    basic_retry_budget<Clock>* budget = nullptr;
    /// Default empty. Called before each wait with the attempt, the failure or
    /// result and the chosen delay; runs on the calling thread, holding no lock.
    /// If it throws, the call ends with that exception as its failure.
    std::function<void(retry_event const&)> on_retry{};
};

/// Options of keel::retry on keel::steady_clock.
using retry_options = basic_retry_options<>;

/// Runs the inner pipeline up to max_attempts times while `Predicate` says its
/// outcome is retryable, waiting a jittered backoff between attempts.
///
/// For each logical call: deposits once in the budget (if any), runs attempt 1
/// with `ctx.with_attempt(1)`, and after each retryable outcome decides:
/// - attempts used up: returns the last outcome unchanged (a failing result
///   value stays a value, a failure keeps its exception and code);
/// - the stop token fired, or the wait (the backoff delay, or the retry-after
///   hint if longer) would end past the context's deadline or max_duration:
///   returns the last outcome unchanged;
/// - the budget refuses: returns a failure with code errc::retry_budget_exhausted
///   that keeps the last attempt's exception and retry-after hint (call() then
///   rethrows that exception; try_call() shows the code). A retried result value
///   is returned unchanged instead, since an outcome cannot hold both; the
///   refusal shows in the budget's snapshot;
/// - otherwise calls on_retry, waits through the sleeper (interrupted by the stop
///   token: then returns the last outcome) and runs the next attempt.
/// Outcomes the predicate does not retry come back unchanged. The success path
/// reads no clock unless max_duration or a budget is set, and allocates nothing.
/// Thread-safe if `Random` is (thread_random, scripted_random); the policy is
/// a value, copies share only the budget.
///
///     auto const is_503 = [](response const& r) { return r.status == 503; };
///     auto get = keel::resilient{
///         fetch, keel::retry{{.max_attempts = 4, .backoff = keel::exponential{100ms, 2.0, 5s}},
///                            keel::any_of(keel::on_failure{}, keel::on_result(is_503))}};
template <class Predicate = on_failure, clock Clock = steady_clock, sleeper Sleeper = real_sleeper,
          random_generator Random = thread_random>
class retry {
public:
    using clock_type = Clock;

    /// Builds the policy with default-constructed parts (steady clock, real sleeper,
    /// thread_random, the default predicate) and the given options; throws
    /// std::invalid_argument when an option is out of range.
    explicit retry(basic_retry_options<Clock> options = {}) requires
        detail::default_initializable_all<Predicate, Clock, Sleeper, Random>
        : retry(std::move(options), Predicate{}, Clock{}, Sleeper{}, Random{}) {}

    /// Builds the policy retrying what `should_retry` selects; it is called with
    /// `keel::outcome<R> const&`.
    retry(basic_retry_options<Clock> options,
          Predicate should_retry) requires detail::default_initializable_all<Clock, Sleeper, Random>
        : retry(std::move(options), std::move(should_retry), Clock{}, Sleeper{}, Random{}) {}

    /// Builds the policy on `clock` and `sleeper` (keel::manual_clock and
    /// keel::virtual_sleeper in tests), drawing jitter from thread_random.
    retry(basic_retry_options<Clock> options, Predicate should_retry, Clock clock,
          Sleeper sleeper) requires std::default_initializable<Random>
        : retry(std::move(options), std::move(should_retry), std::move(clock), std::move(sleeper),
                Random{}) {}

    /// Builds the policy from all its parts; throws std::invalid_argument when an
    /// option is out of range.
    retry(basic_retry_options<Clock> options, Predicate should_retry, Clock clock, Sleeper sleeper,
          Random random)
        : m_options(std::move(options)), m_should_retry(std::move(should_retry)),
          m_clock(std::move(clock)), m_sleeper(std::move(sleeper)), m_random(std::move(random)) {
        if (m_options.max_attempts < 1) {
            detail::invalid_option("keel::retry", "max_attempts", ">= 1", m_options.max_attempts);
        }
        if (m_options.max_duration < std::chrono::nanoseconds::zero()) {
            detail::invalid_option("keel::retry", "max_duration", ">= 0", m_options.max_duration);
        }
        detail::validate_backoff("keel::retry", m_options.backoff, m_options.jitter);
    }

    /// The decisions of one logical call: whether an outcome is retried, how long to
    /// wait before the next attempt, and which attempt that is. Made by start();
    /// used by one caller at a time; holds a reference to the policy.
    class schedule {
    public:
        /// Returns true if `result` is one the predicate retries and attempts remain.
        template <class Result>
        bool retryable(Result const& result) const {
            return m_retry->retries(m_attempt, result);
        }

        /// Decides what follows the retryable outcome `result` of the current attempt:
        /// returns the delay to wait before attempt() (having called on_retry), or
        /// nullopt to end the call with `result`, which it may replace by the budget's
        /// refusal (see the class). `stop_requested` says the caller has given up.
        /// Throws what on_retry throws.
        template <class Result>
        std::optional<std::chrono::nanoseconds> next_delay(Result& result, bool stop_requested) {
            auto const delay = delay_or_stop(result, stop_requested);
            if (delay < std::chrono::nanoseconds::zero()) {
                return std::nullopt;
            }
            return delay;
        }

        /// Says the wait next_delay() asked for was interrupted: the next attempt
        /// will not run.
        void wait_interrupted() noexcept { --m_attempt; }

        /// Returns the attempt to run next (after next_delay()), or the one that ran.
        int attempt() const noexcept { return m_attempt; }

        /// Records in the call's final outcome the attempts made and the time waited
        /// (the backoffs, and what the attempts' own policies waited).
        template <class Result>
        void finish(Result& result) const noexcept {
            result.set_stats({m_attempt, detail::saturating_add(m_waited, result.waited())});
        }

    private:
        friend class retry;

        // next_delay() with "end the call" as a negative delay (every delay it
        // returns is >= 0): what next_delay() decides, returned in a register.
        // execute() calls it directly, because g++ passes a returned
        // std::optional<nanoseconds> through the stack with a byte store and a
        // wider load that cannot be forwarded: through next_delay(), a retried call
        // (failure_retry_exhausted_outcome in bench/resilient_bench.cpp) took about
        // 1.5 times as long.
        template <class Result>
        std::chrono::nanoseconds delay_or_stop(Result& result, bool stop_requested) {
            constexpr auto stop = std::chrono::nanoseconds{-1};
            auto const& options = m_retry->m_options;
            if (m_attempt >= options.max_attempts || stop_requested) {
                return stop;
            }
            if (!m_delays) {
                // Built at the first retry only: it copies the backoff, which the
                // success path (no retry) should not pay for.
                m_delays.emplace(options.backoff, options.jitter, m_retry->m_random);
            }
            auto delay = m_delays->next();
            if (options.honor_retry_after) {
                if (auto const hint = result.retry_after(); hint && *hint > delay) {
                    delay = *hint;
                }
            }
            // A wait that would end at the end of time (a hint of centuries) passes
            // any limit but none.
            if (m_limit != time_point::max() &&
                detail::saturating_add(m_retry->m_clock.now(), delay) >= m_limit) {
                return stop;
            }
            if (options.budget && !options.budget->try_withdraw()) {
                if (!result.has_value()) {
                    result =
                        keel::failure{make_error_code(errc::retry_budget_exhausted),
                                      result.failure().exception, result.failure().retry_after};
                }
                return stop;
            }
            if (options.on_retry) {
                m_retry->notify(m_attempt, delay, result);
            }
            m_waited = detail::saturating_add(m_waited, result.waited());
            m_waited = detail::saturating_add(m_waited, delay);
            ++m_attempt;
            return delay;
        }

        using time_point = typename Clock::time_point;
        // The limit is the earlier of the end of max_duration and the context's deadline.
        template <class Context>
        schedule(retry const& policy, time_point duration_end, Context const& ctx) noexcept
            : m_retry(&policy), m_limit(duration_end) {
            if (auto const deadline = ctx.deadline(); deadline && *deadline < m_limit) {
                m_limit = *deadline;
            }
        }

        retry const* m_retry;
        time_point m_limit;
        std::optional<backoff_sequence<Random>> m_delays;
        std::chrono::nanoseconds m_waited{0};
        int m_attempt = 1;
    };

    /// Runs `next` until its outcome is not retryable or a limit ends the call (see the class).
    template <class Next, class Context>
    auto execute(Next const& next, Context const& ctx) const -> decltype(next(ctx)) {
        using result_type = decltype(next(ctx));
        static_assert(std::is_same_v<typename Context::time_point, typename Clock::time_point>,
                      "keel::retry: the pipeline's context must use the retry's clock");
        // The schedule itself is built only when a retry is due, off the success path;
        // it reads the context's deadline then (the context is the same for the whole
        // call, so reading it later decides the same).
        auto const duration_end = begin_call();
        // Reuse the caller's context when it already says attempt 1 (no copy), and
        // return `result` from every path so the outcome is built in place.
        result_type result = ctx.attempt() == 1 ? next(ctx) : next(ctx.with_attempt(1));
        if (retries(1, std::as_const(result))) [[unlikely]] {
            retry_after_first(next, ctx, result, duration_end);
        }
        return result;
    }

    /// Starts the schedule of one logical call under `ctx`: deposits in the budget
    /// (if any) and fixes the end of max_duration. Both pipelines (this one's
    /// execute() and keel::asio's) run their attempts through it, so they decide
    /// alike and differ only in how they wait.
    template <class Context>
    schedule start(Context const& ctx) const {
        auto const duration_end = begin_call();
        return schedule{*this, duration_end, ctx};
    }

    /// Returns the options.
    basic_retry_options<Clock> const& options() const noexcept { return m_options; }
    /// Returns the clock the policy reads.
    Clock const& clock() const noexcept { return m_clock; }

private:
    // Returns true if `result` of attempt `attempt` is one the predicate retries and
    // attempts remain: the schedule's retryable(), and execute()'s test of the first
    // attempt before any schedule exists.
    template <class Result>
    bool retries(int attempt, Result const& result) const {
        return attempt < m_options.max_attempts && m_should_retry(result);
    }

    // What a logical call does before its first attempt: deposits in the budget and
    // returns the end of max_duration (time_point::max() if none), which the
    // schedule's limit starts from.
    typename Clock::time_point begin_call() const {
        using time_point = typename Clock::time_point;
        // The end of max_duration; time_point::max() is no limit (also what a limit
        // past the clock's end saturates to).
        time_point limit = time_point::max();
        if (m_options.max_duration > std::chrono::nanoseconds::zero()) {
            limit = detail::saturating_add(m_clock.now(), m_options.max_duration);
        }
        if (m_options.budget) {
            m_options.budget->deposit();
        }
        return limit;
    }

    // Runs attempts 2.. (off the success path, so execute() stays small enough to
    // inline), leaving the outcome to return in `result`.
    template <class Next, class Context, class Result>
    void retry_after_first(Next const& next, Context const& ctx, Result& result,
                           typename Clock::time_point duration_end) const {
        schedule plan{*this, duration_end, ctx};
        try {
            Sleeper sleeper = m_sleeper;
            // plan.next_delay() without the std::optional (see delay_or_stop).
            for (;;) {
                auto const delay = plan.delay_or_stop(result, ctx.stop_requested());
                if (delay < std::chrono::nanoseconds::zero()) {
                    break;
                }
                if (!sleeper.sleep_for(delay, ctx.stop_token())) {
                    plan.wait_interrupted();
                    break;
                }
                result = next(ctx.with_attempt(plan.attempt()));
                if (!plan.retryable(result)) {
                    break;
                }
            }
        } catch (...) {
            // An on_retry listener or a sleeper threw: report it rather than escape.
            result = keel::failure::from_current_exception();
        }
        plan.finish(result);
    }

    template <class Result>
    void notify(int attempt, std::chrono::nanoseconds delay, Result const& result) const {
        using value_type = typename Result::value_type;
        if constexpr (std::is_void_v<value_type>) {
            m_options.on_retry(retry_event{attempt, delay,
                                           result.has_value() ? nullptr : &result.failure(),
                                           static_cast<int const*>(nullptr)});
        } else if (result.has_value()) {
            m_options.on_retry(retry_event{attempt, delay, nullptr, &*result});
        } else {
            m_options.on_retry(retry_event{attempt, delay, &result.failure(),
                                           static_cast<value_type const*>(nullptr)});
        }
    }

    basic_retry_options<Clock> m_options;
    [[no_unique_address]] Predicate m_should_retry;
    [[no_unique_address]] Clock m_clock;
    [[no_unique_address]] Sleeper m_sleeper;
    [[no_unique_address]] mutable Random m_random;
};

KEEL_END_NAMESPACE
