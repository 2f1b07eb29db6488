// SPDX-License-Identifier: MIT
// An asynchronous client guarded by keel::asio::resilient{op, guard(breaker),
// retry, timeout}, on one io_context thread that is never blocked:
//   - keel::retry absorbs the server's occasional failures (one answer in three
//     is "error"), waiting its jittered backoff on an Asio timer;
//   - keel::timeout cancels an attempt the server never answers: the socket read
//     completes with operation_aborted, and the call fails with errc::timeout;
//   - keel::guard(breaker) opens once the server is down, and then fails calls at
//     once, without touching the network.
// The server runs in the same program on 127.0.0.1 (a port the OS chooses).
// Needs the keel::asio target (standalone Asio); runs in well under a second.
#include <keel/asio/resilient.hpp>
#include <keel/policy/circuit_breaker.hpp>
#include <keel/policy/retry.hpp>
#include <keel/policy/timeout.hpp>

#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/read_until.hpp>
#include <asio/steady_timer.hpp>
#include <asio/write.hpp>

#include <fmt/format.h>

#include <chrono>
#include <exception>
#include <stdexcept>
#include <string>

using namespace std::chrono_literals;
namespace net = keel::asio::net;
using tcp = net::ip::tcp;

namespace {

// The server: answers each request line with "ok", or "error" one time in three;
// when `silent`, reads the request and never answers.
struct server {
    tcp::acceptor acceptor;
    bool silent = false;
    int requests = 0;

    keel::asio::awaitable<void> serve(tcp::socket socket) {
        std::string line;
        co_await net::async_read_until(socket, net::dynamic_buffer(line), '\n', net::use_awaitable);
        if (silent) {
            net::steady_timer forever{socket.get_executor(), 1h};
            co_await forever.async_wait(net::use_awaitable);
        }
        std::string const reply = ++requests % 3 == 0 ? "error\n" : "ok\n";
        co_await net::async_write(socket, net::buffer(reply), net::use_awaitable);
    }

    keel::asio::awaitable<void> run() {
        for (;;) {
            auto socket = co_await acceptor.async_accept(net::use_awaitable);
            net::co_spawn(acceptor.get_executor(), serve(std::move(socket)), net::detached);
        }
    }
};

// One request: connect, send a line, read the answer. Every operation awaited
// with use_awaitable is bound to the attempt's cancellation slot, so a timeout
// (or the caller) cancels the one in progress.
keel::asio::awaitable<std::string> fetch(tcp::endpoint at) {
    tcp::socket socket{co_await net::this_coro::executor};
    co_await socket.async_connect(at, net::use_awaitable);
    co_await net::async_write(socket, net::buffer("GET /work\n", 10), net::use_awaitable);
    std::string reply;
    co_await net::async_read_until(socket, net::dynamic_buffer(reply), '\n', net::use_awaitable);
    if (reply != "ok\n") {
        throw std::runtime_error{"the server answered " + reply.substr(0, reply.size() - 1)};
    }
    co_return reply;
}

// Describes a failed outcome: keel's code, or the exception the call threw.
template <class T>
std::string why(keel::outcome<T> const& result) {
    if (result.error()) {
        return result.error().message();
    }
    try {
        std::rethrow_exception(result.exception());
    } catch (std::exception const& e) {
        return e.what();
    }
}

double ms(std::chrono::steady_clock::duration d) {
    return std::chrono::duration<double, std::milli>(d).count();
}

} // namespace

int main() {
    net::io_context io;
    server dependency{tcp::acceptor{io, {net::ip::address_v4::loopback(), 0}}};
    auto const at = dependency.acceptor.local_endpoint();
    net::co_spawn(io, dependency.run(), net::detached);

    // The breaker outermost (one verdict per logical call: it opens at 50 % failed
    // among the last 10), each attempt with its own 50 ms deadline, up to three attempts with
    // jittered exponential backoff.
    keel::circuit_breaker breaker{{.failure_rate_threshold = 50,
                                   .window_size = 10,
                                   .minimum_calls = 5,
                                   .reset_timeout = 30s}};
    int retries = 0;
    auto const get = keel::asio::resilient{
        [at](keel::asio::context const&) { return fetch(at); }, keel::guard(breaker),
        keel::retry{{.max_attempts = 3,
                     .backoff = keel::exponential{5ms, 2.0, 50ms},
                     .on_retry = [&](keel::retry_event const&) { ++retries; }}},
        keel::timeout{50ms}};

    auto const client = [&]() -> keel::asio::awaitable<void> {
        int served = 0;
        for (int i = 0; i < 10; ++i) {
            served += (co_await get.async_call()).has_value() ? 1 : 0;
        }
        fmt::print("flaky server: {} of 10 calls served, {} retries\n", served, retries);

        dependency.silent = true;
        auto start = std::chrono::steady_clock::now();
        auto const hung = co_await get.async_call();
        fmt::print("silent server: '{}' after {:.0f} ms (3 attempts of 50 ms)\n", why(hung),
                   ms(std::chrono::steady_clock::now() - start));

        dependency.acceptor.close(); // down: connections are refused
        for (int i = 0; i < 8; ++i) {
            start = std::chrono::steady_clock::now();
            auto const result = co_await get.async_call();
            fmt::print("server down: '{}' in {:.1f} us\n", why(result),
                       1000 * ms(std::chrono::steady_clock::now() - start));
        }
        fmt::print("breaker: {}\n", keel::to_string(breaker.state()));
        io.stop(); // the silent server's connection would wait an hour
    };
    net::co_spawn(io, client(), [](std::exception_ptr e) {
        if (e) {
            std::rethrow_exception(e);
        }
    });
    io.run();
    return breaker.state() == keel::circuit_state::open ? 0 : 1;
}
