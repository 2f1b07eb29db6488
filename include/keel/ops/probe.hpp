// SPDX-License-Identifier: MIT
// Kubernetes probe arithmetic: a probe configuration with the kubelet's defaults,
// the window in which a failure is detected, the start-up bound, the recovery
// window, and how many requests fail while detection runs. All constexpr, so a
// service can static_assert its probe settings against its budgets.
#pragma once

#include <keel/detail/validate.hpp>
#include <keel/version.hpp>

#include <chrono>

KEEL_BEGIN_NAMESPACE

namespace ops {

/// Holds a Kubernetes probe's timing fields (livenessProbe, readinessProbe or
/// startupProbe), with the Kubernetes defaults and minimums ("Configure Liveness,
/// Readiness and Startup Probes", kubernetes.io). Whole seconds, as the API has.
struct probe_config {
    /// initialDelaySeconds: default 0, minimum 0, maximum max_seconds. Counted from container start
    /// and applied once, so it matters only at start-up (startup_window, startup_bound).
    std::chrono::seconds initial_delay{0};
    /// periodSeconds: default 10, minimum 1, maximum max_seconds.
    std::chrono::seconds period{10};
    /// timeoutSeconds: default 1, minimum 1, maximum max_seconds. A hung endpoint adds up to this
    /// to the last probe of a detection.
    std::chrono::seconds timeout{1};
    /// successThreshold: default 1, minimum 1; Kubernetes requires 1 for liveness
    /// and startup probes.
    int success_threshold = 1;
    /// failureThreshold: default 3, minimum 1; consecutive failures before the
    /// kubelet acts (restart for liveness, Ready=false for readiness).
    int failure_threshold = 3;

    /// The largest value of a seconds field: the Kubernetes API holds them as int32, and
    /// the window arithmetic below cannot overflow within it.
    static constexpr std::chrono::seconds max_seconds{2147483647};

    /// Throws std::invalid_argument if a field is outside its range above, e.g.
    /// "keel::ops::probe_config: period must be in [1s, 2147483647s], got 0s".
    constexpr void validate() const {
        check_seconds(initial_delay, "initial_delay", std::chrono::seconds{0},
                      "in [0s, 2147483647s]");
        check_seconds(period, "period", std::chrono::seconds{1}, "in [1s, 2147483647s]");
        check_seconds(timeout, "timeout", std::chrono::seconds{1}, "in [1s, 2147483647s]");
        if (success_threshold < 1) {
            keel::detail::invalid_option(component, "success_threshold", ">= 1", success_threshold);
        }
        if (failure_threshold < 1) {
            keel::detail::invalid_option(component, "failure_threshold", ">= 1", failure_threshold);
        }
    }

private:
    static constexpr char const* component = "keel::ops::probe_config";
    static constexpr void check_seconds(std::chrono::seconds value, char const* field,
                                        std::chrono::seconds minimum, char const* range) {
        if (value < minimum || value > max_seconds) {
            keel::detail::invalid_option(component, field, range, value);
        }
    }
};

/// Holds the earliest and latest time after an event at which something happens.
struct time_window {
    std::chrono::seconds earliest{}; ///< The best case.
    std::chrono::seconds latest{};   ///< The worst case.

    /// Returns true if both bounds are equal.
    friend constexpr bool operator==(time_window const&, time_window const&) = default;
};

/// Returns when a probe detects a failure that happens mid-life (a healthy
/// container breaks at a random moment): between (failureThreshold - 1) x period
/// and failureThreshold x period + timeout after the failure. The first failing
/// probe comes within one period, then failureThreshold - 1 more periods pass; a
/// hung endpoint adds up to timeout to the last probe. initialDelay plays no part.
/// Defaults: 20 s to 31 s (about 25 s on average). Endpoint and load-balancer
/// propagation, and the kill grace period for liveness, come on top.
/// Precondition: `probe.validate()` passes.
constexpr time_window failure_detection_window(probe_config const& probe) noexcept {
    return {probe.period * (probe.failure_threshold - 1),
            probe.period * probe.failure_threshold + probe.timeout};
}

/// Returns the start-up upper bound initialDelay + period x failureThreshold: how
/// long a container that never becomes healthy runs before the probe gives up, as
/// the Kubernetes docs size a startup probe (30 x 10 = 300 s in their example). This
/// is the article's "detection time = initialDelay + (period x failureThreshold) =
/// 30 s" with the defaults; it is the start-up bound, not the time to detect a
/// failure mid-life (use failure_detection_window for that). Excludes the last
/// probe's timeout; startup_window().latest includes it.
constexpr std::chrono::seconds startup_bound(probe_config const& probe) noexcept {
    return probe.initial_delay + probe.period * probe.failure_threshold;
}

/// Returns when a probe gives up on a container that never becomes healthy,
/// measured from container start: between initialDelay + (failureThreshold - 1) x
/// period and initialDelay + failureThreshold x period + timeout (the first probe
/// runs on the first tick at or after initialDelay). Defaults: 20 s to 31 s.
constexpr time_window startup_window(probe_config const& probe) noexcept {
    return {probe.initial_delay + probe.period * (probe.failure_threshold - 1),
            startup_bound(probe) + probe.timeout};
}

/// Returns when a readiness probe notices a recovery: between (successThreshold - 1)
/// x period and successThreshold x period + timeout after the process is healthy
/// again. Defaults: 0 s to 11 s.
constexpr time_window recovery_window(probe_config const& probe) noexcept {
    return {probe.period * (probe.success_threshold - 1),
            probe.period * probe.success_threshold + probe.timeout};
}

/// Returns how many requests fail during `detection` at `requests_per_second`, when
/// the fraction `affected` of them hits the failed instance (1 when it takes all
/// traffic, 1/N for one of N equal replicas) and every such request fails: the
/// article's 30 s at 10,000 req/s gives 300,000. An upper bound: retries to other
/// replicas lower it. Preconditions: rate >= 0, 0 <= affected <= 1.
template <class Rep, class Period>
constexpr double failed_requests_during(std::chrono::duration<Rep, Period> detection,
                                        double requests_per_second, double affected = 1.0) {
    return std::chrono::duration<double>{detection}.count() * requests_per_second * affected;
}

} // namespace ops

KEEL_END_NAMESPACE
