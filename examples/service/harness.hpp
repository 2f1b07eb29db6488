// SPDX-License-Identifier: MIT
// What the demo driver and the end-to-end tests share: starting the servers as
// real child processes (stdout read line by line, signals, bounded waits for
// exit), plain HTTP GETs on loopback with their latency, and reading counters
// back from the service's /metrics page. Loopback only, every wait bounded.
#pragma once

#include <httplib.h>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <spawn.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace keel_demo {

using namespace std::chrono_literals;
using mono = std::chrono::steady_clock;

/// Returns the directory holding the running program (from /proc/self/exe).
inline std::string program_directory() {
    std::string path(4096, '\0');
    auto const n = ::readlink("/proc/self/exe", path.data(), path.size());
    if (n <= 0) {
        return ".";
    }
    path.resize(static_cast<std::size_t>(n));
    auto const slash = path.rfind('/');
    return slash == std::string::npos ? "." : path.substr(0, slash);
}

/// A child process with its stdout read line by line on a thread.
///
/// The destructor kills a child that is still running (SIGKILL) and reaps it,
/// so a failing test never leaves servers behind. Not copyable or movable.
class child_process {
public:
    /// Starts `argv[0]` with the arguments `argv`; throws std::runtime_error if it cannot.
    explicit child_process(std::vector<std::string> argv, std::string name)
        : m_name(std::move(name)) {
        int fds[2];
        if (::pipe2(fds, O_CLOEXEC) != 0) {
            throw std::runtime_error("pipe failed");
        }
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
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
            throw std::runtime_error(fmt::format("cannot start {}: errno {}", argv[0], rc));
        }
        m_reader = std::thread{[this, fd = fds[0]] { read_lines(fd); }};
    }

    child_process(child_process const&) = delete;
    child_process& operator=(child_process const&) = delete;

    ~child_process() {
        if (!m_exit_status) {
            ::kill(m_pid, SIGKILL);
            int status = 0;
            ::waitpid(m_pid, &status, 0);
        }
        m_reader.join();
    }

    /// Returns the process id.
    pid_t pid() const noexcept { return m_pid; }

    /// Waits up to `limit` for a stdout line starting with `prefix` (from the
    /// first line not yet taken by this function); returns it, or nullopt.
    std::optional<std::string> wait_line(std::string_view prefix, mono::duration limit) {
        std::unique_lock lock{m_mutex};
        auto const deadline = mono::now() + limit;
        while (true) {
            for (; m_next_line < m_lines.size(); ++m_next_line) {
                if (std::string_view{m_lines[m_next_line]}.starts_with(prefix)) {
                    return m_lines[m_next_line++];
                }
            }
            if (m_closed || m_changed.wait_until(lock, deadline) == std::cv_status::timeout) {
                if (mono::now() >= deadline || m_closed) {
                    return std::nullopt;
                }
            }
        }
    }

    /// Calls `f(line)` for every line read since the last call (a poll, never blocks).
    void drain_lines(std::function<void(std::string const&)> const& f) {
        std::vector<std::string> fresh;
        {
            std::lock_guard lock{m_mutex};
            fresh.assign(m_lines.begin() + static_cast<std::ptrdiff_t>(m_polled), m_lines.end());
            m_polled = m_lines.size();
        }
        for (auto const& line : fresh) {
            f(line);
        }
    }

    /// Sends `signal` to the child.
    void signal(int sig) const { ::kill(m_pid, sig); }

    /// Waits up to `limit` for the child to exit; returns its exit code (128 +
    /// signal number when killed by a signal), or nullopt if it still runs.
    std::optional<int> wait_exit(mono::duration limit) {
        if (m_exit_status) {
            return m_exit_status;
        }
        auto const deadline = mono::now() + limit;
        while (true) {
            int status = 0;
            pid_t const r = ::waitpid(m_pid, &status, WNOHANG);
            if (r == m_pid) {
                m_exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
                return m_exit_status;
            }
            if (mono::now() >= deadline) {
                return std::nullopt;
            }
            std::this_thread::sleep_for(5ms);
        }
    }

private:
    void read_lines(int fd) {
        std::string pending;
        char buffer[4096];
        while (true) {
            auto const n = ::read(fd, buffer, sizeof buffer);
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n <= 0) {
                break;
            }
            pending.append(buffer, static_cast<std::size_t>(n));
            std::size_t start = 0;
            std::vector<std::string> lines;
            for (auto nl = pending.find('\n'); nl != std::string::npos;
                 nl = pending.find('\n', start)) {
                lines.push_back(pending.substr(start, nl - start));
                start = nl + 1;
            }
            pending.erase(0, start);
            std::lock_guard lock{m_mutex};
            for (auto& line : lines) {
                m_lines.push_back(std::move(line));
            }
            m_changed.notify_all();
        }
        ::close(fd);
        std::lock_guard lock{m_mutex};
        m_closed = true;
        m_changed.notify_all();
    }

    std::string m_name;
    pid_t m_pid = -1;
    std::optional<int> m_exit_status;
    std::thread m_reader;
    std::mutex m_mutex;
    std::condition_variable m_changed;
    std::deque<std::string> m_lines;
    std::size_t m_next_line = 0;
    std::size_t m_polled = 0;
    bool m_closed = false;
};

/// Returns the integer after `key=` in `line`, or -1.
inline long long field(std::string_view line, std::string_view key) {
    auto const at = line.find(fmt::format(" {}=", key));
    if (at == std::string_view::npos) {
        return -1;
    }
    return std::atoll(std::string{line.substr(at + key.size() + 2)}.c_str());
}

/// Returns the word after `key=` in `line` (up to the next space), or an empty string.
inline std::string text_field(std::string_view line, std::string_view key) {
    auto const at = line.find(fmt::format(" {}=", key));
    if (at == std::string_view::npos) {
        return {};
    }
    auto const rest = line.substr(at + key.size() + 2);
    return std::string{rest.substr(0, rest.find(' '))};
}

/// The answer to one GET: status (0 when no response came), body, headers, latency.
struct reply {
    int status = 0;
    std::string error;
    std::string body;
    httplib::Headers headers;
    mono::duration latency{};

    /// Returns the header `name`'s value, or an empty string.
    std::string header(std::string const& name) const {
        auto const it = headers.find(name);
        return it == headers.end() ? std::string{} : it->second;
    }
};

/// Sends GET `path` to 127.0.0.1:`port` on a new connection, giving up after `limit`.
inline reply get(int port, std::string const& path, httplib::Headers const& headers = {},
                 mono::duration limit = 10s) {
    httplib::Client client{"127.0.0.1", port};
    client.set_connection_timeout(limit);
    client.set_read_timeout(limit);
    client.set_write_timeout(limit);
    auto const start = mono::now();
    auto result = client.Get(path.c_str(), headers);
    reply r;
    r.latency = mono::now() - start;
    if (!result) {
        r.error = httplib::to_string(result.error());
        return r;
    }
    r.status = result->status;
    r.body = result->body;
    r.headers = result->headers;
    return r;
}

/// A keep-alive HTTP connection to 127.0.0.1:`port`, reconnecting when the server
/// closed it: what a busy client uses, so that thousands of requests do not
/// leave thousands of sockets in TIME_WAIT. One per thread.
class session {
public:
    explicit session(int port, mono::duration limit = 10s) : m_client("127.0.0.1", port) {
        m_client.set_keep_alive(true);
        m_client.set_tcp_nodelay(true); // no Nagle delay between requests on one connection
        m_client.set_connection_timeout(limit);
        m_client.set_read_timeout(limit);
        m_client.set_write_timeout(limit);
    }

    /// Sends GET `path` with `headers`.
    reply get(std::string const& path, httplib::Headers const& headers = {}) {
        auto const start = mono::now();
        auto result = m_client.Get(path.c_str(), headers);
        reply r;
        r.latency = mono::now() - start;
        if (!result) {
            r.error = httplib::to_string(result.error());
            return r;
        }
        r.status = result->status;
        r.body = result->body;
        r.headers = result->headers;
        return r;
    }

private:
    httplib::Client m_client;
};

/// Returns the value of the sample `name` (with its labels, exactly as rendered,
/// e.g. `keel_demo_requests_total{outcome="ok"}`) in a Prometheus text page, or -1.
inline double metric(std::string const& page, std::string_view name) {
    std::size_t pos = 0;
    while (pos < page.size()) {
        auto const end = std::min(page.find('\n', pos), page.size());
        std::string_view const line{page.data() + pos, end - pos};
        if (line.size() > name.size() && line.starts_with(name) && line[name.size()] == ' ') {
            return std::atof(std::string{line.substr(name.size() + 1)}.c_str());
        }
        pos = end + 1;
    }
    return -1;
}

/// Returns a percentile (0-100) of `samples` (sorted in place); zero when empty.
inline mono::duration percentile(std::vector<mono::duration>& samples, double p) {
    if (samples.empty()) {
        return {};
    }
    std::sort(samples.begin(), samples.end());
    auto const index =
        static_cast<std::size_t>(p / 100.0 * static_cast<double>(samples.size() - 1));
    return samples[index];
}

/// Returns `d` in milliseconds as a double.
inline double ms(mono::duration d) {
    return std::chrono::duration<double, std::milli>(d).count();
}

} // namespace keel_demo
