// SPDX-License-Identifier: MIT
// keel::redis::async_sentinel: the distributed limiters on a Redis master that
// Redis Sentinel watches, from inside an Asio event loop. Decisions go to the
// master's keel::redis::async_connection and never block the loop's thread; the
// look-ups of the master (keel::redis::sentinel's: SENTINEL
// get-master-addr-by-name, then ROLE) run on a worker thread. Needs both
// keel::redis (hiredis) and keel::asio (Asio).
#pragma once

#include <keel/asio/detail/asio.hpp>
#include <keel/core/error.hpp>
#include <keel/core/outcome.hpp>
#include <keel/redis/async_connection.hpp>
#include <keel/redis/connection.hpp>
#include <keel/redis/detail/async_nodes.hpp>
#include <keel/redis/script.hpp>
#include <keel/redis/sentinel.hpp>
#include <keel/redis/target.hpp>
#include <keel/version.hpp>

#include <chrono>
#include <cstdint>
#include <deque>
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

/// A Sentinel-managed master as a keel::redis::target for event loops (one route):
/// run_async() never blocks, so keel's Redis limiters on it decide inside
/// keel::asio::resilient (or any coroutine awaiting keel::asio::async_try_acquire)
/// while the io thread runs other work.
///
/// The master is found as keel::redis::sentinel finds it (the same look-up, the
/// same options, pacing and statistics), but the look-up runs on a worker thread:
/// decisions go to the current master's async_connection (on a strand of the
/// executor, `master.connection`'s timeouts). The first decision looks the master
/// up; decisions arriving while that look-up runs wait for it, each at most its
/// `command_timeout` (then errc::timeout; errc::unavailable when no sentinel named
/// a master), and then have their `command_timeout` on the master. A transport
/// failure or a READONLY reply is returned as is, so the limiter's failure policy
/// and breaker answer it, and starts a look-up (at most once per
/// `resolve_interval`); the first decision after `recheck_interval` starts one too
/// and goes to the master in use meanwhile. At most one look-up runs at a time.
/// When the master changes, later decisions go to the new master's connection
/// (those in flight finish on the old one).
///
/// The blocking run() (the limiters' try_acquire) is keel::redis::sentinel's: it
/// looks up and decides on the calling thread through a pool of `master.size`
/// connections, so it works from any thread but the loop's (where it would block
/// the loop as a keel::redis::sentinel does), whether or not the io_context runs.
///
/// Thread-safe; building it touches no network. The io_context must outlive it.
/// Destroying it fails the decisions still waiting for a look-up with
/// errc::unavailable on the destroying thread and closes the connections (their
/// outstanding decisions fail with errc::unavailable on their strands), so the
/// limiters using it must outlive that.
///
///     asio::io_context io;
///     keel::redis::async_sentinel redis{io.get_executor(),
///                                       {.master_name = "limits",
///                                        .sentinels = {{"10.0.0.5", 26379}}}};
///     keel::redis::fixed_window api{redis, {.name = "api", .limit = 1000}};
///     auto call = keel::asio::resilient{op, keel::guard(api)};   // awaits Redis
class async_sentinel final : public target {
public:
    /// What the Sentinel client did so far (monotonic counters), as keel::redis::sentinel's.
    using statistics = sentinel::statistics;

    /// Stores `options` (validated as keel::redis::sentinel does; throws
    /// std::invalid_argument naming the field) without connecting; connections and
    /// callbacks run on `executor`.
    async_sentinel(keel::asio::net::any_io_executor const& executor, sentinel_options options)
        : m_core(std::make_shared<core>(executor, std::move(options))) {}

    async_sentinel(async_sentinel const&) = delete;
    async_sentinel& operator=(async_sentinel const&) = delete;
    /// Fails the decisions waiting for a look-up with errc::unavailable and closes
    /// the connections (see the class comment).
    ~async_sentinel() override { m_core->fail_waiting(errc::unavailable); }

    /// Returns the options.
    sentinel_options const& options() const noexcept { return m_core->lookup.options(); }

    /// Sends `lua` with `key` and `args` to the current master (after looking it up
    /// if none is known yet) and returns; `done` gets the reply or the transport
    /// failure on the executor, once. Never blocks.
    void run_async(script const& lua, std::string_view key, std::span<std::string_view const> args,
                   run_handler done) override {
        m_core->run_async(lua, key, args, std::move(done));
    }

    /// Runs `lua` as keel::redis::sentinel::run does, blocking the calling thread
    /// (see the class comment).
    outcome<reply> run(script const& lua, std::string_view key,
                       std::span<std::string_view const> args) override {
        return m_core->lookup.run(lua, key, args);
    }

    /// Returns the master found by the last look-up, if one was found.
    std::optional<endpoint> master() const { return m_core->lookup.master(); }

    /// Looks the master up now on the calling thread (blocking; waits for a look-up
    /// already running); returns true if a sentinel named a server whose ROLE is
    /// master. Later decisions go there.
    bool resolve() {
        bool const found = m_core->lookup.resolve();
        std::lock_guard lock{m_core->mutex};
        m_core->adopt_locked();
        return found;
    }

    /// Returns the counters.
    statistics stats() const noexcept { return m_core->lookup.stats(); }

private:
    using clock = std::chrono::steady_clock;

    /// A decision that arrived while the first look-up ran (no master known yet).
    struct waiting {
        script const* lua = nullptr;
        std::string key;
        std::vector<std::string> args;
        run_handler done;
        std::uint64_t id = 0;
    };

    /// The state callbacks reach through a weak_ptr, so one running after the
    /// async_sentinel is gone does nothing. The worker thread never holds it
    /// strongly: a look-up uses `lookup` and `nodes` through a plain pointer, which
    /// the destructor of `nodes` (declared last, destroyed first) keeps valid by
    /// joining the worker.
    struct core : std::enable_shared_from_this<core> {
        core(keel::asio::net::any_io_executor const& executor, sentinel_options options)
            : lookup(std::move(options), "keel::redis::async_sentinel"),
              nodes(executor, lookup.options().master.connection) {}

        void run_async(script const& lua, std::string_view key,
                       std::span<std::string_view const> args, run_handler done) {
            std::unique_lock lock{mutex};
            if (!current) {
                adopt_locked(); // resolve() or the blocking run() may have found one
            }
            if (!current) {
                bool const first = !looking;
                looking = true;
                wait_locked(lua, key, args, std::move(done));
                lock.unlock();
                if (first) {
                    look_up(true, {});
                }
                return;
            }
            std::shared_ptr<async_connection> const master = current;
            lock.unlock();
            std::chrono::milliseconds const recheck = lookup.options().recheck_interval;
            if (recheck.count() > 0) {
                look_up_if_due(recheck);
            }
            send(*master, lua, key, args, std::move(done));
        }

        /// Points later decisions at the master the last look-up found, if any.
        /// Needs `mutex` held.
        void adopt_locked() {
            if (std::optional<endpoint> const known = lookup.master()) {
                current = nodes.at(*known);
            }
        }

        /// Queues a decision until the look-up running ends, failing it with
        /// errc::timeout after its command_timeout. Needs `mutex` held.
        void wait_locked(script const& lua, std::string_view key,
                         std::span<std::string_view const> args, run_handler done) {
            std::uint64_t const id = ++waiting_ids;
            queue.push_back(
                {&lua, std::string{key}, {args.begin(), args.end()}, std::move(done), id});
            nodes.after(lookup.options().master.connection.command_timeout,
                        [self = weak_from_this(), id] {
                            if (auto const c = self.lock()) {
                                c->expire(id);
                            }
                        });
        }

        void send(async_connection& master, script const& lua, std::string_view key,
                  std::span<std::string_view const> args, run_handler done) {
            master.run_async(lua, key, args,
                             [self = weak_from_this(), done = std::move(done)](outcome<reply> r) {
                                 bool const moved = sentinel::calls_for_lookup(r);
                                 done(std::move(r));
                                 auto const c = self.lock();
                                 if (moved && c) {
                                     c->look_up_if_due(c->lookup.options().resolve_interval);
                                 }
                             });
        }

        /// Starts a paced look-up unless one runs or the last began within `pace`.
        void look_up_if_due(std::chrono::milliseconds pace) {
            if (!lookup.due(pace)) {
                return; // the common case: one atomic load, no lock
            }
            {
                std::lock_guard lock{mutex};
                if (looking) {
                    return;
                }
                looking = true;
            }
            look_up(false, pace);
        }

        /// Runs sentinel::resolve_now on the worker thread, then, on the executor,
        /// points later decisions at the master found and sends (or fails) those
        /// that waited. The caller has set `looking`.
        void look_up(bool wait, std::chrono::milliseconds pace) {
            nodes.offload([this, wait, pace] { lookup.resolve_now(wait, pace); },
                          [self = weak_from_this()] {
                              if (auto const c = self.lock()) {
                                  c->looked_up();
                              }
                          });
        }

        void looked_up() {
            std::shared_ptr<async_connection> master;
            std::deque<waiting> ready;
            {
                std::lock_guard lock{mutex};
                looking = false;
                adopt_locked();
                master = current;
                ready.swap(queue);
            }
            for (waiting& w : ready) {
                if (!master) {
                    w.done(failure::from(errc::unavailable));
                    continue;
                }
                std::vector<std::string_view> const args{w.args.begin(), w.args.end()};
                send(*master, *w.lua, w.key, args, std::move(w.done));
            }
        }

        /// Fails the waiting decision `id` with errc::timeout if it still waits.
        void expire(std::uint64_t id) {
            run_handler done;
            {
                std::lock_guard lock{mutex};
                for (auto it = queue.begin(); it != queue.end(); ++it) {
                    if (it->id == id) {
                        done = std::move(it->done);
                        queue.erase(it);
                        break;
                    }
                }
            }
            if (done) {
                done(failure::from(errc::timeout));
            }
        }

        void fail_waiting(errc reason) {
            std::deque<waiting> failed;
            {
                std::lock_guard lock{mutex};
                failed.swap(queue);
            }
            for (waiting& w : failed) {
                w.done(failure::from(reason));
            }
        }

        sentinel lookup;
        std::mutex mutex; // guards the members below
        std::shared_ptr<async_connection> current;
        std::deque<waiting> queue;
        std::uint64_t waiting_ids = 0;
        bool looking = false; // a look-up is offloaded and has not finished
        detail::async_nodes nodes;
    };

    std::shared_ptr<core> m_core;
};

} // namespace redis

KEEL_END_NAMESPACE
