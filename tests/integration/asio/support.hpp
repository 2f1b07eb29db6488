// SPDX-License-Identifier: MIT
// What the asynchronous integration tests share: running one awaitable on an
// io_context with a cancellation signal the test holds, an HTTP GET over
// Boost.Beast, keel_downstream as a child process, a server in a forked child
// process, and a heartbeat that measures how long the io thread stalls. Loopback
// only; every wait is bounded.
#pragma once

#include <keel/asio/detail/asio.hpp>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char** environ; // NOLINT(readability-redundant-declaration): POSIX declares it nowhere

namespace keel::integration {

namespace net = keel::asio::net;
namespace http = boost::beast::http;
using tcp = net::ip::tcp;
using mono = std::chrono::steady_clock;

/// Returns `d` in milliseconds as a double.
inline double ms(mono::duration d) {
    return std::chrono::duration<double, std::milli>(d).count();
}

/// Returns the number of threads of this process (the entries of /proc/self/task).
inline std::size_t thread_count() {
    auto const tasks = std::filesystem::directory_iterator{"/proc/self/task"};
    return static_cast<std::size_t>(std::distance(begin(tasks), end(tasks)));
}

/// What a spawned task gave: its value, or the exception that escaped it.
template <class T>
struct completion {
    std::optional<T> value;
    std::exception_ptr error;
    bool done = false;

    /// Returns the value; rethrows the task's exception; throws if it gave nothing.
    T get() {
        if (error) {
            std::rethrow_exception(error);
        }
        if (!value) {
            throw std::logic_error{"the task did not complete"};
        }
        return std::move(*value);
    }
};

/// Spawns `task` on `io`, its cancellation slot bound to `slot` (none by
/// default); `into` receives what it gave.
template <class T>
void spawn(net::io_context& io, keel::asio::awaitable<T> task, completion<T>& into,
           net::cancellation_slot slot = {}) {
    // co_spawn needs a default-constructible result: keel::outcome is not.
    auto wrapped = [](keel::asio::awaitable<T> inner) -> keel::asio::awaitable<std::optional<T>> {
        co_return co_await std::move(inner);
    };
    net::co_spawn(
        io, wrapped(std::move(task)),
        net::bind_cancellation_slot(slot, [&into](std::exception_ptr e, std::optional<T> v) {
            into.error = e;
            into.value = std::move(v);
            into.done = true;
        }));
}

/// Runs `io` on this thread until `finished()` or `limit` passes (then throws).
template <class Predicate>
void run_until(net::io_context& io, Predicate finished,
               mono::duration limit = std::chrono::seconds{60}) {
    auto const deadline = mono::now() + limit;
    io.restart();
    while (!finished()) {
        if (mono::now() >= deadline) {
            throw std::runtime_error{"the io_context did not finish in time"};
        }
        if (io.stopped()) {
            io.restart();
        }
        io.run_one_for(std::chrono::milliseconds{10});
    }
}

/// Runs `task` on `io` until it completes and returns what it gave.
template <class T>
T run(net::io_context& io, keel::asio::awaitable<T> task) {
    completion<T> result;
    spawn(io, std::move(task), result);
    run_until(io, [&] { return result.done; });
    return result.get();
}

/// Sends GET `target` to 127.0.0.1:`port` on a new connection and returns the
/// response. Runs in the caller's coroutine: its cancellation slot reaches the
/// connect, the write and the read.
inline keel::asio::awaitable<http::response<http::string_body>> http_get(unsigned short port,
                                                                         std::string target) {
    tcp::socket socket{co_await net::this_coro::executor};
    co_await socket.async_connect({net::ip::address_v4::loopback(), port}, net::use_awaitable);
    http::request<http::empty_body> request{http::verb::get, target, 11};
    request.set(http::field::host, "127.0.0.1");
    request.keep_alive(false);
    co_await http::async_write(socket, request, net::use_awaitable);
    boost::beast::flat_buffer buffer;
    http::response<http::string_body> response;
    co_await http::async_read(socket, buffer, response, net::use_awaitable);
    co_return response;
}

/// keel_downstream (examples/service/downstream.cpp) as a child process: started
/// on ports the OS chooses, stopped with SIGTERM (killed if it does not exit).
/// Only its command line, its "listening data=N control=M" line and its control
/// paths (/control?..., /down, /up) are used.
class downstream_process {
public:
    /// Starts `program`; throws std::runtime_error if it cannot, or if it does not
    /// report its ports within 30 s.
    explicit downstream_process(std::string program) {
        int fds[2];
        if (::pipe2(fds, O_CLOEXEC) != 0) {
            throw std::runtime_error{"pipe failed"};
        }
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
        std::vector<char*> argv{program.data(), nullptr};
        int const rc =
            ::posix_spawn(&m_pid, program.c_str(), &actions, nullptr, argv.data(), environ);
        posix_spawn_file_actions_destroy(&actions);
        ::close(fds[1]);
        m_stdout = fds[0];
        if (rc != 0) {
            throw std::runtime_error{"cannot start " + program};
        }
        auto const line = read_line(std::chrono::seconds{30});
        auto const number = [&](std::string const& key) {
            auto const at = line.find(key + "=");
            return static_cast<unsigned short>(
                at == std::string::npos ? 0 : std::stoi(line.substr(at + key.size() + 1)));
        };
        data_port = number("data");
        control_port = number("control");
        if (data_port == 0 || control_port == 0) {
            throw std::runtime_error{"keel_downstream did not report its ports: " + line};
        }
    }

    downstream_process(downstream_process const&) = delete;
    downstream_process& operator=(downstream_process const&) = delete;

    ~downstream_process() {
        if (!m_exit_code) {
            ::kill(m_pid, SIGKILL);
            int status = 0;
            ::waitpid(m_pid, &status, 0);
        }
        ::close(m_stdout);
    }

    /// Sends SIGTERM and waits up to 10 s; returns the exit code, or nullopt.
    std::optional<int> stop() {
        ::kill(m_pid, SIGTERM);
        auto const deadline = mono::now() + std::chrono::seconds{10};
        while (mono::now() < deadline) {
            int status = 0;
            if (::waitpid(m_pid, &status, WNOHANG) == m_pid) {
                m_exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
                return m_exit_code;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds{5});
        }
        return std::nullopt;
    }

    unsigned short data_port = 0;    ///< Where GET /work is served.
    unsigned short control_port = 0; ///< Where its behaviour is changed.

private:
    std::string read_line(mono::duration limit) {
        std::string line;
        auto const deadline = mono::now() + limit;
        char c = 0;
        while (mono::now() < deadline) {
            pollfd ready{m_stdout, POLLIN, 0};
            if (::poll(&ready, 1, 100) <= 0) {
                continue;
            }
            auto const n = ::read(m_stdout, &c, 1);
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n <= 0 || c == '\n') {
                return line;
            }
            line += c;
        }
        return line;
    }

    pid_t m_pid = -1;
    int m_stdout = -1;
    std::optional<int> m_exit_code;
};

/// A server in a child process made with fork(): `serve(listener, stop)` runs
/// there on its own io_context with a listening socket on 127.0.0.1, and must
/// return once `stop` (a socket whose peer this object holds) reads end of file.
/// Fork before this process has threads or an io_context, so that the child
/// copies nothing it cannot use. The destructor stops the child and reaps it.
class forked_server {
public:
    using stop_socket = net::local::stream_protocol::socket;
    using body = std::function<void(net::io_context&, tcp::acceptor&, stop_socket& stop)>;

    /// Forks and runs `serve` in the child; returns once the child listens.
    explicit forked_server(body serve) {
        int fds[2];
        if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
            throw std::runtime_error{"socketpair failed"};
        }
        m_pid = ::fork();
        if (m_pid < 0) {
            throw std::runtime_error{"fork failed"};
        }
        if (m_pid == 0) {
            ::close(fds[0]);
            int code = 0;
            try {
                net::io_context io{1};
                tcp::acceptor acceptor{io, {net::ip::address_v4::loopback(), 0}};
                acceptor.listen(net::socket_base::max_listen_connections);
                auto const bound = acceptor.local_endpoint().port();
                if (::write(fds[1], &bound, sizeof bound) != sizeof bound) {
                    ::_exit(3);
                }
                stop_socket stop{io, net::local::stream_protocol{}, fds[1]};
                serve(io, acceptor, stop);
            } catch (...) {
                code = 4;
            }
            ::_exit(code); // never back into the test framework
        }
        ::close(fds[1]);
        m_control = fds[0];
        pollfd ready{m_control, POLLIN, 0};
        if (::poll(&ready, 1, 30'000) != 1 ||
            ::read(m_control, &port, sizeof port) != sizeof port) {
            throw std::runtime_error{"the forked server did not start"};
        }
    }

    forked_server(forked_server const&) = delete;
    forked_server& operator=(forked_server const&) = delete;

    /// Stops the child (end of file on its stop socket, SIGKILL after 10 s) and reaps it.
    ~forked_server() { stop(); }

    /// Stops the child and returns its exit code (128 + signal if it was killed).
    int stop() {
        if (m_exit_code) {
            return *m_exit_code;
        }
        ::close(m_control);
        auto const deadline = mono::now() + std::chrono::seconds{10};
        int status = 0;
        while (::waitpid(m_pid, &status, WNOHANG) != m_pid) {
            if (mono::now() >= deadline) {
                ::kill(m_pid, SIGKILL);
                ::waitpid(m_pid, &status, 0);
                break;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds{5});
        }
        m_exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        return *m_exit_code;
    }

    unsigned short port = 0; ///< The child's listening port on 127.0.0.1.

private:
    pid_t m_pid = -1;
    int m_control = -1;
    std::optional<int> m_exit_code;
};

/// Returns the 1-minute load average of the machine (/proc/loadavg), or 0.
inline double load_average() {
    double load = 0;
    if (std::FILE* f = std::fopen("/proc/loadavg", "r")) {
        if (std::fscanf(f, "%lf", &load) != 1) {
            load = 0;
        }
        std::fclose(f);
    }
    return load;
}

/// Returns the CPU time the calling thread has used.
inline std::chrono::nanoseconds thread_cpu_time() {
    timespec t{};
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return std::chrono::seconds{t.tv_sec} + std::chrono::nanoseconds{t.tv_nsec};
}

/// Ticks every `period` on the io thread until stopped, recording how late each
/// tick ran, two ways: on the wall clock (which counts the time another process
/// held the core, as much as the handlers on this thread), and as the CPU time
/// the io thread spent since the previous tick beyond one period, an upper bound
/// on how long handlers on this thread kept the tick waiting, whatever the load
/// of the machine.
class heartbeat {
public:
    heartbeat(net::io_context& io, std::chrono::milliseconds period)
        : m_timer(io), m_period(period) {}

    /// Starts ticking.
    void start() {
        m_next = mono::now() + m_period;
        m_cpu = thread_cpu_time();
        tick();
    }
    /// Stops after the tick in progress.
    void stop() {
        m_stopped = true;
        m_timer.cancel();
    }

    /// Returns the largest delay of a tick past its time, on the wall clock.
    mono::duration max_stall() const { return m_max_stall; }
    /// Returns the largest CPU time the io thread spent between two ticks, beyond one period.
    std::chrono::nanoseconds max_busy_stall() const { return m_max_busy; }
    /// Returns how many ticks ran.
    int ticks() const { return m_ticks; }
    /// Returns the most threads the process had at a tick.
    std::size_t max_threads() const { return m_max_threads; }

private:
    void tick() {
        m_timer.expires_at(m_next);
        m_timer.async_wait([this](keel::asio::error_code ec) {
            if (ec || m_stopped) {
                return;
            }
            auto const now = mono::now();
            auto const cpu = thread_cpu_time();
            m_max_stall = std::max(m_max_stall, now - m_next);
            m_max_busy = std::max(m_max_busy, cpu - m_cpu - m_period);
            m_max_threads = std::max(m_max_threads, thread_count());
            ++m_ticks;
            m_next = now + m_period;
            m_cpu = thread_cpu_time();
            tick();
        });
    }

    net::steady_timer m_timer;
    std::chrono::milliseconds m_period;
    mono::time_point m_next{};
    std::chrono::nanoseconds m_cpu{};
    mono::duration m_max_stall{};
    std::chrono::nanoseconds m_max_busy{};
    std::size_t m_max_threads = 0;
    int m_ticks = 0;
    bool m_stopped = false;
};

} // namespace keel::integration
