// SPDX-License-Identifier: MIT
// Hedged requests with keel::hedge: when the primary replica is slow, a second
// request goes to another replica after a short delay, the first good answer
// wins, and the loser is cancelled (its socket read completes with
// operation_aborted) and awaited before the call returns. Each attempt sees
// ctx.hedge() (0 for the primary, 1 for the first hedge) and picks its replica
// from it. Two replicas run in the same program on 127.0.0.1: replica 0 answers
// after 300 ms, replica 1 after 5 ms. One io_context thread, never blocked.
// Needs the keel::asio target (standalone Asio); runs in well under a second.
#include <keel/asio/hedge.hpp>
#include <keel/asio/resilient.hpp>
#include <keel/policy/timeout.hpp>

#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/read_until.hpp>
#include <asio/steady_timer.hpp>
#include <asio/write.hpp>

#include <fmt/format.h>

#include <array>
#include <chrono>
#include <exception>
#include <string>

using namespace std::chrono_literals;
namespace net = keel::asio::net;
using tcp = net::ip::tcp;

namespace {

// A replica: answers each request line with its name after `delay`.
keel::asio::awaitable<void> replica(tcp::acceptor& acceptor, std::string name,
                                    std::chrono::milliseconds delay) {
    for (;;) {
        auto socket = co_await acceptor.async_accept(net::use_awaitable);
        auto answer = [](tcp::socket s, std::string reply,
                         std::chrono::milliseconds d) -> keel::asio::awaitable<void> {
            std::string line;
            co_await net::async_read_until(s, net::dynamic_buffer(line), '\n', net::use_awaitable);
            net::steady_timer slow{s.get_executor(), d};
            co_await slow.async_wait(net::use_awaitable);
            co_await net::async_write(s, net::buffer(reply), net::use_awaitable);
        };
        net::co_spawn(acceptor.get_executor(), answer(std::move(socket), name + "\n", delay),
                      net::detached);
    }
}

double ms(std::chrono::steady_clock::duration d) {
    return std::chrono::duration<double, std::milli>(d).count();
}

} // namespace

int main() {
    net::io_context io;
    std::array<tcp::acceptor, 2> replicas{tcp::acceptor{io, {net::ip::address_v4::loopback(), 0}},
                                          tcp::acceptor{io, {net::ip::address_v4::loopback(), 0}}};
    net::co_spawn(io, replica(replicas[0], "replica 0", 300ms), net::detached);
    net::co_spawn(io, replica(replicas[1], "replica 1", 5ms), net::detached);
    std::array<tcp::endpoint, 2> const endpoints{replicas[0].local_endpoint(),
                                                 replicas[1].local_endpoint()};

    std::array<std::string, 2> ended; // how each attempt's read ended
    // One hedge after 20 ms; each attempt has its own 1 s timeout.
    auto const get = keel::asio::resilient{
        [&](keel::asio::context const& ctx) -> keel::asio::awaitable<std::string> {
            auto const which = static_cast<std::size_t>(ctx.hedge());
            tcp::socket socket{co_await net::this_coro::executor};
            co_await socket.async_connect(endpoints[which], net::use_awaitable);
            co_await net::async_write(socket, net::buffer("GET /work\n", 10), net::use_awaitable);
            std::string reply;
            auto [ec, n] =
                co_await net::async_read_until(socket, net::dynamic_buffer(reply), '\n',
                                               net::experimental::as_tuple(net::use_awaitable));
            ended[which] = ec ? ec.message() : "answered";
            if (ec) {
                throw std::system_error{ec};
            }
            co_return reply.substr(0, n - 1);
        },
        keel::hedge{{.max_hedged_attempts = 1, .delay = 20ms}}, keel::timeout{1s}};

    bool ok = false;
    auto const client = [&]() -> keel::asio::awaitable<void> {
        auto const start = std::chrono::steady_clock::now();
        auto const result = co_await get.async_call();
        auto const took = std::chrono::steady_clock::now() - start;
        fmt::print("answer: '{}' in {:.0f} ms (replica 0 alone takes 300 ms)\n",
                   result.value_or("none"), ms(took));
        fmt::print("primary (replica 0): {}; hedge (replica 1): {}\n", ended[0], ended[1]);
        ok = result.has_value() && *result == "replica 1" && took < 300ms;
        io.stop();
    };
    net::co_spawn(io, client(), [](std::exception_ptr e) {
        if (e) {
            std::rethrow_exception(e);
        }
    });
    io.run();
    return ok ? 0 : 1;
}
