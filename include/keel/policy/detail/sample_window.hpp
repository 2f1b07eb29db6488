// SPDX-License-Identifier: MIT
// The window of completed calls that keel::adaptive_limit's algorithms learn from:
// a lock-free accumulator the completing threads add to (count and RTT sum in one
// word, minimum RTT, maximum in-flight, the drop flag and, when asked, a log-linear
// histogram for percentiles), and Netflix's WindowedLimit rule for when a window closes.
#pragma once

#include <keel/policy/adaptive/sample.hpp>
#include <keel/version.hpp>

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>

KEEL_BEGIN_NAMESPACE
namespace detail {

/// What a closed window held: taken at once by the one thread updating the limit.
struct window_summary {
    std::int64_t count = 0;         ///< Successful samples.
    std::int64_t sum_us = 0;        ///< Their RTTs summed, in microseconds.
    std::int64_t min_rtt_ns = 0;    ///< The smallest RTT (0 when count is 0).
    int max_in_flight = 0;          ///< The most calls in flight at a sampled acquisition.
    bool dropped = false;           ///< True if a dropped call completed in the window.
    std::int64_t percentile_ns = 0; ///< The asked percentile (histogram windows only).

    /// Returns the mean RTT (0 for an empty window).
    std::chrono::nanoseconds average() const noexcept {
        return std::chrono::nanoseconds{count == 0 ? 0 : sum_us * 1000 / count};
    }
};

/// Accumulates completed calls without locks; one thread at a time takes it.
///
/// The count and the RTT sum share one word (count in the top 22 bits, microseconds in
/// the low 42: 50 days of RTT per window), so an average never mixes two windows. A window
/// stops counting at 2^21 samples rather than wrap. take() exchanges each field with its
/// empty value: a sample racing a take lands in this window or the next, never nowhere,
/// though its minimum may land in one and its count in the other (harmless for a mean).
/// The histogram, when enabled, keeps two significant decimal digits of microseconds, as
/// Envoy's circllhist does; a percentile is
/// interpolated inside its bucket as circllhist's hist_approx_quantile does.
class sample_window {
public:
    static constexpr int sum_bits = 42;
    static constexpr std::uint64_t sum_mask = (std::uint64_t{1} << sum_bits) - 1;
    static constexpr std::uint64_t max_count = std::uint64_t{1} << 21;
    static constexpr std::size_t buckets = 1090; // 100 exact + 11 decades of 90

    /// Builds an empty window; `percentile` in (0, 1] adds the histogram, 0 keeps only the mean.
    explicit sample_window(double percentile = 0)
        : m_percentile(percentile),
          m_histogram(percentile > 0 ? std::make_unique<std::atomic<std::uint32_t>[]>(buckets)
                                     : nullptr) {}

    /// Adds a successful call's RTT and the in-flight count it saw at acquisition.
    void add(std::int64_t rtt_ns, int in_flight) noexcept {
        auto const us = static_cast<std::uint64_t>(std::clamp<std::int64_t>(
            (rtt_ns + 500) / 1000, 0, static_cast<std::int64_t>(sum_mask >> 1)));
        if ((m_count_sum.load(std::memory_order_relaxed) >> sum_bits) >= max_count) {
            return; // enough samples: never let the count wrap
        }
        m_count_sum.fetch_add((std::uint64_t{1} << sum_bits) | us, std::memory_order_relaxed);
        lower_to(m_min_ns, rtt_ns);
        raise_to(m_max_in_flight, in_flight);
        if (m_histogram) {
            m_histogram[bucket_of(us)].fetch_add(1, std::memory_order_relaxed);
        }
    }

    /// Adds a dropped call: it marks the window and its in-flight count counts, its RTT does
    /// not (ImmutableSampleWindow.addDroppedSample).
    void add_dropped(int in_flight) noexcept {
        raise_to(m_max_in_flight, in_flight);
        if (!m_dropped.load(std::memory_order_relaxed)) {
            m_dropped.store(true, std::memory_order_relaxed);
        }
    }

    /// Returns how many successful samples the window holds now.
    std::int64_t count() const noexcept {
        return static_cast<std::int64_t>(m_count_sum.load(std::memory_order_relaxed) >> sum_bits);
    }

    /// Empties the window and returns what it held.
    window_summary take() noexcept {
        window_summary s;
        auto const word = m_count_sum.exchange(0, std::memory_order_relaxed);
        s.count = static_cast<std::int64_t>(word >> sum_bits);
        s.sum_us = static_cast<std::int64_t>(word & sum_mask);
        auto const min = m_min_ns.exchange(no_min, std::memory_order_relaxed);
        s.min_rtt_ns = min == no_min ? 0 : min;
        s.max_in_flight = m_max_in_flight.exchange(0, std::memory_order_relaxed);
        s.dropped = m_dropped.exchange(false, std::memory_order_relaxed);
        if (m_histogram) {
            std::uint64_t total = 0;
            std::uint32_t counts[buckets];
            for (std::size_t i = 0; i < buckets; ++i) {
                counts[i] = m_histogram[i].exchange(0, std::memory_order_relaxed);
                total += counts[i];
            }
            if (total > 0) {
                // circllhist's hist_approx_quantile: interpolate linearly inside the bucket
                // that holds rank p x total.
                double const target = m_percentile * static_cast<double>(total);
                std::uint64_t seen = 0;
                for (std::size_t i = 0; i < buckets; ++i) {
                    if (counts[i] != 0 && static_cast<double>(seen + counts[i]) >= target) {
                        auto const lower = static_cast<double>(lower_us(i));
                        auto const width = static_cast<double>(lower_us(i + 1)) - lower;
                        double const inside = std::max(0.0, target - static_cast<double>(seen)) /
                                              static_cast<double>(counts[i]);
                        s.percentile_ns =
                            static_cast<std::int64_t>((lower + width * inside) * 1000);
                        break;
                    }
                    seen += counts[i];
                }
            }
        }
        return s;
    }

    /// Returns the histogram bucket of `us` microseconds: exact below 100, then two
    /// significant decimal digits (as Envoy's circllhist: 5000 and 5099 share a bucket).
    static std::size_t bucket_of(std::uint64_t us) noexcept {
        if (us < 100) {
            return static_cast<std::size_t>(us);
        }
        // floor(log10(us)) from the bit width (1233 / 4096 ~ log10(2)), corrected once.
        auto digits = static_cast<std::size_t>((std::bit_width(us) * 1233) >> 12);
        if (us < pow10[digits]) {
            --digits;
        }
        std::size_t const e = digits - 1; // us / 10^e is in [10, 99]
        return 100 + (e - 1) * 90 + static_cast<std::size_t>(us / pow10[e]) - 10;
    }

    /// Returns the lower bound of bucket `i`, in microseconds.
    static std::int64_t lower_us(std::size_t i) noexcept {
        if (i < 100) {
            return static_cast<std::int64_t>(i);
        }
        std::size_t const e = (i - 100) / 90 + 1;
        return static_cast<std::int64_t>(((i - 100) % 90 + 10) * pow10[e]);
    }

private:
    static constexpr std::int64_t no_min = std::numeric_limits<std::int64_t>::max();
    static constexpr std::uint64_t pow10[] = {1,
                                              10,
                                              100,
                                              1'000,
                                              10'000,
                                              100'000,
                                              1'000'000,
                                              10'000'000,
                                              100'000'000,
                                              1'000'000'000,
                                              10'000'000'000,
                                              100'000'000'000,
                                              1'000'000'000'000,
                                              10'000'000'000'000};

    template <class T>
    static void lower_to(std::atomic<T>& a, T v) noexcept {
        T seen = a.load(std::memory_order_relaxed);
        while (v < seen && !a.compare_exchange_weak(seen, v, std::memory_order_relaxed)) {
        }
    }
    template <class T>
    static void raise_to(std::atomic<T>& a, T v) noexcept {
        T seen = a.load(std::memory_order_relaxed);
        while (v > seen && !a.compare_exchange_weak(seen, v, std::memory_order_relaxed)) {
        }
    }

    double m_percentile;
    std::atomic<std::uint64_t> m_count_sum{0};
    std::atomic<std::int64_t> m_min_ns{no_min};
    std::atomic<int> m_max_in_flight{0};
    std::atomic<bool> m_dropped{false};
    std::unique_ptr<std::atomic<std::uint32_t>[]> m_histogram;
};

/// Netflix WindowedLimit's timing, in nanoseconds of the limit's clock.
struct netflix_window_timing {
    std::int64_t min_window_ns;
    std::int64_t max_window_ns;
    std::int64_t window_size;
    bool percentile; ///< Feed the percentile instead of the mean.
};

/// Drives a per-window algorithm (aimd_limit, vegas_limit, gradient2_limit) by
/// WindowedLimit.onSample's rule: once a sample ends after the window's end and the window
/// holds more than window_size samples, take it, feed the algorithm once with (the mean or
/// percentile RTT, the maximum in flight, the drop flag) and end the next window at
/// now + clamp(2 x the window's minimum RTT, min_window, max_window). A window with too few
/// samples stays open. Not thread-safe: the limit's updater calls it.
template <class Algorithm>
class netflix_window {
public:
    netflix_window(Algorithm algorithm, netflix_window_timing timing) noexcept
        : m_algorithm(std::move(algorithm)), m_timing(timing) {}

    int limit() const noexcept { return m_algorithm.limit(); }
    std::int64_t next_check_ns() const noexcept { return m_next_update_ns; }
    static constexpr std::int64_t close_at_count() noexcept { return 0; }
    static constexpr std::int64_t epoch_ns() noexcept {
        return std::numeric_limits<std::int64_t>::min();
    }

    void check(std::int64_t now_ns, sample_window& window) {
        if (now_ns < m_next_update_ns || window.count() <= m_timing.window_size) {
            return;
        }
        window_summary const s = window.take();
        if (s.count == 0) {
            return; // a racing take emptied it
        }
        auto const rtt =
            m_timing.percentile ? std::chrono::nanoseconds{s.percentile_ns} : s.average();
        m_next_update_ns =
            now_ns + std::clamp(2 * s.min_rtt_ns, m_timing.min_window_ns, m_timing.max_window_ns);
        m_algorithm.update(limit_sample{rtt, s.max_in_flight, s.dropped});
    }

    Algorithm const& algorithm() const noexcept { return m_algorithm; }

private:
    Algorithm m_algorithm;
    netflix_window_timing m_timing;
    std::int64_t m_next_update_ns = std::numeric_limits<std::int64_t>::min();
};

} // namespace detail
KEEL_END_NAMESPACE
