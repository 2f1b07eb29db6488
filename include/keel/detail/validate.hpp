// SPDX-License-Identifier: MIT
// The one way keel rejects bad configuration: std::invalid_argument with the
// message "<component>: <field> must be <range>, got <value>", where component
// is the fully qualified type name (keel::ops::health_registry) and durations
// print in one format (the largest unit that divides them exactly).
#pragma once

#include <keel/version.hpp>

#include <chrono>
#include <concepts>
#include <cstdint>
#include <ratio>
#include <stdexcept>
#include <string>
#include <string_view>

KEEL_BEGIN_NAMESPACE
namespace detail {

/// Returns `d` in the largest unit that divides it exactly ("2s", "150ms",
/// "20us", "7ns"; "0s" for zero), or "forever" for nanoseconds::max().
inline std::string format_duration(std::chrono::nanoseconds d) {
    if (d == std::chrono::nanoseconds::max()) {
        return "forever";
    }
    struct unit {
        std::int64_t ns;
        char const* suffix;
    };
    static constexpr unit units[] = {
        {3'600'000'000'000, "h"}, {60'000'000'000, "min"}, {1'000'000'000, "s"},
        {1'000'000, "ms"},        {1'000, "us"},           {1, "ns"}};
    auto const n = d.count();
    if (n == 0) {
        return "0s";
    }
    for (unit const& u : units) {
        if (n % u.ns == 0) {
            return std::to_string(n / u.ns) + u.suffix;
        }
    }
    return std::to_string(n) + "ns"; // unreachable: every count divides by 1
}

/// Returns the suffix format_duration gives a whole count of `Period`.
template <class Period>
std::string unit_suffix() {
    if constexpr (std::ratio_equal_v<Period, std::ratio<3600>>) {
        return "h";
    } else if constexpr (std::ratio_equal_v<Period, std::ratio<60>>) {
        return "min";
    } else if constexpr (std::ratio_equal_v<Period, std::ratio<1>>) {
        return "s";
    } else if constexpr (std::ratio_equal_v<Period, std::milli>) {
        return "ms";
    } else if constexpr (std::ratio_equal_v<Period, std::micro>) {
        return "us";
    } else {
        return " x " + std::to_string(Period::num) + "/" + std::to_string(Period::den) + "s";
    }
}

/// Returns how a rejected value prints in keel's messages.
inline std::string describe_value(std::string_view s) {
    return '"' + std::string{s} + '"';
}
inline std::string describe_value(char const* s) {
    return describe_value(std::string_view{s});
}
inline std::string describe_value(std::string const& s) {
    return describe_value(std::string_view{s});
}
inline std::string describe_value(bool b) {
    return b ? "true" : "false";
}
template <std::integral T>
std::string describe_value(T v) {
    return std::to_string(v);
}
template <std::floating_point T>
std::string describe_value(T v) {
    auto s = std::to_string(v); // fixed, 6 decimals: trim the zeros a reader does not need
    while (s.size() > 1 && s.back() == '0' && s[s.size() - 2] != '.') {
        s.pop_back();
    }
    return s;
}
template <class Rep, class Period>
std::string describe_value(std::chrono::duration<Rep, Period> d) {
    if constexpr (std::ratio_greater_v<Period, std::nano> || std::floating_point<Rep>) {
        // Beyond the nanosecond range (seconds::max(), a NaN or infinite double) the
        // cast would overflow: print the count in its own unit instead.
        using own = std::chrono::duration<Rep, Period>;
        constexpr auto limit = std::chrono::duration_cast<own>(std::chrono::nanoseconds::max());
        if (!(d <= limit && d >= -limit)) {
            return describe_value(d.count()) + unit_suffix<Period>();
        }
    }
    return format_duration(std::chrono::duration_cast<std::chrono::nanoseconds>(d));
}

/// Throws std::invalid_argument "<component>: <field> must be <range>, got <value>".
/// `component` is the fully qualified name ("keel::circuit_breaker"), `range`
/// the documented valid range in words ("in [1, 100]", "positive").
template <class Value>
[[noreturn]] void invalid_option(std::string_view component, std::string_view field,
                                 std::string_view range, Value const& value) {
    std::string message{component};
    message += ": ";
    message += field;
    message += " must be ";
    message += range;
    message += ", got ";
    message += describe_value(value);
    throw std::invalid_argument(message);
}

/// Throws std::invalid_argument "<component>: <what>" for a rule that is not a
/// range ("check key must be unique, \"db\" is registered twice").
[[noreturn]] inline void invalid_configuration(std::string_view component, std::string_view what) {
    std::string message{component};
    message += ": ";
    message += what;
    throw std::invalid_argument(message);
}

} // namespace detail
KEEL_END_NAMESPACE
