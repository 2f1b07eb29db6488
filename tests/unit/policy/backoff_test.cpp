// SPDX-License-Identifier: MIT
#include <keel/policy/backoff.hpp>

#include <keel/core/random.hpp>
#include <keel/testing/scripted_random.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <stdexcept>
#include <type_traits>
#include <vector>

using namespace std::chrono_literals;
using std::chrono::nanoseconds;

namespace {

std::vector<nanoseconds> delays(keel::backoff const& b, keel::jitter const& j, int n,
                                keel::xoshiro256ss random = keel::xoshiro256ss{1}) {
    keel::backoff_sequence<keel::xoshiro256ss> sequence{b, j, random};
    std::vector<nanoseconds> out;
    for (int i = 0; i < n; ++i) {
        out.push_back(sequence.next());
    }
    return out;
}

// Mean of `n` draws of retry `retry`'s delay, in nanoseconds.
double mean_delay(keel::backoff const& b, keel::jitter const& j, int retry, int n,
                  nanoseconds* low = nullptr, nanoseconds* high = nullptr) {
    keel::xoshiro256ss random{42};
    double sum = 0;
    nanoseconds lo = nanoseconds::max();
    nanoseconds hi = nanoseconds::min();
    for (int i = 0; i < n; ++i) {
        keel::backoff_sequence<keel::xoshiro256ss> sequence{b, j, random};
        nanoseconds d{};
        for (int k = 0; k < retry; ++k) {
            d = sequence.next();
        }
        sum += static_cast<double>(d.count());
        lo = std::min(lo, d);
        hi = std::max(hi, d);
    }
    if (low) {
        *low = lo;
    }
    if (high) {
        *high = hi;
    }
    return sum / n;
}

} // namespace

TEST_CASE("backoff_sequence: constant waits the same delay every time", "[backoff]") {
    CHECK(delays(keel::constant{250ms}, keel::jitter::none, 4) ==
          std::vector<nanoseconds>{250ms, 250ms, 250ms, 250ms});
}

TEST_CASE("backoff_sequence: linear grows by its step up to the cap", "[backoff]") {
    CHECK(delays(keel::linear{100ms, 50ms, 220ms}, keel::jitter::none, 5) ==
          std::vector<nanoseconds>{100ms, 150ms, 200ms, 220ms, 220ms});
}

TEST_CASE("backoff_sequence: exponential multiplies from base up to the cap", "[backoff]") {
    CHECK(delays(keel::exponential{100ms, 2.0, 1s}, keel::jitter::none, 6) ==
          std::vector<nanoseconds>{100ms, 200ms, 400ms, 800ms, 1s, 1s});
    CHECK(delays(keel::exponential{100ms, 1.5, 1s}, keel::jitter::none, 3) ==
          std::vector<nanoseconds>{100ms, 150ms, 225ms});
}

TEST_CASE("backoff_sequence: huge exponents saturate at the cap", "[backoff]") {
    auto const d = delays(keel::exponential{1s, 10.0, 1h}, keel::jitter::none, 400);
    CHECK(d.back() == nanoseconds{1h});
}

TEST_CASE("backoff_sequence: scripted draws give exact jittered delays", "[backoff]") {
    auto random = keel::scripted_random::from_units({0.25, 0.5});
    keel::backoff const b = keel::exponential{100ms, 2.0, 10s};
    SECTION("full: U * c") {
        keel::backoff_sequence seq{b, keel::jitter::full, random};
        CHECK(seq.next() == 25ms);
        CHECK(seq.next() == 100ms);
    }
    SECTION("equal: c/2 + U * c/2") {
        keel::backoff_sequence seq{b, keel::jitter::equal, random};
        CHECK(seq.next() == 62500us);
        CHECK(seq.next() == 150ms);
    }
    SECTION("proportional 20%: c * (0.8 + 0.4U)") {
        keel::backoff_sequence seq{b, keel::jitter::proportional(0.2), random};
        CHECK(seq.next() == 90ms);
        CHECK(seq.next() == 200ms);
    }
    SECTION("decorrelated: base + U * (3 * previous - base)") {
        keel::backoff_sequence seq{b, keel::jitter::decorrelated, random};
        CHECK(seq.next() == 150ms); // 100 + 0.25 * 200
        CHECK(seq.next() == 275ms); // 100 + 0.5 * (450 - 100)
    }
    SECTION("additive 1 s: min(raw + U * 1 s, cap), the article's formula") {
        keel::backoff_sequence seq{b, keel::jitter::additive(1s), random};
        CHECK(seq.next() == 350ms);
        CHECK(seq.next() == 700ms);
    }
}

TEST_CASE("backoff_sequence: additive jitter is capped after adding", "[backoff]") {
    auto random = keel::scripted_random::from_units({0.5});
    keel::backoff const b = keel::exponential{1s, 2.0, 3s};
    keel::backoff_sequence seq{b, keel::jitter::additive(1s), random};
    CHECK(seq.next() == 1500ms);
    CHECK(seq.next() == 2500ms);
    CHECK(seq.next() == 3s);
}

TEST_CASE("backoff_sequence: full jitter stays in 0 <= d < c with mean c/2", "[backoff]") {
    nanoseconds lo{};
    nanoseconds hi{};
    double const mean =
        mean_delay(keel::exponential{100ms, 2.0, 10s}, keel::jitter::full, 3, 20000, &lo, &hi);
    CHECK(lo >= 0ms);
    CHECK(hi < 400ms);
    CHECK(mean == Approx(200e6).epsilon(0.02));
}

TEST_CASE("backoff_sequence: equal jitter stays in c/2 <= d < c with mean 3c/4", "[backoff]") {
    nanoseconds lo{};
    nanoseconds hi{};
    double const mean = mean_delay(keel::constant{1s}, keel::jitter::equal, 1, 20000, &lo, &hi);
    CHECK(lo >= 500ms);
    CHECK(hi < 1s);
    CHECK(mean == Approx(750e6).epsilon(0.01));
}

TEST_CASE("backoff_sequence: proportional jitter stays within +/- x with mean c", "[backoff]") {
    nanoseconds lo{};
    nanoseconds hi{};
    double const mean =
        mean_delay(keel::linear{1s, 1s, 10s}, keel::jitter::proportional(0.25), 2, 20000, &lo, &hi);
    CHECK(lo >= 1500ms);
    CHECK(hi < 2500ms);
    CHECK(mean == Approx(2e9).epsilon(0.01));
}

TEST_CASE("backoff_sequence: decorrelated jitter stays in base <= d < min(cap, 3 * previous)",
          "[backoff]") {
    keel::xoshiro256ss random{7};
    keel::backoff const b = keel::exponential{10ms, 2.0, 1s};
    for (int call = 0; call < 200; ++call) {
        keel::backoff_sequence seq{b, keel::jitter::decorrelated, random};
        nanoseconds previous = 10ms;
        for (int i = 0; i < 10; ++i) {
            auto const d = seq.next();
            CHECK(d >= 10ms);
            CHECK(d <= std::min<nanoseconds>(1s, 3 * previous));
            previous = d;
        }
    }
    // First retry: U(base, 3 base) has mean 2 base.
    CHECK(mean_delay(b, keel::jitter::decorrelated, 1, 20000) == Approx(20e6).epsilon(0.02));
}

TEST_CASE("backoff_sequence: additive jitter has mean raw + a/2", "[backoff]") {
    nanoseconds lo{};
    nanoseconds hi{};
    double const mean = mean_delay(keel::exponential{100ms, 2.0, 1h}, keel::jitter::additive(1s), 2,
                                   20000, &lo, &hi);
    CHECK(lo >= 200ms);
    CHECK(hi < 1200ms);
    CHECK(mean == Approx(700e6).epsilon(0.02));
}

TEST_CASE("validate_backoff: rejects out-of-range options naming the field", "[backoff]") {
    auto const check = [](keel::backoff const& b, keel::jitter const& j, std::string const& text) {
        try {
            keel::detail::validate_backoff("keel::retry", b, j);
            FAIL("no exception");
        } catch (std::invalid_argument const& e) {
            CHECK_THAT(e.what(), Catch::Equals(text));
        }
    };
    check(keel::exponential{100ms, 0.5, 1s}, keel::jitter::none,
          "keel::retry: backoff.multiplier must be finite and >= 1, got 0.5");
    check(keel::exponential{2s, 2.0, 1s}, keel::jitter::none,
          "keel::retry: backoff.cap must be >= backoff.base (2s), got 1s");
    check(keel::constant{-1ms}, keel::jitter::none,
          "keel::retry: backoff.delay must be >= 0, got -1ms");
    check(keel::linear{1s, 1s, 500ms}, keel::jitter::none,
          "keel::retry: backoff.cap must be >= backoff.base (1s), got 500ms");
    check(keel::linear{1s, -1s, 2s}, keel::jitter::none,
          "keel::retry: backoff.step must be >= 0, got -1s");
    check(keel::constant{1s}, keel::jitter::proportional(1.5),
          "keel::retry: jitter.fraction must be in [0, 1], got 1.5");
    check(keel::constant{1s}, keel::jitter::additive(-1s),
          "keel::retry: jitter.amount must be >= 0, got -1s");
    CHECK_NOTHROW(
        keel::detail::validate_backoff("keel::retry", keel::exponential{}, keel::jitter::full));
}

TEST_CASE("backoff_sequence: holds a copy of its backoff", "[backoff]") {
    keel::xoshiro256ss random{1};
    keel::backoff b = keel::constant{250ms};
    keel::backoff_sequence seq{b, keel::jitter::none, random};
    b = keel::constant{1h}; // a sequence pointing at `b` would now wait an hour
    CHECK(seq.next() == 250ms);
    // So a sequence may be built from a temporary (a dangling pointer before: ASan
    // reported stack-use-after-scope, and in a coroutine frame the retry hung).
    keel::backoff_sequence from_temporary{keel::backoff{keel::exponential{100ms, 2.0, 1s}},
                                          keel::jitter::none, random};
    CHECK(from_temporary.next() == 100ms);
    CHECK(from_temporary.next() == 200ms);
    STATIC_REQUIRE(std::is_constructible_v<keel::backoff_sequence<keel::xoshiro256ss>,
                                           keel::backoff&&, keel::jitter, keel::xoshiro256ss&>);
}

TEST_CASE("backoff_sequence: proportional jitter never exceeds the cap", "[backoff]") {
    auto random = keel::scripted_random::from_units({0.75, 0.75, 0.75});
    keel::backoff const b = keel::exponential{500ms, 2.0, 1s};
    keel::backoff_sequence seq{b, keel::jitter::proportional(0.2), random};
    CHECK(seq.next() == 550ms); // 500 ms * 1.1: below the cap, unchanged
    CHECK(seq.next() == 1s);    // 1 s * 1.1 = 1.1 s, clamped to the 1 s cap (as Polly's MaxDelay)
    keel::backoff const l = keel::linear{1s, 1s, 1s};
    keel::backoff_sequence linear_seq{l, keel::jitter::proportional(0.2), random};
    CHECK(linear_seq.next() == 1s);
}

TEST_CASE("backoff_sequence: proportional jitter spreads a constant on both sides", "[backoff]") {
    auto random = keel::scripted_random::from_units({0.75, 0.25});
    keel::backoff const b = keel::constant{1s};
    keel::backoff_sequence seq{b, keel::jitter::proportional(0.2), random};
    CHECK(seq.next() == 1100ms); // a constant has no cap to clamp to
    CHECK(seq.next() == 900ms);
}

TEST_CASE("backoff_sequence: proportional jitter at the cap stays between c(1 - x) and cap",
          "[backoff]") {
    nanoseconds lo{};
    nanoseconds hi{};
    (void)mean_delay(keel::exponential{1s, 2.0, 1s}, keel::jitter::proportional(0.2), 3, 20000, &lo,
                     &hi);
    CHECK(lo >= 800ms);
    CHECK(hi <= 1s);
}
