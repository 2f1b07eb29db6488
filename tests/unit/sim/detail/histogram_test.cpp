// SPDX-License-Identifier: MIT
#include <keel/sim/detail/histogram.hpp>

#include <catch2/catch.hpp>

#include <cstdint>

TEST_CASE("sim::detail::histogram: quantiles are exact below 1024 us and within 0.2 % above",
          "[sim]") {
    keel::sim::detail::histogram h;
    CHECK(h.quantile(0.5) == 0);
    for (std::int64_t us = 1; us <= 1000; ++us) {
        h.record(us * 1000);
    }
    CHECK(h.count() == 1000);
    CHECK(h.quantile(0.5) == 500 * 1000 + 999);
    CHECK(h.quantile(0.99) == 990 * 1000 + 999);
    CHECK(h.max() == 1000 * 1000);

    keel::sim::detail::histogram wide;
    std::int64_t const values[] = {1'234'567, 98'765'432, 5'000'000'000, 60'000'000'000};
    for (auto v : values) {
        wide.record(v);
    }
    for (int i = 0; i < 4; ++i) {
        auto const q = wide.quantile((i + 1) / 4.0);
        CHECK(q >= values[i]);
        CHECK(static_cast<double>(q) <= static_cast<double>(values[i]) * 1.002 + 1000);
    }
    CHECK(wide.quantile(1.0) == 60'000'000'000);
}

TEST_CASE("sim::detail::histogram: negative latencies count as zero", "[sim]") {
    keel::sim::detail::histogram h;
    h.record(-5);
    CHECK(h.count() == 1);
    CHECK(h.max() == 0);
    CHECK(h.quantile(1.0) == 0);
}
