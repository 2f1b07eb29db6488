// SPDX-License-Identifier: MIT
// keel::redis::connection: one blocking hiredis connection with a connect
// timeout, a command timeout and reconnection after failures, and
// keel::redis::reply, the owner of one hiredis reply. Used through
// keel::redis::pool by the distributed limiters; usable alone for tests and tools.
#pragma once

#include <keel/core/error.hpp>
#include <keel/core/outcome.hpp>
#include <keel/detail/validate.hpp>
#include <keel/version.hpp>

#include <hiredis/hiredis.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <pthread.h>
#include <signal.h>
#include <span>
#include <string>
#include <string_view>
#include <sys/time.h>
#include <time.h>
#include <utility>
#include <vector>

KEEL_BEGIN_NAMESPACE

namespace redis {

/// Names one Redis server (a Cluster node, a Sentinel) by host and port.
struct endpoint {
    /// Host name or address. Default "127.0.0.1". Must not be empty.
    std::string host = "127.0.0.1";
    /// TCP port. Default 6379 (Redis' own default). Valid range [1, 65535].
    int port = 6379;

    /// Returns "host:port", the form Redis writes in MOVED and ASK redirects.
    std::string text() const { return host + ":" + std::to_string(port); }
    /// Returns true if both name the same host and port.
    friend bool operator==(endpoint const&, endpoint const&) = default;
};

/// Configures how keel reaches one Redis server.
struct connection_options {
    /// Host name or address of the server. Default "127.0.0.1". Must not be empty.
    std::string host = "127.0.0.1";
    /// TCP port. Default 6379 (Redis' own default). Valid range [1, 65535].
    int port = 6379;
    /// Longest wait to establish a connection. Default 100 ms: a connection on
    /// loopback or a LAN takes well under 1 ms, and a limiter sits on the request
    /// path, so waiting for TCP's SYN retransmits (1 s and more) costs more than
    /// the failure policy's answer. Must be positive.
    std::chrono::milliseconds connect_timeout{100};
    /// Longest wait for one socket read or write of a command. Default 20 ms, the
    /// timeout Envoy gives its global rate-limit service call. Must be positive.
    /// When it expires the command counts as failed and the connection is
    /// reopened before its next use (a late reply must not answer a later command).
    std::chrono::milliseconds command_timeout{20};
    /// Password sent with AUTH after connecting; empty (the default) sends none.
    std::string password{};
    /// Database selected with SELECT after connecting. Default 0; must be >= 0 (a
    /// default server has 0 to 15). Redis Cluster supports only 0.
    int database = 0;
};

namespace detail {
/// Throws std::invalid_argument unless `o` is within the documented ranges, naming
/// each field `prefix` + its name ("connection.port" in keel::redis::pool's options).
inline void validate(connection_options const& o, std::string_view component,
                     std::string_view prefix = {}) {
    auto const field = [&](std::string_view name) {
        return std::string{prefix} + std::string{name};
    };
    if (o.host.empty()) {
        keel::detail::invalid_configuration(component, field("host") + " must not be empty");
    }
    if (o.port < 1 || o.port > 65535) {
        keel::detail::invalid_option(component, field("port"), "in [1, 65535]", o.port);
    }
    if (o.connect_timeout <= std::chrono::milliseconds::zero()) {
        keel::detail::invalid_option(component, field("connect_timeout"), "positive",
                                     o.connect_timeout);
    }
    if (o.command_timeout <= std::chrono::milliseconds::zero()) {
        keel::detail::invalid_option(component, field("command_timeout"), "positive",
                                     o.command_timeout);
    }
    if (o.database < 0) {
        keel::detail::invalid_option(component, field("database"), ">= 0", o.database);
    }
}

inline ::timeval to_timeval(std::chrono::milliseconds d) {
    ::timeval tv{};
    tv.tv_sec = static_cast<decltype(tv.tv_sec)>(d.count() / 1000);
    tv.tv_usec = static_cast<decltype(tv.tv_usec)>((d.count() % 1000) * 1000);
    return tv;
}

/// Blocks SIGPIPE on the calling thread for its lifetime, so writing to a socket
/// whose peer died returns EPIPE instead of killing the process (hiredis writes
/// with write(2), not send(MSG_NOSIGNAL)); a SIGPIPE raised meanwhile is consumed.
class sigpipe_guard {
public:
    sigpipe_guard() noexcept {
        ::sigset_t block;
        ::sigemptyset(&block);
        ::sigaddset(&block, SIGPIPE);
        m_blocked = ::pthread_sigmask(SIG_BLOCK, &block, &m_old) == 0 &&
                    ::sigismember(&m_old, SIGPIPE) == 0;
    }
    sigpipe_guard(sigpipe_guard const&) = delete;
    sigpipe_guard& operator=(sigpipe_guard const&) = delete;
    ~sigpipe_guard() {
        if (!m_blocked) {
            return; // SIGPIPE was already blocked here: leave it as the caller had it
        }
        ::sigset_t pending;
        ::sigemptyset(&pending);
        if (::sigpending(&pending) == 0 && ::sigismember(&pending, SIGPIPE) == 1) {
            ::sigset_t pipe;
            ::sigemptyset(&pipe);
            ::sigaddset(&pipe, SIGPIPE);
            ::timespec const zero{};
            while (::sigtimedwait(&pipe, nullptr, &zero) == -1 && errno == EINTR) {
            }
        }
        ::pthread_sigmask(SIG_SETMASK, &m_old, nullptr);
    }

private:
    ::sigset_t m_old{};
    bool m_blocked = false;
};

struct reply_deleter {
    void operator()(redisReply* r) const noexcept { freeReplyObject(r); }
};
struct context_deleter {
    void operator()(redisContext* c) const noexcept { redisFree(c); }
};
} // namespace detail

/// Owns one hiredis reply (or none) and reads it without copying.
///
/// A reply is whatever the server answered, including error replies such as
/// NOSCRIPT: is_error() tells those apart. Move-only; not thread-safe.
class reply {
public:
    /// Holds no reply.
    reply() = default;
    /// Takes ownership of `r` (may be null).
    explicit reply(redisReply* r) noexcept : m_reply(r) {}

    /// Returns the raw hiredis reply, or null.
    redisReply const* get() const noexcept { return m_reply.get(); }
    /// Returns true if a reply is held.
    explicit operator bool() const noexcept { return m_reply != nullptr; }
    /// Returns true if the server answered with an error reply.
    bool is_error() const noexcept { return m_reply && m_reply->type == REDIS_REPLY_ERROR; }
    /// Returns true if the reply is an integer.
    bool is_integer() const noexcept { return m_reply && m_reply->type == REDIS_REPLY_INTEGER; }
    /// Returns true if the reply is an array.
    bool is_array() const noexcept { return m_reply && m_reply->type == REDIS_REPLY_ARRAY; }
    /// Returns the integer of an integer reply; 0 for other types.
    long long integer() const noexcept { return is_integer() ? m_reply->integer : 0; }
    /// Returns the text of a string, status or error reply; empty for other types.
    std::string_view text() const noexcept {
        if (!m_reply || m_reply->str == nullptr) {
            return {};
        }
        return {m_reply->str, m_reply->len};
    }
    /// Returns the number of elements of an array reply; 0 for other types.
    std::size_t size() const noexcept { return is_array() ? m_reply->elements : 0; }
    /// Returns element `i` of an array reply, or null when out of range or not an array.
    redisReply const* element(std::size_t i) const noexcept {
        return i < size() ? m_reply->element[i] : nullptr;
    }

private:
    std::unique_ptr<redisReply, detail::reply_deleter> m_reply;
};

/// A blocking connection to one Redis server, opened lazily and reopened after
/// any failure.
///
/// Each command is written and read with `command_timeout` per socket
/// operation. A transport failure (refused, reset, timed out, protocol error)
/// closes the connection and is returned as a keel::failure with errc::timeout
/// (the command timed out) or errc::unavailable (anything else); the next
/// command reconnects, waiting at most `connect_timeout`. Error replies from the
/// server are replies, not failures. Not thread-safe: one thread at a time (the
/// pool hands each connection to one caller); movable, not copyable.
///
///     keel::redis::connection c{{.port = 6379}};
///     keel::outcome<keel::redis::reply> r = c.command({"PING"});
class connection {
public:
    /// Stores `options` (validated; throws std::invalid_argument) without connecting.
    explicit connection(connection_options options) : m_options(std::move(options)) {
        detail::validate(m_options, "keel::redis::connection");
    }

    /// Returns the options this connection was built with.
    connection_options const& options() const noexcept { return m_options; }

    /// Returns true if a connection is currently open (it may still fail on use).
    bool connected() const noexcept { return m_context != nullptr; }

    /// Closes the connection; the next command reconnects.
    void reset() noexcept { m_context.reset(); }

    /// Returns how many connections this object has opened so far (1 after the first command).
    std::uint64_t connects() const noexcept { return m_connects; }

    /// Opens the connection if it is closed; returns an empty failure on success.
    std::optional<failure> ensure_connected() {
        if (m_context) {
            return std::nullopt;
        }
        ::timeval const connect_tv = detail::to_timeval(m_options.connect_timeout);
        std::unique_ptr<redisContext, detail::context_deleter> context{
            redisConnectWithTimeout(m_options.host.c_str(), m_options.port, connect_tv)};
        if (!context) {
            return failure::from(errc::unavailable);
        }
        if (context->err != 0) {
            bool const timed_out =
                context->err == REDIS_ERR_IO &&
                (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINPROGRESS);
            return failure::from(timed_out ? errc::timeout : errc::unavailable);
        }
        if (redisSetTimeout(context.get(), detail::to_timeval(m_options.command_timeout)) !=
            REDIS_OK) {
            return failure::from(errc::unavailable);
        }
        m_context = std::move(context);
        ++m_connects;
        if (!m_options.password.empty()) {
            std::string_view const auth[] = {"AUTH", m_options.password};
            auto r = send(auth);
            if (!r || r->is_error()) {
                m_context.reset();
                return failure::from(errc::unavailable);
            }
        }
        if (m_options.database != 0) {
            std::string const db = std::to_string(m_options.database);
            std::string_view const select[] = {"SELECT", db};
            auto r = send(select);
            if (!r || r->is_error()) {
                m_context.reset();
                return failure::from(errc::unavailable);
            }
        }
        return std::nullopt;
    }

    /// Sends one command (its arguments, binary-safe) and returns the reply, or
    /// the transport failure (errc::timeout or errc::unavailable) after closing
    /// the connection. Connects first if needed. When a connection opened earlier
    /// turns out dead (reset or closed by the server, e.g. after a restart) the
    /// command is sent once more on a new connection; a timeout is never resent.
    outcome<reply> command(std::span<std::string_view const> args) {
        bool const reused = m_context != nullptr;
        if (auto f = ensure_connected()) {
            return *std::move(f);
        }
        outcome<reply> r = send(args);
        if (!r && reused && r.failure().is(errc::unavailable)) {
            if (auto f = ensure_connected()) {
                return *std::move(f);
            }
            return send(args);
        }
        return r;
    }

    /// Sends one command given as a braced list, e.g. `c.command({"GET", key})`.
    outcome<reply> command(std::initializer_list<std::string_view> args) {
        return command(std::span<std::string_view const>{args.begin(), args.size()});
    }

    /// Sends `before` and then `args`; returns the reply to `args`, or the failure
    /// or error reply of `before` (ASKING ahead of a command after a Cluster ASK).
    outcome<reply> command_after(std::span<std::string_view const> before,
                                 std::span<std::string_view const> args) {
        outcome<reply> r = command(before);
        if (!r || r->is_error()) {
            return r;
        }
        return command(args);
    }

    /// Returns `args` in Redis' wire format (RESP), as batch() sends it.
    static std::string format(std::span<std::string_view const> args) {
        std::vector<char const*> argv;
        std::vector<std::size_t> lengths;
        argv.reserve(args.size());
        lengths.reserve(args.size());
        for (std::string_view a : args) {
            argv.push_back(a.data());
            lengths.push_back(a.size());
        }
        char* raw = nullptr;
        int const n = redisFormatCommandArgv(&raw, static_cast<int>(argv.size()), argv.data(),
                                             lengths.data());
        std::string out;
        if (n > 0 && raw != nullptr) {
            out.assign(raw, static_cast<std::size_t>(n));
        }
        redisFreeCommand(raw);
        return out;
    }

    /// What batch() did: the replies read (in order) and, if it stopped early, why.
    struct batch_result {
        std::size_t read = 0;           ///< Replies read before a failure (all of them without).
        std::optional<failure> error{}; ///< errc::timeout or errc::unavailable; none on success.
    };

    /// Writes every command of `commands` (each as format() returns it) in one
    /// batch and reads `expected` replies in order into `out` (appended), with
    /// `timeout` per socket read or write instead of command_timeout; connects
    /// first if needed. A transport failure closes the connection (the replies not
    /// read would answer later commands) and stops the batch; the replies read
    /// before it are in `out`. Never resends.
    batch_result batch(std::span<std::string const> commands, std::size_t expected,
                       std::vector<reply>& out, std::chrono::milliseconds timeout) {
        batch_result result;
        if (auto f = ensure_connected()) {
            result.error = *std::move(f);
            return result;
        }
        if (redisSetTimeout(m_context.get(), detail::to_timeval(timeout)) != REDIS_OK) {
            m_context.reset();
            result.error = failure::from(errc::unavailable);
            return result;
        }
        for (std::string const& c : commands) {
            if (redisAppendFormattedCommand(m_context.get(), c.data(), c.size()) != REDIS_OK) {
                m_context.reset();
                result.error = failure::from(errc::unavailable);
                return result;
            }
        }
        detail::sigpipe_guard const no_sigpipe;
        for (; result.read < expected; ++result.read) {
            errno = 0;
            void* raw = nullptr;
            if (redisGetReply(m_context.get(), &raw) != REDIS_OK || raw == nullptr) {
                bool const timed_out =
                    m_context->err == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK);
                m_context.reset();
                result.error = failure::from(timed_out ? errc::timeout : errc::unavailable);
                return result;
            }
            out.emplace_back(static_cast<redisReply*>(raw));
        }
        return result;
    }

private:
    outcome<reply> send(std::span<std::string_view const> args) {
        m_argv.clear();
        m_lengths.clear();
        for (std::string_view a : args) {
            m_argv.push_back(a.data());
            m_lengths.push_back(a.size());
        }
        detail::sigpipe_guard const no_sigpipe;
        errno = 0;
        void* raw = redisCommandArgv(m_context.get(), static_cast<int>(m_argv.size()),
                                     m_argv.data(), m_lengths.data());
        if (raw == nullptr) {
            bool const timed_out =
                m_context->err == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK);
            // The reply may still arrive later and would answer the next command: drop the socket.
            m_context.reset();
            return failure::from(timed_out ? errc::timeout : errc::unavailable);
        }
        return reply{static_cast<redisReply*>(raw)};
    }

    connection_options m_options;
    std::unique_ptr<redisContext, detail::context_deleter> m_context;
    std::uint64_t m_connects = 0;
    std::vector<char const*> m_argv;
    std::vector<std::size_t> m_lengths;
};

} // namespace redis

KEEL_END_NAMESPACE
