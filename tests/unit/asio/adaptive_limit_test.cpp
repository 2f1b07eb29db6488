// SPDX-License-Identifier: MIT
#include <keel/asio/adaptive_limit.hpp>

#include <keel/asio/resilient.hpp>
#include <keel/policy/adaptive_limit.hpp>
#include <keel/testing/manual_clock.hpp>
#include <keel/testing/virtual_sleeper.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <vector>

#include "asio_support.hpp"

using namespace std::chrono_literals;
using keel::testing_asio::at;

namespace {
namespace net = keel::asio::net;
using limit_type =
    keel::basic_adaptive_limit<keel::manual_clock, keel::virtual_sleeper, keel::xoshiro256ss>;

keel::adaptive_limit_options fixed_with_queue(int n, int queued, std::chrono::nanoseconds wait) {
    return {.algorithm = keel::aimd_options{.initial_limit = n, .min_limit = n, .max_limit = n},
            .queue = {.max_queued = queued, .max_wait = wait}};
}
} // namespace

TEST_CASE("async guard(adaptive_limit) parks queued coroutines until a completion grants them, "
          "and rejects beyond the queue",
          "[asio][adaptive_limit]") {
    keel::manual_clock clock;
    net::io_context io;
    limit_type limit{fixed_with_queue(1, 2, 1s), clock, keel::virtual_sleeper{clock},
                     keel::xoshiro256ss{1}};
    std::vector<int> order;
    auto pipeline = keel::asio::resilient{[&](int id) -> keel::asio::awaitable<int> {
                                              order.push_back(id);
                                              co_await keel::testing_asio::take(clock, 1ms);
                                              co_return id;
                                          },
                                          keel::guard(limit)};
    auto a = keel::testing_asio::spawn(io, clock, pipeline.async_call(1));
    auto b = keel::testing_asio::spawn(io, clock, pipeline.async_call(2));
    auto c = keel::testing_asio::spawn(io, clock, pipeline.async_call(3));
    auto d = keel::testing_asio::spawn(io, clock, pipeline.async_call(4));
    keel::asio::run_in_virtual_time(io, clock);
    CHECK(order == std::vector<int>{1, 2, 3}); // FIFO while calm (1 ms waits < 5 ms target)
    CHECK(a->at == at(1ms));
    CHECK(b->at == at(2ms));
    CHECK(c->at == at(3ms));
    REQUIRE(d->value);
    CHECK(d->value->failure().is(keel::errc::bulkhead_full));
    CHECK(d->at == at(0ms));
    CHECK(limit.snapshot().in_flight == 0);
    CHECK(limit.snapshot().queued == 0);
}

TEST_CASE("async guard(adaptive_limit) gives up after max_wait, a caller's cancellation ends a "
          "queued wait, and without a queue it rejects at once",
          "[asio][adaptive_limit][cancel]") {
    keel::manual_clock clock;
    net::io_context io;
    limit_type limit{fixed_with_queue(1, 2, 50ms), clock, keel::virtual_sleeper{clock},
                     keel::xoshiro256ss{1}};
    auto pipeline = keel::asio::resilient{[&]() -> keel::asio::awaitable<int> {
                                              co_await keel::testing_asio::take(clock, 100ms);
                                              co_return 0;
                                          },
                                          keel::guard(limit)};
    net::cancellation_signal signal;
    auto holder = keel::testing_asio::spawn(io, clock, pipeline.async_call());
    auto timed_out = keel::testing_asio::spawn(io, clock, pipeline.async_call());
    auto cancelled = keel::testing_asio::spawn(io, clock, pipeline.async_call(), signal.slot());
    keel::testing_asio::emit_at(io, clock, signal, at(20ms));
    keel::asio::run_in_virtual_time(io, clock);
    REQUIRE(holder->value);
    CHECK(holder->value->has_value());
    REQUIRE(timed_out->value);
    CHECK(timed_out->value->failure().is(keel::errc::bulkhead_full));
    CHECK(timed_out->at == at(50ms));
    REQUIRE(cancelled->value);
    CHECK(cancelled->value->failure().is(keel::errc::cancelled));
    CHECK(cancelled->at == at(20ms));
    CHECK(limit.snapshot().queued == 0);
    CHECK(limit.snapshot().in_flight == 0);

    limit_type no_queue{fixed_with_queue(1, 0, 1s), clock, keel::virtual_sleeper{clock},
                        keel::xoshiro256ss{1}};
    auto held = no_queue.try_acquire();
    auto rejected = keel::asio::resilient{[]() -> keel::asio::awaitable<int> { co_return 1; },
                                          keel::guard(no_queue)};
    auto r = keel::testing_asio::spawn(io, clock, rejected.async_call());
    keel::asio::run_in_virtual_time(io, clock);
    REQUIRE(r->value);
    CHECK(r->value->failure().is(keel::errc::bulkhead_full));
}

TEST_CASE("async guard(adaptive_limit) samples outcomes as the synchronous policy does",
          "[asio][adaptive_limit]") {
    keel::manual_clock clock;
    net::io_context io;
    limit_type limit{{.algorithm = keel::aimd_options{.initial_limit = 30, .min_limit = 1},
                      .window = {.min_window = 100ms, .max_window = 100ms}},
                     clock,
                     keel::virtual_sleeper{clock},
                     keel::xoshiro256ss{1}};
    int calls = 0; // the first call is dropped, the others succeed
    auto pipeline = keel::asio::resilient{[&]() -> keel::asio::awaitable<int> {
                                              co_await keel::testing_asio::take(clock, 1ms);
                                              co_return 1;
                                          },
                                          keel::guard(limit, [&calls](auto const&) {
                                              return ++calls == 1 ? keel::limit_result::dropped
                                                                  : keel::limit_result::success;
                                          })};
    for (int i = 0; i < 12; ++i) {
        auto r = keel::testing_asio::run(io, clock, pipeline.async_call());
        CHECK(r.has_value());
    }
    CHECK(limit.limit() == 27); // a window with a drop backed AIMD off by 0.9
}
