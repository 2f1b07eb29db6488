// SPDX-License-Identifier: MIT
// Reports of a simulation: the summary as text (the bytes the golden tests
// compare), several runs side by side, the per-interval series as a table, and
// the run as a keel::sim::chart for render_svg (calls by outcome per interval,
// load against capacity, the breaker's state and the rotation as bands).
#pragma once

#include <keel/sim/simulator.hpp>
#include <keel/sim/svg.hpp>
#include <keel/version.hpp>

#include <algorithm>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

KEEL_BEGIN_NAMESPACE

namespace sim {

/// Returns the summary of `r` as aligned text, one figure a line, ending with the
/// breaker transitions (the first `max_transitions`, then a count of the rest).
/// Deterministic: the bytes depend only on `r`.
std::string format_summary(result const& r, std::size_t max_transitions = 12);

/// Returns the summaries of `runs` side by side: one row per figure, one column
/// per run, headed by the runs' names.
std::string format_comparison(std::vector<result> const& runs);

/// Returns the per-interval series of `r` as a table, one row per interval.
std::string format_series(result const& r);

/// Returns `r` as a chart: succeeded, failed, timed out, shed, rate limited and
/// budget-refused calls stacked per interval; attempts sent to the downstream and
/// its capacity as lines; the first breaker's state and the instances in rotation
/// as bands; the outage's start and end as markers.
chart to_chart(result const& r);

// ---------------------------------------------------------------------------
// Implementation.

namespace detail {

inline std::string seconds_text(nanoseconds d) {
    char buffer[48];
    std::snprintf(buffer, sizeof buffer, "%.3f s", static_cast<double>(d.count()) / 1e9);
    return buffer;
}

inline std::string millis_text(nanoseconds d) {
    char buffer[48];
    std::snprintf(buffer, sizeof buffer, "%.3f ms", static_cast<double>(d.count()) / 1e6);
    return buffer;
}

inline std::string fixed_text(double v, int decimals) {
    char buffer[64];
    std::snprintf(buffer, sizeof buffer, "%.*f", decimals, v);
    return buffer;
}

inline std::string optional_seconds(std::optional<nanoseconds> d) {
    return d ? seconds_text(*d) : std::string{"-"};
}

// The summary's rows: label and value, shared by the summary and the comparison.
inline std::vector<std::pair<std::string, std::string>> summary_rows(result const& r) {
    auto const& t = r.totals;
    auto const n = [](std::uint64_t v) { return std::to_string(v); };
    std::vector<std::pair<std::string, std::string>> rows;
    rows.emplace_back("requests", n(t.requests));
    rows.emplace_back("succeeded", n(t.succeeded));
    rows.emplace_back("failed (downstream)", n(t.failed));
    rows.emplace_back("timed out", n(t.timed_out));
    rows.emplace_back("shed by breaker", n(t.shed));
    rows.emplace_back("rate limited", n(t.rate_limited));
    rows.emplace_back("retry refused by budget", n(t.budget_exhausted));
    rows.emplace_back("bulkhead full", n(t.bulkhead_full));
    rows.emplace_back("in flight at end", n(t.in_flight));
    rows.emplace_back("attempts", n(t.attempts));
    rows.emplace_back("retries", n(t.retries));
    rows.emplace_back("amplification", fixed_text(t.amplification, 3) + "x");
    rows.emplace_back("work for callers gone", n(t.abandoned_work));
    rows.emplace_back("goodput", fixed_text(t.goodput, 1) + " /s");
    rows.emplace_back("goodput after outage", r.outage_end < r.duration
                                                  ? fixed_text(t.goodput_after, 1) + " /s"
                                                  : std::string{"-"});
    rows.emplace_back("latency p50", millis_text(t.p50));
    rows.emplace_back("latency p99", millis_text(t.p99));
    rows.emplace_back("latency max", millis_text(t.max));
    rows.emplace_back("removed from rotation", optional_seconds(t.removal));
    rows.emplace_back("failed before removal", n(t.failed_before_removal));
    rows.emplace_back("first shed (detection)", optional_seconds(t.detection));
    rows.emplace_back("failed before open", n(t.failed_before_open));
    rows.emplace_back("breaker closed after", optional_seconds(t.breaker_closed));
    rows.emplace_back("recovery", optional_seconds(t.recovery));
    rows.emplace_back("peak probe rate", fixed_text(t.peak_probe_rate, 1) + " /s");
    rows.emplace_back("breaker transitions", n(r.transitions.size()));
    return rows;
}

inline void pad_to(std::string& s, std::size_t width) {
    if (s.size() < width) {
        s.append(width - s.size(), ' ');
    }
}

} // namespace detail

inline std::string format_summary(result const& r, std::size_t max_transitions) {
    std::string out = "== " + r.name + " ==\n";
    out += "duration " + detail::seconds_text(r.duration) + ", interval " +
           detail::seconds_text(r.interval) + ", outage " + detail::seconds_text(r.outage_start) +
           " to " + detail::seconds_text(r.outage_end) + " (times below from its start or end)\n";
    for (auto const& [label, value] : detail::summary_rows(r)) {
        std::string line = label;
        detail::pad_to(line, 26);
        out += line + value + "\n";
    }
    std::size_t shown = 0;
    for (auto const& e : r.transitions) {
        if (shown == max_transitions) {
            out += "  ... and " + std::to_string(r.transitions.size() - shown) + " more\n";
            break;
        }
        out += "  " + detail::seconds_text(e.at) + "  breaker " + std::to_string(e.owner) + "  " +
               std::string{to_string(e.from)} + " -> " + std::string{to_string(e.to)} + " (" +
               std::string{to_string(e.why)} + ")\n";
        ++shown;
    }
    return out;
}

inline std::string format_comparison(std::vector<result> const& runs) {
    if (runs.empty()) {
        return {};
    }
    std::vector<std::vector<std::pair<std::string, std::string>>> columns;
    std::size_t width = 12;
    for (auto const& r : runs) {
        columns.push_back(detail::summary_rows(r));
        width = std::max(width, r.name.size() + 2);
        for (auto const& row : columns.back()) {
            width = std::max(width, row.second.size() + 2);
        }
    }
    std::string out;
    std::string head;
    detail::pad_to(head, 26);
    for (auto const& r : runs) {
        std::string cell = r.name;
        detail::pad_to(cell, width);
        head += cell;
    }
    while (!head.empty() && head.back() == ' ') {
        head.pop_back();
    }
    out += head + "\n";
    for (std::size_t row = 0; row < columns.front().size(); ++row) {
        std::string line = columns.front()[row].first;
        detail::pad_to(line, 26);
        for (auto const& column : columns) {
            std::string cell = column[row].second;
            detail::pad_to(cell, width);
            line += cell;
        }
        while (!line.empty() && line.back() == ' ') {
            line.pop_back();
        }
        out += line + "\n";
    }
    return out;
}

inline std::string format_series(result const& r) {
    std::string out = "   start  requests  succeeded  failed  timeout    shed  limited  budget  "
                      "attempts  probes  capacity  queued  in_rot  open\n";
    char line[256];
    for (std::size_t i = 0; i < r.series.size(); ++i) {
        auto const& s = r.series[i];
        double const start =
            static_cast<double>(static_cast<std::int64_t>(i) * r.interval.count()) / 1e9;
        std::snprintf(
            line, sizeof line,
            "%8.2f %9llu %10llu %7llu %8llu %7llu %8llu %7llu %9llu %7llu %9.0f %7llu "
            "%7d %5d\n",
            start, static_cast<unsigned long long>(s.requests),
            static_cast<unsigned long long>(s.succeeded), static_cast<unsigned long long>(s.failed),
            static_cast<unsigned long long>(s.timed_out), static_cast<unsigned long long>(s.shed),
            static_cast<unsigned long long>(s.rate_limited),
            static_cast<unsigned long long>(s.budget_exhausted),
            static_cast<unsigned long long>(s.attempts), static_cast<unsigned long long>(s.probes),
            s.capacity, static_cast<unsigned long long>(s.queued), s.in_rotation, s.open_breakers);
        out += line;
    }
    return out;
}

inline chart to_chart(result const& r) {
    chart c;
    c.title = r.name;
    auto const& t = r.totals;
    c.subtitle = std::to_string(t.requests) + " calls, " + std::to_string(t.succeeded) +
                 " succeeded, " + std::to_string(t.failed + t.timed_out + t.budget_exhausted) +
                 " failed, " + std::to_string(t.shed) + " shed; amplification " +
                 detail::fixed_text(t.amplification, 2) + "x";
    c.x_step = static_cast<double>(r.interval.count()) / 1e9;
    c.y_label = "calls per " + detail::fixed_text(c.x_step, c.x_step < 1 ? 1 : 0) + " s";
    auto const column = [&](auto field) {
        std::vector<double> values;
        values.reserve(r.series.size());
        for (auto const& s : r.series) {
            values.push_back(field(s));
        }
        return values;
    };
    auto const add_bar = [&](std::string name, std::string color, auto field) {
        auto values = column(field);
        if (std::any_of(values.begin(), values.end(), [](double v) { return v > 0; })) {
            c.bars.push_back(chart_series{std::move(name), std::move(color), std::move(values)});
        }
    };
    using stats = interval_stats;
    auto const d = [](std::uint64_t v) { return static_cast<double>(v); };
    add_bar("succeeded", "#43a047", [&](stats const& s) { return d(s.succeeded); });
    add_bar("failed", "#e53935", [&](stats const& s) { return d(s.failed); });
    add_bar("timed out", "#fb8c00", [&](stats const& s) { return d(s.timed_out); });
    add_bar("retry refused", "#8e24aa", [&](stats const& s) { return d(s.budget_exhausted); });
    add_bar("shed by breaker", "#90a4ae", [&](stats const& s) { return d(s.shed); });
    add_bar("rate limited", "#fdd835", [&](stats const& s) { return d(s.rate_limited); });
    add_bar("bulkhead full", "#6d4c41", [&](stats const& s) { return d(s.bulkhead_full); });
    c.lines.push_back(chart_series{"attempts sent downstream", "#1e88e5",
                                   column([&](stats const& s) { return d(s.attempts); })});
    c.lines.push_back(chart_series{"downstream capacity", "#212121",
                                   column([](stats const& s) { return s.capacity; })});
    if (t.peak_probe_rate > 0) {
        c.lines.push_back(chart_series{"half-open probes", "#d81b60",
                                       column([&](stats const& s) { return d(s.probes); })});
    }
    // Fit the calls and the attempts; a capacity far above them is clipped.
    double top = 0;
    for (auto const& s : r.series) {
        top = std::max({top, static_cast<double>(s.completed()), static_cast<double>(s.attempts)});
    }
    c.y_max = top * 1.25;
    double const end =
        static_cast<double>(r.series.size()) * static_cast<double>(r.interval.count()) / 1e9;
    // The first breaker's state over time.
    if (!r.transitions.empty()) {
        chart_band band{"breaker 0", {}};
        double from = 0;
        circuit_state state = circuit_state::closed;
        auto const colour = [](circuit_state s) {
            switch (s) {
            case circuit_state::open:
            case circuit_state::forced_open: return std::string{"#e53935"};
            case circuit_state::half_open: return std::string{"#fdd835"};
            default: return std::string{"#43a047"};
            }
        };
        auto const label = [](circuit_state s) {
            switch (s) {
            case circuit_state::open:
            case circuit_state::forced_open: return std::string{"breaker open"};
            case circuit_state::half_open: return std::string{"half-open"};
            default: return std::string{"closed"};
            }
        };
        for (auto const& e : r.transitions) {
            if (e.owner != 0) {
                continue;
            }
            double const at = static_cast<double>(e.at.count()) / 1e9;
            band.spans.push_back(chart_span{from, at, colour(state), label(state)});
            from = at;
            state = e.to;
        }
        band.spans.push_back(chart_span{from, end, colour(state), label(state)});
        c.bands.push_back(std::move(band));
    }
    if (!r.rotation.empty()) {
        chart_band band{"in rotation", {}};
        int in = r.instances;
        double from = 0;
        auto const span = [&](double to) {
            bool const all = in == r.instances;
            band.spans.push_back(chart_span{from, to,
                                            all      ? "#43a047"
                                            : in > 0 ? "#fb8c00"
                                                     : "#e53935",
                                            all      ? "all instances"
                                            : in > 0 ? "some removed"
                                                     : "none in rotation"});
        };
        for (auto const& e : r.rotation) {
            double const at = static_cast<double>(e.at.count()) / 1e9;
            span(at);
            from = at;
            in += e.in_rotation ? 1 : -1;
        }
        span(end);
        c.bands.push_back(std::move(band));
    }
    c.markers.push_back(
        chart_marker{static_cast<double>(r.outage_start.count()) / 1e9, "outage begins"});
    if (r.outage_end < r.duration) {
        c.markers.push_back(
            chart_marker{static_cast<double>(r.outage_end.count()) / 1e9, "outage ends"});
    }
    return c;
}

} // namespace sim

KEEL_END_NAMESPACE
