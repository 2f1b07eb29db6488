// SPDX-License-Identifier: MIT
// The text formats a metrics scrape is answered in: Prometheus text 0.0.4 and
// OpenMetrics 1.0 text, chosen from the scrape's Accept header
// (keel::observe::negotiate), and the writer that puts metric families in either
// with the escaping each requires. keel::observe::registry renders through it; a
// service can also write its own families with it.
#pragma once

#include <keel/version.hpp>

#include <charconv>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>

KEEL_BEGIN_NAMESPACE
namespace observe {

/// Enumerates the exposition formats keel writes.
enum class exposition_format : std::uint8_t {
    /// Prometheus text format 0.0.4: what every Prometheus and most scrapers read.
    prometheus = 0,
    /// OpenMetrics 1.0 text: counters with `_created`, `# UNIT`, ends with `# EOF`.
    openmetrics = 1,
};

/// Returns the Content-Type header value of a page in `format`.
constexpr std::string_view content_type(exposition_format format) noexcept {
    return format == exposition_format::openmetrics
               ? "application/openmetrics-text; version=1.0.0; charset=utf-8"
               : "text/plain; version=0.0.4; charset=utf-8";
}

/// Chooses the format for a scrape from its Accept header value (RFC 9110 12.5.1).
///
/// OpenMetrics is chosen when a media range `application/openmetrics-text` with
/// a version of 1.0.0 (or none) has a higher quality than every range that
/// admits the Prometheus text format (`text/plain` with version 0.0.4 or none,
/// `text/*`, `*/*`); anything else, an empty or malformed header included, gets
/// the Prometheus text format, which every scraper reads (what client_golang's
/// expfmt.Negotiate does too). Prometheus 2.x sends
/// `application/openmetrics-text;version=1.0.0,...;text/plain;version=0.0.4;q=0.5,...`
/// and so gets OpenMetrics. Never throws; bounded by the header's length.
constexpr exposition_format negotiate(std::string_view accept) noexcept;

/// Enumerates the metric types exposition_writer writes.
enum class metric_type : std::uint8_t {
    counter = 0, ///< Only goes up (resets at process start); samples end in `_total`.
    gauge = 1,   ///< Goes up and down.
};

/// Writes metric families in one exposition format into a std::string.
///
/// Declare a family with family(), then write all its samples with sample()
/// before the next family (both formats want a family's samples together), and
/// call finish() once at the end (OpenMetrics' `# EOF`). For a counter family,
/// pass the name without `_total`: the writer adds it to each sample (and, in
/// the Prometheus format, to the `# HELP` and `# TYPE` names), and writes an
/// OpenMetrics `_created` sample after each counter sample given a creation
/// time. Help text is escaped as the format requires (0.0.4: backslash and
/// newline; OpenMetrics also the double quote); `labels` is text already in
/// label syntax (`a="x",b="y"`, escaped by append_label). Not thread-safe; the
/// string is appended to, never cleared, so a caller reusing one string
/// allocates nothing once it has grown.
class exposition_writer {
public:
    /// Starts writing `format` at the end of `out`.
    exposition_writer(std::string& out, exposition_format format) noexcept
        : m_out(&out), m_format(format) {}

    /// Returns the format being written.
    exposition_format format() const noexcept { return m_format; }

    /// Starts the family `name` (snake_case, a counter's without `_total`) of
    /// `type`, with `help` and, if not empty, the OpenMetrics `unit` (which
    /// `name` must end with, e.g. "seconds" for `..._seconds`).
    void family(std::string_view name, metric_type type, std::string_view help,
                std::string_view unit = {}) {
        m_family = name;
        m_type = type;
        bool const om = m_format == exposition_format::openmetrics;
        bool const total = type == metric_type::counter && !om;
        std::string& out = *m_out;
        out += "# HELP ";
        append_name(total);
        out += ' ';
        for (char const c : help) {
            if (c == '\\') {
                out += "\\\\";
            } else if (c == '\n') {
                out += "\\n";
            } else if (c == '"' && om) {
                out += "\\\"";
            } else {
                out += c;
            }
        }
        out += "\n# TYPE ";
        append_name(total);
        out += type == metric_type::counter ? " counter\n" : " gauge\n";
        if (om && !unit.empty()) {
            out += "# UNIT ";
            out += name;
            out += ' ';
            out += unit;
            out += '\n';
        }
    }

    /// Writes one sample of the current family: `labels` (may be empty) and
    /// `value`; for a counter in OpenMetrics, also `_created` at `created` when
    /// it is after the epoch.
    void sample(std::string_view labels, double value,
                std::chrono::system_clock::time_point created = {}) {
        bool const counter = m_type == metric_type::counter;
        write_line(counter ? "_total" : "", labels, value);
        if (counter && m_format == exposition_format::openmetrics &&
            created.time_since_epoch().count() > 0) {
            // A component's samples share one creation time: format it once.
            if (created != m_created) {
                m_created = created;
                auto const ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                    created.time_since_epoch());
                auto const r = std::to_chars(m_created_text, m_created_text + sizeof m_created_text,
                                             static_cast<double>(ns.count()) / 1e9);
                m_created_size = static_cast<std::size_t>(r.ptr - m_created_text);
            }
            write_line("_created", labels, std::string_view{m_created_text, m_created_size});
        }
    }

    /// Ends the page: `# EOF` in OpenMetrics, nothing in the Prometheus format.
    void finish() {
        if (m_format == exposition_format::openmetrics) {
            *m_out += "# EOF\n";
        }
    }

    /// Appends `,name="value"` (no comma when `out` is empty) to `out`, escaping
    /// the value as both formats require: backslash, double quote and newline.
    /// `name` must be a valid label name (valid_label_name()).
    static void append_label(std::string& out, std::string_view name, std::string_view value) {
        if (!out.empty()) {
            out += ',';
        }
        out += name;
        out += "=\"";
        for (char const c : value) {
            if (c == '\\') {
                out += "\\\\";
            } else if (c == '"') {
                out += "\\\"";
            } else if (c == '\n') {
                out += "\\n";
            } else {
                out += c;
            }
        }
        out += '"';
    }

    /// Returns true if `name` is a valid label name: [a-zA-Z_][a-zA-Z0-9_]*, not
    /// starting with `__` (reserved for Prometheus' own use).
    static constexpr bool valid_label_name(std::string_view name) noexcept {
        if (name.empty() || name.starts_with("__")) {
            return false;
        }
        for (std::size_t i = 0; i < name.size(); ++i) {
            char const c = name[i];
            bool const alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
            if (!alpha && (i == 0 || c < '0' || c > '9')) {
                return false;
            }
        }
        return true;
    }

    /// Appends `value` as both formats write it: "NaN", "+Inf", "-Inf", integers
    /// (below 2^53) without fraction or exponent, others in shortest round-trip form.
    static void append_value(std::string& out, double value) {
        if (std::isnan(value)) {
            out += "NaN";
            return;
        }
        if (std::isinf(value)) {
            out += value > 0 ? "+Inf" : "-Inf";
            return;
        }
        char buffer[32];
        std::to_chars_result r{};
        if (value == std::floor(value) && std::fabs(value) < 9007199254740992.0) {
            r = std::to_chars(buffer, buffer + sizeof buffer, static_cast<std::int64_t>(value));
        } else {
            r = std::to_chars(buffer, buffer + sizeof buffer, value);
        }
        out.append(buffer, r.ptr);
    }

private:
    void append_name(bool total) {
        *m_out += m_family;
        if (total) {
            *m_out += "_total";
        }
    }

    void write_name(std::string_view suffix, std::string_view labels) {
        std::string& out = *m_out;
        out += m_family;
        out += suffix;
        if (!labels.empty()) {
            out += '{';
            out += labels;
            out += '}';
        }
        out += ' ';
    }
    void write_line(std::string_view suffix, std::string_view labels, double value) {
        write_name(suffix, labels);
        append_value(*m_out, value);
        *m_out += '\n';
    }
    void write_line(std::string_view suffix, std::string_view labels, std::string_view value) {
        write_name(suffix, labels);
        *m_out += value;
        *m_out += '\n';
    }

    std::string* m_out;
    exposition_format m_format;
    metric_type m_type = metric_type::gauge;
    std::string_view m_family;
    std::chrono::system_clock::time_point m_created{};
    char m_created_text[32]{}; // shortest round-trip text of m_created in seconds
    std::size_t m_created_size = 0;
};

namespace detail {

// ASCII lower-case equality, for media types and parameter names.
constexpr bool iequals(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) {
        return false;
    }
    for (std::size_t i = 0; i < a.size(); ++i) {
        char x = a[i];
        char y = b[i];
        x = (x >= 'A' && x <= 'Z') ? static_cast<char>(x - 'A' + 'a') : x;
        y = (y >= 'A' && y <= 'Z') ? static_cast<char>(y - 'A' + 'a') : y;
        if (x != y) {
            return false;
        }
    }
    return true;
}

constexpr std::string_view trim(std::string_view s) noexcept {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
        s.remove_prefix(1);
    }
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
        s.remove_suffix(1);
    }
    return s;
}

// Parses an RFC 9110 qvalue ("1", "0.5", "1.000"); returns it in thousandths, or
// -1 when malformed.
constexpr int parse_qvalue(std::string_view q) noexcept {
    if (q.empty() || (q[0] != '0' && q[0] != '1')) {
        return -1;
    }
    int value = (q[0] - '0') * 1000;
    if (q.size() == 1) {
        return value;
    }
    if (q[1] != '.' || q.size() > 5) {
        return -1;
    }
    int scale = 100;
    for (std::size_t i = 2; i < q.size(); ++i) {
        if (q[i] < '0' || q[i] > '9') {
            return -1;
        }
        value += (q[i] - '0') * scale;
        scale /= 10;
    }
    return value > 1000 ? -1 : value;
}

} // namespace detail

constexpr exposition_format negotiate(std::string_view accept) noexcept {
    int best_openmetrics = -1;
    int best_text = -1;
    while (!accept.empty()) {
        auto const comma = accept.find(',');
        std::string_view range = accept.substr(0, comma);
        accept = comma == std::string_view::npos ? std::string_view{} : accept.substr(comma + 1);
        auto const semicolon = range.find(';');
        std::string_view const type = detail::trim(range.substr(0, semicolon));
        std::string_view params =
            semicolon == std::string_view::npos ? std::string_view{} : range.substr(semicolon + 1);
        int quality = 1000;
        std::string_view version;
        while (!params.empty()) {
            auto const next = params.find(';');
            std::string_view const param = detail::trim(params.substr(0, next));
            params = next == std::string_view::npos ? std::string_view{} : params.substr(next + 1);
            auto const equals = param.find('=');
            if (equals == std::string_view::npos) {
                continue;
            }
            std::string_view const key = detail::trim(param.substr(0, equals));
            std::string_view const value = detail::trim(param.substr(equals + 1));
            if (detail::iequals(key, "q")) {
                quality = detail::parse_qvalue(value);
            } else if (detail::iequals(key, "version")) {
                version = value;
            }
        }
        if (quality <= 0) {
            continue; // malformed, or q=0: "not acceptable"
        }
        if (detail::iequals(type, "application/openmetrics-text")) {
            if (version.empty() || version == "1.0.0") {
                best_openmetrics = quality > best_openmetrics ? quality : best_openmetrics;
            }
        } else if ((detail::iequals(type, "text/plain") &&
                    (version.empty() || version == "0.0.4")) ||
                   detail::iequals(type, "text/*") || type == "*/*") {
            best_text = quality > best_text ? quality : best_text;
        }
    }
    return best_openmetrics > best_text ? exposition_format::openmetrics
                                        : exposition_format::prometheus;
}

} // namespace observe
KEEL_END_NAMESPACE
