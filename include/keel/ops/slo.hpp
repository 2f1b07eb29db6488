// SPDX-License-Identifier: MIT
// SLO and error-budget arithmetic: the budget an SLO leaves, the outage time it
// allows per incident, burn rates and the multiwindow, multi-burn-rate alert
// thresholds of the Google SRE workbook ("Alerting on SLOs"), and binomial
// confidence intervals (Wald and Wilson) for a failure rate measured from n
// calls, which show what a circuit breaker's minimum number of calls buys. All
// constexpr.
#pragma once

#include <keel/version.hpp>

#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <type_traits>

KEEL_BEGIN_NAMESPACE

namespace ops {

/// Seconds as a double: the unit of every duration these functions return.
using fseconds = std::chrono::duration<double>;

/// Returns the error budget of an SLO given as a fraction: 1 - slo (0.999 -> 0.001).
/// Precondition: 0 <= slo <= 1.
constexpr double error_budget(double slo) noexcept {
    return 1.0 - slo;
}

/// Returns the full-outage time an SLO allows over `window`: (1 - slo) x window. For
/// 99.9% over 30 days: 2,592 s (43.2 min). Precondition: 0 <= slo <= 1.
template <class Rep, class Period>
constexpr fseconds error_budget_time(double slo, std::chrono::duration<Rep, Period> window) {
    return fseconds{window} * error_budget(slo);
}

/// Returns the outage time each incident may take: error_budget x window /
/// (expected_incidents x impact). With the article's 0.1% over 30 days and 10
/// incidents, 259.2 s. This time must cover detection AND repair together (time to
/// detect + time to resolve in Google CRE's risk model), not detection alone: if
/// probes and alerts take most of it, nothing is left to fix the fault. `impact` is
/// the fraction of requests that fail during the incident (1 for a full outage,
/// 0.1 for one of ten replicas); a partial outage may last longer. Preconditions:
/// 0 <= error_budget <= 1, expected_incidents > 0, 0 < impact <= 1.
template <class Rep, class Period>
constexpr fseconds outage_budget_per_incident(double error_budget_fraction,
                                              std::chrono::duration<Rep, Period> window,
                                              double expected_incidents, double impact = 1.0) {
    return fseconds{window} * error_budget_fraction / (expected_incidents * impact);
}

/// Returns the burn rate of an observed error ratio: error_ratio / (1 - slo). A rate
/// of 1 spends exactly the budget over the SLO window; 1000 at 99.9% means a full
/// outage. Precondition: slo < 1.
constexpr double burn_rate(double error_ratio, double slo) noexcept {
    return error_ratio / error_budget(slo);
}

/// Returns how long the budget lasts at `rate`: slo_window / burn_rate (30 days at
/// 10x -> 3 days). Precondition: rate > 0.
template <class Rep, class Period>
constexpr fseconds time_to_exhaustion(double rate, std::chrono::duration<Rep, Period> slo_window) {
    return fseconds{slo_window} / rate;
}

/// Returns the burn rate at which an alert over `alert_window` fires once the
/// fraction `budget_consumed` of the budget of `slo_window` is spent:
/// budget_consumed x slo_window / alert_window (SRE workbook: 2% over 1 h of a
/// 30-day window -> 14.4). Precondition: alert_window > 0.
template <class Rep1, class Period1, class Rep2, class Period2>
constexpr double burn_rate_threshold(double budget_consumed,
                                     std::chrono::duration<Rep1, Period1> slo_window,
                                     std::chrono::duration<Rep2, Period2> alert_window) {
    return budget_consumed * (fseconds{slo_window} / fseconds{alert_window});
}

/// Returns the fraction of the budget an alert at `rate` over `alert_window` has
/// consumed when it fires: rate x alert_window / slo_window (the inverse of
/// burn_rate_threshold).
template <class Rep1, class Period1, class Rep2, class Period2>
constexpr double budget_consumed(double rate, std::chrono::duration<Rep1, Period1> alert_window,
                                 std::chrono::duration<Rep2, Period2> slo_window) {
    return rate * (fseconds{alert_window} / fseconds{slo_window});
}

/// Returns how long a burn-rate alert over `alert_window` with threshold `rate`
/// takes to fire after the error ratio steps to `error_ratio`:
/// ((1 - slo) / error_ratio) x alert_window x rate (SRE workbook). A full outage
/// (error_ratio 1) at 99.9% trips the 14.4x / 1 h alert in 51.84 s. Meaningful only
/// when error_ratio > rate x (1 - slo); below that the alert never fires.
template <class Rep, class Period>
constexpr fseconds alert_detection_time(double slo, double error_ratio,
                                        std::chrono::duration<Rep, Period> alert_window,
                                        double rate) {
    return fseconds{alert_window} * (error_budget(slo) / error_ratio) * rate;
}

/// Names who a burn-rate alert goes to.
enum class alert_severity {
    page,   ///< Wakes someone up.
    ticket, ///< Handled in working hours.
};

/// Describes one row of a multiwindow, multi-burn-rate alert: fire when the burn
/// rate over BOTH the long and the short window exceeds `burn_rate` (the short
/// window, 1/12 of the long one, makes the alert stop soon after the problem does);
/// rows are OR-ed.
struct burn_rate_alert {
    alert_severity severity = alert_severity::page;
    std::chrono::seconds long_window{};  ///< E.g. 1 h.
    std::chrono::seconds short_window{}; ///< long_window / 12, e.g. 5 min.
    double budget_consumed = 0;          ///< Budget spent when it fires, e.g. 0.02.
    double burn_rate = 0;                ///< The threshold, e.g. 14.4 for a 30-day window.
};

/// Returns the SRE workbook's recommended starting point (Table 5-8) for an SLO
/// window of `slo_window` (default 30 days): page at 2% of the budget in 1 h (5 min
/// short window), page at 5% in 6 h (30 min), ticket at 10% in 3 days (6 h). Over
/// 30 days the burn rates are 14.4, 6 and 1; other windows scale them
/// (burn_rate_threshold).
template <class Rep = std::chrono::days::rep, class Period = std::chrono::days::period>
constexpr std::array<burn_rate_alert, 3> multiwindow_burn_rate_alerts(
    std::chrono::duration<Rep, Period> slo_window = std::chrono::days{30}) {
    using std::chrono::hours;
    using std::chrono::minutes;
    auto row = [&](alert_severity severity, std::chrono::seconds long_window, double consumed) {
        return burn_rate_alert{severity, long_window, long_window / 12, consumed,
                               burn_rate_threshold(consumed, slo_window, long_window)};
    };
    return {row(alert_severity::page, hours{1}, 0.02), row(alert_severity::page, hours{6}, 0.05),
            row(alert_severity::ticket, hours{72}, 0.10)};
}

/// Holds a confidence interval for a proportion, both bounds in [0, 1].
struct proportion_interval {
    double lower = 0; ///< The lower bound.
    double upper = 1; ///< The upper bound.
};

/// The standard normal quantile for a two-sided 95% interval (1.959963984540054).
inline constexpr double z_95 = 1.959963984540054;

namespace detail {
// sqrt usable in constant expressions (std::sqrt is not constexpr in C++20).
constexpr double sqrt_constexpr(double x) noexcept {
    if (!std::is_constant_evaluated()) {
        return std::sqrt(x);
    }
    if (!(x > 0)) {
        return 0;
    }
    double guess = x < 1 ? 1 : x;
    for (int i = 0; i < 200; ++i) {
        double const next = 0.5 * (guess + x / guess);
        if (next == guess) {
            break;
        }
        guess = next;
    }
    return guess;
}

constexpr double clamp_unit(double x) noexcept {
    return x < 0 ? 0 : (x > 1 ? 1 : x);
}
} // namespace detail

/// Returns the Wald (normal approximation) interval for a proportion `p` observed
/// in `n` trials: p +- z sqrt(p (1 - p) / n), clamped to [0, 1]. For n = 10 and
/// p = 0.5 it gives 19.0%-81.0%, the article's "roughly 19%-81%". Shown for
/// comparison: it is too narrow for small n and collapses to a point at p = 0 or 1;
/// prefer wilson_interval. Returns [0, 1] when n <= 0. Precondition: 0 <= p <= 1.
constexpr proportion_interval wald_interval(double p, std::int64_t n, double z = z_95) noexcept {
    if (n <= 0) {
        return {0, 1};
    }
    double const half = z * detail::sqrt_constexpr(p * (1 - p) / static_cast<double>(n));
    return {detail::clamp_unit(p - half), detail::clamp_unit(p + half)};
}

/// Returns the Wilson score interval for a proportion `p` observed in `n` trials:
/// (p + z^2/2n +- z sqrt(p (1 - p) / n + z^2/4n^2)) / (1 + z^2/n). For n = 10 and
/// p = 0.5 it gives about 23.7%-76.3%. Well behaved for small n and at p = 0 or 1;
/// the recommended interval (Brown, Cai and DasGupta, 2001). Use it to see what a
/// breaker's minimum number of calls buys: 5 failures out of 10 still allows a true
/// failure rate anywhere from about 24% to 76%. Returns [0, 1] when n <= 0.
/// Precondition: 0 <= p <= 1.
constexpr proportion_interval wilson_interval(double p, std::int64_t n, double z = z_95) noexcept {
    if (n <= 0) {
        return {0, 1};
    }
    double const nn = static_cast<double>(n);
    double const z2 = z * z;
    double const denominator = 1 + z2 / nn;
    double const centre = (p + z2 / (2 * nn)) / denominator;
    double const half =
        z * detail::sqrt_constexpr(p * (1 - p) / nn + z2 / (4 * nn * nn)) / denominator;
    return {detail::clamp_unit(centre - half), detail::clamp_unit(centre + half)};
}

} // namespace ops

KEEL_END_NAMESPACE
