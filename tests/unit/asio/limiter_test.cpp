// SPDX-License-Identifier: MIT
// keel::asio::async_try_acquire and keel::asio's rate_limit over a limiter that
// answers through a callback (as keel's Redis limiters on an async_connection
// do), with a test limiter whose answers the test releases: suspension and
// resumption on the awaiting executor, answers from another thread, the
// cancellation of a wait, a timeout around it, and work tracking.
#include "asio_support.hpp"

#include <keel/asio/limiter.hpp>
#include <keel/asio/policies.hpp>
#include <keel/asio/resilient.hpp>
#include <keel/limiter/token_bucket.hpp>
#include <keel/policy/rate_limit.hpp>
#include <keel/policy/timeout.hpp>
#include <keel/testing/manual_clock.hpp>
#include <keel/testing/virtual_sleeper.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

using namespace std::chrono_literals;
using keel::testing_asio::at;
namespace net = keel::asio::net;

namespace {

/// A token bucket on the manual clock whose async_try_acquire decides at once but
/// answers only when the test calls answer() (or at once, when `immediate`).
class deferred_bucket : public keel::basic_token_bucket<keel::manual_clock> {
public:
    using keel::basic_token_bucket<keel::manual_clock>::basic_token_bucket;

    template <class Handler>
    void async_try_acquire(std::int64_t permits, Handler&& done) {
        keel::decision const d = try_acquire(permits);
        std::lock_guard lock{m_mutex};
        ++asked;
        if (immediate) {
            done(d);
            return;
        }
        m_waiting.emplace_back([d, h = std::forward<Handler>(done)]() mutable { h(d); });
    }
    template <class Handler>
    void async_try_acquire(std::string_view, std::int64_t permits, Handler&& done) {
        async_try_acquire(permits, std::forward<Handler>(done));
    }

    /// Answers every decision waiting; returns how many.
    std::size_t answer() {
        std::vector<std::function<void()>> ready;
        {
            std::lock_guard lock{m_mutex};
            ready.swap(m_waiting);
        }
        for (auto& f : ready) {
            f();
        }
        return ready.size();
    }

    bool immediate = false;
    int asked = 0;

private:
    std::mutex m_mutex;
    std::vector<std::function<void()>> m_waiting;
};

static_assert(keel::asio::async_rate_limiter<deferred_bucket>);
static_assert(!keel::asio::async_rate_limiter<keel::basic_token_bucket<keel::manual_clock>>);

} // namespace

TEST_CASE("asio::async_try_acquire suspends until the limiter answers, from another thread, and "
          "resumes on the awaiting executor",
          "[asio][limiter][concurrency]") {
    keel::manual_clock clock;
    net::io_context io;
    deferred_bucket bucket{{.rate = 10, .burst = 2}, clock};
    std::thread::id resumed_on{};
    auto task = [&]() -> keel::asio::awaitable<keel::outcome<keel::decision>> {
        auto d = co_await keel::asio::async_try_acquire(bucket, "client", 2);
        resumed_on = std::this_thread::get_id();
        co_return d;
    };
    auto record = keel::testing_asio::spawn(io, clock, task());
    io.poll();
    CHECK_FALSE(record->done); // waiting for the answer
    CHECK(bucket.asked == 1);
    // The io thread waits in run() (the wait keeps the context busy) while another
    // thread answers, as a Redis connection on another io_context would.
    std::thread answering{[&] {
        while (bucket.answer() == 0) {
            std::this_thread::yield();
        }
    }};
    io.restart();
    io.run();
    answering.join();
    REQUIRE(record->done);
    REQUIRE(record->value);
    REQUIRE(*record->value);
    CHECK((*record->value)->allowed);
    CHECK((*record->value)->remaining == 0);
    CHECK(resumed_on == std::this_thread::get_id());
}

TEST_CASE("async guard(limiter) awaits a limiter's async_try_acquire instead of try_acquire and "
          "waits its retry_after within max_wait",
          "[asio][limiter][rate_limit]") {
    keel::manual_clock clock;
    net::io_context io;
    deferred_bucket bucket{{.rate = 10, .burst = 1}, clock};
    bucket.immediate = true;
    std::vector<std::chrono::nanoseconds> starts;
    auto op = [&]() -> keel::asio::awaitable<int> {
        starts.push_back(clock.now().time_since_epoch());
        co_return 0;
    };
    auto waits = keel::asio::resilient{
        op, keel::guard(bucket, {.max_wait = 150ms}, keel::virtual_sleeper{clock})};
    CHECK(keel::testing_asio::run(io, clock, waits.async_call()).has_value());
    CHECK(keel::testing_asio::run(io, clock, waits.async_call()).has_value());
    CHECK(starts == std::vector<std::chrono::nanoseconds>{0ms, 100ms});
    CHECK(bucket.asked == 3); // granted, refused (wait 100 ms), granted
    auto rejects = keel::asio::resilient{op, keel::guard(bucket)};
    auto const refused = keel::testing_asio::run(io, clock, rejects.async_call());
    REQUIRE_FALSE(refused.has_value());
    CHECK(refused.failure().is(keel::errc::rate_limited));
    CHECK(refused.failure().retry_after == std::optional<std::chrono::nanoseconds>{100ms});
    CHECK(bucket.asked == 4);
}

TEST_CASE("asio::async_try_acquire: cancelling the awaiting operation ends the wait with "
          "errc::cancelled at once, the later answer is dropped",
          "[asio][limiter]") {
    keel::manual_clock clock;
    net::io_context io;
    deferred_bucket bucket{{.rate = 10, .burst = 1}, clock};
    net::cancellation_signal signal;
    auto record =
        keel::testing_asio::spawn(io, clock, keel::asio::async_try_acquire(bucket), signal.slot());
    keel::testing_asio::emit_at(io, clock, signal, at(5ms));
    keel::asio::run_in_virtual_time(io, clock);
    REQUIRE(record->done);
    REQUIRE(record->value);
    REQUIRE_FALSE(*record->value);
    CHECK(record->value->failure().is(keel::errc::cancelled));
    CHECK(record->at == at(5ms));
    CHECK(bucket.answer() == 1); // answered after the wait ended: nothing resumes
    io.restart();
    CHECK(io.poll() == 0);
}

TEST_CASE("async timeout around guard(async limiter): a decision slower than the timeout ends "
          "the call with errc::timeout at the deadline",
          "[asio][limiter][timeout]") {
    keel::manual_clock clock;
    net::io_context io;
    deferred_bucket bucket{{.rate = 10, .burst = 1}, clock};
    int calls = 0;
    auto op = [&]() -> keel::asio::awaitable<int> {
        ++calls;
        co_return 0;
    };
    auto pipeline = keel::asio::resilient{op, keel::basic_timeout<keel::manual_clock>{20ms, clock},
                                          keel::guard(bucket)};
    auto record = keel::testing_asio::spawn(io, clock, pipeline.async_call());
    keel::asio::run_in_virtual_time(io, clock);
    REQUIRE(record->done);
    REQUIRE(record->value);
    REQUIRE_FALSE(*record->value);
    CHECK(record->value->failure().is(keel::errc::timeout));
    CHECK(record->at == at(20ms));
    CHECK(calls == 0);
    CHECK(bucket.answer() == 1);
}
