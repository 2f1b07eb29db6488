// SPDX-License-Identifier: MIT
#include <keel/core/outcome.hpp>

#include <catch2/catch.hpp>

#include <memory>
#include <stdexcept>
#include <string>

using namespace std::chrono_literals;

TEST_CASE("outcome holds a value and gives it back without throwing", "[outcome]") {
    keel::outcome<std::string> const result = std::string{"hello"};
    REQUIRE(result.has_value());
    CHECK(static_cast<bool>(result));
    CHECK(*result == "hello");
    CHECK(result->size() == 5);
    CHECK(result.value() == "hello");
    CHECK_FALSE(result.error());
    CHECK(result.exception() == nullptr);
    CHECK_FALSE(result.retry_after());
}

TEST_CASE("outcome holds move-only values", "[outcome]") {
    keel::outcome<std::unique_ptr<int>> result{std::make_unique<int>(7)};
    std::unique_ptr<int> taken = std::move(result).value();
    CHECK(*taken == 7);
}

TEST_CASE("outcome holding a keel rejection raises the matching exception", "[outcome]") {
    keel::outcome<int> const result = keel::failure::from(keel::errc::rate_limited, 3s);
    REQUIRE_FALSE(result.has_value());
    CHECK(result.error() == keel::errc::rate_limited);
    CHECK(result.failure().is(keel::errc::rate_limited));
    CHECK(result.retry_after() == std::chrono::nanoseconds{3s});
    CHECK(result.value_or(-1) == -1);
    try {
        (void)result.value();
        FAIL("value() did not throw");
    } catch (keel::rate_limited const& e) {
        CHECK(e.retry_after() == std::chrono::nanoseconds{3s});
    }
}

TEST_CASE("outcome holding the call's own exception rethrows it unchanged", "[outcome]") {
    auto const thrown = std::make_exception_ptr(std::logic_error{"bad request"});
    keel::outcome<int> const result = keel::failure::from(thrown);
    CHECK_FALSE(result.error()); // not a keel error: no code
    CHECK(result.exception() == thrown);
    CHECK_THROWS_MATCHES(result.value(), std::logic_error, Catch::Message("bad request"));
}

TEST_CASE("failure::from keeps the code and hint of a thrown keel::error", "[outcome]") {
    auto const thrown = std::make_exception_ptr(keel::circuit_open{"users", 10s});
    auto const f = keel::failure::from(thrown);
    CHECK(f.is(keel::errc::circuit_open));
    CHECK(f.retry_after == std::chrono::nanoseconds{10s});
    CHECK(f.exception == thrown);
    CHECK_THROWS_AS(f.raise(), keel::circuit_open);
}

TEST_CASE("failure::from_current_exception captures inside a catch block", "[outcome]") {
    keel::failure f;
    try {
        throw keel::timeout_expired{};
    } catch (...) {
        f = keel::failure::from_current_exception();
    }
    CHECK(f.is(keel::errc::timeout));
}

TEST_CASE("outcome<void> reports success or failure", "[outcome]") {
    keel::outcome<void> const ok;
    CHECK(ok.has_value());
    CHECK_NOTHROW(ok.value());
    CHECK_FALSE(ok.error());

    keel::outcome<void> const rejected = keel::failure::from(keel::errc::bulkhead_full);
    CHECK_FALSE(rejected.has_value());
    CHECK(rejected.error() == keel::errc::bulkhead_full);
    CHECK_THROWS_AS(rejected.value(), keel::bulkhead_full);
}

TEST_CASE("outcome with a user error code raises keel::error with that code", "[outcome]") {
    keel::outcome<int> const result =
        keel::failure{std::make_error_code(std::errc::connection_reset), nullptr, std::nullopt};
    try {
        (void)result.value();
        FAIL("value() did not throw");
    } catch (keel::error const& e) {
        CHECK(e.code() == std::errc::connection_reset);
    }
}
