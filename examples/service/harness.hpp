// SPDX-License-Identifier: MIT
// What the demo driver and the end-to-end tests share: starting the servers as
// real child processes (stdout read line by line, signals, bounded waits for
// exit, their memory and threads from /proc), plain HTTP GETs on loopback with
// their latency, thousands of concurrent requests from one thread (poll), raw
// sockets for clients that misbehave, and reading counters back from the
// service's /metrics page. Loopback only, every wait bounded.
#pragma once

#include <httplib.h>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/socket.h>
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

/// Raises this process's open-file limit to its hard limit (thousands of sockets).
inline void raise_file_limit() {
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        ::setrlimit(RLIMIT_NOFILE, &limit);
    }
}

/// Returns a field of /proc/<pid>/status in kB (e.g. "VmRSS", "VmHWM"), or -1.
inline long long proc_status_kb(pid_t pid, std::string_view key) {
    std::ifstream in{fmt::format("/proc/{}/status", pid)};
    std::string line;
    while (std::getline(in, line)) {
        if (line.size() > key.size() && line.starts_with(key) && line[key.size()] == ':') {
            return std::atoll(line.c_str() + key.size() + 1);
        }
    }
    return -1;
}

/// Returns how many threads of process `pid` bear each name (/proc/<pid>/task/*/comm).
inline std::map<std::string, int> thread_names(pid_t pid) {
    std::map<std::string, int> names;
    auto const dir = fmt::format("/proc/{}/task", pid);
    if (DIR* d = ::opendir(dir.c_str())) {
        while (dirent* e = ::readdir(d)) {
            if (e->d_name[0] == '.') {
                continue;
            }
            std::ifstream in{fmt::format("{}/{}/comm", dir, e->d_name)};
            std::string name;
            std::getline(in, name);
            ++names[name];
        }
        ::closedir(d);
    }
    return names;
}

/// A TCP connection to 127.0.0.1:`port` for clients that misbehave (slow, huge heads).
/// Closes the socket on destruction. Not copyable.
class raw_connection {
public:
    /// Connects (blocking); fd() is -1 if that failed.
    explicit raw_connection(int port) : m_fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
        sockaddr_in to{};
        to.sin_family = AF_INET;
        to.sin_port = htons(static_cast<std::uint16_t>(port));
        to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (m_fd >= 0 && ::connect(m_fd, reinterpret_cast<sockaddr const*>(&to), sizeof to) != 0) {
            ::close(m_fd);
            m_fd = -1;
        }
    }
    raw_connection(raw_connection const&) = delete;
    raw_connection& operator=(raw_connection const&) = delete;
    ~raw_connection() {
        if (m_fd >= 0) {
            ::close(m_fd);
        }
    }

    /// Returns the socket, or -1.
    int fd() const noexcept { return m_fd; }

    /// Sends `bytes` (blocking, no SIGPIPE); returns false if the connection failed.
    bool send(std::string_view bytes) const {
        while (!bytes.empty()) {
            auto const n = ::send(m_fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n <= 0) {
                return false;
            }
            bytes.remove_prefix(static_cast<std::size_t>(n));
        }
        return true;
    }

    /// Reads until the peer closes, an error, or `limit`; returns what arrived.
    std::string read_all(mono::duration limit) const {
        std::string in;
        auto const deadline = mono::now() + limit;
        char buffer[4096];
        while (mono::now() < deadline) {
            pollfd p{m_fd, POLLIN, 0};
            auto const left =
                std::chrono::duration_cast<std::chrono::milliseconds>(deadline - mono::now());
            if (::poll(&p, 1, static_cast<int>(std::max<long long>(1, left.count()))) <= 0) {
                continue;
            }
            auto const n = ::recv(m_fd, buffer, sizeof buffer, 0);
            if (n <= 0) {
                break;
            }
            in.append(buffer, static_cast<std::size_t>(n));
        }
        return in;
    }

private:
    int m_fd;
};

/// Returns the status code of the HTTP response starting `text`, or 0.
inline int status_of(std::string_view text) {
    if (text.size() < 12 || !text.starts_with("HTTP/1.")) {
        return 0;
    }
    return std::atoi(std::string{text.substr(9, 3)}.c_str());
}

/// The answer to one of many concurrent requests: status (0: none), latency, the
/// response's head and body as received.
struct raw_reply {
    int status = 0;
    mono::duration latency{};
    std::string text;
};

/// Sends `n` requests at once, each on its own connection from this one thread
/// (non-blocking sockets and poll), request i being `request_text(i)` (which should ask
/// for Connection: close); waits up to `limit` for every answer. Raise the file limit
/// first (raise_file_limit()) for more than about 1000.
inline std::vector<raw_reply>
concurrent_requests(int port, int n, std::function<std::string(int)> const& request_text,
                    mono::duration limit) {
    struct conn {
        int fd = -1;
        std::string out;
        std::size_t sent = 0;
        bool done = false;
    };
    std::vector<conn> conns(static_cast<std::size_t>(n));
    std::vector<raw_reply> replies(static_cast<std::size_t>(n));
    std::vector<pollfd> fds(static_cast<std::size_t>(n));
    auto const start = mono::now();
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(static_cast<std::uint16_t>(port));
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int open = 0;
    for (std::size_t i = 0; i < conns.size(); ++i) {
        auto& c = conns[i];
        c.out = request_text(static_cast<int>(i));
        c.fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c.fd < 0 || (::connect(c.fd, reinterpret_cast<sockaddr const*>(&to), sizeof to) != 0 &&
                         errno != EINPROGRESS)) {
            c.done = true;
        } else {
            ++open;
        }
        fds[i] = pollfd{c.done ? -1 : c.fd, POLLOUT, 0};
    }
    auto const deadline = start + limit;
    char buffer[4096];
    while (open > 0 && mono::now() < deadline) {
        if (::poll(fds.data(), fds.size(), 50) <= 0) {
            continue;
        }
        for (std::size_t i = 0; i < conns.size(); ++i) {
            auto& c = conns[i];
            if (c.done || fds[i].revents == 0) {
                continue;
            }
            bool finished = false;
            if (c.sent < c.out.size() && (fds[i].revents & POLLOUT) != 0) {
                auto const w =
                    ::send(c.fd, c.out.data() + c.sent, c.out.size() - c.sent, MSG_NOSIGNAL);
                if (w > 0) {
                    c.sent += static_cast<std::size_t>(w);
                } else if (errno != EAGAIN && errno != EINTR) {
                    finished = true;
                }
                if (c.sent == c.out.size()) {
                    fds[i].events = POLLIN;
                }
            } else if ((fds[i].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
                auto const r = ::recv(c.fd, buffer, sizeof buffer, 0);
                if (r > 0) {
                    replies[i].text.append(buffer, static_cast<std::size_t>(r));
                } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
                    finished = true;
                }
            }
            if (finished) {
                c.done = true;
                --open;
                replies[i].latency = mono::now() - start;
                replies[i].status = status_of(replies[i].text);
                fds[i].fd = -1;
                ::close(c.fd);
            }
        }
    }
    for (auto& c : conns) {
        if (!c.done && c.fd >= 0) {
            ::close(c.fd);
        }
    }
    return replies;
}

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
