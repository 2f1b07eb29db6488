// SPDX-License-Identifier: MIT
// keel::observe::pipeline_counters: what a guarded pipeline (keel::resilient, a
// keel::retry) counts for its metrics: logical calls by how they ended, the
// attempts they took, the retries and the time spent waiting between attempts.
// Relaxed atomics only, so counting costs a few uncontended adds per call; a
// keel::observe::registry renders them.
#pragma once

#include <keel/core/error.hpp>
#include <keel/core/outcome.hpp>
#include <keel/version.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <system_error>

KEEL_BEGIN_NAMESPACE
namespace observe {

/// Enumerates how a logical call through a pipeline ended, as its metrics label it.
///
/// `success` is a value; each keel::errc is its own class (a call rejected by
/// the breaker is `circuit_open`, one whose attempts all timed out is `timeout`);
/// `failure` is any other failure: the call's own exception or error code.
enum class call_outcome : std::uint8_t {
    success = 0,
    circuit_open = 1,
    rate_limited = 2,
    timeout = 3,
    bulkhead_full = 4,
    retries_exhausted = 5,
    retry_budget_exhausted = 6,
    cancelled = 7,
    exceeds_capacity = 8,
    shutting_down = 9,
    unavailable = 10,
    failure = 11,
};

/// The number of call_outcome values.
inline constexpr std::size_t call_outcome_count = 12;

/// Returns the label value of `outcome`, e.g. "circuit_open".
constexpr std::string_view to_string(call_outcome outcome) noexcept {
    constexpr std::string_view names[call_outcome_count] = {"success",
                                                            "circuit_open",
                                                            "rate_limited",
                                                            "timeout",
                                                            "bulkhead_full",
                                                            "retries_exhausted",
                                                            "retry_budget_exhausted",
                                                            "cancelled",
                                                            "exceeds_capacity",
                                                            "shutting_down",
                                                            "unavailable",
                                                            "failure"};
    auto const i = static_cast<std::size_t>(outcome);
    return i < call_outcome_count ? names[i] : "unknown";
}

/// Returns the class of a call that ended with `code` (empty: success).
inline call_outcome classify(std::error_code code) noexcept {
    if (!code) {
        return call_outcome::success;
    }
    if (code.category() == error_category() && code.value() >= 1 && code.value() <= 10) {
        return static_cast<call_outcome>(code.value());
    }
    return call_outcome::failure;
}

/// Describes a pipeline's counts at one moment (each a total since construction).
struct pipeline_snapshot {
    /// Logical calls by how they ended, indexed by call_outcome.
    std::array<std::uint64_t, call_outcome_count> calls{};
    std::uint64_t attempts = 0;             ///< Attempts made (first attempts and retries).
    std::uint64_t retries = 0;              ///< Retries decided (waits started).
    std::chrono::nanoseconds retry_wait{0}; ///< Backoff chosen before those retries, summed.

    /// Returns the calls that ended as `outcome`.
    std::uint64_t calls_of(call_outcome outcome) const noexcept {
        return calls[static_cast<std::size_t>(outcome)];
    }
};

/// Counts the calls, attempts and retries of one guarded pipeline.
///
/// The pipeline (or, until keel::retry and keel::resilient call it themselves,
/// the service) reports each attempt it starts (record_attempt()), each retry
/// it decides with its delay (record_retry(), what keel::retry_options::on_retry
/// sees) and each logical call's outcome (record()). Every member is
/// thread-safe, lock-free and allocation-free (relaxed atomic adds: the counts
/// publish no other data). Not copyable; it must outlive any registry holding it.
///
///     keel::observe::pipeline_counters users_calls;
///     auto get_user = keel::resilient{
///         [&](keel::context const& ctx) { users_calls.record_attempt(); return fetch(ctx); },
///         keel::retry{{.on_retry = [&](keel::retry_event const& e) {
///             users_calls.record_retry(e.delay()); }}}};
///     auto result = get_user.try_call();
///     users_calls.record(result);
class pipeline_counters {
public:
    pipeline_counters() noexcept = default;
    pipeline_counters(pipeline_counters const&) = delete;
    pipeline_counters& operator=(pipeline_counters const&) = delete;

    /// Counts one attempt started.
    void record_attempt() noexcept { m_attempts.fetch_add(1, std::memory_order_relaxed); }

    /// Counts one retry that waits `delay` before its attempt.
    void record_retry(std::chrono::nanoseconds delay) noexcept {
        m_retries.fetch_add(1, std::memory_order_relaxed);
        auto const ns = delay.count() > 0 ? static_cast<std::uint64_t>(delay.count()) : 0U;
        m_retry_wait_ns.fetch_add(ns, std::memory_order_relaxed);
    }

    /// Counts one logical call that ended as `outcome`.
    void record(call_outcome outcome) noexcept {
        auto const i = static_cast<std::size_t>(outcome);
        m_calls[i < call_outcome_count ? i : call_outcome_count - 1].fetch_add(
            1, std::memory_order_relaxed);
    }

    /// Counts one logical call that ended with `code` (empty: success).
    void record(std::error_code code) noexcept { record(classify(code)); }

    /// Counts one logical call that ended with `result`.
    template <class T>
    void record(outcome<T> const& result) noexcept {
        record(classify(result.error()));
    }

    /// Counts one logical call with everything its outcome says: how it ended, the
    /// attempts it made (keel::call_stats) and, for the retries among them, the time
    /// waited. What keel::observe::count(counters) records for every call.
    template <class T>
    void record_call(outcome<T> const& result) noexcept {
        record(result);
        auto const attempts = result.attempts() > 0 ? result.attempts() : 1;
        m_attempts.fetch_add(static_cast<std::uint64_t>(attempts), std::memory_order_relaxed);
        if (attempts > 1) {
            m_retries.fetch_add(static_cast<std::uint64_t>(attempts - 1),
                                std::memory_order_relaxed);
        }
        if (auto const waited = result.waited().count(); waited > 0) {
            m_retry_wait_ns.fetch_add(static_cast<std::uint64_t>(waited),
                                      std::memory_order_relaxed);
        }
    }

    /// Returns the counts (each read on its own: a snapshot taken while calls run
    /// may see an attempt before the call it belongs to).
    pipeline_snapshot snapshot() const noexcept {
        pipeline_snapshot s;
        for (std::size_t i = 0; i < call_outcome_count; ++i) {
            s.calls[i] = m_calls[i].load(std::memory_order_relaxed);
        }
        s.attempts = m_attempts.load(std::memory_order_relaxed);
        s.retries = m_retries.load(std::memory_order_relaxed);
        s.retry_wait = std::chrono::nanoseconds{
            static_cast<std::int64_t>(m_retry_wait_ns.load(std::memory_order_relaxed))};
        return s;
    }

private:
    std::array<std::atomic<std::uint64_t>, call_outcome_count> m_calls{};
    std::atomic<std::uint64_t> m_attempts{0};
    std::atomic<std::uint64_t> m_retries{0};
    std::atomic<std::uint64_t> m_retry_wait_ns{0};
};

/// The policy keel::observe::count(counters) returns: records every logical call
/// through the rest of the pipeline in `counters` (record_call: its outcome, its
/// attempts, its waits), then returns the outcome unchanged. Put it outermost, so
/// that calls the breaker or a limiter rejects are counted too. Adds a few relaxed
/// atomic adds per call; thread-safe; holds a pointer (`counters` must outlive it).
/// keel::asio::resilient runs it as well.
///
///     keel::observe::pipeline_counters users_calls;
///     auto get_user = keel::resilient{fetch, keel::observe::count(users_calls),
///                                     keel::guard(breaker), keel::retry{}};
class count_policy {
public:
    /// Counts into `counters`.
    explicit count_policy(pipeline_counters& counters) noexcept : m_counters(&counters) {}

    /// Runs `next(ctx)` and records its outcome.
    template <class Next, class Context>
    auto execute(Next const& next, Context const& ctx) const -> decltype(next(ctx)) {
        auto result = next(ctx);
        m_counters->record_call(result);
        return result;
    }

    /// Returns the counters.
    pipeline_counters& counters() const noexcept { return *m_counters; }

private:
    pipeline_counters* m_counters;
};

/// Returns the policy that counts every call of a pipeline in `counters`.
inline count_policy count(pipeline_counters& counters) noexcept {
    return count_policy{counters};
}

} // namespace observe
KEEL_END_NAMESPACE
