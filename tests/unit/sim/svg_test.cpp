// SPDX-License-Identifier: MIT
#include <keel/sim/svg.hpp>

#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>

namespace {

keel::sim::chart sample_chart() {
    keel::sim::chart c;
    c.title = "calls <by> outcome & state";
    c.subtitle = "a \"test\" chart";
    c.bars = {{"ok", "#43a047", {10, 12, 0, 3, 9}}, {"failed", "#e53935", {0, 2, 8, 7, 1}}};
    c.lines = {{"capacity", "#212121", {15, 15, 5, 5, 15}}};
    c.bands = {
        {"breaker",
         {{0, 2, "#43a047", "closed"}, {2, 4, "#e53935", "open"}, {4, 5, "#43a047", "closed"}}}};
    c.markers = {{2, "outage"}};
    return c;
}

} // namespace

TEST_CASE("sim::render_svg: draws bars, lines, bands and markers, escaping text", "[sim]") {
    std::string const svg = keel::sim::render_svg(sample_chart());
    CHECK(svg.rfind("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg ", 0) == 0);
    CHECK(svg.find("calls &lt;by&gt; outcome &amp; state") != std::string::npos);
    CHECK(svg.find("a &quot;test&quot; chart") != std::string::npos);
    CHECK(svg.find("<polyline") != std::string::npos);
    CHECK(svg.find("stroke-dasharray") != std::string::npos);
    CHECK(svg.find(">breaker</text>") != std::string::npos);
    CHECK(svg.find(">open</text>") != std::string::npos); // a legend entry per band colour
    CHECK(svg.substr(svg.size() - 7) == "</svg>\n");
    CHECK(keel::sim::render_svg(sample_chart()) == svg); // deterministic
}

TEST_CASE("sim::render_svg: an empty chart still draws its frame and title", "[sim]") {
    keel::sim::chart c;
    c.title = "empty";
    std::string const svg = keel::sim::render_svg(c);
    CHECK(svg.find(">empty</text>") != std::string::npos);
    CHECK(svg.find("nan") == std::string::npos);
    CHECK(svg.find("inf") == std::string::npos);
}

TEST_CASE("sim::render_svg: rsvg-convert renders the chart to a PNG", "[sim]") {
    if (std::system("command -v rsvg-convert > /dev/null 2>&1") != 0) {
        FAIL("rsvg-convert is missing: install librsvg2-bin (scripts/install-deps.sh)");
    }
    std::string const svg_path = "keel_sim_svg_test.svg";
    std::string const png_path = "keel_sim_svg_test.png";
    {
        std::ofstream out{svg_path, std::ios::binary};
        out << keel::sim::render_svg(sample_chart());
    }
    std::string const command = "rsvg-convert -o " + png_path + " " + svg_path;
    REQUIRE(std::system(command.c_str()) == 0);
    std::ifstream png{png_path, std::ios::binary};
    std::string const head(std::istreambuf_iterator<char>{png}, {});
    REQUIRE(head.size() > 8);
    CHECK(head.substr(1, 3) == "PNG");
    std::remove(svg_path.c_str());
    std::remove(png_path.c_str());
}

TEST_CASE("sim::render_svg: bars above y_max are clipped at the top of the plot", "[sim]") {
    keel::sim::chart c;
    c.title = "clipped";
    c.y_max = 10;
    c.bars = {{"low", "#000001", {5, 8}}, {"high", "#000002", {30, 1}}};
    std::string const svg = keel::sim::render_svg(c);
    // The plot's frame: the first rect with a grey stroke and no fill.
    auto const frame = svg.find("fill=\"none\" stroke=\"#888888\"");
    REQUIRE(frame != std::string::npos);
    auto const frame_rect = svg.rfind("<rect ", frame);
    auto const attribute = [&](std::size_t at, std::string const& name) {
        auto const from = svg.find(" " + name + "=\"", at) + name.size() + 3;
        return std::stod(svg.substr(from, svg.find('"', from) - from));
    };
    double const plot_top = attribute(frame_rect, "y");
    bool spike_at_top = false;
    for (auto at = svg.find("<rect "); at != std::string::npos; at = svg.find("<rect ", at + 1)) {
        auto const end = svg.find("/>", at);
        auto const fill = svg.find("fill=\"#00000", at);
        if (fill == std::string::npos || fill > end) {
            continue;
        }
        CHECK(attribute(at, "y") >= plot_top); // bars and legend swatches alike
        spike_at_top = spike_at_top || (svg.compare(fill, 14, "fill=\"#000002\"") == 0 &&
                                        attribute(at, "y") == plot_top);
    }
    CHECK(spike_at_top); // the first interval's "high" bar, cut at the top edge
}
