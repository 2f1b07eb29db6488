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
// Usage: keel_downstream [--port N] [--control-port N]   (0: chosen by the OS)
// Prints "listening data=<port> control=<port>" once both ports are bound, and
// exits 0 on SIGTERM or SIGINT.
#include "sanitizers.hpp"

#include <httplib.h>

#include <fmt/format.h>

#include <atomic>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

namespace {

// How the data port behaves; changed by the control port, read by every request.
class behaviour {
public:
    void set(int delay_ms, double fail_fraction, bool hang) {
        {
            std::lock_guard lock{m_mutex};
            m_delay_ms = delay_ms;
            m_fail_fraction = fail_fraction;
            m_hang = hang;
            ++m_generation;
        }
        m_changed.notify_all();
    }

    // Waits as configured, then says whether this request should fail. A change of
    // settings (or release()) ends a wait early, so a hung request never outlives
    // the outage it simulates.
    bool serve() {
        std::unique_lock lock{m_mutex};
        auto const generation = m_generation;
        if (m_hang) {
            m_changed.wait(lock, [&] { return m_generation != generation; });
        } else if (m_delay_ms > 0) {
            m_changed.wait_for(lock, std::chrono::milliseconds{m_delay_ms},
                               [&] { return m_generation != generation; });
        }
        // Exactly `fraction` of every run of calls fails, spread evenly.
        auto const n = m_calls++;
        auto const before = static_cast<std::int64_t>(static_cast<double>(n) * m_fail_fraction);
        auto const after = static_cast<std::int64_t>(static_cast<double>(n + 1) * m_fail_fraction);
        return after > before;
    }

    void release() {
        {
            std::lock_guard lock{m_mutex};
            ++m_generation;
        }
        m_changed.notify_all();
    }

    std::string describe() {
        std::lock_guard lock{m_mutex};
        return fmt::format("delay_ms={} fail={} hang={} calls={}\n", m_delay_ms, m_fail_fraction,
                           m_hang ? 1 : 0, m_calls);
    }

private:
    std::mutex m_mutex;
    std::condition_variable m_changed;
    int m_delay_ms = 0;
    double m_fail_fraction = 0.0;
    bool m_hang = false;
    std::uint64_t m_generation = 0;
    std::int64_t m_calls = 0;
};

// The data port: a server that can be stopped and started again on the same port.
class data_server {
public:
    explicit data_server(behaviour& how) : m_how(how) {}
    ~data_server() { down(); }

    // Binds `port` (0: any) and serves on a thread; returns the bound port or -1.
    int up(int port) {
        std::lock_guard lock{m_mutex};
        if (m_server) {
            return m_port;
        }
        auto server = std::make_unique<httplib::Server>();
        server->new_task_queue = [] { return new httplib::ThreadPool(64); };
        server->set_keep_alive_timeout(1);
        server->Get("/work", [this](httplib::Request const&, httplib::Response& res) {
            if (m_how.serve()) {
                res.status = 503;
                res.set_content("injected failure\n", "text/plain");
            } else {
                res.set_content("ok\n", "text/plain");
            }
        });
        int const bound = port == 0 ? server->bind_to_any_port("127.0.0.1")
                                    : (server->bind_to_port("127.0.0.1", port) ? port : -1);
        if (bound < 0) {
            return -1;
        }
        m_port = bound;
        m_thread = std::thread{[s = server.get()] { s->listen_after_bind(); }};
        m_server = std::move(server);
        return m_port;
    }

    // Stops listening and closes the port; requests in progress are released first.
    void down() {
        std::lock_guard lock{m_mutex};
        if (!m_server) {
            return;
        }
        m_server->stop();
        m_how.release();
        m_thread.join();
        m_server.reset();
    }

    bool is_up() {
        std::lock_guard lock{m_mutex};
        return m_server != nullptr;
    }

private:
    behaviour& m_how;
    std::mutex m_mutex;
    std::unique_ptr<httplib::Server> m_server;
    std::thread m_thread;
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
    // Signals are taken synchronously by the main thread (sigwait), so every thread
    // started below inherits the blocked mask.
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);

    behaviour how;
    data_server data{how};
    int const data_port = data.up(port_arg(argc, argv, "--port", 0));
    if (data_port < 0) {
        fmt::print(stderr, "keel_downstream: cannot bind the data port\n");
        return 1;
    }

    httplib::Server control;
    control.Get("/control", [&](httplib::Request const& req, httplib::Response& res) {
        auto const number = [&](char const* key, double fallback) {
            return req.has_param(key) ? std::atof(req.get_param_value(key).c_str()) : fallback;
        };
        how.set(static_cast<int>(number("delay_ms", 0)), number("fail", 0), number("hang", 0) != 0);
        res.set_content(how.describe(), "text/plain");
    });
    control.Get("/down", [&](httplib::Request const&, httplib::Response& res) {
        data.down();
        res.set_content("down\n", "text/plain");
    });
    control.Get("/up", [&](httplib::Request const&, httplib::Response& res) {
        bool const ok = data.up(data_port) == data_port;
        res.status = ok ? 200 : 500;
        res.set_content(ok ? "up\n" : "cannot bind\n", "text/plain");
    });
    control.Get("/state", [&](httplib::Request const&, httplib::Response& res) {
        res.set_content(fmt::format("up={} {}", data.is_up() ? 1 : 0, how.describe()),
                        "text/plain");
    });
    int const control_port_arg = port_arg(argc, argv, "--control-port", 0);
    int const control_port =
        control_port_arg == 0
            ? control.bind_to_any_port("127.0.0.1")
            : (control.bind_to_port("127.0.0.1", control_port_arg) ? control_port_arg : -1);
    if (control_port < 0) {
        fmt::print(stderr, "keel_downstream: cannot bind the control port\n");
        return 1;
    }
    std::thread control_thread{[&] { control.listen_after_bind(); }};

    fmt::print("listening data={} control={}\n", data_port, control_port);
    std::fflush(stdout);

    int received = 0;
    sigwait(&signals, &received);
    control.stop();
    control_thread.join();
    data.down();
    return 0;
}
