// SPDX-License-Identifier: MIT
// keel-sim: runs a scenario file's variants through keel::sim and prints their
// summaries, side by side when there are several; optionally the per-interval
// series and an SVG chart per variant.
//
//     keel-sim tools/keel-sim/scenarios/retry_storm.json --svg storm.svg
#include "scenario_file.hpp"

#include <keel/sim/report.hpp>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

namespace {

void usage() {
    std::fputs(
        "usage: keel-sim SCENARIO.json [--variant NAME] [--seed N] [--series] [--svg FILE.svg]\n"
        "  Runs every variant of the scenario (or only NAME) and prints the summaries.\n"
        "  --series   also prints each variant's per-interval table\n"
        "  --svg F    writes a chart per variant: F itself for one variant, else\n"
        "             F with -1, -2, ... before .svg\n"
        "  --timing   prints simulated calls per second of CPU to stderr\n",
        stderr);
}

std::string svg_path(std::string const& base, std::size_t index, std::size_t count) {
    if (count == 1) {
        return base;
    }
    std::string stem = base;
    std::string ext;
    if (auto const dot = base.rfind(".svg"); dot != std::string::npos && dot + 4 == base.size()) {
        stem = base.substr(0, dot);
        ext = ".svg";
    }
    return stem + "-" + std::to_string(index + 1) + ext;
}

} // namespace

int main(int argc, char** argv) {
    std::string file;
    std::string variant;
    std::string svg;
    bool series = false;
    bool timing = false;
    std::optional<std::uint64_t> seed;
    std::string duration;
    for (int i = 1; i < argc; ++i) {
        std::string const arg = argv[i];
        auto const value = [&]() -> std::string {
            if (i + 1 >= argc) {
                usage();
                std::exit(2);
            }
            return argv[++i];
        };
        if (arg == "--variant") {
            variant = value();
        } else if (arg == "--svg") {
            svg = value();
        } else if (arg == "--seed") {
            seed = std::stoull(value());
        } else if (arg == "--duration") {
            duration = value();
        } else if (arg == "--series") {
            series = true;
        } else if (arg == "--timing") {
            timing = true;
        } else if (arg == "-h" || arg == "--help") {
            usage();
            return 0;
        } else if (file.empty() && !arg.starts_with("--")) {
            file = arg;
        } else {
            usage();
            return 2;
        }
    }
    if (file.empty()) {
        usage();
        return 2;
    }
    try {
        keel_sim::scenario_file const loaded = keel_sim::load_scenario(file);
        std::vector<keel::sim::result> results;
        for (std::size_t i = 0; i < loaded.variants.size(); ++i) {
            if (!variant.empty() && loaded.variant_names[i] != variant) {
                continue;
            }
            keel::sim::scenario s = loaded.variants[i];
            if (seed) {
                s.seed = *seed;
            }
            if (!duration.empty()) {
                s.duration = keel_sim::detail::duration_of(duration, "--duration");
                keel::sim::validate(s);
            }
            auto const started = std::clock();
            results.push_back(keel::sim::run(s));
            double const cpu = static_cast<double>(std::clock() - started) / CLOCKS_PER_SEC;
            if (timing) {
                auto const& t = results.back().totals;
                std::fprintf(stderr,
                             "%s: %llu calls, %llu attempts in %.3f s of CPU (%.0f calls/s)\n",
                             s.name.c_str(), static_cast<unsigned long long>(t.requests),
                             static_cast<unsigned long long>(t.attempts), cpu,
                             cpu > 0 ? static_cast<double>(t.requests) / cpu : 0.0);
            }
        }
        if (results.empty()) {
            std::fprintf(stderr, "keel-sim: no variant named \"%s\"\n", variant.c_str());
            return 2;
        }
        for (auto const& r : results) {
            std::fputs(keel::sim::format_summary(r).c_str(), stdout);
            std::fputs("\n", stdout);
            if (series) {
                std::fputs(keel::sim::format_series(r).c_str(), stdout);
                std::fputs("\n", stdout);
            }
        }
        if (results.size() > 1) {
            std::fputs(("== " + loaded.name + ": side by side ==\n").c_str(), stdout);
            std::fputs(keel::sim::format_comparison(results).c_str(), stdout);
        }
        if (!svg.empty()) {
            for (std::size_t i = 0; i < results.size(); ++i) {
                std::string const path = svg_path(svg, i, results.size());
                std::ofstream out{path, std::ios::binary};
                out << keel::sim::render_svg(keel::sim::to_chart(results[i]));
                if (!out) {
                    std::fprintf(stderr, "keel-sim: cannot write %s\n", path.c_str());
                    return 1;
                }
            }
        }
    } catch (std::exception const& e) {
        std::fprintf(stderr, "%s\n", e.what());
        return 1;
    }
    return 0;
}
