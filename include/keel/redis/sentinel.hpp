// SPDX-License-Identifier: MIT
// keel::redis::sentinel: the distributed limiters on a Redis master that Redis
// Sentinel watches. The master is found by name (SENTINEL get-master-addr-by-name,
// then ROLE on the named server must say "master"), used through one
// keel::redis::pool, and found again after a connection error or a READONLY reply
// (the server was demoted): during a failover the limiters' failure policy
// answers, afterwards Redis decides again, on the promoted replica.
#pragma once

#include <keel/core/error.hpp>
#include <keel/core/outcome.hpp>
#include <keel/detail/time.hpp>
#include <keel/detail/validate.hpp>
#include <keel/redis/connection.hpp>
#include <keel/redis/pool.hpp>
#include <keel/redis/script.hpp>
#include <keel/redis/target.hpp>
#include <keel/version.hpp>

#include <atomic>
#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

KEEL_BEGIN_NAMESPACE

namespace redis {

class async_sentinel;

/// Configures a keel::redis::sentinel (and a keel::redis::async_sentinel).
struct sentinel_options {
    /// The name the sentinels monitor the master under (`sentinel monitor <name>
    /// ...`). Required: must not be empty.
    std::string master_name{};
    /// Sentinels to ask, in this order (the one that answered last is asked first).
    /// Required: at least one, each with a non-empty host and a port in [1, 65535].
    std::vector<endpoint> sentinels{};
    /// Options of the master's pool; `master.connection.host` and `port` are
    /// replaced by the discovered master's. Defaults as keel::redis::pool's. The
    /// sentinels are asked with the same connect and command timeouts; a
    /// keel::redis::async_sentinel's connection to the master uses `master.connection`
    /// too (the pool serves its blocking run()).
    pool_options master{};
    /// Password for the sentinels (AUTH), separate from the data nodes' as in
    /// envoyproxy/ratelimit's REDIS_SENTINEL_AUTH. Default empty: none.
    std::string sentinel_password{};
    /// Shortest time between two look-ups caused by failing decisions. Default
    /// 100 ms: a failover takes about a second (down-after-milliseconds plus the
    /// election), so ten look-ups notice it soon enough without asking the
    /// sentinels on every failed decision. Range [0 ms, 60000 ms].
    std::chrono::milliseconds resolve_interval{100};
    /// Longest time a master is used without asking the sentinels again, even
    /// while it answers: a SENTINEL FAILOVER (or a partition) leaves the old master
    /// accepting writes until Sentinel demotes it, about 10 s later on Redis 7.0
    /// (measured here), while its count is no longer the one that matters. The
    /// decision that finds the interval over asks (one sentinel round trip and a
    /// ROLE). Default 1 s, the breaker's probe period. Range [0 ms, 3600000 ms];
    /// 0 asks only after failures.
    std::chrono::milliseconds recheck_interval{1000};
};

/// A Sentinel-managed master as a keel::redis::target (one route).
///
/// The master is looked up on first use, and again by the first decision after
/// `recheck_interval`. A decision that fails to reach it (a
/// transport failure) or is refused with READONLY (it became a replica) is
/// returned as is, so the limiter's failure policy and breaker answer it, and the
/// master is looked up again (at most once per `resolve_interval`; a breaker
/// probe is such a decision). A look-up asks each sentinel in turn and accepts an
/// address only if ROLE there answers "master", so a sentinel that has not yet
/// seen the failover is skipped. When the master changes, a new pool replaces the
/// old one (decisions in flight finish on the old one). Writes the old master
/// accepted after the replica was promoted are lost with it: a failover can admit
/// up to one window's count again. Thread-safe; building it touches no network; it
/// must outlive the limiters using it.
///
///     keel::redis::sentinel redis{{.master_name = "limits",
///                                  .sentinels = {{"10.0.0.5", 26379}, {"10.0.0.6", 26379}}}};
///     keel::redis::fixed_window api{redis, {.name = "api", .limit = 1000}};
class sentinel final : public target {
public:
    /// What the Sentinel client did so far (monotonic counters).
    struct statistics {
        std::uint64_t lookups = 0;   ///< Look-ups that found a master.
        std::uint64_t failovers = 0; ///< Look-ups that found a different master.
        std::uint64_t refused = 0;   ///< Addresses skipped because ROLE was not master.
    };

    /// Stores `options` (validated; throws std::invalid_argument naming the field).
    explicit sentinel(sentinel_options options)
        : sentinel(std::move(options), "keel::redis::sentinel") {}

    /// Returns the options.
    sentinel_options const& options() const noexcept { return m_options; }

    /// Runs `lua` on the current master; see the class comment for failures.
    outcome<reply> run(script const& lua, std::string_view key,
                       std::span<std::string_view const> args) override {
        if (m_options.recheck_interval.count() > 0) {
            resolve_now(false, m_options.recheck_interval);
        }
        std::shared_ptr<current> master = current_master();
        if (!master) {
            resolve_now(true, {});
            master = current_master();
            if (!master) {
                return failure::from(errc::unavailable);
            }
        }
        outcome<reply> r = master->connections.run(lua, key, args);
        if (calls_for_lookup(r)) {
            resolve_now(false, m_options.resolve_interval);
        }
        return r;
    }

    /// Returns the master in use, if one was found.
    std::optional<endpoint> master() const {
        std::shared_ptr<current> const m = current_master();
        if (!m) {
            return std::nullopt;
        }
        return m->address;
    }

    /// Looks the master up now (waiting for a look-up already running); returns
    /// true if a sentinel named a server whose ROLE is master.
    bool resolve() { return resolve_now(true, {}); }

    /// Returns the counters.
    statistics stats() const noexcept {
        return {m_lookups.load(std::memory_order_relaxed),
                m_failovers.load(std::memory_order_relaxed),
                m_refused.load(std::memory_order_relaxed)};
    }

private:
    // keel::redis::async_sentinel runs the same look-ups (on a worker thread), and
    // this class's blocking run() for its own.
    friend class async_sentinel;

    sentinel(sentinel_options options, std::string_view component)
        : m_options(validated(std::move(options), component)) {}

    struct current {
        current(endpoint a, pool_options const& o)
            : address(std::move(a)), connections(pool_options_at(o, address)) {}
        endpoint address;
        pool connections;
    };

    static sentinel_options validated(sentinel_options o, std::string_view component) {
        if (o.master_name.empty()) {
            keel::detail::invalid_configuration(component, "master_name must not be empty");
        }
        if (o.sentinels.empty()) {
            keel::detail::invalid_configuration(component,
                                                "sentinels must name at least one sentinel");
        }
        for (std::size_t i = 0; i < o.sentinels.size(); ++i) {
            std::string const name = "sentinels[" + std::to_string(i) + "].";
            if (o.sentinels[i].host.empty()) {
                keel::detail::invalid_configuration(component, name + "host must not be empty");
            }
            if (o.sentinels[i].port < 1 || o.sentinels[i].port > 65535) {
                keel::detail::invalid_option(component, name + "port", "in [1, 65535]",
                                             o.sentinels[i].port);
            }
        }
        detail::validate(o.master.connection, component, "master.connection.");
        if (o.resolve_interval < std::chrono::milliseconds::zero() ||
            o.resolve_interval > std::chrono::milliseconds{60000}) {
            keel::detail::invalid_option(component, "resolve_interval", "in [0 ms, 60000 ms]",
                                         o.resolve_interval);
        }
        if (o.recheck_interval < std::chrono::milliseconds::zero() ||
            o.recheck_interval > std::chrono::milliseconds{3600000}) {
            keel::detail::invalid_option(component, "recheck_interval", "in [0 ms, 3600000 ms]",
                                         o.recheck_interval);
        }
        // The pool validates the rest of `master` (size, timeouts) the same way.
        static_cast<void>(pool{pool_options_at(o.master, o.sentinels.front())});
        return o;
    }

    std::shared_ptr<current> current_master() const {
        std::lock_guard lock{m_mutex};
        return m_current;
    }

    connection_options to_sentinel(endpoint const& s) const {
        connection_options c = m_options.master.connection;
        c.host = s.host;
        c.port = s.port;
        c.password = m_options.sentinel_password;
        c.database = 0;
        return c;
    }

    /// Returns true if an answer means the master may have moved: a transport
    /// failure, or READONLY (the server was demoted to a replica).
    static bool calls_for_lookup(outcome<reply> const& r) {
        return !r || (r->is_error() && r->text().starts_with("READONLY"));
    }

    static std::int64_t now_ns() noexcept {
        return keel::detail::to_ns(std::chrono::steady_clock::now());
    }

    /// Returns true if the last look-up began at least `pace` ago (resolve_now
    /// with `wait` false would ask the sentinels). Cheap: one atomic load.
    bool due(std::chrono::milliseconds pace) const noexcept { return due(pace, now_ns()); }

    bool due(std::chrono::milliseconds pace, std::int64_t now) const noexcept {
        return now - m_last_lookup.load(std::memory_order_relaxed) >=
               std::chrono::nanoseconds{pace}.count();
    }

    /// Asks the sentinels (blocking: sentinel round trips and a ROLE); `wait` false
    /// skips unless due(pace), or while another look-up runs. Returns true if a
    /// master was found.
    bool resolve_now(bool wait, std::chrono::milliseconds pace) {
        std::int64_t const now = now_ns();
        if (!wait && !due(pace, now)) {
            return false;
        }
        std::unique_lock lock{m_resolve_mutex, std::defer_lock};
        if (wait) {
            lock.lock();
        } else if (!lock.try_lock()) {
            return false;
        }
        m_last_lookup.store(now, std::memory_order_relaxed);
        std::size_t const n = m_options.sentinels.size();
        for (std::size_t i = 0; i < n; ++i) {
            std::size_t const which = (m_first + i) % n;
            std::optional<endpoint> const named = ask(m_options.sentinels[which]);
            if (!named) {
                continue;
            }
            if (!is_master(*named)) {
                m_refused.fetch_add(1, std::memory_order_relaxed);
                continue;
            }
            m_first = which;
            m_lookups.fetch_add(1, std::memory_order_relaxed);
            std::lock_guard swap{m_mutex};
            if (!m_current || !(m_current->address == *named)) {
                if (m_current) {
                    m_failovers.fetch_add(1, std::memory_order_relaxed);
                }
                m_current = std::make_shared<current>(*named, m_options.master);
            }
            return true;
        }
        return false;
    }

    /// Returns the master `s` names, or nullopt (no answer, unknown name).
    std::optional<endpoint> ask(endpoint const& s) const {
        connection c{to_sentinel(s)};
        outcome<reply> r =
            c.command({"SENTINEL", "get-master-addr-by-name", m_options.master_name});
        if (!r || r->size() != 2) {
            return std::nullopt;
        }
        redisReply const* host = r->element(0);
        redisReply const* port = r->element(1);
        if (host->type != REDIS_REPLY_STRING || port->type != REDIS_REPLY_STRING ||
            host->len == 0) {
            return std::nullopt;
        }
        int p = 0;
        auto const [end, ec] = std::from_chars(port->str, port->str + port->len, p);
        if (ec != std::errc{} || end != port->str + port->len || p < 1 || p > 65535) {
            return std::nullopt;
        }
        return endpoint{std::string{host->str, host->len}, p};
    }

    /// Returns true if ROLE on `address` answers "master".
    bool is_master(endpoint const& address) const {
        connection_options o = m_options.master.connection;
        o.host = address.host;
        o.port = address.port;
        connection c{o};
        outcome<reply> r = c.command({"ROLE"});
        if (!r || r->size() == 0) {
            return false;
        }
        redisReply const* role = r->element(0);
        return role->type == REDIS_REPLY_STRING &&
               std::string_view{role->str, role->len} == "master";
    }

    sentinel_options m_options;
    mutable std::mutex m_mutex; // guards m_current
    std::shared_ptr<current> m_current;
    std::mutex m_resolve_mutex; // one look-up at a time; guards m_first
    std::size_t m_first = 0;
    std::atomic<std::int64_t> m_last_lookup{std::numeric_limits<std::int64_t>::min() / 2};
    std::atomic<std::uint64_t> m_lookups{0};
    std::atomic<std::uint64_t> m_failovers{0};
    std::atomic<std::uint64_t> m_refused{0};
};

} // namespace redis

KEEL_END_NAMESPACE
