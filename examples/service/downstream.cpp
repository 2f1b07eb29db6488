// SPDX-License-Identifier: MIT
// keel_downstream: the dependency the demo service calls, made to misbehave on
// demand. GET /work on the data port answers "ok" (200) unless told otherwise;
// the control port (always up) changes how it behaves:
//   GET /control?delay_ms=N&fail=F&hang=0|1   slow by N ms, fail a fraction F of
//                                            requests with 503 (deterministically:
//                                            exactly F of every run of calls),
//                                            or hold every request until released
//   GET /down                                 stop listening on the data port
//   GET /up                                   listen again on the same port
//   GET /state                                the current settings
// Asynchronous (Boost.Beast on one thread): a slow or hung request waits on a timer,
// not on a thread, so thousands of them can be in progress at once.
// Usage: keel_downstream [--port N] [--control-port N]   (0: chosen by the OS)
// Prints "listening data=<port> control=<port>" once both ports are bound, and
// exits 0 on SIGTERM or SIGINT.
#include "sanitizers.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <fmt/format.h>

#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_set>

#include <pthread.h>
#include <sys/resource.h>

namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using response = http::response<http::string_body>;
constexpr auto use_tuple = net::as_tuple(net::use_awaitable);

// How the data port behaves; changed by the control port, read by every request.
// Everything runs on the one io thread, so nothing here needs a lock.
class behaviour {
public:
    void set(int delay_ms, double fail_fraction, bool hang) {
        m_delay_ms = delay_ms;
        m_fail_fraction = fail_fraction;
        m_hang = hang;
        release();
    }

    // Waits as configured, then says whether this request should fail. A change of
    // settings (or release()) ends a wait early, so a hung request never outlives
    // the outage it simulates.
    net::awaitable<bool> serve() {
        if (m_hang || m_delay_ms > 0) {
            net::steady_timer wait{co_await net::this_coro::executor};
            if (m_hang) {
                wait.expires_at(net::steady_timer::time_point::max());
            } else {
                wait.expires_after(std::chrono::milliseconds{m_delay_ms});
            }
            m_waiting.insert(&wait);
            co_await wait.async_wait(use_tuple);
            m_waiting.erase(&wait);
        }
        // Exactly `fraction` of every run of calls fails, spread evenly.
        auto const n = m_calls++;
        auto const before = static_cast<std::int64_t>(static_cast<double>(n) * m_fail_fraction);
        auto const after = static_cast<std::int64_t>(static_cast<double>(n + 1) * m_fail_fraction);
        co_return after > before;
    }

    // Ends every wait in progress.
    void release() {
        for (auto* timer : m_waiting) {
            timer->cancel();
        }
    }

    std::string describe() const {
        return fmt::format("delay_ms={} fail={} hang={} calls={}\n", m_delay_ms, m_fail_fraction,
                           m_hang ? 1 : 0, m_calls);
    }

private:
    int m_delay_ms = 0;
    double m_fail_fraction = 0.0;
    bool m_hang = false;
    std::int64_t m_calls = 0;
    std::unordered_set<net::steady_timer*> m_waiting;
};

// Returns the number after `key=` in the query of `target`, or `fallback`.
double query_number(std::string_view target, std::string_view key, double fallback) {
    auto const q = target.find('?');
    if (q == std::string_view::npos) {
        return fallback;
    }
    auto query = target.substr(q + 1);
    while (!query.empty()) {
        auto const amp = query.find('&');
        auto const pair = query.substr(0, amp);
        if (pair.size() > key.size() && pair.starts_with(key) && pair[key.size()] == '=') {
            return std::atof(std::string{pair.substr(key.size() + 1)}.c_str());
        }
        query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    }
    return fallback;
}

using handler = std::function<net::awaitable<response>(std::string_view target)>;

// Serves one connection with `route`, request after request (each head within 10 s,
// an idle connection closed after 5 s).
net::awaitable<void> serve(tcp::socket socket, handler const& route) {
    beast::tcp_stream stream{std::move(socket)};
    beast::flat_buffer buffer{64 * 1024};
    while (true) {
        stream.expires_after(std::chrono::seconds{5});
        http::request_parser<http::empty_body> parser;
        auto [ec, n] = co_await http::async_read(stream, buffer, parser, use_tuple);
        if (ec) {
            break;
        }
        auto const& req = parser.get();
        response res = co_await route(std::string_view{req.target().data(), req.target().size()});
        res.version(req.version());
        res.keep_alive(req.keep_alive());
        res.prepare_payload();
        stream.expires_after(std::chrono::seconds{10});
        auto [wec, wn] = co_await http::async_write(stream, res, use_tuple);
        if (wec || !res.keep_alive()) {
            break;
        }
    }
    beast::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
}

response text(http::status status, std::string body) {
    response res{status, 11};
    res.set(http::field::content_type, "text/plain");
    res.body() = std::move(body);
    return res;
}

// A listener that can be closed and opened again on the same port.
class listener {
public:
    listener(net::io_context& io, handler route) : m_io(io), m_route(std::move(route)) {}

    // Binds `port` (0: any) and accepts; returns the bound port, or -1.
    int up(int port) {
        if (m_acceptor) {
            return m_port;
        }
        beast::error_code ec;
        auto acceptor = std::make_shared<tcp::acceptor>(m_io);
        tcp::endpoint const at{net::ip::address_v4::loopback(), static_cast<unsigned short>(port)};
        acceptor->open(at.protocol(), ec);
        if (!ec) {
            acceptor->set_option(net::socket_base::reuse_address(true), ec);
        }
        if (!ec) {
            acceptor->bind(at, ec);
        }
        if (!ec) {
            acceptor->listen(net::socket_base::max_listen_connections, ec);
        }
        if (ec) {
            return -1;
        }
        m_port = acceptor->local_endpoint().port();
        m_acceptor = acceptor;
        net::co_spawn(m_io, accept(acceptor), net::detached);
        return m_port;
    }

    // Stops listening and closes the port (connections already accepted are served).
    void down() {
        if (m_acceptor) {
            beast::error_code ignored;
            m_acceptor->close(ignored);
            m_acceptor.reset();
        }
    }

    bool is_up() const { return m_acceptor != nullptr; }

private:
    net::awaitable<void> accept(std::shared_ptr<tcp::acceptor> acceptor) {
        while (acceptor->is_open()) {
            auto [ec, socket] = co_await acceptor->async_accept(use_tuple);
            if (ec == net::error::operation_aborted || !acceptor->is_open()) {
                break;
            }
            if (!ec) {
                net::co_spawn(m_io, serve(std::move(socket), m_route), net::detached);
            }
        }
    }

    net::io_context& m_io;
    handler m_route;
    std::shared_ptr<tcp::acceptor> m_acceptor;
    int m_port = 0;
};

// Returns the port given as `name`'s value, or `fallback` when the option is absent;
// exits with a message when the value is not a port number.
int port_arg(int argc, char** argv, std::string_view name, int fallback) {
    for (int i = 1; i + 1 < argc; ++i) {
        if (argv[i] == name) {
            std::string_view const text = argv[i + 1];
            int value = 0;
            auto const [end, error] =
                std::from_chars(text.data(), text.data() + text.size(), value);
            if (error != std::errc{} || end != text.data() + text.size() || value < 0 ||
                value > 65535) {
                fmt::print(stderr, "keel_downstream: {} must be a port in [0, 65535], got '{}'\n",
                           name, text);
                std::exit(2);
            }
            return value;
        }
    }
    return fallback;
}

} // namespace

int main(int argc, char** argv) {
    // Signals are taken synchronously by the main thread (sigwait), so the io thread
    // started below inherits the blocked mask.
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    // Each call in progress holds a socket.
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        ::setrlimit(RLIMIT_NOFILE, &limit);
    }
    int const data_arg = port_arg(argc, argv, "--port", 0);
    int const control_arg = port_arg(argc, argv, "--control-port", 0);

    net::io_context io{1};
    behaviour how;
    listener data{io, [&how](std::string_view target) -> net::awaitable<response> {
                      auto const path = target.substr(0, target.find('?'));
                      if (path != "/work") {
                          co_return text(http::status::not_found, "not found\n");
                      }
                      if (co_await how.serve()) {
                          co_return text(http::status::service_unavailable, "injected failure\n");
                      }
                      co_return text(http::status::ok, "ok\n");
                  }};
    int const data_port = data.up(data_arg);
    if (data_port < 0) {
        fmt::print(stderr, "keel_downstream: cannot bind the data port\n");
        return 1;
    }
    listener control{
        io, [&](std::string_view target) -> net::awaitable<response> {
            auto const path = target.substr(0, target.find('?'));
            if (path == "/control") {
                how.set(static_cast<int>(query_number(target, "delay_ms", 0)),
                        query_number(target, "fail", 0), query_number(target, "hang", 0) != 0);
                co_return text(http::status::ok, how.describe());
            }
            if (path == "/down") {
                data.down();
                how.release();
                co_return text(http::status::ok, "down\n");
            }
            if (path == "/up") {
                bool const ok = data.up(data_port) == data_port;
                co_return text(ok ? http::status::ok : http::status::internal_server_error,
                               ok ? "up\n" : "cannot bind\n");
            }
            if (path == "/state") {
                co_return text(http::status::ok,
                               fmt::format("up={} {}", data.is_up() ? 1 : 0, how.describe()));
            }
            co_return text(http::status::not_found, "not found\n");
        }};
    int const control_port = control.up(control_arg);
    if (control_port < 0) {
        fmt::print(stderr, "keel_downstream: cannot bind the control port\n");
        return 1;
    }
    auto work = net::make_work_guard(io);
    std::thread runner{[&io] { io.run(); }};

    fmt::print("listening data={} control={}\n", data_port, control_port);
    std::fflush(stdout);

    int received = 0;
    sigwait(&signals, &received);
    net::post(io, [&] {
        control.down();
        data.down();
        how.release();
    });
    work.reset();
    io.stop();
    runner.join();
    return 0;
}
