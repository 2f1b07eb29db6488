// SPDX-License-Identifier: MIT
// keel::redis::pool: a small thread-safe pool of keel::redis::connection. Each
// caller borrows one connection for one command (or script) and gives it back;
// connections open lazily and reopen after failures. The distributed limiters
// share one pool per Redis server; it is their keel::redis::target for a single
// server.
#pragma once

#include <keel/detail/validate.hpp>
#include <keel/ops/pool_sizing.hpp>
#include <keel/redis/connection.hpp>
#include <keel/redis/detail/pipeline.hpp>
#include <keel/redis/script.hpp>
#include <keel/redis/target.hpp>
#include <keel/version.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

KEEL_BEGIN_NAMESPACE

namespace redis {

/// Configures a keel::redis::pool.
struct pool_options {
    /// How to reach the server; every pooled connection uses these options.
    connection_options connection{};
    /// Most connections open at once. Default 0: sized by keel's pool-sizing
    /// helper from expected_rate and expected_round_trip when expected_rate is set
    /// (keel::ops::min_pool_for_wait_probability: the smallest pool with which at
    /// most 1 % of decisions wait for a connection, Erlang C), else by
    /// keel::redis::default_pool_size() (one connection per hardware thread, at
    /// least 2 and at most 64: a blocking client keeps one command in flight per
    /// connection, so more connections than calling threads buy nothing). Range
    /// [0, 1024]; a computed size is clamped to [2, 1024].
    std::size_t size = 0;
    /// Decisions per second this process sends at peak, used only to size the
    /// pool when `size` is 0. Default 0: unknown. Range [0, 1e12].
    double expected_rate = 0.0;
    /// Mean time a decision holds its connection (one round trip plus the
    /// script), used only to size the pool. Default 100 µs: about 0.1 ms per
    /// command as redis-cell measured from a client. Must be positive.
    std::chrono::microseconds expected_round_trip{100};
    /// Longest wait for a free connection when all are busy. Default 0: the
    /// connection's command_timeout, so a saturated pool fails like a slow Redis.
    /// Must be >= 0.
    std::chrono::milliseconds acquire_timeout{0};
    /// Sends the decisions of concurrent callers in batches: run() enqueues the
    /// script call on one of `size` shared connections, and whichever caller finds
    /// that connection idle writes everything queued in one write and reads the
    /// replies in order (rueidis' design), so batches grow with concurrency and
    /// nothing waits for a timer. Default false: one decision per connection per
    /// round trip, which has the lowest latency at low concurrency and isolates a
    /// slow reply to its own caller; envoyproxy/ratelimit made implicit pipelining
    /// its default and reverted after p999 regressions. Choose it when many threads
    /// share few connections or the round trip is long (ioredis: +35-50 %, keel's
    /// bench: over 3x per connection at 16 callers on loopback). command_timeout
    /// still applies per decision; a timed-out batch drops its connection, so only
    /// that batch goes to the failure policy. acquire() always lends plain
    /// connections (opened only when used).
    bool auto_pipelining = false;
    /// With auto_pipelining, how long a caller about to write a batch waits for
    /// more callers when at least two are already queued (never with fewer).
    /// Default 0: no added delay; rueidis' MaxFlushDelay is 0 too, and go-redis
    /// measured that waiting unconditionally cut 64 callers' throughput 3x. About
    /// 20 µs (rueidis' suggestion) trades a little latency for fewer syscalls under
    /// load. Range [0 µs, 1000 µs].
    std::chrono::microseconds max_flush_delay{0};
};

/// Returns `options` with its connections aimed at `address` (a Cluster node, the
/// master a Sentinel names): what keel::redis::cluster and sentinel give each pool.
inline pool_options pool_options_at(pool_options options, endpoint const& address) {
    options.connection.host = address.host;
    options.connection.port = address.port;
    return options;
}

/// Returns the pool size used when pool_options::size is 0: the number of
/// hardware threads, clamped to [2, 64].
inline std::size_t default_pool_size() noexcept {
    std::size_t const threads = std::thread::hardware_concurrency();
    return std::clamp<std::size_t>(threads, 2, 64);
}

/// A bounded, thread-safe pool of Redis connections to one server, and the
/// keel::redis::target of the limiters for a single server (one route).
///
/// acquire() hands out an idle connection or waits up to `acquire_timeout` for
/// one; the returned lease gives it back when destroyed. Each thread starts its
/// search at a slot picked from its id, so with at least as many connections as
/// calling threads every thread keeps using "its" connection and acquire/release
/// are one atomic exchange each, no lock. Connections are opened on first use,
/// so building a pool never touches the network. Thread-safe; the pool must
/// outlive every lease and every limiter using it.
///
///     keel::redis::pool redis{{.connection = {.host = "10.0.0.5", .port = 6379}}};
///     if (auto lease = redis.acquire()) { auto r = lease->command({"PING"}); }
class pool final : public target {
public:
    /// A borrowed connection; returns it to the pool on destruction. Move-only.
    class lease {
    public:
        lease() = default;
        lease(lease&& other) noexcept
            : m_pool(std::exchange(other.m_pool, nullptr)),
              m_conn(std::exchange(other.m_conn, nullptr)), m_slot(other.m_slot) {}
        lease& operator=(lease&& other) noexcept {
            if (this != &other) {
                release();
                m_pool = std::exchange(other.m_pool, nullptr);
                m_conn = std::exchange(other.m_conn, nullptr);
                m_slot = other.m_slot;
            }
            return *this;
        }
        lease(lease const&) = delete;
        lease& operator=(lease const&) = delete;
        ~lease() { release(); }

        /// Returns true if a connection was obtained.
        explicit operator bool() const noexcept { return m_conn != nullptr; }
        /// Returns the borrowed connection; precondition: bool(*this).
        connection& operator*() const noexcept { return *m_conn; }
        /// Returns the borrowed connection; precondition: bool(*this).
        connection* operator->() const noexcept { return m_conn; }

    private:
        friend class pool;
        lease(pool* p, connection* c, std::size_t slot) noexcept
            : m_pool(p), m_conn(c), m_slot(slot) {}
        void release() noexcept {
            if (m_pool != nullptr && m_conn != nullptr) {
                m_pool->give_back(m_conn, m_slot);
            }
            m_pool = nullptr;
            m_conn = nullptr;
        }
        pool* m_pool = nullptr;
        connection* m_conn = nullptr;
        std::size_t m_slot = 0;
    };

    /// Builds the pool's (unopened) connections; throws std::invalid_argument on options out of
    /// range.
    explicit pool(pool_options options) : m_options(std::move(options)) {
        constexpr std::string_view component = "keel::redis::pool";
        detail::validate(m_options.connection, component, "connection.");
        if (m_options.size > 1024) {
            keel::detail::invalid_option(component, "size", "in [0, 1024]", m_options.size);
        }
        if (m_options.acquire_timeout < std::chrono::milliseconds::zero()) {
            keel::detail::invalid_option(component, "acquire_timeout", ">= 0",
                                         m_options.acquire_timeout);
        }
        if (!(m_options.expected_rate >= 0.0) || m_options.expected_rate > 1e12) {
            keel::detail::invalid_option(component, "expected_rate", "in [0, 1e12]",
                                         m_options.expected_rate);
        }
        if (m_options.expected_round_trip <= std::chrono::microseconds::zero()) {
            keel::detail::invalid_option(component, "expected_round_trip", "positive",
                                         m_options.expected_round_trip);
        }
        if (m_options.max_flush_delay < std::chrono::microseconds::zero() ||
            m_options.max_flush_delay > std::chrono::microseconds{1000}) {
            keel::detail::invalid_option(component, "max_flush_delay", "in [0 us, 1000 us]",
                                         m_options.max_flush_delay);
        }
        std::size_t const size = m_options.size != 0 ? m_options.size : sized(m_options);
        m_options.size = size;
        if (m_options.acquire_timeout == std::chrono::milliseconds::zero()) {
            m_options.acquire_timeout = m_options.connection.command_timeout;
        }
        m_connections.reserve(size);
        m_slots = std::make_unique<std::atomic<connection*>[]>(size);
        for (std::size_t i = 0; i < size; ++i) {
            m_connections.push_back(std::make_unique<connection>(m_options.connection));
            m_slots[i].store(m_connections.back().get(), std::memory_order_relaxed);
            if (m_options.auto_pipelining) {
                m_pipelines.push_back(std::make_unique<detail::pipeline>(
                    m_options.connection, m_options.max_flush_delay));
            }
        }
    }

    /// Runs `lua` on a leased connection; errc::timeout when no connection became
    /// free within acquire_timeout (a saturated pool fails like a slow Redis).
    outcome<reply> run(script const& lua, std::string_view key,
                       std::span<std::string_view const> args) override {
        std::string_view const keys[] = {key};
        return run(lua, keys, args);
    }

    /// Runs `lua` with `keys` and `args` on a leased connection, or on a shared
    /// one with auto_pipelining; a non-empty `before` is sent right ahead of it on
    /// the same connection (see keel::redis::script::run).
    outcome<reply> run(script const& lua, std::span<std::string_view const> keys,
                       std::span<std::string_view const> args,
                       std::span<std::string_view const> before = {}) {
        if (!m_pipelines.empty()) {
            std::size_t const i =
                std::hash<std::thread::id>{}(std::this_thread::get_id()) % m_pipelines.size();
            return lua.run(*m_pipelines[i], keys, args, before);
        }
        lease conn = acquire();
        if (!conn) {
            return failure::from(errc::timeout);
        }
        return lua.run(*conn, keys, args, before);
    }

    /// Returns the batches, commands and dropped connections of the auto-pipelined
    /// connections so far (all zero without auto_pipelining).
    detail::pipeline::statistics pipeline_stats() const {
        detail::pipeline::statistics total;
        for (auto const& p : m_pipelines) {
            auto const s = p->stats();
            total.batches += s.batches;
            total.commands += s.commands;
            total.dropped += s.dropped;
        }
        return total;
    }
    /// Returns how many auto-pipelined connections were opened so far.
    std::uint64_t pipeline_connects() const {
        std::uint64_t n = 0;
        for (auto const& p : m_pipelines) {
            n += p->connects();
        }
        return n;
    }

    /// Returns the size pool_options::size = 0 resolves to for `o`.
    static std::size_t sized(pool_options const& o) {
        if (o.expected_rate > 0.0) {
            if (ops::offered_load(o.expected_rate, o.expected_round_trip) >= 1024.0) {
                return 1024; // beyond the cap; also bounds the O(size) search below
            }
            std::size_t const erlang =
                ops::min_pool_for_wait_probability(o.expected_rate, o.expected_round_trip, 0.01);
            return std::clamp<std::size_t>(erlang, 2, 1024);
        }
        return default_pool_size();
    }

    /// Returns the options (with size and acquire_timeout resolved).
    pool_options const& options() const noexcept { return m_options; }
    /// Returns the most connections this pool opens.
    std::size_t size() const noexcept { return m_connections.size(); }

    /// Returns a lease on a connection, or an empty lease if none became free
    /// within acquire_timeout.
    lease acquire() {
        std::size_t const start = std::hash<std::thread::id>{}(std::this_thread::get_id());
        if (lease l = try_take(start)) {
            return l;
        }
        auto const deadline = std::chrono::steady_clock::now() + m_options.acquire_timeout;
        std::unique_lock lock{m_mutex};
        m_waiters.fetch_add(1, std::memory_order_seq_cst);
        lease l;
        while (!(l = try_take(start))) {
            if (m_freed.wait_until(lock, deadline) == std::cv_status::timeout) {
                l = try_take(start);
                break;
            }
        }
        m_waiters.fetch_sub(1, std::memory_order_relaxed);
        return l;
    }

private:
    lease try_take(std::size_t start) noexcept {
        std::size_t const n = m_connections.size();
        for (std::size_t i = 0; i < n; ++i) {
            std::size_t const slot = (start + i) % n;
            if (m_slots[slot].load(std::memory_order_relaxed) == nullptr) {
                continue;
            }
            if (connection* c = m_slots[slot].exchange(nullptr, std::memory_order_acquire)) {
                return lease{this, c, slot};
            }
        }
        return {};
    }

    void give_back(connection* c, std::size_t slot) noexcept {
        m_slots[slot].store(c, std::memory_order_seq_cst);
        if (m_waiters.load(std::memory_order_seq_cst) > 0) {
            // Taking the lock orders this wake-up after the waiter's check.
            std::lock_guard lock{m_mutex};
            m_freed.notify_all();
        }
    }

    pool_options m_options;
    std::vector<std::unique_ptr<connection>> m_connections;
    std::vector<std::unique_ptr<detail::pipeline>> m_pipelines;
    std::unique_ptr<std::atomic<connection*>[]> m_slots;
    std::mutex m_mutex;
    std::condition_variable m_freed;
    std::atomic<int> m_waiters{0};
};

} // namespace redis

KEEL_END_NAMESPACE
