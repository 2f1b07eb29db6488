// SPDX-License-Identifier: MIT
// keel::redis::pool: a small thread-safe pool of keel::redis::connection. Each
// caller borrows one connection for one command (or script) and gives it back;
// connections open lazily and reopen after failures. The distributed limiters
// share one pool per Redis server.
#pragma once

#include <keel/redis/connection.hpp>
#include <keel/version.hpp>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

KEEL_BEGIN_NAMESPACE

namespace redis {

/// Configures a keel::redis::pool.
struct pool_options {
    /// How to reach the server; every pooled connection uses these options.
    connection_options connection{};
    /// Most connections open at once. Default 0: sized for the machine by
    /// keel::redis::default_pool_size() (one connection per hardware thread, at
    /// least 2 and at most 64; a blocking client keeps one command in flight per
    /// connection, so more connections than threads that call buy nothing). Range
    /// [0, 1024].
    std::size_t size = 0;
    /// Longest wait for a free connection when all are busy. Default 0: the
    /// connection's command_timeout, so a saturated pool fails like a slow Redis.
    /// Must be >= 0.
    std::chrono::milliseconds acquire_timeout{0};
};

/// Returns the pool size used when pool_options::size is 0: the number of
/// hardware threads, clamped to [2, 64].
inline std::size_t default_pool_size() noexcept {
    std::size_t const threads = std::thread::hardware_concurrency();
    return std::clamp<std::size_t>(threads, 2, 64);
}

/// A bounded, thread-safe pool of Redis connections to one server.
///
/// acquire() hands out an idle connection (opening a new one while fewer than
/// `size` exist) or waits up to `acquire_timeout` for one; the returned lease
/// gives it back when destroyed. Connections are opened on first use, so
/// building a pool never touches the network. Thread-safe; the pool must
/// outlive every lease and every limiter using it.
///
///     keel::redis::pool redis{{.connection = {.host = "10.0.0.5", .port = 6379}}};
///     if (auto lease = redis.acquire()) { auto r = lease->command({"PING"}); }
class pool {
public:
    /// A borrowed connection; returns it to the pool on destruction. Move-only.
    class lease {
    public:
        lease() = default;
        lease(lease&& other) noexcept
            : m_pool(std::exchange(other.m_pool, nullptr)), m_conn(std::move(other.m_conn)) {}
        lease& operator=(lease&& other) noexcept {
            if (this != &other) {
                release();
                m_pool = std::exchange(other.m_pool, nullptr);
                m_conn = std::move(other.m_conn);
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
        connection* operator->() const noexcept { return m_conn.get(); }

    private:
        friend class pool;
        lease(pool* p, std::unique_ptr<connection> c) noexcept : m_pool(p), m_conn(std::move(c)) {}
        void release() noexcept {
            if (m_pool != nullptr && m_conn) {
                m_pool->give_back(std::move(m_conn));
            }
            m_pool = nullptr;
        }
        pool* m_pool = nullptr;
        std::unique_ptr<connection> m_conn;
    };

    /// Builds an empty pool; throws std::invalid_argument on options out of range.
    explicit pool(pool_options options) : m_options(std::move(options)) {
        detail::validate(m_options.connection, "keel::redis::pool");
        if (m_options.size > 1024) {
            throw std::invalid_argument("keel::redis::pool: size must be in [0, 1024], got " +
                                        std::to_string(m_options.size));
        }
        if (m_options.acquire_timeout < std::chrono::milliseconds::zero()) {
            throw std::invalid_argument("keel::redis::pool: acquire_timeout must be >= 0 ms, got " +
                                        std::to_string(m_options.acquire_timeout.count()));
        }
        m_size = m_options.size == 0 ? default_pool_size() : m_options.size;
        m_idle.reserve(m_size); // give_back() then never allocates
        if (m_options.acquire_timeout == std::chrono::milliseconds::zero()) {
            m_options.acquire_timeout = m_options.connection.command_timeout;
        }
    }

    pool(pool const&) = delete;
    pool& operator=(pool const&) = delete;

    /// Returns the options (with size and acquire_timeout resolved).
    pool_options const& options() const noexcept { return m_options; }
    /// Returns the most connections this pool opens.
    std::size_t size() const noexcept { return m_size; }

    /// Returns a lease on a connection, or an empty lease if none became free
    /// within acquire_timeout.
    lease acquire() {
        std::unique_lock lock{m_mutex};
        auto const ready = [&] { return !m_idle.empty() || m_created < m_size; };
        if (!ready() && !m_freed.wait_for(lock, m_options.acquire_timeout, ready)) {
            return {};
        }
        if (!m_idle.empty()) {
            auto c = std::move(m_idle.back());
            m_idle.pop_back();
            return lease{this, std::move(c)};
        }
        ++m_created;
        lock.unlock();
        return lease{this, std::make_unique<connection>(m_options.connection)};
    }

private:
    void give_back(std::unique_ptr<connection> c) noexcept {
        {
            std::lock_guard lock{m_mutex};
            m_idle.push_back(std::move(c));
        }
        m_freed.notify_one();
    }

    pool_options m_options;
    std::size_t m_size = 0;
    std::mutex m_mutex;
    std::condition_variable m_freed;
    std::vector<std::unique_ptr<connection>> m_idle;
    std::size_t m_created = 0;
};

} // namespace redis

KEEL_END_NAMESPACE
