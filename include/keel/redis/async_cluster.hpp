// SPDX-License-Identifier: MIT
// keel::redis::async_cluster: a Redis Cluster for limiters that decide inside an
// Asio event loop. The same keel::redis::cluster (slot map, redirects, counters,
// one breaker per master) with each master reached through a
// keel::redis::async_connection on the loop, and the slot map read on a worker
// thread, so no decision blocks the loop's thread. Needs keel::redis and keel::asio.
#pragma once

#include <keel/asio/detail/asio.hpp>
#include <keel/core/outcome.hpp>
#include <keel/redis/async_connection.hpp>
#include <keel/redis/cluster.hpp>
#include <keel/redis/connection.hpp>
#include <keel/redis/detail/async_nodes.hpp>
#include <keel/redis/script.hpp>
#include <keel/redis/target.hpp>
#include <keel/version.hpp>

#include <chrono>
#include <cstddef>
#include <functional>
#include <span>
#include <string_view>
#include <utility>

KEEL_BEGIN_NAMESPACE

namespace redis {

/// A Redis Cluster as the target of limiters used inside an event loop.
///
/// run_async() follows the slot map and the redirects exactly as
/// keel::redis::cluster::run() does (it is that cluster's code: MOVED, ASK with
/// ASKING sent right ahead on the same connection, TRYAGAIN once after
/// tryagain_delay on a timer, at most max_redirects), sending each script to its
/// master over a keel::redis::async_connection per node (options:
/// `cluster_options::node.connection`; the loop pipelines what its coroutines
/// ask). Reading the slot map, the one blocking step (CLUSTER SHARDS, a dead node's
/// connect timeout), runs on a worker thread of this object; a decision whose
/// slot's master is not known yet waits for that read. The blocking run() (the
/// limiters' try_acquire) uses the cluster's pools, from any thread (on the loop's
/// it blocks the loop).
///
/// Thread-safe. The io_context must outlive it, and it must outlive the limiters
/// using it; destroy it with no decision in flight.
///
///     asio::io_context io;
///     keel::redis::async_cluster redis{io.get_executor(), {.seeds = {{"10.0.0.5", 7000}}}};
///     keel::redis::gcra per_client{redis, {.name = "client", .rate = 10}};
///     auto d = co_await keel::asio::async_try_acquire(per_client, client_ip);
class async_cluster final : public target {
public:
    /// Validates `options` as keel::redis::cluster does (throws std::invalid_argument
    /// naming the field); touches no network.
    async_cluster(keel::asio::net::any_io_executor const& executor, cluster_options options)
        : m_cluster(std::move(options)), m_loop(executor, m_cluster.options().node.connection) {}

    /// Runs `lua` on the master of `key`'s slot and waits (see the class comment).
    outcome<reply> run(script const& lua, std::string_view key,
                       std::span<std::string_view const> args) override {
        return m_cluster.run(lua, key, args);
    }

    /// Runs `lua` on the master of `key`'s slot through the loop; `done` gets the
    /// answer on the loop.
    void run_async(script const& lua, std::string_view key, std::span<std::string_view const> args,
                   run_handler done) override {
        m_cluster.run_on(m_loop, lua, key, args, std::move(done));
    }

    /// Returns the cluster's routes: one per node (see keel::redis::cluster).
    std::size_t routes() const noexcept override { return m_cluster.routes(); }
    /// Returns the route (node index) `key` maps to now.
    std::size_t route(std::string_view key) const noexcept override { return m_cluster.route(key); }

    /// Returns the cluster: its slot map, options and counters (moved, asks,
    /// tryagains, refreshes count both ways of running a decision).
    cluster& slots() noexcept { return m_cluster; }

private:
    /// The event loop keel::redis::cluster::run_on needs, over async_nodes.
    class loop final : public cluster::event_loop {
    public:
        loop(keel::asio::net::any_io_executor const& executor, connection_options const& options)
            : m_nodes(executor, options) {}

        void send(endpoint const& node, script const& lua, std::span<std::string_view const> keys,
                  std::span<std::string_view const> args, bool asking, run_handler done) override {
            std::string_view const ask[] = {"ASKING"};
            m_nodes.at(node)->run_async(lua, keys, args,
                                        asking ? std::span<std::string_view const>{ask}
                                               : std::span<std::string_view const>{},
                                        std::move(done));
        }
        void offload(std::function<void()> job, std::function<void()> then) override {
            m_nodes.offload(std::move(job), std::move(then));
        }
        void after(std::chrono::milliseconds delay, std::function<void()> then) override {
            m_nodes.after(delay, std::move(then));
        }

    private:
        detail::async_nodes m_nodes;
    };

    cluster m_cluster;
    loop m_loop; // after m_cluster: destroyed first, so its worker never outlives the map
};

} // namespace redis

KEEL_END_NAMESPACE
