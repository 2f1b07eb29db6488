// SPDX-License-Identifier: MIT
// keel::redis::detail::async_nodes: what the event-loop Cluster and Sentinel
// clients share: one keel::redis::async_connection per server, made on first use,
// a worker thread for the rare blocking work (reading a slot map, asking the
// sentinels) so that it never runs on the loop, and timers on the loop.
// Internal to keel::redis::async_cluster and async_sentinel.
#pragma once

#include <keel/asio/detail/asio.hpp>
#include <keel/asio/detail/socket.hpp>
#include <keel/redis/async_connection.hpp>
#include <keel/redis/connection.hpp>
#include <keel/version.hpp>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

KEEL_BEGIN_NAMESPACE

namespace redis::detail {

/// The connections of an event-loop client and its off-loop worker. Thread-safe.
class async_nodes {
public:
    using executor_type = keel::asio::net::any_io_executor;

    /// Connections use `options` with each server's host and port.
    async_nodes(executor_type executor, connection_options options)
        : m_executor(std::move(executor)), m_options(std::move(options)),
          m_worker([this] { work(); }) {}

    async_nodes(async_nodes const&) = delete;
    async_nodes& operator=(async_nodes const&) = delete;

    /// Stops the worker (after the job it runs, if any) and closes the connections.
    ~async_nodes() {
        {
            std::lock_guard lock{m_jobs_mutex};
            m_stopping = true;
        }
        m_wake.notify_one();
        m_worker.join();
    }

    /// Returns the connection to `address`, made on first use; it lives as long as
    /// this object (a server that left keeps its idle connection).
    std::shared_ptr<async_connection> at(endpoint const& address) {
        std::lock_guard lock{m_mutex};
        for (auto const& [where, conn] : m_connections) {
            if (where == address) {
                return conn;
            }
        }
        connection_options o = m_options;
        o.host = address.host;
        o.port = address.port;
        m_connections.emplace_back(address, std::make_shared<async_connection>(m_executor, o));
        return m_connections.back().second;
    }

    /// Runs `job` (it may block) on the worker thread, then `then` on the executor.
    void offload(std::function<void()> job, std::function<void()> then) {
        {
            std::lock_guard lock{m_jobs_mutex};
            m_jobs.emplace_back(std::move(job), std::move(then));
        }
        m_wake.notify_one();
    }

    /// Calls `then` on the executor after `delay`.
    void after(std::chrono::milliseconds delay, std::function<void()> then) {
        auto timer = std::make_shared<keel::asio::net::steady_timer>(m_executor, delay);
        timer->async_wait([timer, then = std::move(then)](keel::asio::error_code) { then(); });
    }

    /// Returns the executor the connections and callbacks run on.
    executor_type const& executor() const noexcept { return m_executor; }

private:
    void work() {
        std::unique_lock lock{m_jobs_mutex};
        for (;;) {
            m_wake.wait(lock, [this] { return m_stopping || !m_jobs.empty(); });
            if (m_stopping) {
                return; // jobs still queued are dropped with their callbacks
            }
            auto [job, then] = std::move(m_jobs.front());
            m_jobs.pop_front();
            lock.unlock();
            try {
                job();
                keel::asio::net::post(m_executor, std::move(then));
            } catch (...) { // NOLINT(bugprone-empty-catch): a job that throws (bad_alloc)
                // is dropped with its callback, as at shutdown
            }
            lock.lock();
        }
    }

    executor_type m_executor;
    connection_options m_options;
    std::mutex m_mutex; // guards m_connections
    std::vector<std::pair<endpoint, std::shared_ptr<async_connection>>> m_connections;
    std::mutex m_jobs_mutex;
    std::condition_variable m_wake;
    std::deque<std::pair<std::function<void()>, std::function<void()>>> m_jobs;
    bool m_stopping = false;
    std::thread m_worker; // last: starts once the rest is built
};

} // namespace redis::detail

KEEL_END_NAMESPACE
