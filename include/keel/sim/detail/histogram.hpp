// SPDX-License-Identifier: MIT
// keel::sim::detail::histogram: latencies in log-linear buckets (as HdrHistogram):
// exact below 1024 us, then 512 sub-buckets per power of two (a relative error
// below 0.2 %), so a run of millions of calls keeps a few kilobytes and its
// percentiles are the same bytes on every platform.
#pragma once

#include <keel/version.hpp>

#include <algorithm>
#include <bit>
#include <cstdint>
#include <vector>

KEEL_BEGIN_NAMESPACE

namespace sim::detail {

class histogram {
public:
    /// Records one latency of `ns` nanoseconds (negative counts as 0).
    void record(std::int64_t ns) {
        std::uint64_t const us = static_cast<std::uint64_t>(std::max<std::int64_t>(ns, 0)) / 1000;
        std::size_t const index = index_of(us);
        if (index >= m_counts.size()) {
            m_counts.resize(index + 1, 0);
        }
        ++m_counts[index];
        ++m_total;
        m_max = std::max(m_max, std::max<std::int64_t>(ns, 0));
    }

    /// Returns how many latencies were recorded.
    std::uint64_t count() const noexcept { return m_total; }

    /// Returns the largest latency recorded, exactly, in ns (0 if none).
    std::int64_t max() const noexcept { return m_max; }

    /// Returns the latency at quantile `q` in [0, 1], in ns: the upper edge of the
    /// bucket holding the ceil(q * count)-th smallest value (0 if none).
    std::int64_t quantile(double q) const noexcept {
        if (m_total == 0) {
            return 0;
        }
        auto rank = static_cast<std::uint64_t>(q * static_cast<double>(m_total) + 0.999999);
        rank = std::clamp<std::uint64_t>(rank, 1, m_total);
        std::uint64_t seen = 0;
        for (std::size_t i = 0; i < m_counts.size(); ++i) {
            seen += m_counts[i];
            if (seen >= rank) {
                return std::min(upper_of(i), m_max);
            }
        }
        return m_max;
    }

private:
    static constexpr unsigned sub_bits = 9; // 512 sub-buckets per octave above 1024 us

    static std::size_t index_of(std::uint64_t us) noexcept {
        if (us < (1U << (sub_bits + 1))) {
            return static_cast<std::size_t>(us);
        }
        unsigned const shift = static_cast<unsigned>(std::bit_width(us)) - (sub_bits + 1);
        return static_cast<std::size_t>((shift + 1) << sub_bits) +
               static_cast<std::size_t>((us >> shift) - (1U << sub_bits));
    }

    // The largest ns value that falls in bucket `index`.
    static std::int64_t upper_of(std::size_t index) noexcept {
        if (index < (1U << (sub_bits + 1))) {
            return static_cast<std::int64_t>(index) * 1000 + 999;
        }
        std::size_t const shift = (index >> sub_bits) - 1;
        std::uint64_t const mantissa = (index & ((1U << sub_bits) - 1)) + (1U << sub_bits);
        std::uint64_t const top_us = ((mantissa + 1) << shift) - 1;
        return static_cast<std::int64_t>(top_us) * 1000 + 999;
    }

    std::vector<std::uint64_t> m_counts;
    std::uint64_t m_total = 0;
    std::int64_t m_max = 0;
};

} // namespace sim::detail

KEEL_END_NAMESPACE
