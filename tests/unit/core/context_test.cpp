// SPDX-License-Identifier: MIT
#include <keel/core/context.hpp>
#include <keel/testing/manual_clock.hpp>

#include <catch2/catch.hpp>

#include <stop_token>

using namespace std::chrono_literals;

TEST_CASE("a default context is the first attempt with no deadline", "[context]") {
    keel::context const ctx;
    CHECK(ctx.attempt() == 1);
    CHECK_FALSE(ctx.deadline().has_value());
    CHECK_FALSE(ctx.stop_requested());
    CHECK_FALSE(ctx.stop_token().stop_possible());
}

TEST_CASE("context exposes its stop token as it fires", "[context]") {
    std::stop_source source;
    keel::context const ctx{2, std::nullopt, source.get_token()};
    CHECK(ctx.attempt() == 2);
    CHECK_FALSE(ctx.stop_requested());
    source.request_stop();
    CHECK(ctx.stop_requested());
    CHECK(ctx.stop_token().stop_requested());
}

TEST_CASE("an inner deadline never extends an outer one", "[context]") {
    using ctx_t = keel::basic_context<keel::manual_clock>;
    keel::manual_clock clock;
    auto const t0 = clock.now();
    ctx_t const outer{1, t0 + 5s, {}};

    auto const tighter = outer.with_deadline(t0 + 2s, {});
    CHECK(tighter.deadline() == t0 + 2s);

    auto const looser = outer.with_deadline(t0 + 9s, {});
    CHECK(looser.deadline() == t0 + 5s);

    auto const first = ctx_t{}.with_deadline(t0 + 9s, {});
    CHECK(first.deadline() == t0 + 9s);
}

TEST_CASE("with_attempt and with_stop_token keep the rest", "[context]") {
    std::stop_source source;
    keel::context const ctx{1, keel::steady_clock::now() + 1s, {}};
    auto const retry = ctx.with_attempt(3).with_stop_token(source.get_token());
    CHECK(retry.attempt() == 3);
    CHECK(retry.deadline() == ctx.deadline());
    source.request_stop();
    CHECK(retry.stop_requested());
    CHECK_FALSE(ctx.stop_requested());
}
