// SPDX-License-Identifier: MIT
#include <keel/limiter/fixed_window.hpp>
#include <keel/limiter/gcra.hpp>
#include <keel/limiter/headers.hpp>
#include <keel/testing/manual_clock.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>

using namespace std::chrono_literals;

TEST_CASE("seconds_rounded_up never rounds a wait down", "[headers]") {
    CHECK(keel::seconds_rounded_up(0ns) == 0);
    CHECK(keel::seconds_rounded_up(-5s) == 0);
    CHECK(keel::seconds_rounded_up(1ns) == 1);
    CHECK(keel::seconds_rounded_up(1s) == 1);
    CHECK(keel::seconds_rounded_up(1s + 1ns) == 2);
    CHECK(keel::seconds_rounded_up(59'999ms) == 60);
}

TEST_CASE("retry_after_value gives delta-seconds rounded up", "[headers]") {
    keel::decision d;
    d.retry_after = 1500ms;
    CHECK(keel::retry_after_value(d) == "2");
    d.retry_after = 0ns;
    CHECK(keel::retry_after_value(d) == "0");
    static_assert(std::is_trivially_copyable_v<keel::header_value>);
}

TEST_CASE("ratelimit_value and ratelimit_policy_value build the draft's items", "[headers]") {
    keel::manual_clock clock;
    keel::basic_fixed_window<keel::manual_clock> l{{.limit = 100, .window = 60s}, clock};
    clock.advance(30s);
    for (int i = 0; i < 50; ++i) {
        (void)l.try_acquire();
    }
    auto const d = l.try_acquire(0);
    CHECK(keel::ratelimit_policy_value("default", l) == "\"default\";q=100;w=60");
    CHECK(keel::ratelimit_value("default", d) == "\"default\";r=50;t=30");
    CHECK(keel::ratelimit_policy_value("sub", 10, 1ms) == "\"sub\";q=10;w=1");
}

TEST_CASE("ratelimit_policy_value describes a GCRA by its burst and refill time", "[headers]") {
    keel::manual_clock clock;
    keel::basic_gcra<keel::manual_clock> g{{.rate = 10, .period = 1s, .burst = 20}, clock};
    CHECK(keel::ratelimit_policy_value("api", g) == "\"api\";q=20;w=2");
}

TEST_CASE("policy names are escaped, filtered and bounded", "[headers]") {
    CHECK(keel::ratelimit_policy_value("a\"b\\c\n\x7f", 1, 1s).view() == R"("a\"b\\c";q=1;w=1)");
    auto const v = keel::ratelimit_policy_value(std::string(500, 'x'), 1, 1s);
    CHECK(v.size() == 64 + 2 + 8);
    keel::decision d;
    d.remaining = -3;
    CHECK(keel::ratelimit_value("", d) == "\"\";r=0;t=0");
}

TEST_CASE("header values never truncate: the longest escaped name and the widest integers fit",
          "[headers]") {
    auto repeat = [](std::string_view piece, int n) {
        std::string out;
        for (int i = 0; i < n; ++i) {
            out += piece;
        }
        return out;
    };
    // 64 characters that all need escaping (more are cut to 64), then int64 extremes.
    auto const quotes = "\"" + repeat("\\\"", 64) + "\"";
    auto const policy = keel::ratelimit_policy_value(std::string(100, '"'),
                                                     std::numeric_limits<std::int64_t>::min(),
                                                     std::chrono::nanoseconds::max());
    CHECK(policy.view() == quotes + ";q=-9223372036854775808;w=9223372037");
    keel::decision d;
    d.remaining = std::numeric_limits<std::int64_t>::max();
    d.reset = std::chrono::seconds{9'000'000'000};
    d.retry_after = std::chrono::nanoseconds::max();
    auto const backslashes = "\"" + repeat("\\\\", 64) + "\"";
    CHECK(keel::ratelimit_value(std::string(64, '\\'), d).view() ==
          backslashes + ";r=9223372036854775807;t=9000000000");
    CHECK(keel::retry_after_value(d) == "9223372037");
}
