// SPDX-License-Identifier: MIT
// HTTP header values from a keel::decision: Retry-After (RFC 9110, delta-seconds)
// and the IETF RateLimit-Policy / RateLimit fields in the structured-field form
// of draft-ietf-httpapi-ratelimit-headers-10 (September 2025), e.g.
//     RateLimit-Policy: "default";q=100;w=60
//     RateLimit: "default";r=50;t=30
// Values are built in a fixed buffer (keel::header_value) sized for the longest
// value the builders make, so none is ever cut short: no heap allocation.
#pragma once

#include <keel/limiter/decision.hpp>
#include <keel/version.hpp>

#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>

KEEL_BEGIN_NAMESPACE

/// Holds one header field value in a fixed 176-byte buffer.
///
/// Converts to std::string_view (valid while this object lives); str() copies
/// into a std::string. A regular value type.
class header_value {
public:
    /// The most characters of a policy name kept (longer names are cut to it).
    static constexpr std::size_t max_name = 64;
    /// The most characters a value holds: the longest value the builders below
    /// make, a name of max_name characters that all need escaping (2 each, plus
    /// the quotes) and two parameters of the widest int64 ("-9223372036854775808").
    static constexpr std::size_t capacity =
        2 * max_name + 2 + 2 * (3 + std::numeric_limits<std::int64_t>::digits10 + 2);

    /// Returns the value as text.
    std::string_view view() const noexcept { return {m_data, m_size}; }
    /// Returns view().
    operator std::string_view() const noexcept { return view(); } // NOLINT: implicit by design
    /// Returns the value copied into a std::string.
    std::string str() const { return std::string{view()}; }
    /// Returns the characters (not NUL-terminated).
    char const* data() const noexcept { return m_data; }
    /// Returns the number of characters.
    std::size_t size() const noexcept { return m_size; }

    /// Appends `text`, truncated to the remaining capacity (which the builders
    /// below never reach).
    void append(std::string_view text) noexcept {
        for (char c : text) {
            if (m_size < capacity) {
                m_data[m_size++] = c;
            }
        }
    }
    /// Appends the decimal digits of `n`.
    void append(std::int64_t n) noexcept {
        char digits[24];
        auto const r = std::to_chars(digits, digits + sizeof digits, n);
        append(std::string_view{digits, static_cast<std::size_t>(r.ptr - digits)});
    }

    /// Returns true if both hold the same text.
    friend bool operator==(header_value const& a, header_value const& b) noexcept {
        return a.view() == b.view();
    }
    /// Returns true if `a` holds `b`.
    friend bool operator==(header_value const& a, std::string_view b) noexcept {
        return a.view() == b;
    }

private:
    char m_data[capacity]{};
    std::size_t m_size = 0;
};

/// Returns `d` in whole seconds rounded up (a client that waits it is never
/// early, as redis-cell rounds); zero or negative gives 0.
constexpr std::int64_t seconds_rounded_up(std::chrono::nanoseconds d) noexcept {
    auto const ns = d.count();
    return ns <= 0 ? 0 : (ns - 1) / 1'000'000'000 + 1;
}

/// Returns the Retry-After value for `d`: its retry_after in delta-seconds,
/// rounded up ("0" when allowed). Prefer delta-seconds over an HTTP-date, which
/// inherits clock skew.
inline header_value retry_after_value(decision const& d) noexcept {
    header_value v;
    v.append(seconds_rounded_up(d.retry_after));
    return v;
}

namespace detail {
// Appends `name` as a structured-field String (RFC 8941 3.3.3): printable ASCII,
// with '"' and '\' escaped; other bytes are dropped; at most max_name characters.
inline void append_sf_string(header_value& v, std::string_view name) noexcept {
    v.append("\"");
    std::size_t taken = 0;
    for (char c : name) {
        if (taken == header_value::max_name) {
            break;
        }
        if (c < 0x20 || c > 0x7e) {
            continue;
        }
        if (c == '"' || c == '\\') {
            v.append("\\");
        }
        v.append(std::string_view{&c, 1});
        ++taken;
    }
    v.append("\"");
}
} // namespace detail

/// Returns a RateLimit-Policy item: `"<name>";q=<quota>;w=<window seconds>`.
///
/// `window` is rounded up to whole seconds (at least 1, as the field has no
/// finer unit). For a fixed or sliding window, quota = limit() and window =
/// window(); for a token bucket or GCRA, quota = burst() and window = the time
/// to refill it, burst() * interval(). Several policies join with ", ".
inline header_value ratelimit_policy_value(std::string_view name, std::int64_t quota,
                                           std::chrono::nanoseconds window) noexcept {
    header_value v;
    detail::append_sf_string(v, name);
    v.append(";q=");
    v.append(quota);
    v.append(";w=");
    auto const w = seconds_rounded_up(window);
    v.append(w < 1 ? std::int64_t{1} : w);
    return v;
}

/// Returns the RateLimit-Policy item describing `limiter` (any keel limiter with
/// limit()/window() or burst()/interval()).
template <class Limiter>
header_value ratelimit_policy_value(std::string_view name, Limiter const& limiter) noexcept {
    if constexpr (requires { limiter.window(); }) {
        return ratelimit_policy_value(name, limiter.limit(), limiter.window());
    } else {
        return ratelimit_policy_value(name, limiter.burst(), limiter.burst() * limiter.interval());
    }
}

/// Returns a RateLimit item for decision `d`: `"<name>";r=<remaining>;t=<reset seconds>`.
///
/// r is d.remaining (never negative); t is d.reset rounded up: when the quota
/// is whole again. A refused request should also carry Retry-After.
inline header_value ratelimit_value(std::string_view name, decision const& d) noexcept {
    header_value v;
    detail::append_sf_string(v, name);
    v.append(";r=");
    v.append(d.remaining < 0 ? std::int64_t{0} : d.remaining);
    v.append(";t=");
    v.append(seconds_rounded_up(d.reset));
    return v;
}

KEEL_END_NAMESPACE
