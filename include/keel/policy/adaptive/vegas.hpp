// SPDX-License-Identifier: MIT
// keel::vegas_limit: the delay-based adaptive concurrency algorithm of Netflix
// concurrency-limits (limit/VegasLimit.java, after TCP Vegas): estimate the queue as
// limit x (1 - rtt_noload / rtt) and grow while it is short, shrink while it is long,
// with thresholds that scale with log10 of the limit. A pure function of its samples
// and a seeded generator (for the probe jitter); keel::adaptive_limit drives it.
#pragma once

#include <keel/core/random.hpp>
#include <keel/detail/validate.hpp>
#include <keel/policy/adaptive/sample.hpp>
#include <keel/version.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string_view>
#include <utility>

KEEL_BEGIN_NAMESPACE

/// Returns Netflix's Log10RootFunction: max(1, floor(log10(limit))) below 1000 (its lookup
/// table), floor(log10(limit)) from 1000 on. Vegas' default thresholds are multiples of it.
inline int vegas_log10(int limit) noexcept {
    if (limit < 10) {
        return 1;
    }
    int digits = 0;
    for (int v = limit; v >= 10; v /= 10) {
        ++digits;
    }
    return std::max(1, digits);
}

/// Options of keel::vegas_limit; every default is VegasLimit.Builder's.
///
/// The threshold functions take the current limit (truncated to int); empty means the
/// source's default, written beside each field.
struct vegas_options {
    /// Default 20 (VegasLimit initialLimit); >= 1.
    int initial_limit = 20;
    /// Default 1000 (VegasLimit maxConcurrency); >= 1. The limit never rises above it.
    int max_limit = 1000;
    /// Default 1.0 (VegasLimit smoothing: no smoothing); in (0, 1]. The new limit is
    /// (1 - smoothing) x old + smoothing x computed.
    double smoothing = 1.0;
    /// Default 30 (VegasLimit probeMultiplier); >= 1. Every probe_multiplier x limit x
    /// jitter samples (jitter uniform in [0.5, 1)) the current RTT becomes the no-load RTT.
    int probe_multiplier = 30;
    /// Default 3 x log10(limit). Below this queue estimate the limit increases.
    std::function<int(int)> alpha{};
    /// Default 6 x log10(limit). Above this queue estimate the limit decreases.
    std::function<int(int)> beta{};
    /// Default log10(limit). At or below it (no queue) the limit grows by beta.
    std::function<int(int)> threshold{};
    /// Default limit + log10(limit).
    std::function<double(double)> increase{};
    /// Default limit - log10(limit).
    std::function<double(double)> decrease{};
};

/// Adapts a concurrency limit from the queue that RTTs above the no-load RTT reveal.
///
/// update() is VegasLimit._update and updateEstimatedLimit: a probe (see probe_multiplier)
/// or a new minimum RTT only resets rtt_noload; otherwise queue = ceil(limit x (1 -
/// rtt_noload / rtt)), and a drop decreases; fewer than half the limit in flight changes
/// nothing (app-limited); queue <= threshold adds beta, queue < alpha increases, queue > beta
/// decreases, else nothing; the result is clamped to [1, max_limit] and smoothed. A sample
/// with a zero RTT is ignored (the source rejects it). Not thread-safe.
class vegas_limit {
public:
    /// Builds the algorithm, drawing probe jitter from a generator seeded with `seed`;
    /// throws std::invalid_argument when an option is out of range.
    explicit vegas_limit(vegas_options options = {}, std::uint64_t seed = 0x5eed)
        : m_options(std::move(options)), m_estimate(m_options.initial_limit), m_random(seed) {
        constexpr std::string_view component = "keel::vegas_limit";
        if (m_options.initial_limit < 1) {
            detail::invalid_option(component, "initial_limit", ">= 1", m_options.initial_limit);
        }
        if (m_options.max_limit < 1) {
            detail::invalid_option(component, "max_limit", ">= 1", m_options.max_limit);
        }
        if (!(m_options.smoothing > 0.0 && m_options.smoothing <= 1.0)) {
            detail::invalid_option(component, "smoothing", "in (0, 1]", m_options.smoothing);
        }
        if (m_options.probe_multiplier < 1) {
            detail::invalid_option(component, "probe_multiplier", ">= 1",
                                   m_options.probe_multiplier);
        }
        reset_probe_jitter();
    }

    /// Learns from one window and returns the new limit.
    int update(limit_sample const& sample) {
        auto const rtt = sample.rtt.count();
        if (rtt <= 0) {
            return limit();
        }
        ++m_probe_count;
        if (m_probe_jitter * m_options.probe_multiplier * m_estimate <=
            static_cast<double>(m_probe_count)) {
            reset_probe_jitter();
            m_probe_count = 0;
            m_rtt_noload = rtt;
            return limit();
        }
        if (m_rtt_noload == 0 || rtt < m_rtt_noload) {
            m_rtt_noload = rtt;
            return limit();
        }
        return update_estimate(rtt, sample.in_flight, sample.dropped);
    }

    /// Returns the current limit (the estimate, truncated).
    int limit() const noexcept { return static_cast<int>(m_estimate); }

    /// Returns the no-load RTT the queue estimate is measured against (0 before a sample).
    std::chrono::nanoseconds rtt_noload() const noexcept {
        return std::chrono::nanoseconds{m_rtt_noload};
    }

    /// Returns the options the algorithm was built with.
    vegas_options const& options() const noexcept { return m_options; }

private:
    int update_estimate(std::int64_t rtt, int in_flight, bool dropped) {
        auto const queue = static_cast<int>(std::ceil(
            m_estimate * (1.0 - static_cast<double>(m_rtt_noload) / static_cast<double>(rtt))));
        double next = 0;
        int const current = static_cast<int>(m_estimate);
        if (dropped) {
            next = decrease(m_estimate);
        } else if (static_cast<double>(in_flight) * 2 < m_estimate) {
            return limit(); // app-limited: prevent upward drift
        } else {
            int const alpha = m_options.alpha ? m_options.alpha(current) : 3 * vegas_log10(current);
            int const beta = m_options.beta ? m_options.beta(current) : 6 * vegas_log10(current);
            int const threshold =
                m_options.threshold ? m_options.threshold(current) : vegas_log10(current);
            if (queue <= threshold) {
                next = m_estimate + beta; // no queue: aggressive increase
            } else if (queue < alpha) {
                next = m_options.increase ? m_options.increase(m_estimate)
                                          : m_estimate + vegas_log10(current);
            } else if (queue > beta) {
                next = decrease(m_estimate);
            } else {
                return limit(); // within the sweet spot
            }
        }
        next = std::max(1.0, std::min(static_cast<double>(m_options.max_limit), next));
        m_estimate = (1 - m_options.smoothing) * m_estimate + m_options.smoothing * next;
        return limit();
    }

    double decrease(double estimate) const {
        return m_options.decrease ? m_options.decrease(estimate)
                                  : estimate - vegas_log10(static_cast<int>(estimate));
    }

    void reset_probe_jitter() noexcept { m_probe_jitter = 0.5 + 0.5 * uniform_unit(m_random); }

    vegas_options m_options;
    double m_estimate;
    std::int64_t m_rtt_noload = 0;
    std::int64_t m_probe_count = 0;
    double m_probe_jitter = 0.5;
    xoshiro256ss m_random;
};

KEEL_END_NAMESPACE
