// SPDX-License-Identifier: MIT
// keel::redis::target: where a distributed limiter's script runs. One interface
// for the three topologies keel speaks to: a single server (keel::redis::pool), a
// Redis Cluster (keel::redis::cluster) and a master found through Sentinel
// (keel::redis::sentinel). The limiters take a target, so each one runs unchanged
// on all three.
#pragma once

#include <keel/core/outcome.hpp>
#include <keel/redis/connection.hpp>
#include <keel/redis/script.hpp>
#include <keel/version.hpp>

#include <cstddef>
#include <functional>
#include <span>
#include <string_view>

KEEL_BEGIN_NAMESPACE

namespace redis {

/// Receives the answer of target::run_async: the reply, or the transport failure.
using run_handler = std::function<void(outcome<reply>)>;

/// Runs one single-key script on the Redis server that holds the key.
///
/// run() answers with the server's reply (which may be an error reply) or a
/// transport failure (errc::timeout, errc::unavailable); the distributed limiters
/// treat both as "Redis cannot decide" and let their failure policy answer. A
/// target also names its failure domains (routes): the limiters keep one breaker
/// per route, so one dead Cluster master opens only the breaker of the keys it
/// held. Implementations are thread-safe and outlive every limiter using them.
class target {
public:
    target() = default;
    target(target const&) = delete;
    target& operator=(target const&) = delete;
    virtual ~target() = default;

    /// Runs `lua` with the one key `key` and `args` where `key` lives; returns the
    /// reply or the transport failure. Thread-safe.
    virtual outcome<reply> run(script const& lua, std::string_view key,
                               std::span<std::string_view const> args) = 0;

    /// Runs `lua` as run() does and passes its answer to `done`, exactly once. This
    /// default calls run() on the calling thread and `done` before returning, so it
    /// blocks as run() does; an event-loop target (keel::redis::async_connection)
    /// returns at once and calls `done` from its loop. `key` and `args` need to live
    /// only during the call. Thread-safe.
    virtual void run_async(script const& lua, std::string_view key,
                           std::span<std::string_view const> args, run_handler done) {
        done(run(lua, key, args));
    }

    /// Returns how many routes (failure domains) keys map to: at least 1, fixed for
    /// the target's lifetime. A single server and a Sentinel master have one.
    virtual std::size_t routes() const noexcept { return 1; }

    /// Returns the route `key` maps to now, in [0, routes()). Thread-safe; cheap
    /// (no network).
    virtual std::size_t route(std::string_view key) const noexcept {
        static_cast<void>(key);
        return 0;
    }
};

} // namespace redis

KEEL_END_NAMESPACE
