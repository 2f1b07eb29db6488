// SPDX-License-Identifier: MIT
// Golden expositions for the observe tests: a page is compared with
// tests/unit/observe/golden/<name>.prom (Prometheus 0.0.4) or <name>.om
// (OpenMetrics 1.0). With KEEL_UPDATE_GOLDEN=1 in the environment the files are
// rewritten instead. With KEEL_EXPOSITION_DIR set, every page a test renders is
// also written there, for the promtool check (tests/unit/observe/CMakeLists.txt).
#pragma once

#include <keel/observe/exposition.hpp>

#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>

namespace keel_test {

inline std::filesystem::path golden_directory() {
    return std::filesystem::path{__FILE__}.parent_path() / "golden";
}

inline std::string extension(keel::observe::exposition_format format) {
    return format == keel::observe::exposition_format::openmetrics ? ".om" : ".prom";
}

/// Writes `page` to $KEEL_EXPOSITION_DIR/<name><ext> when that variable is set.
inline void keep_exposition(std::string const& name, keel::observe::exposition_format format,
                            std::string const& page) {
    if (char const* dir = std::getenv("KEEL_EXPOSITION_DIR")) {
        std::filesystem::create_directories(dir);
        std::ofstream{std::filesystem::path{dir} / (name + extension(format)), std::ios::binary}
            << page;
    }
}

/// Checks `page` against the golden file of `name` in `format` (or rewrites it).
inline void check_golden(std::string const& name, keel::observe::exposition_format format,
                         std::string const& page) {
    keep_exposition(name, format, page);
    auto const path = golden_directory() / (name + extension(format));
    if (char const* update = std::getenv("KEEL_UPDATE_GOLDEN"); update && *update == '1') {
        std::ofstream{path, std::ios::binary} << page;
        return;
    }
    std::ifstream in{path, std::ios::binary};
    INFO("golden file " << path.string());
    REQUIRE(in.good());
    std::string const expected{std::istreambuf_iterator<char>{in}, {}};
    CHECK(page == expected);
}

} // namespace keel_test
