// SPDX-License-Identifier: MIT
// A small writer of the Prometheus text exposition format (version 0.0.4), enough
// for the demo service's /metrics page: metric families with their # HELP and
// # TYPE lines, samples with labels, and the escaping the format requires
// (backslash and newline in help text; backslash, double quote and newline in
// label values). keel itself exports snapshots and listeners, not a metrics
// format; this is how a service turns them into a scrape page.
#pragma once

#include <fmt/format.h>

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

namespace keel_demo {

/// The Content-Type of a page written by prometheus_text.
inline constexpr char const* prometheus_content_type = "text/plain; version=0.0.4; charset=utf-8";

/// Writes one scrape page: declare a family, then add its samples.
///
/// Families must be declared once each, with their samples right after (the
/// format wants a family's samples together). Not thread-safe: one per scrape.
class prometheus_text {
public:
    /// One label: name and (unescaped) value.
    using label = std::pair<std::string_view, std::string_view>;

    /// Starts the family `name` of type `type` ("counter", "gauge", "untyped")
    /// with the help text `help`.
    void family(std::string_view name, std::string_view type, std::string_view help) {
        m_text += "# HELP ";
        m_text += name;
        m_text += ' ';
        for (char c : help) {
            if (c == '\\') {
                m_text += "\\\\";
            } else if (c == '\n') {
                m_text += "\\n";
            } else {
                m_text += c;
            }
        }
        m_text += "\n# TYPE ";
        m_text += name;
        m_text += ' ';
        m_text += type;
        m_text += '\n';
    }

    /// Adds the sample `name{labels} value`.
    void sample(std::string_view name, std::initializer_list<label> labels, double value) {
        m_text += name;
        if (labels.size() > 0) {
            m_text += '{';
            bool first = true;
            for (auto const& [key, text] : labels) {
                if (!first) {
                    m_text += ',';
                }
                first = false;
                m_text += key;
                m_text += "=\"";
                for (char c : text) {
                    if (c == '\\') {
                        m_text += "\\\\";
                    } else if (c == '"') {
                        m_text += "\\\"";
                    } else if (c == '\n') {
                        m_text += "\\n";
                    } else {
                        m_text += c;
                    }
                }
                m_text += '"';
            }
            m_text += '}';
        }
        m_text += ' ';
        m_text += format_value(value);
        m_text += '\n';
    }

    /// Adds the sample `name value`.
    void sample(std::string_view name, double value) { sample(name, {}, value); }

    /// Returns the page written so far.
    std::string const& text() const noexcept { return m_text; }

    /// Returns `v` as the format writes it: integers without a fraction or
    /// exponent, "+Inf", "-Inf", "NaN", others in shortest round-trip form.
    static std::string format_value(double v) {
        if (std::isnan(v)) {
            return "NaN";
        }
        if (std::isinf(v)) {
            return v > 0 ? "+Inf" : "-Inf";
        }
        if (v == std::floor(v) && std::fabs(v) < 9.007199254740992e15) {
            return fmt::format("{}", static_cast<std::int64_t>(v));
        }
        return fmt::format("{}", v);
    }

private:
    std::string m_text;
};

} // namespace keel_demo
