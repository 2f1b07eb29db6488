// SPDX-License-Identifier: MIT
// keel::sim::render_svg: a time-series chart as a standalone SVG document, with
// no dependency: stacked bars per interval (calls by outcome), lines over them
// (load, capacity), bands under the plot (a breaker's state, instances in
// rotation) and vertical markers (the outage). The simulator's reports and the
// demo's timeline both draw through it.
#pragma once

#include <keel/version.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

KEEL_BEGIN_NAMESPACE

namespace sim {

/// One series: a value per interval, drawn as stacked bars or as a line.
struct chart_series {
    std::string name;           ///< Shown in the legend.
    std::string color;          ///< Any SVG colour, e.g. "#2e7d32".
    std::vector<double> values; ///< One per interval, from chart::x_start in x_step steps.
};

/// A span of a band: from `from` to `to` on the x axis, in one colour.
struct chart_span {
    double from = 0;     ///< Start, in x units.
    double to = 0;       ///< End, in x units.
    std::string color;   ///< Fill colour.
    std::string label{}; ///< Legend entry for this colour (spans sharing a label share one).
};

/// A horizontal strip under the plot showing a state over time (e.g. a breaker's).
struct chart_band {
    std::string name;              ///< Shown at the strip's left.
    std::vector<chart_span> spans; ///< In any order; gaps stay blank.
};

/// A vertical line across the plot at `at`, labelled.
struct chart_marker {
    double at = 0;     ///< Position, in x units.
    std::string label; ///< Shown at the top of the line.
};

/// Describes a chart; render_svg() draws it.
struct chart {
    std::string title;                          ///< Bold, at the top.
    std::string subtitle{};                     ///< Under the title.
    std::string x_label = "time (s)";           ///< Under the x axis.
    std::string y_label = "calls per interval"; ///< Beside the y axis.
    double x_start = 0;                         ///< x of the first interval's start.
    double x_step = 1;                          ///< Width of an interval in x units; > 0.
    std::vector<chart_series> bars{};           ///< Stacked bottom to top in this order.
    std::vector<chart_series> lines{};          ///< Drawn over the bars, on the same y scale.
    std::vector<chart_band> bands{};            ///< Strips under the plot, top to bottom.
    std::vector<chart_marker> markers{};        ///< Vertical lines.
    /// The top of the y axis; 0 (the default) fits the tallest bar stack and line.
    /// Bars and lines above it are clipped at the top (a capacity far above the
    /// load, one interval's spike).
    double y_max = 0;
    int width = 960;       ///< Pixels; at least 320.
    int plot_height = 300; ///< Pixels of the plot area; at least 100.
};

/// Returns `c` as a standalone SVG 1.1 document (UTF-8, no scripts, no external
/// references). Deterministic: the same chart gives the same bytes. Empty or
/// negative values draw nothing; a chart without data draws its frame and title.
std::string render_svg(chart const& c);

// ---------------------------------------------------------------------------
// Implementation.

namespace detail {

inline std::string svg_escape(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (char ch : text) {
        switch (ch) {
        case '&': out += "&amp;"; break;
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '"': out += "&quot;"; break;
        case '\'': out += "&apos;"; break;
        default: out += ch; break;
        }
    }
    return out;
}

inline std::string svg_num(double v) {
    char buffer[32];
    if (!std::isfinite(v)) {
        v = 0;
    }
    std::snprintf(buffer, sizeof buffer, "%.1f", v);
    std::string s{buffer};
    if (s.size() > 2 && s.compare(s.size() - 2, 2, ".0") == 0) {
        s.resize(s.size() - 2);
    }
    if (s == "-0") {
        s = "0";
    }
    return s;
}

// A "nice" tick step (1, 2 or 5 times a power of ten) giving about `ticks` ticks.
inline double nice_step(double range, int ticks) {
    if (!(range > 0)) {
        return 1;
    }
    double const raw = range / ticks;
    double const magnitude = std::pow(10.0, std::floor(std::log10(raw)));
    double const r = raw / magnitude;
    double const nice = r <= 1 ? 1 : r <= 2 ? 2 : r <= 5 ? 5 : 10;
    return nice * magnitude;
}

inline std::string tick_label(double v) {
    char buffer[32];
    double const a = std::fabs(v);
    if (a >= 1e6) {
        std::snprintf(buffer, sizeof buffer, "%gM", v / 1e6);
    } else if (a >= 1e4) {
        std::snprintf(buffer, sizeof buffer, "%gk", v / 1e3);
    } else {
        std::snprintf(buffer, sizeof buffer, "%g", v);
    }
    return buffer;
}

} // namespace detail

inline std::string render_svg(chart const& c) {
    using detail::svg_escape;
    using detail::svg_num;
    int const width = std::max(c.width, 320);
    int const plot_h = std::max(c.plot_height, 100);
    double const left = 70;
    double const right = 20;
    double const top = c.subtitle.empty() ? 40 : 58;
    double const plot_w = width - left - right;
    double const band_h = 16;
    double const band_gap = 6;
    double const axis_h = 38;
    double const bands_top = top + plot_h + axis_h;
    double const legend_top =
        bands_top + static_cast<double>(c.bands.size()) * (band_h + band_gap) + 8;
    // The legend: bars, lines, then each band colour once; wrapped to the width.
    std::vector<std::pair<std::string, std::string>> legend; // label, colour
    for (auto const* group : {&c.bars, &c.lines}) {
        for (auto const& s : *group) {
            legend.emplace_back(s.name, s.color);
        }
    }
    for (auto const& band : c.bands) {
        for (auto const& span : band.spans) {
            if (!span.label.empty() &&
                std::none_of(legend.begin(), legend.end(),
                             [&](auto const& l) { return l.first == span.label; })) {
                legend.emplace_back(span.label, span.color);
            }
        }
    }
    auto const entry_width = [](std::string const& label) {
        return 28 + 6.5 * static_cast<double>(label.size());
    };
    int legend_rows = legend.empty() ? 0 : 1;
    for (double x = left; auto const& entry : legend) {
        if (x + entry_width(entry.first) > width - right && x > left) {
            ++legend_rows;
            x = left;
        }
        x += entry_width(entry.first);
    }
    double const height = legend_top + 20 * legend_rows + 8;

    std::size_t intervals = 0;
    for (auto const* group : {&c.bars, &c.lines}) {
        for (auto const& s : *group) {
            intervals = std::max(intervals, s.values.size());
        }
    }
    double const step = c.x_step > 0 ? c.x_step : 1;
    double const x_end =
        c.x_start + static_cast<double>(std::max<std::size_t>(intervals, 1)) * step;
    auto const x_of = [&](double x) {
        return left + (x - c.x_start) / (x_end - c.x_start) * plot_w;
    };

    double y_max = 0;
    for (std::size_t i = 0; i < intervals; ++i) {
        double stack = 0;
        for (auto const& s : c.bars) {
            if (i < s.values.size() && s.values[i] > 0) {
                stack += s.values[i];
            }
        }
        y_max = std::max(y_max, stack);
        for (auto const& s : c.lines) {
            if (i < s.values.size()) {
                y_max = std::max(y_max, s.values[i]);
            }
        }
    }
    if (c.y_max > 0) {
        y_max = c.y_max;
    }
    double const y_step = detail::nice_step(y_max > 0 ? y_max : 1, 5);
    double const y_top = std::max(y_step, std::ceil((y_max > 0 ? y_max : 1) / y_step) * y_step);
    auto const y_of = [&](double y) { return top + plot_h - y / y_top * plot_h; };

    std::string out;
    out += "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
    out += "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"" +
           std::to_string(width) + "\" height=\"" + svg_num(height) + "\" viewBox=\"0 0 " +
           std::to_string(width) + " " + svg_num(height) +
           "\" font-family=\"Helvetica, Arial, sans-serif\" font-size=\"12\">\n";
    out += "<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n";
    out += "<text x=\"" + svg_num(left) + "\" y=\"22\" font-size=\"16\" font-weight=\"bold\">" +
           svg_escape(c.title) + "</text>\n";
    if (!c.subtitle.empty()) {
        out += "<text x=\"" + svg_num(left) + "\" y=\"40\" fill=\"#555555\">" +
               svg_escape(c.subtitle) + "</text>\n";
    }

    // Grid and y axis.
    for (double y = 0; y <= y_top + y_step / 2; y += y_step) {
        out += "<line x1=\"" + svg_num(left) + "\" y1=\"" + svg_num(y_of(y)) + "\" x2=\"" +
               svg_num(left + plot_w) + "\" y2=\"" + svg_num(y_of(y)) +
               "\" stroke=\"#e0e0e0\" stroke-width=\"1\"/>\n";
        out += "<text x=\"" + svg_num(left - 6) + "\" y=\"" + svg_num(y_of(y) + 4) +
               "\" text-anchor=\"end\" fill=\"#555555\">" + detail::tick_label(y) + "</text>\n";
    }
    out += "<text transform=\"translate(16 " + svg_num(top + plot_h / 2.0) +
           ") rotate(-90)\" text-anchor=\"middle\" fill=\"#555555\">" + svg_escape(c.y_label) +
           "</text>\n";

    // Stacked bars.
    double const bar_w = plot_w / static_cast<double>(std::max<std::size_t>(intervals, 1));
    for (std::size_t i = 0; i < intervals; ++i) {
        double base = 0;
        for (auto const& s : c.bars) {
            // A stack above y_top (a chart's y_max) is cut at the plot's top edge.
            if (i >= s.values.size() || !(s.values[i] > 0) || base >= y_top) {
                continue;
            }
            double const y0 = y_of(base);
            double const y1 = y_of(std::min(base + s.values[i], y_top));
            out += "<rect x=\"" + svg_num(left + static_cast<double>(i) * bar_w) + "\" y=\"" +
                   svg_num(y1) + "\" width=\"" + svg_num(std::max(bar_w - 0.5, 0.5)) +
                   "\" height=\"" + svg_num(std::max(y0 - y1, 0.1)) + "\" fill=\"" +
                   svg_escape(s.color) + "\"/>\n";
            base += s.values[i];
        }
    }

    // Lines, one point per interval centre.
    for (auto const& s : c.lines) {
        if (s.values.empty()) {
            continue;
        }
        out += "<polyline fill=\"none\" stroke=\"" + svg_escape(s.color) +
               "\" stroke-width=\"1.8\" points=\"";
        for (std::size_t i = 0; i < s.values.size(); ++i) {
            double const v = std::clamp(s.values[i], 0.0, y_top);
            out += svg_num(left + (static_cast<double>(i) + 0.5) * bar_w) + "," + svg_num(y_of(v));
            out += i + 1 < s.values.size() ? " " : "";
        }
        out += "\"/>\n";
    }

    // Frame and x axis.
    out += "<rect x=\"" + svg_num(left) + "\" y=\"" + svg_num(top) + "\" width=\"" +
           svg_num(plot_w) + "\" height=\"" + std::to_string(plot_h) +
           "\" fill=\"none\" stroke=\"#888888\" stroke-width=\"1\"/>\n";
    double const x_step_tick = detail::nice_step(x_end - c.x_start, 10);
    for (double x = std::ceil(c.x_start / x_step_tick) * x_step_tick; x <= x_end + 1e-9;
         x += x_step_tick) {
        out += "<line x1=\"" + svg_num(x_of(x)) + "\" y1=\"" + svg_num(top + plot_h) + "\" x2=\"" +
               svg_num(x_of(x)) + "\" y2=\"" + svg_num(top + plot_h + 4) +
               "\" stroke=\"#888888\"/>\n";
        out += "<text x=\"" + svg_num(x_of(x)) + "\" y=\"" + svg_num(top + plot_h + 17) +
               "\" text-anchor=\"middle\" fill=\"#555555\">" + detail::tick_label(x) + "</text>\n";
    }
    out += "<text x=\"" + svg_num(left + plot_w / 2) + "\" y=\"" + svg_num(top + plot_h + 32) +
           "\" text-anchor=\"middle\" fill=\"#555555\">" + svg_escape(c.x_label) + "</text>\n";

    // Markers.
    for (auto const& m : c.markers) {
        double const x = x_of(std::clamp(m.at, c.x_start, x_end));
        out += "<line x1=\"" + svg_num(x) + "\" y1=\"" + svg_num(top) + "\" x2=\"" + svg_num(x) +
               "\" y2=\"" + svg_num(top + plot_h) +
               "\" stroke=\"#333333\" stroke-width=\"1\" stroke-dasharray=\"4 3\"/>\n";
        out += "<text x=\"" + svg_num(x + 3) + "\" y=\"" + svg_num(top + 12) +
               "\" fill=\"#333333\" font-size=\"11\">" + svg_escape(m.label) + "</text>\n";
    }

    // Bands.
    for (std::size_t b = 0; b < c.bands.size(); ++b) {
        auto const& band = c.bands[b];
        double const y = bands_top + static_cast<double>(b) * (band_h + band_gap);
        out += "<text x=\"" + svg_num(left - 6) + "\" y=\"" + svg_num(y + 12) +
               "\" text-anchor=\"end\" fill=\"#333333\" font-size=\"11\">" + svg_escape(band.name) +
               "</text>\n";
        out += "<rect x=\"" + svg_num(left) + "\" y=\"" + svg_num(y) + "\" width=\"" +
               svg_num(plot_w) + "\" height=\"" + svg_num(band_h) +
               "\" fill=\"#f5f5f5\" stroke=\"#cccccc\"/>\n";
        for (auto const& span : band.spans) {
            double const x0 = x_of(std::clamp(span.from, c.x_start, x_end));
            double const x1 = x_of(std::clamp(span.to, c.x_start, x_end));
            if (x1 > x0) {
                out += "<rect x=\"" + svg_num(x0) + "\" y=\"" + svg_num(y) + "\" width=\"" +
                       svg_num(std::max(x1 - x0, 0.5)) + "\" height=\"" + svg_num(band_h) +
                       "\" fill=\"" + svg_escape(span.color) + "\"/>\n";
            }
        }
    }

    // Legend, left to right, wrapped.
    double x = left;
    double y = legend_top;
    for (auto const& [label, colour] : legend) {
        if (x + entry_width(label) > width - right && x > left) {
            x = left;
            y += 20;
        }
        out += "<rect x=\"" + svg_num(x) + "\" y=\"" + svg_num(y) +
               "\" width=\"12\" height=\"12\" fill=\"" + svg_escape(colour) + "\"/>\n";
        out += "<text x=\"" + svg_num(x + 16) + "\" y=\"" + svg_num(y + 10) + "\">" +
               svg_escape(label) + "</text>\n";
        x += entry_width(label);
    }
    out += "</svg>\n";
    return out;
}

} // namespace sim

KEEL_END_NAMESPACE
