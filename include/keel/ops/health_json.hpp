// SPDX-License-Identifier: MIT
// Renders a keel::ops::health_report as application/health+json, the format of
// the IETF draft "Health Check Response Format for HTTP APIs"
// (draft-inadarei-api-health-check-06), and maps it to an HTTP status code. keel
// has no HTTP server: to_http_response() gives the status, content type and body
// for whatever server the service uses. Also provides the JSON string escaping and
// RFC 3339 time formatting the rendering needs.
#pragma once

#include <keel/ops/health_report.hpp>
#include <keel/version.hpp>

#include <charconv>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

KEEL_BEGIN_NAMESPACE

namespace ops {

/// The media type of the health+json draft.
inline constexpr std::string_view health_json_content_type = "application/health+json";

/// Holds what an HTTP handler sends for a health probe.
struct http_response {
    int status = 200;           ///< 200 for pass and warn, 503 for fail.
    std::string content_type{}; ///< "application/health+json".
    std::string body{};         ///< The rendered report.
};

/// Appends `text` to `out` as a JSON string literal, quotes included: `"` and `\`
/// are escaped, every control character (U+0000-U+001F) is written as \u00XX, valid
/// UTF-8 passes through unchanged, and each ill-formed UTF-8 subsequence (a stray
/// continuation byte, a truncated sequence, an overlong form, a surrogate, a code
/// point above U+10FFFF) becomes U+FFFD, one per maximal ill-formed subpart as
/// Unicode recommends. Never throws except std::bad_alloc.
inline void append_json_string(std::string& out, std::string_view text) {
    static constexpr char hex[] = "0123456789abcdef";
    static constexpr std::string_view replacement = "\xEF\xBF\xBD";
    out.push_back('"');
    std::size_t i = 0;
    while (i < text.size()) {
        auto const byte = static_cast<unsigned char>(text[i]);
        if (byte < 0x80) {
            if (byte == '"' || byte == '\\') {
                out.push_back('\\');
                out.push_back(static_cast<char>(byte));
            } else if (byte < 0x20) {
                out += "\\u00";
                out.push_back(hex[byte >> 4]);
                out.push_back(hex[byte & 0x0F]);
            } else {
                out.push_back(static_cast<char>(byte));
            }
            ++i;
            continue;
        }
        // Well-formed sequences per Unicode Table 3-7: the lead byte fixes the length
        // and the range of the second byte; later bytes are 80..BF.
        std::size_t length = 0;
        unsigned char low = 0x80;
        unsigned char high = 0xBF;
        if (byte >= 0xC2 && byte <= 0xDF) {
            length = 2;
        } else if (byte >= 0xE0 && byte <= 0xEF) {
            length = 3;
            if (byte == 0xE0) {
                low = 0xA0; // no overlong forms
            } else if (byte == 0xED) {
                high = 0x9F; // no surrogates
            }
        } else if (byte >= 0xF0 && byte <= 0xF4) {
            length = 4;
            if (byte == 0xF0) {
                low = 0x90; // no overlong forms
            } else if (byte == 0xF4) {
                high = 0x8F; // nothing above U+10FFFF
            }
        }
        if (length == 0) {
            out += replacement; // C0, C1, F5..FF, or a stray continuation byte
            ++i;
            continue;
        }
        std::size_t valid = 1;
        while (valid < length && i + valid < text.size()) {
            auto const next = static_cast<unsigned char>(text[i + valid]);
            bool const in_range =
                valid == 1 ? next >= low && next <= high : next >= 0x80 && next <= 0xBF;
            if (!in_range) {
                break;
            }
            ++valid;
        }
        if (valid == length) {
            out.append(text.substr(i, length));
        } else {
            out += replacement; // the maximal ill-formed subpart: lead plus valid continuations
        }
        i += valid;
    }
    out.push_back('"');
}

/// Returns `text` as a JSON string literal; see append_json_string.
inline std::string json_string(std::string_view text) {
    std::string out;
    out.reserve(text.size() + 2);
    append_json_string(out, text);
    return out;
}

/// Returns `t` as an RFC 3339 UTC timestamp with milliseconds, e.g.
/// "2026-11-27T03:04:05.678Z" (truncated, not rounded, to the millisecond). Years
/// outside 0000-9999 are clamped to that range.
inline std::string format_rfc3339(std::chrono::system_clock::time_point t) {
    using namespace std::chrono;
    auto const ms = floor<milliseconds>(t);
    auto const day = floor<days>(ms);
    year_month_day const date{day};
    hh_mm_ss const time{ms - day};
    int year = static_cast<int>(date.year());
    unsigned month = static_cast<unsigned>(date.month());
    unsigned dom = static_cast<unsigned>(date.day());
    long long hours = time.hours().count();
    long long minutes = time.minutes().count();
    long long seconds = time.seconds().count();
    long long millis = time.subseconds().count();
    if (year < 0) {
        year = 0, month = 1, dom = 1, hours = 0, minutes = 0, seconds = 0, millis = 0;
    } else if (year > 9999) {
        year = 9999, month = 12, dom = 31, hours = 23, minutes = 59, seconds = 59, millis = 999;
    }
    char buffer[32];
    std::snprintf(buffer, sizeof buffer, "%04d-%02u-%02uT%02lld:%02lld:%02lld.%03lldZ", year, month,
                  dom, hours, minutes, seconds, millis);
    return buffer;
}

namespace detail {

inline void append_json_number(std::string& out, double value) {
    if (!std::isfinite(value)) {
        out += "null"; // JSON has no NaN or infinity
        return;
    }
    char buffer[32];
    // Shortest representation that round-trips: 12.0 -> "12", 0.1 -> "0.1".
    auto const result = std::to_chars(buffer, buffer + sizeof buffer, value);
    out.append(buffer, result.ptr);
}

inline void append_json_member(std::string& out, bool& first, std::string_view key) {
    if (!first) {
        out.push_back(',');
    }
    first = false;
    append_json_string(out, key);
    out.push_back(':');
}

inline void append_json_string_member(std::string& out, bool& first, std::string_view key,
                                      std::string_view value) {
    append_json_member(out, first, key);
    append_json_string(out, value);
}

} // namespace detail

/// Renders `report` as compact application/health+json (one line, no spaces):
///
///     {"status":"warn","version":"1.4.2","serviceId":"orders","description":"...",
///      "output":"cache:responseTime: connection refused",
///      "checks":{"postgres:responseTime":[{"componentType":"datastore",
///        "observedValue":12.5,"observedUnit":"ms","status":"pass",
///        "time":"2026-11-27T03:04:05.000Z","consecutiveFailures":0,
///        "lastChange":"2026-11-27T03:00:00.000Z"}], ...}}
///
/// Top level: `status` always; `version`, `releaseId`, `serviceId`, `description`
/// when non-empty; `output` when the status is not pass and the output is non-empty
/// (the draft: omit it for pass); `checks` when there are any, keyed
/// "component:measurement" (or "component"), each a one-element array as the draft
/// asks for a single node. A check element has `componentType`, `observedValue` and
/// `observedUnit` (when present), `status`, `time` (when the value was read; the
/// draft allows cached readings), `output` (not for pass), and two extension members
/// receivers may ignore: `consecutiveFailures` and `lastChange` (when the status last
/// changed). Strings are escaped by append_json_string, times by format_rfc3339.
inline std::string render_health_json(health_report const& report) {
    std::string out;
    out.reserve(128 + report.checks.size() * 192);
    out.push_back('{');
    bool first = true;
    detail::append_json_string_member(out, first, "status", to_string(report.status));
    if (!report.version.empty()) {
        detail::append_json_string_member(out, first, "version", report.version);
    }
    if (!report.release_id.empty()) {
        detail::append_json_string_member(out, first, "releaseId", report.release_id);
    }
    if (!report.service_id.empty()) {
        detail::append_json_string_member(out, first, "serviceId", report.service_id);
    }
    if (!report.description.empty()) {
        detail::append_json_string_member(out, first, "description", report.description);
    }
    if (report.status != health_status::pass && !report.output.empty()) {
        detail::append_json_string_member(out, first, "output", report.output);
    }
    if (!report.checks.empty()) {
        detail::append_json_member(out, first, "checks");
        out.push_back('{');
        bool first_check = true;
        for (check_report const& check : report.checks) {
            detail::append_json_member(out, first_check, check.key);
            out += "[{";
            bool first_field = true;
            detail::append_json_string_member(out, first_field, "componentType",
                                              check.component_type);
            if (check.observed_value) {
                detail::append_json_member(out, first_field, "observedValue");
                detail::append_json_number(out, *check.observed_value);
            }
            if (!check.observed_unit.empty()) {
                detail::append_json_string_member(out, first_field, "observedUnit",
                                                  check.observed_unit);
            }
            detail::append_json_string_member(out, first_field, "status", to_string(check.status));
            detail::append_json_string_member(out, first_field, "time", format_rfc3339(check.time));
            if (check.status != health_status::pass && !check.output.empty()) {
                detail::append_json_string_member(out, first_field, "output", check.output);
            }
            detail::append_json_member(out, first_field, "consecutiveFailures");
            out += std::to_string(check.consecutive_failures);
            detail::append_json_string_member(out, first_field, "lastChange",
                                              format_rfc3339(check.last_change));
            out += "}]";
        }
        out.push_back('}');
    }
    out.push_back('}');
    return out;
}

/// Returns the HTTP response for `report`: status 200 (pass, warn) or 503 (fail),
/// content type application/health+json, and the rendered body. Health responses
/// should not be cached by HTTP intermediaries: send `Cache-Control: no-store` too
/// (as ASP.NET Core does by default).
inline http_response to_http_response(health_report const& report) {
    return http_response{report.http_status(), std::string{health_json_content_type},
                         render_health_json(report)};
}

} // namespace ops

KEEL_END_NAMESPACE
