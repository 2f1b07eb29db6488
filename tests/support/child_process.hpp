// SPDX-License-Identifier: MIT
// Test support: a child process started with posix_spawn whose stdout is read
// line by line on a thread (stderr goes to a file, or stays the test's), that a
// test can wait on for a line, signal and reap; and free_loopback_port(), a port
// nothing listens on at the moment. Every wait is bounded; the destructor kills
// (SIGKILL) and reaps a child still running, so a failing test leaves nothing
// behind.
#pragma once

#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace keel_test {

/// A child process with its stdout read line by line. Not copyable or movable.
class child_process {
public:
    /// Starts `argv[0]` (a path) with `argv`; its stderr goes to `stderr_path` when
    /// not empty. Throws std::runtime_error if it cannot start.
    explicit child_process(std::vector<std::string> argv, std::string const& stderr_path = {}) {
        int fds[2];
        if (::pipe2(fds, O_CLOEXEC) != 0) {
            throw std::runtime_error("pipe2 failed");
        }
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
        if (!stderr_path.empty()) {
            posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, stderr_path.c_str(),
                                             O_WRONLY | O_CREAT | O_TRUNC, 0644);
        }
        std::vector<char*> args;
        for (auto& a : argv) {
            args.push_back(a.data());
        }
        args.push_back(nullptr);
        int const rc = ::posix_spawn(&m_pid, args[0], &actions, nullptr, args.data(), environ);
        posix_spawn_file_actions_destroy(&actions);
        ::close(fds[1]);
        if (rc != 0) {
            ::close(fds[0]);
            throw std::runtime_error("cannot start " + argv[0] + ": errno " + std::to_string(rc));
        }
        m_reader = std::thread{[this, fd = fds[0]] { read_lines(fd); }};
    }
    child_process(child_process const&) = delete;
    child_process& operator=(child_process const&) = delete;

    ~child_process() {
        if (!m_exit) {
            ::kill(m_pid, SIGKILL);
            ::waitpid(m_pid, nullptr, 0);
        }
        m_reader.join();
    }

    /// Waits up to `limit` for a stdout line starting with `prefix` (after the last
    /// line this function returned); returns it, or nullopt.
    std::optional<std::string> wait_line(std::string_view prefix,
                                         std::chrono::steady_clock::duration limit) {
        std::unique_lock lock{m_mutex};
        auto const deadline = std::chrono::steady_clock::now() + limit;
        for (;;) {
            for (; m_next < m_lines.size(); ++m_next) {
                if (std::string_view{m_lines[m_next]}.starts_with(prefix)) {
                    return m_lines[m_next++];
                }
            }
            if (m_closed || m_changed.wait_until(lock, deadline) == std::cv_status::timeout) {
                if (m_closed || std::chrono::steady_clock::now() >= deadline) {
                    return std::nullopt;
                }
            }
        }
    }

    /// Returns every stdout line read so far.
    std::vector<std::string> lines() const {
        std::lock_guard lock{m_mutex};
        return m_lines;
    }

    /// Sends `sig` to the child.
    void signal(int sig) const { ::kill(m_pid, sig); }

    /// Waits up to `limit` for the child to exit; returns its exit code (128 + the
    /// signal when killed), or nullopt if it still runs.
    std::optional<int> wait_exit(std::chrono::steady_clock::duration limit) {
        auto const deadline = std::chrono::steady_clock::now() + limit;
        while (!m_exit) {
            int status = 0;
            if (::waitpid(m_pid, &status, WNOHANG) == m_pid) {
                m_exit = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
                break;
            }
            if (std::chrono::steady_clock::now() >= deadline) {
                return std::nullopt;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds{10});
        }
        return m_exit;
    }

private:
    void read_lines(int fd) {
        std::string partial;
        char buffer[4096];
        for (;;) {
            auto const n = ::read(fd, buffer, sizeof buffer);
            if (n <= 0) {
                break;
            }
            partial.append(buffer, static_cast<std::size_t>(n));
            std::size_t newline = 0;
            while ((newline = partial.find('\n')) != std::string::npos) {
                std::lock_guard lock{m_mutex};
                m_lines.push_back(partial.substr(0, newline));
                partial.erase(0, newline + 1);
                m_changed.notify_all();
            }
        }
        ::close(fd);
        std::lock_guard lock{m_mutex};
        m_closed = true;
        m_changed.notify_all();
    }

    pid_t m_pid = -1;
    std::optional<int> m_exit;
    mutable std::mutex m_mutex;
    std::condition_variable m_changed;
    std::vector<std::string> m_lines;
    std::size_t m_next = 0;
    bool m_closed = false;
    std::thread m_reader;
};

/// Returns a loopback port nothing listened on a moment ago (the kernel's choice
/// for port 0); another process may take it before the caller binds it.
inline int free_loopback_port() {
    int const fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        throw std::runtime_error("socket failed");
    }
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = 0;
    socklen_t length = sizeof address;
    // NOLINTNEXTLINE(cppcoreguidelines-pro-type-reinterpret-cast): the sockets API
    auto* generic = reinterpret_cast<sockaddr*>(&address);
    if (::bind(fd, generic, length) != 0 || ::getsockname(fd, generic, &length) != 0) {
        ::close(fd);
        throw std::runtime_error("bind to 127.0.0.1:0 failed");
    }
    ::close(fd);
    return ntohs(address.sin_port);
}

} // namespace keel_test
