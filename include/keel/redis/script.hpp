// SPDX-License-Identifier: MIT
// keel::redis::script: a Lua script run by EVALSHA under its SHA-1; its source is
// sent (EVAL, which also caches it) only when the server says NOSCRIPT: on first
// use, after SCRIPT FLUSH, after a restart or on a new failover target.
#pragma once

#include <keel/core/error.hpp>
#include <keel/core/outcome.hpp>
#include <keel/redis/connection.hpp>
#include <keel/redis/detail/sha1.hpp>
#include <keel/version.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

KEEL_BEGIN_NAMESPACE

namespace redis {

/// A Lua script known by its SHA-1 and run atomically on the server.
///
/// run() sends `EVALSHA sha numkeys keys... args...`; when the server answers
/// NOSCRIPT it sends the source once with EVAL on the same connection, which runs
/// it and caches it for the following EVALSHAs, so callers never see NOSCRIPT. Thread-safe (the
/// script is immutable apart from a statistics counter); each call uses the connection it is given.
///
///     keel::redis::script const incr{"return redis.call('INCRBY', KEYS[1], ARGV[1])"};
///     auto r = incr.run(conn, {"{user:42}"}, {"5"});
class script {
public:
    /// Stores `source` and computes its SHA-1.
    explicit script(std::string source)
        : m_source(std::move(source)), m_sha(detail::sha1_hex(m_source)) {}

    script(script const& other) : m_source(other.m_source), m_sha(other.m_sha) {}
    script& operator=(script const&) = delete;

    /// Returns the Lua source.
    std::string const& source() const noexcept { return m_source; }
    /// Returns the lowercase hexadecimal SHA-1 of the source, as Redis names it.
    std::string const& sha() const noexcept { return m_sha; }
    /// Returns how many times run() had to load the script (NOSCRIPT answers).
    std::uint64_t loads() const noexcept { return m_loads.load(std::memory_order_relaxed); }

    /// Runs the script with `keys` and `args` on `conn`; returns the reply (which
    /// may be an error reply raised by the script) or the transport failure. A
    /// non-empty `before` is a command sent on the same connection ahead of the
    /// EVALSHA and again ahead of the EVAL (ASKING after a Cluster ASK redirect:
    /// it admits only the next command); its error reply or failure is returned.
    /// `Conn` is keel::redis::connection or anything with its command(args) and
    /// command_after(before, args) (the pool's auto-pipelined connections).
    template <class Conn = connection>
    outcome<reply> run(Conn& conn, std::span<std::string_view const> keys,
                       std::span<std::string_view const> args,
                       std::span<std::string_view const> before = {}) const {
        return with_evalsha(keys, args, [&](std::span<std::string_view> argv) {
            std::span<std::string_view const> const command{argv.data(), argv.size()};
            outcome<reply> r = send(conn, command, before);
            if (!r || !is_noscript(*r)) {
                return r;
            }
            m_loads.fetch_add(1, std::memory_order_relaxed);
            // EVAL runs the source and caches it under the same SHA-1, in one round
            // trip, and cannot race with another SCRIPT FLUSH the way SCRIPT LOAD +
            // EVALSHA could.
            argv[0] = "EVAL";
            argv[1] = m_source;
            return send(conn, command, before);
        });
    }

    /// Returns `EVALSHA sha numkeys keys... args...` in Redis' wire format, for a
    /// connection that writes commands itself (keel::redis::async_connection).
    std::string format(std::span<std::string_view const> keys,
                       std::span<std::string_view const> args) const {
        return with_evalsha(keys, args, [](std::span<std::string_view> argv) {
            return connection::format(std::span<std::string_view const>{argv.data(), argv.size()});
        });
    }

    /// Returns the EVAL form (the source instead of the SHA-1, which also caches it)
    /// of `evalsha`, a command format() made, to send after the server answered it
    /// NOSCRIPT; counts one load.
    std::string reload(std::string_view evalsha) const {
        m_loads.fetch_add(1, std::memory_order_relaxed);
        // format() wrote "*<n>\r\n$7\r\nEVALSHA\r\n$40\r\n<sha>\r\n" and then the
        // rest; the rest is the same after EVAL and the source.
        std::size_t const count_end = evalsha.find("\r\n") + 2;
        std::size_t const rest = count_end + sizeof("$7\r\nEVALSHA\r\n$40\r\n") - 1 + 40 + 2;
        std::string out;
        out.reserve(evalsha.size() + m_source.size() + 16);
        out.append(evalsha.substr(0, count_end)).append("$4\r\nEVAL\r\n$");
        out.append(std::to_string(m_source.size())).append("\r\n").append(m_source);
        out.append("\r\n").append(evalsha.substr(rest));
        return out;
    }

    /// Returns true if `r` is the server's NOSCRIPT error (the script is not cached there).
    static bool is_noscript(reply const& r) noexcept {
        return r.is_error() && r.text().starts_with("NOSCRIPT");
    }

    /// Runs the script with keys and arguments given as braced lists.
    template <class Conn = connection>
    outcome<reply> run(Conn& conn, std::initializer_list<std::string_view> keys,
                       std::initializer_list<std::string_view> args) const {
        return run(conn, std::span<std::string_view const>{keys.begin(), keys.size()},
                   std::span<std::string_view const>{args.begin(), args.size()});
    }

private:
    /// Calls `fn` with `EVALSHA sha numkeys keys... args...` as a span of arguments it
    /// may change (run() turns it into EVAL); returns what `fn` returns.
    template <class Fn>
    std::invoke_result_t<Fn, std::span<std::string_view>>
    with_evalsha(std::span<std::string_view const> keys, std::span<std::string_view const> args,
                 Fn&& fn) const {
        std::string const numkeys = std::to_string(keys.size());
        // The limiters' calls fit in a fixed array; longer ones use the heap.
        std::array<std::string_view, 16> small{};
        std::vector<std::string_view> large;
        std::size_t const count = 3 + keys.size() + args.size();
        std::span<std::string_view> argv{small.data(), count};
        if (count > small.size()) {
            large.resize(count);
            argv = std::span<std::string_view>{large};
        }
        argv[0] = "EVALSHA";
        argv[1] = m_sha;
        argv[2] = numkeys;
        std::copy(keys.begin(), keys.end(), argv.begin() + 3);
        std::copy(args.begin(), args.end(),
                  argv.begin() + 3 + static_cast<std::ptrdiff_t>(keys.size()));
        return std::forward<Fn>(fn)(argv);
    }

    template <class Conn>
    static outcome<reply> send(Conn& conn, std::span<std::string_view const> command,
                               std::span<std::string_view const> before) {
        if (!before.empty()) {
            return conn.command_after(before, command);
        }
        return conn.command(command);
    }

    std::string m_source;
    std::string m_sha;
    mutable std::atomic<std::uint64_t> m_loads{0};
};

} // namespace redis

KEEL_END_NAMESPACE
