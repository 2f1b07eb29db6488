// SPDX-License-Identifier: MIT
// keel::aimd_limit: the loss-based adaptive concurrency algorithm of Netflix
// concurrency-limits (limit/AIMDLimit.java): add one while calls succeed with enough
// of them in flight, multiply by the backoff ratio on a drop or a call slower than
// the timeout. A pure function of its samples; keel::adaptive_limit drives it.
#pragma once

#include <keel/detail/validate.hpp>
#include <keel/policy/adaptive/sample.hpp>
#include <keel/version.hpp>

#include <algorithm>
#include <chrono>
#include <string_view>

KEEL_BEGIN_NAMESPACE

/// Options of keel::aimd_limit; every default is AIMDLimit.Builder's.
struct aimd_options {
    /// Default 20 (AIMDLimit initialLimit); >= 1. The limit before the first sample; like
    /// the source it is not clamped to [min_limit, max_limit] until the first update.
    int initial_limit = 20;
    /// Default 20 (AIMDLimit minLimit); >= 1. The limit never drops below it.
    int min_limit = 20;
    /// Default 200 (AIMDLimit maxLimit); >= min_limit. The limit never rises above it.
    int max_limit = 200;
    /// Default 0.9 (AIMDLimit backoffRatio); in [0.5, 1). The factor applied on a drop.
    double backoff_ratio = 0.9;
    /// Default 5s (AIMDLimit DEFAULT_TIMEOUT); > 0. A window RTT above it counts as a drop.
    std::chrono::nanoseconds timeout = std::chrono::seconds{5};
};

/// Adapts a concurrency limit by additive increase, multiplicative decrease.
///
/// update() is AIMDLimit._update: on a drop or an RTT above the timeout the limit becomes
/// floor(limit x backoff_ratio); otherwise, if at least half the limit was in flight
/// (inflight x 2 >= limit), it grows by one; then it is clamped to [min_limit, max_limit].
/// Not thread-safe: keel::adaptive_limit calls it from one thread at a time.
class aimd_limit {
public:
    /// Builds the algorithm; throws std::invalid_argument when an option is out of range.
    explicit aimd_limit(aimd_options options = {})
        : m_options(options), m_limit(options.initial_limit) {
        constexpr std::string_view component = "keel::aimd_limit";
        if (options.initial_limit < 1) {
            detail::invalid_option(component, "initial_limit", ">= 1", options.initial_limit);
        }
        if (options.min_limit < 1) {
            detail::invalid_option(component, "min_limit", ">= 1", options.min_limit);
        }
        if (options.max_limit < options.min_limit) {
            detail::invalid_option(component, "max_limit", ">= min_limit", options.max_limit);
        }
        if (!(options.backoff_ratio >= 0.5 && options.backoff_ratio < 1.0)) {
            detail::invalid_option(component, "backoff_ratio", "in [0.5, 1)",
                                   options.backoff_ratio);
        }
        if (options.timeout <= std::chrono::nanoseconds::zero()) {
            detail::invalid_option(component, "timeout", "> 0", options.timeout);
        }
    }

    /// Learns from one window and returns the new limit.
    int update(limit_sample const& sample) noexcept {
        int next = m_limit;
        if (sample.dropped || sample.rtt > m_options.timeout) {
            next = static_cast<int>(static_cast<double>(next) * m_options.backoff_ratio);
        } else if (sample.in_flight * 2 >= next) {
            next = next + 1;
        }
        m_limit = std::min(m_options.max_limit, std::max(m_options.min_limit, next));
        return m_limit;
    }

    /// Returns the current limit.
    int limit() const noexcept { return m_limit; }

    /// Returns the options the algorithm was built with.
    aimd_options const& options() const noexcept { return m_options; }

private:
    aimd_options m_options;
    int m_limit;
};

KEEL_END_NAMESPACE
