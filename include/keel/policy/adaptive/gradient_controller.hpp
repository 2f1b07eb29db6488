// SPDX-License-Identifier: MIT
// keel::gradient_controller: Envoy's adaptive concurrency gradient controller
// (source/extensions/filters/http/adaptive_concurrency/controller/gradient_controller.cc):
// every update interval the limit is multiplied by clamp(buffered minRTT / sample RTT,
// 0.5, 2) plus sqrt(limit) of headroom; minRTT is re-measured periodically (with jitter)
// by pinning the limit at min_concurrency until request_count samples arrived.
// Envoy runs this on timers; here the same state machine is a function of `now`,
// evaluated when the limit's updater looks at it.
#pragma once

#include <keel/detail/validate.hpp>
#include <keel/policy/detail/sample_window.hpp>
#include <keel/version.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <string_view>
#include <utility>

KEEL_BEGIN_NAMESPACE

/// Options of keel::gradient_controller; defaults are Envoy's GradientControllerConfig ones.
struct gradient_controller_options {
    /// Default 0.5 (sample_aggregate_percentile, p50); in (0, 1]. The percentile of a window's
    /// RTTs taken as its sample RTT (and as minRTT).
    double sample_percentile = 0.5;
    /// Default 1000 (max_concurrency_limit); >= min_concurrency.
    int max_limit = 1000;
    /// Default 100ms (concurrency_update_interval has no default in Envoy; 0.1s is its docs'
    /// example); > 0. How often the limit is recalculated.
    std::chrono::nanoseconds update_interval = std::chrono::milliseconds{100};
    /// Default 60s (min_rtt_calc_params.interval has no default; 60s is the docs' example);
    /// >= 1ms, whole milliseconds as Envoy counts them. Time between minRTT measurements.
    std::chrono::nanoseconds min_rtt_interval = std::chrono::seconds{60};
    /// Default 50 (min_rtt_calc_params.request_count); >= 1. Samples in a minRTT measurement.
    int request_count = 50;
    /// Default 0.15 (min_rtt_calc_params.jitter, 15 %); in [0, 1]. Up to this fraction of
    /// min_rtt_interval is added at random (Envoy: random % ceil(interval_ms x jitter)).
    double jitter = 0.15;
    /// Default 3 (min_rtt_calc_params.min_concurrency); >= 1. The limit while minRTT is
    /// measured, and the floor of the limit.
    int min_concurrency = 3;
    /// Default 0.25 (min_rtt_calc_params.buffer, 25 %); >= 0. minRTT x (1 + buffer) is the
    /// latency that counts as "no queue".
    double buffer = 0.25;
};

/// Adapts a concurrency limit as Envoy's gradient controller does.
///
/// States (lazily, at check()): while measuring minRTT the limit is min_concurrency and the
/// measurement ends when request_count samples started after it began have completed
/// (minRTT = their percentile; the limit before it is restored). Otherwise every
/// update_interval a window with samples gives sample RTT = its percentile and
/// limit = clamp(L x g + sqrt(L x g), min_concurrency, max_limit) with
/// g = clamp(minRTT x (1 + buffer) / sample RTT, 0.5, 2). A new measurement starts
/// min_rtt_interval (+ jitter) after the last one ended, or at once after the limit was set
/// to min_concurrency for the 5th window in a row. Samples of calls started before the
/// measurement began are dropped (epoch_ns()). Not thread-safe: the limit's updater calls it.
class gradient_controller {
public:
    /// Builds the controller at `now_ns`, measuring minRTT; `random` draws the jitter.
    /// Throws std::invalid_argument when an option is out of range.
    gradient_controller(gradient_controller_options options, std::int64_t now_ns,
                        std::function<std::uint64_t()> random)
        : m_options(options), m_random(std::move(random)), m_limit(options.min_concurrency) {
        constexpr std::string_view component = "keel::gradient_controller";
        if (!(options.sample_percentile > 0.0 && options.sample_percentile <= 1.0)) {
            detail::invalid_option(component, "sample_percentile", "in (0, 1]",
                                   options.sample_percentile);
        }
        if (options.min_concurrency < 1) {
            detail::invalid_option(component, "min_concurrency", ">= 1", options.min_concurrency);
        }
        if (options.max_limit < options.min_concurrency) {
            detail::invalid_option(component, "max_limit", ">= min_concurrency", options.max_limit);
        }
        if (options.update_interval <= std::chrono::nanoseconds::zero()) {
            detail::invalid_option(component, "update_interval", "> 0", options.update_interval);
        }
        if (options.min_rtt_interval < std::chrono::milliseconds{1}) {
            detail::invalid_option(component, "min_rtt_interval", ">= 1ms",
                                   options.min_rtt_interval);
        }
        if (options.request_count < 1) {
            detail::invalid_option(component, "request_count", ">= 1", options.request_count);
        }
        if (!(options.jitter >= 0.0 && options.jitter <= 1.0)) {
            detail::invalid_option(component, "jitter", "in [0, 1]", options.jitter);
        }
        if (!(options.buffer >= 0.0 && options.buffer <= 10.0)) {
            detail::invalid_option(component, "buffer", "in [0, 10]", options.buffer);
        }
        enter_min_rtt(now_ns, nullptr);
    }

    /// Returns the current limit.
    int limit() const noexcept { return m_limit; }
    /// Returns when check() next has something to do (never while minRTT is measured).
    std::int64_t next_check_ns() const noexcept {
        return m_in_min_rtt ? std::numeric_limits<std::int64_t>::max()
                            : std::min(m_next_reset_ns, m_next_min_rtt_ns);
    }
    /// Returns the sample count that ends the minRTT measurement, 0 outside one.
    std::int64_t close_at_count() const noexcept {
        return m_in_min_rtt ? m_options.request_count : 0;
    }
    /// Returns the start of the current minRTT epoch: calls started before it are not sampled.
    std::int64_t epoch_ns() const noexcept { return m_epoch_ns; }
    /// Returns true while minRTT is being measured.
    bool measuring_min_rtt() const noexcept { return m_in_min_rtt; }
    /// Returns the last minRTT measured (0 before the first ends).
    std::chrono::nanoseconds min_rtt() const noexcept {
        return std::chrono::nanoseconds{m_min_rtt_ns};
    }
    /// Returns the last window's sample RTT (0 before the first).
    std::chrono::nanoseconds sample_rtt() const noexcept {
        return std::chrono::nanoseconds{m_sample_rtt_ns};
    }
    /// Returns the options the controller was built with.
    gradient_controller_options const& options() const noexcept { return m_options; }

    /// Advances the state machine to `now_ns`, taking `window` when a window or a minRTT
    /// measurement ends.
    void check(std::int64_t now_ns, detail::sample_window& window) {
        if (m_in_min_rtt) {
            if (window.count() < m_options.request_count) {
                return;
            }
            detail::window_summary const s = window.take();
            if (s.count > 0) {
                m_min_rtt_ns = s.percentile_ns;
            }
            update_limit(m_deferred_limit); // still "in the window": resets the streak
            m_in_min_rtt = false;
            m_next_min_rtt_ns = now_ns + jittered_interval_ns();
            m_next_reset_ns = now_ns + m_options.update_interval.count();
            return;
        }
        if (now_ns >= m_next_min_rtt_ns) {
            enter_min_rtt(now_ns, &window);
            return;
        }
        if (now_ns >= m_next_reset_ns) {
            detail::window_summary const s = window.take();
            m_next_reset_ns = now_ns + m_options.update_interval.count();
            if (s.count > 0) {
                m_sample_rtt_ns = s.percentile_ns;
                update_limit(calculate_new_limit());
                if (m_consecutive_min >= 5) {
                    enter_min_rtt(now_ns, &window); // Envoy: the minRTT timer, armed for 0 ms
                }
            }
        }
    }

private:
    void enter_min_rtt(std::int64_t now_ns, detail::sample_window* window) {
        m_deferred_limit = m_limit;
        m_in_min_rtt = true;
        update_limit(m_options.min_concurrency);
        if (window != nullptr) {
            (void)window->take(); // older samples may not represent minRTT
        }
        m_epoch_ns = now_ns;
    }

    std::int64_t jittered_interval_ns() {
        auto const interval_ms =
            std::chrono::duration_cast<std::chrono::milliseconds>(m_options.min_rtt_interval)
                .count();
        if (m_options.jitter == 0) {
            return interval_ms * 1'000'000;
        }
        auto const range = static_cast<std::uint64_t>(
            std::ceil(static_cast<double>(interval_ms) * m_options.jitter));
        auto const extra = range == 0 ? 0 : static_cast<std::int64_t>(m_random() % range);
        return (interval_ms + extra) * 1'000'000;
    }

    int calculate_new_limit() const {
        // Envoy keeps whole microseconds.
        auto const min_rtt_us = m_min_rtt_ns / 1000;
        auto const sample_us = std::max<std::int64_t>(1, m_sample_rtt_ns / 1000);
        auto const min_rtt = static_cast<double>(min_rtt_us);
        auto const sample = static_cast<double>(sample_us);
        double const buffered = min_rtt + min_rtt * m_options.buffer;
        double const gradient = std::max(0.5, std::min(2.0, buffered / sample));
        double const limit = m_limit * gradient;
        double const headroom = std::sqrt(limit);
        auto const next = static_cast<std::int64_t>(limit + headroom);
        return static_cast<int>(
            std::clamp<std::int64_t>(next, m_options.min_concurrency, m_options.max_limit));
    }

    void update_limit(int next) {
        int const old = m_limit;
        m_limit = next;
        if (!m_in_min_rtt && old == m_options.min_concurrency &&
            next == m_options.min_concurrency) {
            ++m_consecutive_min;
        } else {
            m_consecutive_min = 0;
        }
    }

    gradient_controller_options m_options;
    std::function<std::uint64_t()> m_random;
    int m_limit;
    int m_deferred_limit = 0;
    bool m_in_min_rtt = false;
    int m_consecutive_min = 0;
    std::int64_t m_min_rtt_ns = 0;
    std::int64_t m_sample_rtt_ns = 0;
    std::int64_t m_epoch_ns = std::numeric_limits<std::int64_t>::min();
    std::int64_t m_next_reset_ns = std::numeric_limits<std::int64_t>::max();
    std::int64_t m_next_min_rtt_ns = std::numeric_limits<std::int64_t>::max();
};

KEEL_END_NAMESPACE
