// SPDX-License-Identifier: MIT
#include <keel/policy/bulkhead.hpp>

#include <keel/resilient.hpp>
#include <keel/testing/manual_clock.hpp>
#include <keel/testing/virtual_sleeper.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <future>
#include <stdexcept>
#include <stop_token>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {
struct upstream_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};
} // namespace

TEST_CASE("bulkhead: admits at most max_concurrent_calls without a queue", "[bulkhead]") {
    keel::bulkhead b{{.max_concurrent_calls = 2}};
    CHECK(b.try_acquire());
    CHECK(b.acquire() == std::error_code{});
    CHECK_FALSE(b.try_acquire());
    CHECK(b.acquire() == keel::errc::bulkhead_full);
    CHECK(b.snapshot().in_flight == 2);
    b.release();
    CHECK(b.snapshot().in_flight == 1);
    CHECK(b.try_acquire());
}

TEST_CASE("bulkhead: the guard rejects with bulkhead_full when no slot is free", "[bulkhead]") {
    keel::bulkhead b{{.max_concurrent_calls = 1}};
    auto guarded = keel::resilient{[] { return 1; }, keel::guard(b)};
    CHECK(guarded() == 1);
    REQUIRE(b.try_acquire());
    CHECK(guarded.try_call().error() == keel::errc::bulkhead_full);
    CHECK_THROWS_AS(guarded(), keel::bulkhead_full);
    b.release();
    CHECK(guarded() == 1);
    CHECK(b.snapshot().in_flight == 0);
}

TEST_CASE("bulkhead: the slot is released when the call throws", "[bulkhead]") {
    keel::bulkhead b{{.max_concurrent_calls = 1}};
    auto guarded = keel::resilient{[&]() -> int {
                                       CHECK(b.snapshot().in_flight == 1);
                                       throw upstream_error{"x"};
                                   },
                                   keel::guard(b)};
    CHECK_THROWS_AS(guarded(), upstream_error);
    CHECK(b.snapshot().in_flight == 0);
}

TEST_CASE("bulkhead: a queued call gives up after max_wait in virtual time", "[bulkhead]") {
    keel::manual_clock clock;
    keel::virtual_sleeper sleeper{clock};
    keel::basic_bulkhead b{{.max_concurrent_calls = 1, .max_queued_calls = 1, .max_wait = 50ms},
                           sleeper};
    REQUIRE(b.try_acquire());
    CHECK(b.acquire() == keel::errc::bulkhead_full);
    CHECK(sleeper.sleeps() == std::vector<std::chrono::nanoseconds>{50ms});
    CHECK(clock.now().time_since_epoch() == 50ms);
    auto const s = b.snapshot();
    CHECK(s.in_flight == 1);
    CHECK(s.queued == 0);
}

TEST_CASE("bulkhead: a queued call stops waiting when its stop token fires", "[bulkhead]") {
    keel::manual_clock clock;
    keel::virtual_sleeper sleeper{clock};
    keel::basic_bulkhead b{{.max_concurrent_calls = 1, .max_queued_calls = 1, .max_wait = 1s},
                           sleeper};
    REQUIRE(b.try_acquire());
    std::stop_source caller;
    caller.request_stop();
    CHECK(b.acquire(caller.get_token()) == keel::errc::cancelled);
    CHECK(clock.now().time_since_epoch() == 0s);
    CHECK(b.snapshot().queued == 0);
}

TEST_CASE("bulkhead: snapshot counts the calls rejected full without a queue, once each",
          "[bulkhead]") {
    keel::bulkhead b{{.max_concurrent_calls = 1}};
    auto guarded = keel::resilient{[] { return 1; }, keel::guard(b)};
    CHECK(guarded() == 1);
    CHECK(b.snapshot().rejected_full == 0);
    REQUIRE(b.try_acquire());
    CHECK_FALSE(b.try_acquire());
    CHECK(b.acquire() == keel::errc::bulkhead_full);
    CHECK(guarded.try_call().error() == keel::errc::bulkhead_full);
    auto const s = b.snapshot();
    CHECK(s.rejected_full == 3);
    CHECK(s.rejected_waits == 0);
    b.release();
    CHECK(guarded() == 1);
    CHECK(b.snapshot().rejected_full == 3);
}

TEST_CASE("bulkhead: snapshot counts a full queue, an expired wait and a cancelled wait",
          "[bulkhead]") {
    keel::manual_clock clock;
    keel::virtual_sleeper sleeper{clock};
    keel::basic_bulkhead b{{.max_concurrent_calls = 1, .max_queued_calls = 1, .max_wait = 50ms},
                           sleeper};
    REQUIRE(b.try_acquire());
    CHECK_FALSE(b.try_acquire()); // goes on to the queue: not a rejection yet
    CHECK(b.snapshot().rejected_full == 0);
    CHECK(b.acquire() == keel::errc::bulkhead_full); // waited 50 ms
    CHECK(b.snapshot().rejected_waits == 1);
    CHECK(b.snapshot().rejected_full == 0);
    std::stop_source caller;
    caller.request_stop();
    CHECK(b.acquire(caller.get_token()) == keel::errc::cancelled);
    CHECK(b.snapshot().rejected_waits == 2);
    // A waiter in the queue: the next call finds it full.
    keel::bulkhead_waiter waiting;
    waiting.wake = [](keel::bulkhead_waiter&) noexcept {};
    REQUIRE(b.enqueue(waiting) == decltype(b)::queue_result::queued);
    CHECK(b.acquire() == keel::errc::bulkhead_full);
    CHECK(b.snapshot().rejected_full == 1);
    // A slot handed over is no rejection.
    b.release();
    CHECK(b.withdraw(waiting));
    auto const s = b.snapshot();
    CHECK(s.rejected_full == 1);
    CHECK(s.rejected_waits == 2);
    b.release();
}

TEST_CASE("bulkhead: a released slot goes to the queued call, and the queue is bounded",
          "[bulkhead][concurrency]") {
    keel::bulkhead b{{.max_concurrent_calls = 1, .max_queued_calls = 1, .max_wait = 10s}};
    REQUIRE(b.try_acquire());
    auto const start = std::chrono::steady_clock::now();
    auto waiter = std::async(std::launch::async, [&] { return b.acquire(); });
    while (b.snapshot().queued != 1) {
        std::this_thread::yield();
    }
    CHECK(b.acquire() == keel::errc::bulkhead_full); // the queue holds one
    CHECK_FALSE(b.try_acquire());                    // no barging past the queue
    b.release();
    CHECK(waiter.get() == std::error_code{});
    CHECK(std::chrono::steady_clock::now() - start < 5s); // woken, not timed out
    auto const s = b.snapshot();
    CHECK(s.in_flight == 1);
    CHECK(s.queued == 0);
    b.release();
    CHECK(b.snapshot().in_flight == 0);
}

TEST_CASE("bulkhead: a queued call on a real sleeper wakes at its stop token",
          "[bulkhead][concurrency]") {
    keel::bulkhead b{{.max_concurrent_calls = 1, .max_queued_calls = 2, .max_wait = 10s}};
    REQUIRE(b.try_acquire());
    std::stop_source caller;
    auto waiter = std::async(std::launch::async, [&] { return b.acquire(caller.get_token()); });
    while (b.snapshot().queued != 1) {
        std::this_thread::yield();
    }
    caller.request_stop();
    CHECK(waiter.get() == keel::errc::cancelled);
    CHECK(b.snapshot().queued == 0);
    b.release();
}

TEST_CASE("bulkhead: max_wait of nanoseconds::max() waits until a slot is handed over",
          "[bulkhead]") {
    // From a non-zero time, where now + max_wait overflows unless it saturates.
    keel::manual_clock clock{keel::manual_clock::time_point{1h}};
    keel::virtual_sleeper sleeper{clock};
    keel::basic_bulkhead b{{.max_concurrent_calls = 1,
                            .max_queued_calls = 1,
                            .max_wait = std::chrono::nanoseconds::max()},
                           sleeper};
    REQUIRE(b.try_acquire());
    clock.call_at(clock.now() + 5s, [&] { b.release(); });
    CHECK(b.acquire() == std::error_code{});
    CHECK(clock.now().time_since_epoch() == 1h + 5s);
    CHECK(b.snapshot().in_flight == 1);
    b.release();
}

TEST_CASE("bulkhead: max_wait of nanoseconds::max() on a real sleeper waits for the release",
          "[bulkhead][concurrency]") {
    keel::bulkhead b{{.max_concurrent_calls = 1,
                      .max_queued_calls = 1,
                      .max_wait = std::chrono::nanoseconds::max()}};
    REQUIRE(b.try_acquire());
    auto waiter = std::async(std::launch::async, [&] { return b.acquire(); });
    while (b.snapshot().queued != 1) {
        std::this_thread::yield();
    }
    std::this_thread::sleep_for(2ms); // a "forever" wait that wrapped would be over by now
    CHECK(b.snapshot().queued == 1);
    b.release();
    CHECK(waiter.get() == std::error_code{});
    b.release();
}

TEST_CASE("bulkhead: never more than N calls in flight under threads", "[bulkhead][concurrency]") {
    auto const run = [](keel::bulkhead& b, bool expect_all_admitted) {
        std::atomic<int> active{0};
        std::atomic<int> peak{0};
        std::atomic<int> admitted{0};
        std::atomic<int> rejected{0};
        auto guarded =
            keel::resilient{[&] {
                                int const now = active.fetch_add(1) + 1;
                                int seen = peak.load();
                                while (now > seen && !peak.compare_exchange_weak(seen, now)) {
                                }
                                std::this_thread::yield();
                                active.fetch_sub(1);
                            },
                            keel::guard(b)};
        std::vector<std::thread> threads;
        for (int t = 0; t < 6; ++t) {
            threads.emplace_back([&] {
                for (int i = 0; i < 300; ++i) {
                    if (guarded.try_call()) {
                        admitted.fetch_add(1);
                    } else {
                        rejected.fetch_add(1);
                    }
                }
            });
        }
        for (auto& t : threads) {
            t.join();
        }
        CHECK(peak.load() <= 3);
        CHECK(peak.load() >= 1);
        CHECK(admitted.load() + rejected.load() == 1800);
        if (expect_all_admitted) {
            CHECK(admitted.load() == 1800);
        }
        CHECK(b.snapshot().in_flight == 0);
        CHECK(b.snapshot().queued == 0);
        auto const s = b.snapshot();
        CHECK(s.rejected_full + s.rejected_waits == static_cast<std::uint64_t>(rejected.load()));
    };
    SECTION("lock-free, no queue") {
        keel::bulkhead b{{.max_concurrent_calls = 3}};
        run(b, false);
    }
    SECTION("with a queue that has room for every thread") {
        keel::bulkhead b{{.max_concurrent_calls = 3, .max_queued_calls = 6, .max_wait = 30s}};
        run(b, true);
    }
}

TEST_CASE("bulkhead: rejects invalid options with the documented range", "[bulkhead]") {
    CHECK_THROWS_WITH(keel::bulkhead({.max_concurrent_calls = 0}),
                      "keel::bulkhead: max_concurrent_calls must be >= 1, got 0");
    CHECK_THROWS_WITH(keel::bulkhead({.max_queued_calls = -1}),
                      "keel::bulkhead: max_queued_calls must be >= 0, got -1");
    CHECK_THROWS_WITH(keel::bulkhead({.max_queued_calls = 4}),
                      Catch::StartsWith("keel::bulkhead: max_wait must be > 0 exactly when"));
    CHECK_THROWS_WITH(keel::bulkhead({.max_wait = 1s}),
                      Catch::StartsWith("keel::bulkhead: max_wait must be > 0 exactly when"));
    CHECK_THROWS_WITH(keel::bulkhead({.max_queued_calls = 4}),
                      "keel::bulkhead: max_wait must be > 0 exactly when max_queued_calls > 0, "
                      "got max_queued_calls 4 and max_wait 0s");
}

TEST_CASE("bulkhead: defaults follow resilience4j's SemaphoreBulkhead", "[bulkhead]") {
    keel::bulkhead const b;
    CHECK(b.options().max_concurrent_calls == 25);
    CHECK(b.options().max_wait == std::chrono::nanoseconds::zero());
    CHECK(b.snapshot().max_queued_calls == 0);
}
