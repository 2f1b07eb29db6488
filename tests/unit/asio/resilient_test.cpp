// SPDX-License-Identifier: MIT
#include <keel/asio/resilient.hpp>
#include <keel/policy/retry.hpp>
#include <keel/testing/asio.hpp>
#include <keel/testing/manual_clock.hpp>
#include <keel/testing/virtual_sleeper.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <stdexcept>

#include "asio_support.hpp"

using namespace std::chrono_literals;
namespace net = keel::asio::net;

TEST_CASE("keel::asio::resilient with retry runs attempts until one succeeds, waiting the "
          "exact backoff in virtual time",
          "[asio][resilient]") {
    keel::manual_clock clock;
    net::io_context io;
    int calls = 0;
    auto pipeline = keel::asio::resilient{
        [&](keel::asio::basic_context<keel::manual_clock> const& ctx)
            -> keel::asio::awaitable<int> {
            ++calls;
            if (ctx.attempt() < 3) {
                throw std::runtime_error{"boom"};
            }
            co_return ctx.attempt();
        },
        keel::retry{
            {.max_attempts = 3, .backoff = keel::constant{100ms}, .jitter = keel::jitter::none},
            keel::on_failure{},
            clock,
            keel::virtual_sleeper{clock}}};
    auto const result = keel::testing_asio::run(io, clock, pipeline.async_call());
    REQUIRE(result.has_value());
    CHECK(*result == 3);
    CHECK(calls == 3);
    CHECK(clock.now().time_since_epoch() == 200ms);
}
