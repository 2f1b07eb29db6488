// SPDX-License-Identifier: MIT
// Test support: a private redis-server child process on a free loopback port,
// without persistence, that a test (or a benchmark) can start, freeze, kill and
// restart; shared_redis_port(), the port of the server the ctest fixture
// started (or, when run by hand without the fixture, of a private one); and the
// connection and pool options the tests use against either.
#pragma once

#include <keel/redis/connection.hpp>
#include <keel/redis/pool.hpp>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fcntl.h>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace keel_test {

#ifndef KEEL_REDIS_SERVER
#define KEEL_REDIS_SERVER "redis-server"
#endif

/// A redis-server child process owned by the test; stopped by the destructor.
class redis_server {
public:
    /// Starts a server on `port`, or on a free loopback port when `port` is 0.
    /// Check running() (a benchmark skips when it is false).
    explicit redis_server(int port = 0) {
        if (port != 0) {
            m_port = port;
            start();
            return;
        }
        std::random_device seed;
        std::mt19937 gen{seed()};
        std::uniform_int_distribution<int> ports{20000, 60000};
        for (int attempt = 0; attempt < 30 && m_pid <= 0; ++attempt) {
            m_port = ports(gen);
            if (answers(m_port)) {
                continue;
            }
            start();
        }
    }
    redis_server(redis_server const&) = delete;
    redis_server& operator=(redis_server const&) = delete;
    ~redis_server() { stop(SIGTERM); }

    /// Returns the port.
    int port() const noexcept { return m_port; }
    /// Returns true while the child runs and answered PING.
    bool running() const noexcept { return m_pid > 0; }

    /// Starts (or restarts) the server on port(); returns running().
    bool start() {
        stop(SIGTERM);
        std::string const port = std::to_string(m_port);
        std::vector<std::string> args{
            KEEL_REDIS_SERVER, "--port", port,         "--bind",  "127.0.0.1", "--save", "",
            "--appendonly",    "no",     "--loglevel", "warning", "--logfile", ""};
        std::vector<char*> argv;
        for (auto& a : args) {
            argv.push_back(a.data());
        }
        argv.push_back(nullptr);
        // fork + exec rather than posix_spawn, so the child can ask the kernel to
        // kill it when this process dies: a crashed test never leaves a server behind.
        pid_t const parent = ::getpid();
        pid_t const pid = ::fork();
        if (pid < 0) {
            return false;
        }
        if (pid == 0) {
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (::getppid() != parent) {
                ::_exit(127);
            }
            int const null = ::open("/dev/null", O_WRONLY);
            if (null >= 0) {
                ::dup2(null, 1);
                ::dup2(null, 2);
            }
            ::execvp(argv[0], argv.data());
            ::_exit(127);
        }
        for (int i = 0; i < 400; ++i) {
            int status = 0;
            if (waitpid(pid, &status, WNOHANG) == pid) {
                return false; // exited: the port was taken
            }
            if (owns(pid)) {
                m_pid = pid;
                return true;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds{5});
        }
        ::kill(pid, SIGKILL);
        waitpid(pid, nullptr, 0);
        return false;
    }

    /// Kills the server without warning (SIGKILL) and reaps it.
    void kill() { stop(SIGKILL); }
    /// Freezes the server (SIGSTOP): connections stay open, commands hang.
    void freeze() {
        if (m_pid > 0) {
            ::kill(m_pid, SIGSTOP);
        }
    }
    /// Resumes a frozen server (SIGCONT).
    void thaw() {
        if (m_pid > 0) {
            ::kill(m_pid, SIGCONT);
        }
    }

private:
    void stop(int sig) {
        if (m_pid <= 0) {
            return;
        }
        ::kill(m_pid, SIGCONT);
        ::kill(m_pid, sig);
        waitpid(m_pid, nullptr, 0);
        m_pid = -1;
    }

    static bool answers(int port) {
        keel::redis::connection c{{.port = port,
                                   .connect_timeout = std::chrono::milliseconds{200},
                                   .command_timeout = std::chrono::milliseconds{500}}};
        auto r = c.command({"PING"});
        return r.has_value();
    }

    bool owns(pid_t pid) const {
        keel::redis::connection c{{.port = m_port,
                                   .connect_timeout = std::chrono::milliseconds{200},
                                   .command_timeout = std::chrono::milliseconds{500}}};
        auto r = c.command({"INFO", "server"});
        return r &&
               r->text().find("process_id:" + std::to_string(pid) + "\r") != std::string_view::npos;
    }

    int m_port = 0;
    pid_t m_pid = -1;
};

/// Returns the port of the shared test server: the one the ctest fixture wrote
/// to $KEEL_TEST_REDIS_PORT_FILE, else a private server started once per process.
inline int shared_redis_port() {
    if (char const* file = std::getenv("KEEL_TEST_REDIS_PORT_FILE")) {
        std::ifstream in{file};
        int port = 0;
        if (in >> port && port > 0) {
            return port;
        }
    }
    static redis_server fallback;
    return fallback.port();
}

/// Returns connection options for the shared server, with a command timeout
/// generous enough for a loaded machine.
inline keel::redis::connection_options shared_connection() {
    return {.port = shared_redis_port(), .command_timeout = std::chrono::milliseconds{2000}};
}

/// Returns options for a pool of `size` connections to the shared server.
inline keel::redis::pool_options shared_pool(std::size_t size = 2) {
    return {.connection = shared_connection(), .size = size};
}

/// Returns options for a pool of 2 connections to a private server on `port`,
/// with short timeouts, so a test that kills or freezes it sees failures fast.
inline keel::redis::pool_options private_pool(int port) {
    return {.connection = {.port = port,
                           .connect_timeout = std::chrono::milliseconds{200},
                           .command_timeout = std::chrono::milliseconds{100}},
            .size = 2};
}

/// Returns `prefix` followed by a random suffix, so runs never share Redis keys.
inline std::string unique_name(std::string const& prefix) {
    static std::mt19937_64 gen{std::random_device{}()};
    return prefix + "-" + std::to_string(gen());
}

#ifdef KEEL_REDIS_CLIENT
/// What one keel_redis_client process reported.
struct client_report {
    long admitted = -1;
    long remote = -1;
    long fallback = -1;
};

/// Runs `processes` keel_redis_client processes at once with `args` (after the
/// port) and returns their reports (admitted = -1 for a process that failed).
/// `where` is a port, or "cluster:<port>" for the Redis Cluster that node belongs to.
inline std::vector<client_report> run_clients(int processes, std::string const& where,
                                              std::string const& args) {
    std::vector<FILE*> pipes;
    std::string const command = std::string{KEEL_REDIS_CLIENT} + " " + where + " " + args;
    for (int i = 0; i < processes; ++i) {
        pipes.push_back(popen(command.c_str(), "r"));
    }
    std::vector<client_report> reports;
    for (FILE* pipe : pipes) {
        client_report r;
        if (pipe != nullptr) {
            if (std::fscanf(pipe, "%ld %ld %ld", &r.admitted, &r.remote, &r.fallback) != 3) {
                r = {};
            }
            if (pclose(pipe) != 0) {
                r = {};
            }
        }
        reports.push_back(r);
    }
    return reports;
}

/// Runs `processes` keel_redis_client processes against the server on `port`.
inline std::vector<client_report> run_clients(int processes, int port, std::string const& args) {
    return run_clients(processes, std::to_string(port), args);
}
#endif

} // namespace keel_test
