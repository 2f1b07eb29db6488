// SPDX-License-Identifier: MIT
// Fuzzes the label-value and help-text escaping of keel/observe/exposition.hpp, and
// Accept-header negotiation. Input: any bytes, used as a label value, as help text and
// as an Accept header. Checks: never crashes; an escaped label value holds no raw
// newline and reads back (as Prometheus' and OpenMetrics' parsers read a quoted label
// value: \\ \" \n are the escapes, the first unescaped quote ends it) to exactly the
// input; escaped help text holds no raw newline and, in OpenMetrics, no unescaped
// quote; negotiate() answers one of the two formats.
#include <keel/observe/exposition.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

namespace {

void require(bool ok) {
    if (!ok) {
        std::abort();
    }
}

// Reads a quoted value starting at text[0] == '"'; returns the unescaped value when
// the closing quote is the last character, else nullopt.
std::optional<std::string> read_quoted(std::string_view text) {
    if (text.empty() || text.front() != '"') {
        return std::nullopt;
    }
    std::string out;
    for (std::size_t i = 1; i < text.size(); ++i) {
        char const c = text[i];
        if (c == '"') {
            return i + 1 == text.size() ? std::optional<std::string>{out} : std::nullopt;
        }
        if (c == '\n') {
            return std::nullopt;
        }
        if (c == '\\') {
            if (++i == text.size()) {
                return std::nullopt;
            }
            char const e = text[i];
            if (e == '\\' || e == '"') {
                out += e;
            } else if (e == 'n') {
                out += '\n';
            } else {
                return std::nullopt;
            }
            continue;
        }
        out += c;
    }
    return std::nullopt;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size) {
    // NOLINTNEXTLINE(cppcoreguidelines-pro-type-reinterpret-cast): libFuzzer's bytes
    std::string_view const input{reinterpret_cast<char const*>(data), size};

    std::string labels;
    keel::observe::exposition_writer::append_label(labels, "v", input);
    require(labels.starts_with("v="));
    auto const back = read_quoted(std::string_view{labels}.substr(2));
    require(back.has_value() && *back == input);

    for (auto const format : {keel::observe::exposition_format::prometheus,
                              keel::observe::exposition_format::openmetrics}) {
        std::string page;
        keel::observe::exposition_writer w{page, format};
        w.family("fuzz", keel::observe::metric_type::gauge, input);
        w.sample(labels, 1);
        w.finish();
        // The help line is one line: "# HELP fuzz <escaped>\n", then TYPE.
        auto const help_end = page.find('\n');
        require(help_end != std::string::npos);
        std::string_view const help = std::string_view{page}.substr(7 + 5, help_end - 12);
        bool escaped = false;
        for (char const c : help) {
            if (escaped) {
                require(c == '\\' || c == 'n' ||
                        (c == '"' && format == keel::observe::exposition_format::openmetrics));
                escaped = false;
            } else if (c == '\\') {
                escaped = true;
            } else {
                require(c != '"' || format == keel::observe::exposition_format::prometheus);
            }
        }
        require(!escaped);
        require(page.find("\n# TYPE fuzz gauge\nfuzz{" + labels + "} 1\n") == help_end);
    }

    auto const chosen = keel::observe::negotiate(input);
    require(chosen == keel::observe::exposition_format::prometheus ||
            chosen == keel::observe::exposition_format::openmetrics);
    return 0;
}
