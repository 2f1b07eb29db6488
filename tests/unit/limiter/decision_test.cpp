// SPDX-License-Identifier: MIT
#include <keel/limiter/decision.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <type_traits>

using namespace std::chrono_literals;

// Small and trivially copyable, so a decision is returned and copied in registers or
// a few stores, never through an allocation.
static_assert(std::is_trivially_copyable_v<keel::decision>);
static_assert(sizeof(keel::decision) <= 48);
// Explicit: `if (limiter.try_acquire())` reads well, `bool b = decision;` does not compile.
static_assert(std::is_constructible_v<bool, keel::decision>);
static_assert(!std::is_convertible_v<keel::decision, bool>);

TEST_CASE("decision: a default decision refuses, locally, with nothing to wait for", "[decision]") {
    constexpr keel::decision d{};
    STATIC_REQUIRE_FALSE(static_cast<bool>(d));
    CHECK_FALSE(d.unsatisfiable);
    CHECK(d.source == keel::decision_source::local);
    CHECK(d.limit == 0);
    CHECK(d.remaining == 0);
    CHECK(d.retry_after == 0ns);
    CHECK(d.reset == 0ns);
}

TEST_CASE("decision: converts to its `allowed` flag", "[decision]") {
    keel::decision d;
    d.allowed = true;
    d.remaining = 4;
    CHECK(static_cast<bool>(d));
    d.allowed = false;
    d.retry_after = 250ms;
    CHECK_FALSE(static_cast<bool>(d));
    CHECK(d.retry_after == 250ms);
}

TEST_CASE("decision: sources are distinct values", "[decision]") {
    using keel::decision_source;
    CHECK(static_cast<int>(decision_source::local) == 0);
    CHECK(static_cast<int>(decision_source::remote) == 1);
    CHECK(static_cast<int>(decision_source::fallback_open) == 2);
    CHECK(static_cast<int>(decision_source::fallback_closed) == 3);
    CHECK(static_cast<int>(decision_source::fallback_local) == 4);
}
