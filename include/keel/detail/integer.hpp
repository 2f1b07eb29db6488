// SPDX-License-Identifier: MIT
// Integer helpers the limiters, the breaker and the retry budget share: 128-bit
// products, floor division, a division by a fixed divisor without a divide
// instruction, and saturating arithmetic for deadlines that may be "forever".
#pragma once

#include <keel/version.hpp>

#include <cstdint>
#include <limits>

KEEL_BEGIN_NAMESPACE
namespace detail {

__extension__ typedef __int128 int128;           // NOLINT: a GCC/Clang extension; -Wpedantic-clean
__extension__ typedef unsigned __int128 uint128; // NOLINT: as int128

/// Returns floor(a / b) for positive b (C++ division truncates toward zero).
constexpr std::int64_t floor_div(std::int64_t a, std::int64_t b) noexcept {
    auto const q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}

/// Divides by a fixed positive divisor with a multiplication by its precomputed
/// reciprocal and one correction step, instead of a 64-bit division (tens of
/// cycles) on every decision. Exact for every int64 dividend.
class divider {
public:
    /// Prepares division by `divisor` (> 0).
    constexpr explicit divider(std::int64_t divisor) noexcept
        : m_divisor(static_cast<std::uint64_t>(divisor)),
          m_reciprocal(~std::uint64_t{0} / static_cast<std::uint64_t>(divisor)) {}

    /// Returns floor(n / divisor).
    constexpr std::int64_t floor_div(std::int64_t n) const noexcept {
        if (n < 0) {
            return detail::floor_div(n, static_cast<std::int64_t>(m_divisor));
        }
        auto const u = static_cast<std::uint64_t>(n);
        // The estimate is the quotient or one less (m = floor((2^64 - 1) / d)).
        auto q = static_cast<std::uint64_t>((static_cast<uint128>(u) * m_reciprocal) >> 64);
        if (u - q * m_divisor >= m_divisor) {
            ++q;
        }
        return static_cast<std::int64_t>(q);
    }

private:
    std::uint64_t m_divisor;
    std::uint64_t m_reciprocal;
};

/// Returns floor(a * b / c) for non-negative a, b and positive c, through a
/// 128-bit product (the result must fit in 64 bits).
constexpr std::int64_t mul_div_floor(std::int64_t a, std::int64_t b, std::int64_t c) noexcept {
    return static_cast<std::int64_t>(static_cast<int128>(a) * b / c);
}

/// Returns ceil(a * b / c) for non-negative a, b and positive c.
constexpr std::int64_t mul_div_ceil(std::int64_t a, std::int64_t b, std::int64_t c) noexcept {
    auto const p = static_cast<int128>(a) * b;
    return static_cast<std::int64_t>((p + c - 1) / c);
}

/// Returns a + b, clamped to the int64 range instead of overflowing: a deadline of
/// "now + forever" stays forever.
constexpr std::int64_t saturating_add(std::int64_t a, std::int64_t b) noexcept {
    std::int64_t sum = 0;
    if (__builtin_add_overflow(a, b, &sum)) {
        return b > 0 ? std::numeric_limits<std::int64_t>::max()
                     : std::numeric_limits<std::int64_t>::min();
    }
    return sum;
}

/// Returns a - b, clamped to the int64 range.
constexpr std::int64_t saturating_sub(std::int64_t a, std::int64_t b) noexcept {
    std::int64_t diff = 0;
    if (__builtin_sub_overflow(a, b, &diff)) {
        return b < 0 ? std::numeric_limits<std::int64_t>::max()
                     : std::numeric_limits<std::int64_t>::min();
    }
    return diff;
}

} // namespace detail
KEEL_END_NAMESPACE
