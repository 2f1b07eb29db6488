// SPDX-License-Identifier: MIT
// The internals of keel::ops::health_registry: what it keeps per check (the
// latest result, its history and the run in progress), how a user's check is
// adapted to one signature and guarded against exceptions, and how durations
// read in its messages.
#pragma once

#include <keel/ops/detail/bounded_task.hpp>
#include <keel/ops/health_report.hpp>
#include <keel/version.hpp>

#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <type_traits>
#include <utility>

KEEL_BEGIN_NAMESPACE
namespace ops::detail {

/// What a check's thread hands back: the result and when it was read.
template <class TimePoint>
struct health_reading {
    check_result result;
    TimePoint read_at{};
};

/// One run of a check, shared by every probe waiting for it. The task settles once: finished
/// (the check returned first; the first probe to look records its reading) or expired (the
/// first probe past its deadline records the timeout; the late reading is discarded).
template <class TimePoint>
struct health_check_run {
    TimePoint started{};
    bounded_task<health_reading<TimePoint>> task;
    bool recorded = false; // under the check's mutex: the finished reading was recorded
};

/// What the registry knows about one check. `Options` is keel::ops::check_options. Only
/// the probes touch it, under `mutex`; a run's thread owns just the task state and the
/// check function (shared), so a hung run never keeps this alive nor writes to it.
template <class Clock, class Options>
struct health_check_state {
    using time_point = typename Clock::time_point;
    using run_type = health_check_run<time_point>;

    Options options;
    std::string key;
    std::string component_type;
    std::shared_ptr<std::function<check_result(std::stop_token)>> function;

    std::mutex mutex;
    std::shared_ptr<run_type> running; // the latest run, until a probe saw it end
    bool has_result = false;
    check_result last;
    time_point read_at{};
    time_point last_change{};
    std::uint64_t consecutive_failures = 0;

    // A ttl of nanoseconds::max() keeps a result forever: the difference never reaches it.
    bool fresh_locked(time_point now) const { return has_result && now - read_at < options.ttl; }

    void record_locked(check_result result, time_point now) {
        if (!has_result || result.status != last.status) {
            last_change = now;
        }
        consecutive_failures = result.status == health_status::fail ? consecutive_failures + 1 : 0;
        last = std::move(result);
        read_at = now;
        has_result = true;
    }
};

/// A copy of a check's state taken under its lock, converted to a report outside it.
template <class TimePoint>
struct health_check_view {
    check_result result;
    TimePoint read_at{};
    TimePoint last_change{};
    std::uint64_t consecutive_failures = 0;
    bool cached = false;
};

// Prints a timeout or budget in a check's output ("timed out after 800ms"): seconds
// at most, so the report text stays "60s" where keel::detail::format_duration (the
// format of error messages) would say "1min".
inline std::string describe_duration(std::chrono::nanoseconds d) {
    // Qualified names: keel::ops::detail has a seconds() of its own (pool_sizing.hpp).
    using std::chrono::duration_cast, std::chrono::microseconds, std::chrono::milliseconds,
        std::chrono::nanoseconds;
    if (d % std::chrono::seconds{1} == nanoseconds::zero()) {
        return std::to_string(duration_cast<std::chrono::seconds>(d).count()) + "s";
    }
    if (d % milliseconds{1} == nanoseconds::zero()) {
        return std::to_string(duration_cast<milliseconds>(d).count()) + "ms";
    }
    if (d % microseconds{1} == nanoseconds::zero()) {
        return std::to_string(duration_cast<microseconds>(d).count()) + "us";
    }
    return std::to_string(d.count()) + "ns";
}

template <class F>
std::function<check_result(std::stop_token)> adapt_check(F&& f) {
    using fn_type = std::decay_t<F>;
    static_assert(std::is_invocable_v<fn_type&, std::stop_token> || std::is_invocable_v<fn_type&>,
                  "a health check is callable with a std::stop_token or with no argument");
    return [fn = fn_type(std::forward<F>(f))](std::stop_token token) mutable -> check_result {
        auto call = [&]() -> decltype(auto) {
            if constexpr (std::is_invocable_v<fn_type&, std::stop_token>) {
                return fn(std::move(token));
            } else {
                return fn();
            }
        };
        using result_type = std::remove_cvref_t<decltype(call())>;
        static_assert(std::is_same_v<result_type, check_result> ||
                          std::is_same_v<result_type, bool>,
                      "a health check returns keel::ops::check_result or bool");
        if constexpr (std::is_same_v<result_type, bool>) {
            return call() ? check_result::pass() : check_result::fail("check returned false");
        } else {
            return call();
        }
    };
}

inline check_result run_check_guarded(std::function<check_result(std::stop_token)>& function,
                                      std::stop_token token) noexcept {
    try {
        try {
            return function(std::move(token));
        } catch (std::exception const& e) {
            return check_result::fail(e.what());
        } catch (...) {
            return check_result::fail("check threw an exception of unknown type");
        }
    } catch (...) {
        // Building the failure itself failed (out of memory): report it without text.
        return check_result{health_status::fail, std::nullopt, {}, {}};
    }
}

} // namespace ops::detail
KEEL_END_NAMESPACE
