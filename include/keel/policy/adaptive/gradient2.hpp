// SPDX-License-Identifier: MIT
// keel::gradient2_limit: Netflix concurrency-limits' recommended delay-based algorithm
// (limit/Gradient2Limit.java): compare the window's RTT with a long exponential average
// of RTTs, shrink the limit by that gradient (never below half) and allow a small queue.
// A pure function of its samples; keel::adaptive_limit drives it.
#pragma once

#include <keel/detail/validate.hpp>
#include <keel/policy/adaptive/sample.hpp>
#include <keel/version.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string_view>

KEEL_BEGIN_NAMESPACE

/// Options of keel::gradient2_limit; every default is Gradient2Limit.Builder's.
struct gradient2_options {
    /// Default 20 (Gradient2Limit initialLimit); >= 1.
    int initial_limit = 20;
    /// Default 20 (Gradient2Limit minLimit); >= 1. The limit never drops below it.
    int min_limit = 20;
    /// Default 200 (Gradient2Limit maxConcurrency); >= min_limit.
    int max_limit = 200;
    /// Default 0.2 (Gradient2Limit smoothing); in (0, 1]. How much of each new estimate is taken.
    double smoothing = 0.2;
    /// Default 4 (Gradient2Limit queueSize); >= 0. How far the limit may grow per window
    /// while latencies stay low.
    int queue_size = 4;
    /// Default 600 (Gradient2Limit longWindow); >= 1. Windows in the long RTT average
    /// (an exponential average with factor 2 / (long_window + 1) after 10 windows of plain mean).
    int long_window = 600;
    /// Default 1.5 (Gradient2Limit rttTolerance); >= 1. How much the RTT may rise above the
    /// long average before the limit shrinks.
    double rtt_tolerance = 1.5;
};

namespace detail {
/// Netflix's ExpAvgMeasurement: the mean of the first `warmup` values, then an exponential
/// average with factor 2 / (window + 1).
class exp_avg_measurement {
public:
    exp_avg_measurement(int window, int warmup) noexcept : m_window(window), m_warmup(warmup) {}

    double add(double sample) noexcept {
        if (m_count < m_warmup) {
            ++m_count;
            m_sum += sample;
            m_value = m_sum / m_count;
        } else {
            double const factor = 2.0 / (m_window + 1);
            m_value = m_value * (1 - factor) + sample * factor;
        }
        return m_value;
    }
    double get() const noexcept { return m_value; }
    void set(double value) noexcept { m_value = value; }

private:
    int m_window;
    int m_warmup;
    int m_count = 0;
    double m_sum = 0;
    double m_value = 0;
};
} // namespace detail

/// Adapts a concurrency limit by the gradient between a long-term and the current RTT.
///
/// update() is Gradient2Limit._update: long = the long average with this RTT; if long / rtt
/// > 2 the long average decays by 5 % (recovery after sustained load); fewer than half the
/// limit in flight changes nothing; else gradient = clamp(rtt_tolerance x long / rtt, 0.5, 1),
/// new = limit x gradient + queue_size, smoothed by `smoothing` and clamped to
/// [min_limit, max_limit]. Drops are ignored, as in the source. Not thread-safe.
class gradient2_limit {
public:
    /// Builds the algorithm; throws std::invalid_argument when an option is out of range.
    explicit gradient2_limit(gradient2_options options = {})
        : m_options(options), m_estimate(options.initial_limit),
          m_long_rtt(options.long_window, 10) {
        constexpr std::string_view component = "keel::gradient2_limit";
        if (options.initial_limit < 1) {
            detail::invalid_option(component, "initial_limit", ">= 1", options.initial_limit);
        }
        if (options.min_limit < 1) {
            detail::invalid_option(component, "min_limit", ">= 1", options.min_limit);
        }
        if (options.max_limit < options.min_limit) {
            detail::invalid_option(component, "max_limit", ">= min_limit", options.max_limit);
        }
        if (!(options.smoothing > 0.0 && options.smoothing <= 1.0)) {
            detail::invalid_option(component, "smoothing", "in (0, 1]", options.smoothing);
        }
        if (options.queue_size < 0) {
            detail::invalid_option(component, "queue_size", ">= 0", options.queue_size);
        }
        if (options.long_window < 1) {
            detail::invalid_option(component, "long_window", ">= 1", options.long_window);
        }
        if (!(options.rtt_tolerance >= 1.0)) {
            detail::invalid_option(component, "rtt_tolerance", ">= 1", options.rtt_tolerance);
        }
    }

    /// Learns from one window and returns the new limit.
    int update(limit_sample const& sample) noexcept {
        auto const short_rtt = static_cast<double>(sample.rtt.count());
        if (short_rtt <= 0) {
            return limit();
        }
        double const long_rtt = m_long_rtt.add(short_rtt);
        if (long_rtt / short_rtt > 2) {
            m_long_rtt.set(m_long_rtt.get() * 0.95);
        }
        if (sample.in_flight < m_estimate / 2) {
            return limit(); // app-limited
        }
        double const gradient =
            std::max(0.5, std::min(1.0, m_options.rtt_tolerance * long_rtt / short_rtt));
        double next = m_estimate * gradient + m_options.queue_size;
        next = m_estimate * (1 - m_options.smoothing) + next * m_options.smoothing;
        next = std::max(static_cast<double>(m_options.min_limit),
                        std::min(static_cast<double>(m_options.max_limit), next));
        m_estimate = next;
        return limit();
    }

    /// Returns the current limit (the estimate, truncated).
    int limit() const noexcept { return static_cast<int>(m_estimate); }

    /// Returns the long-term RTT average the gradient is measured against.
    std::chrono::nanoseconds long_rtt() const noexcept {
        return std::chrono::nanoseconds{static_cast<std::int64_t>(m_long_rtt.get())};
    }

    /// Returns the options the algorithm was built with.
    gradient2_options const& options() const noexcept { return m_options; }

private:
    gradient2_options m_options;
    double m_estimate;
    detail::exp_avg_measurement m_long_rtt;
};

KEEL_END_NAMESPACE
