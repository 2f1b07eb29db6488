// SPDX-License-Identifier: MIT
#include <keel/core/error.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <string>
#include <system_error>

using namespace std::chrono_literals;

TEST_CASE("keel's error category is named keel and describes every code", "[error]") {
    CHECK(std::string{keel::error_category().name()} == "keel");
    for (int code = 1; code <= 10; ++code) {
        CHECK_FALSE(keel::error_category().message(code).empty());
        CHECK(keel::error_category().message(code).find("unknown") == std::string::npos);
    }
    CHECK(keel::error_category().message(999) == "unknown keel error 999");
}

TEST_CASE("keel::errc converts implicitly to std::error_code in keel's category", "[error]") {
    std::error_code const code = keel::errc::circuit_open;
    CHECK(code.category() == keel::error_category());
    CHECK(code.value() == 1);
    CHECK(code.message() == "circuit breaker is open");
    CHECK(code == keel::errc::circuit_open);
    CHECK(code != keel::errc::rate_limited);
    CHECK(static_cast<bool>(code));
}

TEST_CASE("keel::error carries code, message detail and retry-after hint", "[error]") {
    keel::error const plain{keel::errc::timeout};
    CHECK(std::string{plain.what()} == "deadline expired");
    CHECK_FALSE(plain.retry_after().has_value());

    keel::rate_limited const limited{"users api", 1500ms};
    CHECK(std::string{limited.what()} == "rate limit exceeded: users api");
    CHECK(limited.code() == keel::errc::rate_limited);
    REQUIRE(limited.retry_after().has_value());
    CHECK(*limited.retry_after() == 1500ms);
}

template <class Expected>
void check_thrown_type(keel::errc code) {
    try {
        keel::throw_error(code, "detail", 2s);
    } catch (Expected const& e) {
        CHECK(e.code() == code);
        CHECK(e.retry_after() == std::chrono::nanoseconds{2s});
        return;
    } catch (...) {
    }
    FAIL("throw_error threw the wrong type for code " << static_cast<int>(code));
}

TEST_CASE("throw_error throws the exception type matching each code", "[error]") {
    check_thrown_type<keel::circuit_open>(keel::errc::circuit_open);
    check_thrown_type<keel::rate_limited>(keel::errc::rate_limited);
    check_thrown_type<keel::timeout_expired>(keel::errc::timeout);
    check_thrown_type<keel::bulkhead_full>(keel::errc::bulkhead_full);
    check_thrown_type<keel::retries_exhausted>(keel::errc::retries_exhausted);
    check_thrown_type<keel::retry_budget_exhausted>(keel::errc::retry_budget_exhausted);
    check_thrown_type<keel::cancelled>(keel::errc::cancelled);
    check_thrown_type<keel::exceeds_capacity>(keel::errc::exceeds_capacity);
    check_thrown_type<keel::shutting_down>(keel::errc::shutting_down);
    check_thrown_type<keel::unavailable>(keel::errc::unavailable);
}

TEST_CASE("throw_error throws keel::error for codes of other categories", "[error]") {
    auto const code = std::make_error_code(std::errc::connection_refused);
    try {
        keel::throw_error(code);
        FAIL("no exception");
    } catch (keel::error const& e) {
        CHECK(e.code() == code);
    }
}

TEST_CASE("every keel exception is a std::runtime_error", "[error]") {
    CHECK_THROWS_AS(keel::throw_error(keel::errc::bulkhead_full), std::runtime_error);
    CHECK_THROWS_AS(keel::throw_error(keel::errc::bulkhead_full), keel::error);
}
