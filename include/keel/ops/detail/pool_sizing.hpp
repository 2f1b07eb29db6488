// SPDX-License-Identifier: MIT
// The internals of keel/ops/pool_sizing.hpp: durations as double seconds, the
// argument check, a constexpr ceiling and the Erlang C step.
#pragma once

#include <keel/detail/validate.hpp>
#include <keel/version.hpp>

#include <chrono>
#include <cstddef>

KEEL_BEGIN_NAMESPACE
namespace ops::detail {

template <class Rep, class Period>
constexpr double seconds(std::chrono::duration<Rep, Period> d) noexcept {
    return std::chrono::duration_cast<std::chrono::duration<double>>(d).count();
}

// Rejects an argument of `function` outside its documented range.
template <class Value>
constexpr void require(bool ok, char const* function, char const* argument, char const* range,
                       Value const& value) {
    if (!ok) {
        keel::detail::invalid_option(function, argument, range, value);
    }
}

// std::ceil is not constexpr in C++20. Values within a relative 1e-12 above an integer
// round down to it, so 100 req/s x 50 ms x 3 gives 15 even if the product comes out as
// 15.000000000000002.
constexpr std::size_t ceil_to_size(double x) noexcept {
    if (!(x > 0.0)) {
        return 0;
    }
    double const tolerant = x * (1.0 - 1e-12);
    auto const whole = static_cast<std::size_t>(tolerant);
    return static_cast<double>(whole) < tolerant ? whole + 1 : whole;
}

// Erlang C from Erlang B: C = c B / (c - a (1 - B)), for c > a.
constexpr double erlang_c_from_b(double c, double a, double b) noexcept {
    return c * b / (c - a * (1.0 - b));
}

} // namespace ops::detail
KEEL_END_NAMESPACE
