// SPDX-License-Identifier: MIT
#include <keel/observe/exposition.hpp>

#include "golden.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <cmath>
#include <limits>
#include <string>

using namespace std::chrono_literals;
using keel::observe::exposition_format;
using keel::observe::exposition_writer;
using keel::observe::metric_type;
using keel::observe::negotiate;

TEST_CASE("negotiate: Prometheus' own Accept header gets OpenMetrics", "[exposition]") {
    // What Prometheus 2.42 sends with every scrape.
    CHECK(negotiate("application/openmetrics-text;version=1.0.0,application/"
                    "openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/"
                    "*;q=0.1") == exposition_format::openmetrics);
    CHECK(negotiate("application/openmetrics-text") == exposition_format::openmetrics);
    CHECK(negotiate("Application/OpenMetrics-Text; Version=1.0.0; charset=utf-8") ==
          exposition_format::openmetrics);
}

TEST_CASE("negotiate: anything else gets the Prometheus text format", "[exposition]") {
    CHECK(negotiate("") == exposition_format::prometheus);
    CHECK(negotiate("*/*") == exposition_format::prometheus);
    CHECK(negotiate("text/plain;version=0.0.4") == exposition_format::prometheus);
    CHECK(negotiate("application/json") == exposition_format::prometheus);
    // Only OpenMetrics 0.0.1 (which keel does not write) is asked for.
    CHECK(negotiate("application/openmetrics-text;version=0.0.1") == exposition_format::prometheus);
    // The text format preferred by quality.
    CHECK(negotiate("application/openmetrics-text;q=0.3,text/plain;q=0.9") ==
          exposition_format::prometheus);
    // Equal qualities: the format every scraper reads.
    CHECK(negotiate("application/openmetrics-text;q=0.5,*/*;q=0.5") ==
          exposition_format::prometheus);
    // q=0 means "not acceptable".
    CHECK(negotiate("application/openmetrics-text;q=0") == exposition_format::prometheus);
}

TEST_CASE("negotiate: malformed headers never throw and fall back to the text format",
          "[exposition]") {
    CHECK(negotiate(";;;,,,") == exposition_format::prometheus);
    CHECK(negotiate("application/openmetrics-text;q=2") == exposition_format::prometheus);
    CHECK(negotiate("application/openmetrics-text;q=0.12345") == exposition_format::prometheus);
    CHECK(negotiate("application/openmetrics-text;q=x") == exposition_format::prometheus);
    CHECK(negotiate("application/openmetrics-text;q") == exposition_format::openmetrics);
    CHECK(negotiate(std::string(10000, ',')) == exposition_format::prometheus);
    static_assert(negotiate("application/openmetrics-text") == exposition_format::openmetrics);
}

TEST_CASE("content_type: names each format's media type", "[exposition]") {
    CHECK(keel::observe::content_type(exposition_format::prometheus) ==
          "text/plain; version=0.0.4; charset=utf-8");
    CHECK(keel::observe::content_type(exposition_format::openmetrics) ==
          "application/openmetrics-text; version=1.0.0; charset=utf-8");
}

TEST_CASE("exposition_writer: writes counters with _total, and _created in OpenMetrics",
          "[exposition]") {
    auto const created = std::chrono::system_clock::time_point{1764547200500ms};
    for (auto const format : {exposition_format::prometheus, exposition_format::openmetrics}) {
        std::string page;
        exposition_writer w{page, format};
        w.family("demo_requests", metric_type::counter, "Requests served, by code.\nTwo lines \\.");
        w.sample(R"(code="200")", 41, created);
        w.sample(R"(code="503")", 1, created);
        w.family("demo_wait_seconds", metric_type::gauge, "Time waited.", "seconds");
        w.sample("", 0.25);
        w.family("demo_uncreated", metric_type::counter, "A counter without a creation time.");
        w.sample("", 7);
        w.finish();
        keel_test::check_golden("writer", format, page);
    }
}

TEST_CASE("exposition_writer::append_label escapes backslash, double quote and newline",
          "[exposition]") {
    std::string labels;
    exposition_writer::append_label(labels, "a", "plain");
    exposition_writer::append_label(labels, "b", "q\"b\\n\nend\ttab");
    exposition_writer::append_label(labels, "c", "");
    CHECK(labels == R"(a="plain",b="q\"b\\n\nend	tab",c="")");
}

TEST_CASE("exposition_writer::valid_label_name follows Prometheus' label name rule",
          "[exposition]") {
    CHECK(exposition_writer::valid_label_name("dependency"));
    CHECK(exposition_writer::valid_label_name("_x9"));
    CHECK(exposition_writer::valid_label_name("A"));
    CHECK_FALSE(exposition_writer::valid_label_name(""));
    CHECK_FALSE(exposition_writer::valid_label_name("9a"));
    CHECK_FALSE(exposition_writer::valid_label_name("__name__"));
    CHECK_FALSE(exposition_writer::valid_label_name("a-b"));
    CHECK_FALSE(exposition_writer::valid_label_name("a:b"));
}

TEST_CASE("exposition_writer::append_value writes integers plainly and others round-trip",
          "[exposition]") {
    auto const value = [](double v) {
        std::string s;
        exposition_writer::append_value(s, v);
        return s;
    };
    CHECK(value(0) == "0");
    CHECK(value(-0.0) == "0");
    CHECK(value(42) == "42");
    CHECK(value(-3) == "-3");
    CHECK(value(0.5) == "0.5");
    CHECK(value(0.1) == "0.1");
    CHECK(value(1764547200.5) == "1764547200.5");
    CHECK(value(1e300) == "1e+300");
    CHECK(value(9007199254740992.0) == "9007199254740992");
    CHECK(value(std::numeric_limits<double>::infinity()) == "+Inf");
    CHECK(value(-std::numeric_limits<double>::infinity()) == "-Inf");
    CHECK(value(std::nan("")) == "NaN");
}

TEST_CASE("exposition_writer: escapes a double quote in help text only in OpenMetrics",
          "[exposition]") {
    // 0.0.4 knows only \\ and \n in help (its parser rejects \"); OpenMetrics escapes
    // help like a label value. Not kept for promtool, which reads 0.0.4 only.
    std::string text;
    exposition_writer{text, exposition_format::prometheus}.family("x", metric_type::gauge,
                                                                  "say \"hi\"");
    CHECK(text == "# HELP x say \"hi\"\n# TYPE x gauge\n");
    std::string om;
    exposition_writer{om, exposition_format::openmetrics}.family("x", metric_type::gauge,
                                                                 "say \"hi\"");
    CHECK(om == "# HELP x say \\\"hi\\\"\n# TYPE x gauge\n");
}
